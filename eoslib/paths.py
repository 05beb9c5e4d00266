"""Where things are in the repository (a leaf module: imports nothing of eoslib)."""
from __future__ import annotations

from pathlib import Path

#: the repository root (the default profile's folder)
REPO = Path(__file__).resolve().parents[1]
#: the source notebooks (kept without outputs); a profile's executed copies go to ``<profile>/notebooks/``
NOTEBOOK_SOURCES = REPO / "notebooks" / "src"
#: the validated params that check-params writes for every later stage (relative to a profile folder)
VALIDATED_PARAMS = Path("runs") / "_plan" / "params.json"
