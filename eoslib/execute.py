"""Executing runs: one run into its folder (skip when finished, resume when interrupted), a stage's runs
through an executor (local processes by default; see :mod:`eoslib.executors`).

A run is *finished* when ``runs/<name>/summary.json`` exists and ``config.json`` equals the planned config;
a finished run is never redone, an unfinished one resumes from its checkpoint, a run whose config changed is
wiped and redone. Every file is written atomically; ``summary.json`` last.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .device import identity
from .io import atomic_save, read_json, write_json


class StageFailed(RuntimeError):
    """Some runs of a stage failed; the message names each run, its error and where its log is."""


def plan_file(root: str | Path, stage: str) -> Path:
    return Path(root) / "runs" / "_plan" / f"{stage}.json"


def run_finished(name: str, config: dict, root: str | Path) -> bool:
    folder = Path(root) / "runs" / name
    return (folder / "summary.json").exists() and (folder / "config.json").exists() \
        and read_json(folder / "config.json") == identity(config)


def execute_run(name: str, config: dict, root: str | Path = ".", progress: bool = False) -> dict:
    """Train one run into ``runs/<name>/`` (skip when finished, resume when interrupted). Returns the summary."""
    import torch

    from .device import resolve
    from .experiments import KINDS

    folder = Path(root) / "runs" / name
    cfg_file, summ_file = folder / "config.json", folder / "summary.json"
    ident = identity(config)
    if cfg_file.exists():
        if read_json(cfg_file) != ident:
            shutil.rmtree(folder)
        elif summ_file.exists():
            return read_json(summ_file)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(ident, cfg_file)
    clock, cpu = time.perf_counter(), time.process_time()
    device = resolve(config.get("device", "cpu"))
    table, info = KINDS[config["kind"]].run(ident | {"device": str(device)}, folder, progress)
    theta = info.pop("theta")
    table.to_csv(folder / "trajectory.csv.tmp", index=False)
    (folder / "trajectory.csv.tmp").replace(folder / "trajectory.csv")
    atomic_save({"theta": theta.cpu(), "config": ident}, folder / "final.pt")
    sharp = table["sharpness"].dropna() if "sharpness" in table else table["t"].iloc[:0]
    summary = {
        "name": name, "kind": config["kind"], "P": int(theta.numel()), "N": config["n"],
        "steps": int(table["step"].max()), "t_end": float(table["t"].iloc[-1]),
        "loss_end": float(table["loss"].iloc[-1]),
        "sharpness_init": float(sharp.iloc[0]) if len(sharp) else None,
        "sharpness_max": float(sharp.max()) if len(sharp) else None,
        "wall_seconds": time.perf_counter() - clock, "cpu_seconds": time.process_time() - cpu,
        "torch_threads": torch.get_num_threads(),
        "device": str(theta.device),
    } | info
    write_json(summary, summ_file)
    for f in ("phase1.pt", "checkpoint.pt"):
        (folder / f).unlink(missing_ok=True)
    return summary


def stage_items(stage: str, root: str | Path) -> tuple[dict, list[tuple[str, dict]]]:
    """The planned stage and its runs, most expensive first (largest N; for GD the smallest η), so parallel
    workers finish together."""
    f = plan_file(root, stage)
    if not f.exists():
        raise FileNotFoundError(f"no planned stage {stage!r} ({f} missing); run `python -m eoslib check-params`")
    st = json.loads(f.read_text())
    items = sorted(st["runs"].items(), key=lambda it: (-it[1]["n"], (it[1].get("solver") or {}).get("lr", 0.0), it[0]))
    return st, items


def prune_stage(st: dict, root: str | Path) -> None:
    """Remove run folders in the stage's directory that the plan no longer has (e.g. a dropped size or seed)."""
    root = Path(root)
    stage_dir = root / st["dir"]
    stage_dir.mkdir(parents=True, exist_ok=True)
    wanted = {(root / "runs" / n).resolve() for n in st["runs"]}
    keep = wanted | {a for w in wanted for a in w.parents}

    def prune(d: Path) -> None:
        for sub in d.iterdir():
            if sub.is_dir():
                r = sub.resolve()
                if r in keep and r not in wanted:
                    prune(sub)
                elif r not in keep:
                    shutil.rmtree(sub)

    prune(stage_dir)


def execute_stage(stage: str, root: str | Path = ".", executor=None, progress: bool = False) -> None:
    """Run every unfinished run of ``runs/_plan/<stage>.json`` with ``executor`` (default: local processes,
    ``executor.workers`` of them) and prune run folders the plan no longer has. Raises :class:`StageFailed`
    naming every failed run after the others have finished."""
    from .executors import LocalExecutor

    st, items = stage_items(stage, root)
    prune_stage(st, root)
    todo = [(n, c) for n, c in items if not run_finished(n, c, root)]
    print(f"{stage}: {len(items) - len(todo)} of {len(items)} runs finished, {len(todo)} to run", flush=True)
    if todo:
        (executor or LocalExecutor()).run(todo, Path(root), progress=progress)


def planned_config(name: str, root: str | Path) -> dict:
    """The resolved config of run ``name`` from the plan files ``runs/_plan/*.json`` (written by check-params)."""
    for f in sorted((Path(root) / "runs" / "_plan").glob("*.json")):
        runs = json.loads(f.read_text())["runs"]
        if name in runs:
            return runs[name]
    raise KeyError(f"no planned run {name!r}; see `python -m eoslib stages` (and run `python -m eoslib check-params`)")


def main(argv: list[str] | None = None) -> int:
    """``python -m eoslib.execute [--root R] (--stage ID | --run NAME) [--progress]`` (also ``eoslib train``).

    Reads only the plan files and params.yaml's ``executor`` (validated by check-params before), so a training
    stage's code dependencies are the training code alone."""
    import argparse
    import sys

    import yaml

    from .executors import build_executor

    ap = argparse.ArgumentParser(prog="python -m eoslib train", description="train a stage's runs (or one run)")
    ap.add_argument("--root", default=".", help="profile folder holding params.yaml")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--stage")
    g.add_argument("--run")
    ap.add_argument("--progress", action="store_true", help="show a progress bar")
    a = ap.parse_args(argv)
    root = Path(a.root)
    t = time.perf_counter()
    try:
        if a.stage:
            spec = (yaml.safe_load((root / "params.yaml").read_text()) or {}).get("executor")
            execute_stage(a.stage, root, executor=build_executor(spec), progress=a.progress)
        else:
            execute_run(a.run, planned_config(a.run, root), root, progress=a.progress)
    except (KeyError, FileNotFoundError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except StageFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"done in {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
