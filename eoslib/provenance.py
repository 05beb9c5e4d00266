"""Run identity: which code and data made a run, and the id that decides whether a finished run is reused.

A run's id is the sha256 of

* its resolved config (``config.json``: the run-time keys such as the device left out, :mod:`eoslib.device`),
* the fingerprint of the code it executes — the sha256 of every source file in the import closure
  (:func:`eoslib.imports.import_closure`) of the modules its config names: its kind's module, the solvers and
  the dataset loader named in the config (looked up in their catalogs; every other module they use, the
  objective, the models, the measures, the eigensolver, comes in through their imports). Orchestration (how runs
  are scheduled: :mod:`eoslib.execute`, :mod:`eoslib.executors`, :mod:`eoslib.slurm`) and analysis code are not
  in it,
* the content hash of each dataset it loads (:func:`eoslib.data.content_hash`),
* the torch version.

``runs/<name>/provenance.json`` holds the id and its parts. A finished run is reused only when its id matches
the planned one; an interrupted run resumes from its checkpoint only within the same id; otherwise its folder is
wiped and the run redone. The same module list gives a training stage's DVC dependencies
(:func:`stage_code`), so ``dvc repro`` re-executes a stage exactly when one of its runs' ids can have changed.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .device import identity
from .imports import REPO, import_closure


def _solver_names(config: Any, key: str = "") -> list[str]:
    """Every solver named in a config: a mapping with a ``name`` under a key containing "solver"."""
    out: list[str] = []
    if isinstance(config, Mapping):
        if "solver" in key and isinstance(config.get("name"), str):
            out.append(config["name"])
        for k, v in config.items():
            out += _solver_names(v, str(k))
    elif isinstance(config, list):
        for v in config:
            out += _solver_names(v, key)
    return out


def run_modules(config: Mapping) -> list[str]:
    """The modules a run's config names, looked up in the catalogs without importing them: its experiment
    kind, its solvers and its dataset loader."""
    from .data import DATASETS
    from .experiments import KINDS
    from .solvers import SOLVERS

    mods = [KINDS.module(config["kind"])]
    mods += [SOLVERS.module(n) for n in dict.fromkeys(_solver_names(config))]
    setting = config.get("setting") or {}
    if setting.get("dataset"):
        mods.append(DATASETS.module(setting["dataset"]))
    return mods


def run_datasets(config: Mapping) -> list[str]:
    """The datasets a run loads."""
    d = (config.get("setting") or {}).get("dataset")
    return [d] if d else []


def code_files(configs: Iterable[Mapping]) -> list[str]:
    """The source files (relative to the repository) that the runs of ``configs`` execute, sorted."""
    mods = dict.fromkeys(m for c in configs for m in run_modules(c))
    return import_closure(*mods)


@functools.lru_cache(maxsize=None)
def _file_sha(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256((REPO / path).read_bytes()).hexdigest()


def file_sha(path: str) -> str:
    """sha256 of a repository file (cached while the file is unchanged)."""
    st = (REPO / path).stat()
    return _file_sha(path, st.st_mtime_ns, st.st_size)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_provenance(config: Mapping, data_root: str | Path = "data") -> dict:
    """``{"run_id", "config_sha256", "code": {file: sha256}, "data": {dataset: content hash}, "torch"}``."""
    import torch

    from .data import content_hash

    cfg = identity(dict(config))
    parts = {
        "config_sha256": hashlib.sha256(_canonical(cfg).encode()).hexdigest(),
        "code": {f: file_sha(f) for f in code_files([cfg])},
        "data": {d: content_hash(d, data_root) for d in run_datasets(cfg)},
        "torch": torch.__version__,
    }
    return {"run_id": hashlib.sha256(_canonical(parts).encode()).hexdigest()[:20]} | parts


def run_id(config: Mapping, data_root: str | Path = "data") -> str:
    """The id of the run with resolved ``config`` under the current code, data and torch."""
    return run_provenance(config, data_root)["run_id"]


def stage_code(configs: Iterable[Mapping]) -> list[str]:
    """A training stage's code dependencies: the code its runs execute (= :func:`code_files`)."""
    return code_files(configs)


def stage_data(configs: Iterable[Mapping]) -> list[str]:
    """The repository files (e.g. ``data/fashion-mnist-mini.npz``) that a stage's runs read."""
    from .data import repo_files

    names = dict.fromkeys(d for c in configs for d in run_datasets(c))
    return sorted({f for d in names for f in repo_files(d)})
