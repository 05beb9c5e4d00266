"""One run into its folder ``runs/<name>/``: skip it when finished under the same id, resume it when interrupted
under the same id, redo it otherwise.

A run is *finished* when ``summary.json`` exists, ``config.json`` equals the planned config and
``provenance.json`` holds the planned run id (:mod:`eoslib.provenance`: config, the code the run executes, its
data and torch). A run folder of another id — the code or data changed, or an old layout — is wiped before the
run starts, so a checkpoint is only ever resumed by the code that wrote it and a result is never relabelled.
Every file is written atomically; ``summary.json`` last.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from .device import identity
from .io import atomic_save, read_json, write_json
from .provenance import run_provenance


class StageFailed(RuntimeError):
    """Some runs of a stage failed; the message names each run, its error and where its log is."""


def _same_run(folder: Path, ident: dict, rid: str) -> bool:
    cfg, prov = folder / "config.json", folder / "provenance.json"
    return cfg.exists() and prov.exists() and read_json(cfg) == ident and read_json(prov).get("run_id") == rid


def run_finished(name: str, config: dict, root: str | Path) -> bool:
    """True when ``runs/<name>/`` holds the finished run of ``config`` under the current code and data."""
    folder = Path(root) / "runs" / name
    if not (folder / "summary.json").exists():
        return False
    return _same_run(folder, identity(config), run_provenance(config)["run_id"])


def execute_run(name: str, config: dict, root: str | Path = ".", progress: bool = False) -> dict:
    """Train one run into ``runs/<name>/`` (skip when finished, resume when interrupted, both within the same
    run id; redo otherwise). Returns the summary."""
    import torch

    from .device import resolve
    from .experiments import KINDS

    folder = Path(root) / "runs" / name
    ident = identity(config)
    prov = run_provenance(config)
    if folder.exists():
        if not _same_run(folder, ident, prov["run_id"]):
            shutil.rmtree(folder)
        elif (folder / "summary.json").exists():
            return read_json(folder / "summary.json")
    folder.mkdir(parents=True, exist_ok=True)
    write_json(ident, folder / "config.json")
    write_json(prov, folder / "provenance.json")
    clock, cpu = time.perf_counter(), time.process_time()
    device = resolve(config.get("device", "cpu"))
    table, info = KINDS[config["kind"]].run(ident | {"device": str(device)}, folder, progress)
    theta = info.pop("theta")
    table.to_csv(folder / "trajectory.csv.tmp", index=False)
    (folder / "trajectory.csv.tmp").replace(folder / "trajectory.csv")
    atomic_save({"theta": theta.cpu(), "config": ident}, folder / "final.pt")
    sharp = table["sharpness"].dropna() if "sharpness" in table else table["t"].iloc[:0]
    summary = {
        "name": name, "kind": config["kind"], "run_id": prov["run_id"], "P": int(theta.numel()), "N": config["n"],
        "steps": int(table["step"].max()), "t_end": float(table["t"].iloc[-1]),
        "loss_end": float(table["loss"].iloc[-1]),
        "sharpness_init": float(sharp.iloc[0]) if len(sharp) else None,
        "sharpness_max": float(sharp.max()) if len(sharp) else None,
        "wall_seconds": time.perf_counter() - clock, "cpu_seconds": time.process_time() - cpu,
        "torch_threads": torch.get_num_threads(),
        "device": str(theta.device),
    } | info
    write_json(summary, folder / "summary.json")
    for f in ("phase1.pt", "phase1-checkpoint.pt", "checkpoint.pt"):
        (folder / f).unlink(missing_ok=True)
    return summary
