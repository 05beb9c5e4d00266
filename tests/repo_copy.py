"""A copy of the repository's pipeline files in a temporary folder, run as its own project (shared by the tests
that run DVC or the pipeline on a copy: test_pipeline, test_profiles, test_staleness)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
#: what a pipeline needs: the package, the bundled data, the notebooks, DVC's and git's settings
PIPELINE_FILES = ("eoslib", "data", "notebooks", ".dvcignore", ".dvc/config", ".dvc/.gitignore", ".gitignore",
                  "pyproject.toml", "params.yaml")


def copy_repo(dest: Path, items: Iterable[str] = PIPELINE_FILES) -> None:
    """Copy ``items`` (paths relative to the repository; every one must exist) into ``dest``."""
    for item in items:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        elif src.exists():
            (dest / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / item)
        else:
            raise FileNotFoundError(f"{item} is not in the repository")


def copy_env(dest: Path, **extra: str) -> dict:
    """The environment of a command run in the copy: this venv's tools first, the copy's package importable."""
    return dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(dest),
                DVC_NO_ANALYTICS="1", MPLBACKEND="Agg", **extra)


def run(cmd: Sequence, cwd: Path, env: dict, check: bool = True, timeout: int = 600, stdin: str | None = None
        ) -> subprocess.CompletedProcess:
    """Run ``cmd``; with ``check`` an AssertionError holding the tail of its output when it fails."""
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                       input=stdin)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-4000:]}\n"
                             f"{r.stderr[-4000:]}")
    return r
