"""Writing files safely: atomic replaces (a crash never leaves a half-written file) and JSON-safe values.

Every file the pipeline writes goes through here: ``atomic_save`` (torch objects), ``write_json`` and
``write_text``. ``json_safe`` is the one NaN/inf → ``null`` conversion (JSON has no NaN), applied recursively.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _replace_into(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename over it."""
    import torch

    _replace_into(Path(path), lambda tmp: torch.save(obj, tmp))


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` atomically."""
    _replace_into(Path(path), lambda tmp: tmp.write_text(text))


def json_safe(x: Any) -> Any:
    """``x`` with NaN/inf floats → None and numpy scalars/arrays → Python values, recursively."""
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """``obj`` as indented, key-sorted JSON (NaN → null), written atomically."""
    write_text(json.dumps(json_safe(obj), indent=1, sort_keys=True) + "\n", path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def read_params(root: str | os.PathLike = ".") -> dict:
    """The profile's validated params (defaults filled in), as ``check-params`` — the first stage — wrote them to
    ``runs/_plan/params.json``: every later stage and notebook reads params through here, so none re-applies
    defaults by hand or depends on the registries' code."""
    from .paths import VALIDATED_PARAMS

    f = Path(root) / VALIDATED_PARAMS
    if not f.exists():
        raise FileNotFoundError(f"{f} missing: validate the params first (`python -m eoslib check-params --root {root}`, "
                                "the first stage of `dvc repro`)")
    return read_json(f)
