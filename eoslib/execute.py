"""Executing a planned stage: prune the run folders the plan no longer has, skip the runs finished under their
current id (:mod:`eoslib.run`, :mod:`eoslib.provenance`), hand the rest to the executor (local processes by
default; see :mod:`eoslib.executors`). Also the command line ``python -m eoslib.execute`` (``eoslib train``).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .paths import VALIDATED_PARAMS
from .provenance import run_id
from .run import StageFailed, execute_run, run_finished


def plan_file(root: str | Path, stage: str) -> Path:
    return Path(root) / "runs" / "_plan" / f"{stage}.json"


def recorded_costs(root: str | Path) -> dict[str, float]:
    """Run name → CPU seconds of its last finished generation (the profile's ``metrics/run_costs.json``, written by
    its ``costs`` stage); empty when the profile has none yet."""
    f = Path(root) / "metrics" / "run_costs.json"
    return {r["run"]: float(r["cpu_seconds"]) for r in json.loads(f.read_text())["runs"]} if f.exists() else {}


def stage_items(stage: str, root: str | Path) -> tuple[dict, list[tuple[str, dict]]]:
    """The planned stage and its runs, most expensive first so that parallel workers finish together: largest N,
    then the CPU seconds the run took last time (:func:`recorded_costs`; a run never recorded counts as the most
    expensive), then for GD the smallest η, then plan order."""
    f = plan_file(root, stage)
    if not f.exists():
        raise FileNotFoundError(f"no planned stage {stage!r} ({f} missing); run `python -m eoslib check-params`")
    st = json.loads(f.read_text())
    cost = recorded_costs(root)
    items = sorted(st["runs"].items(), key=lambda it: (-it[1]["n"], -cost.get(it[0], float("inf")),
                                                        (it[1].get("solver") or {}).get("lr", 0.0)))
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
    from .executors import build_executor

    st, items = stage_items(stage, root)
    prune_stage(st, root)
    todo = [(n, c) for n, c in items if not run_finished(n, c, root)]
    print(f"{stage}: {len(items) - len(todo)} of {len(items)} runs finished, {len(todo)} to run", flush=True)
    if todo:
        before = {n: run_id(c) for n, c in todo}
        try:
            (executor or build_executor(None)).run(todo, Path(root), progress=progress)
        finally:
            _code_unchanged(stage, todo, before, Path(root))


def _code_unchanged(stage: str, todo: list[tuple[str, dict]], before: dict[str, str], root: Path) -> None:
    """Raise :class:`StageFailed` when the code of a run changed while the stage ran, after removing those runs'
    folders: a worker may have imported the old code and recorded the new code's id (a result relabelled), and DVC
    would lock the stage under the new files. The next run of the stage redoes them. Data edited mid-stage is not
    seen here: :func:`eoslib.data.content_hash` is computed once per process."""
    changed = [n for n, c in todo if run_id(c) != before[n]]
    if not changed:
        return
    for n in changed:
        shutil.rmtree(root / "runs" / n, ignore_errors=True)
    raise StageFailed(f"{stage}: the code of {len(changed)} runs changed while the stage ran (e.g. "
                      f"{changed[0]}); their folders were removed — run the stage again")


def planned_config(name: str, root: str | Path) -> dict:
    """The resolved config of run ``name`` from the plan files ``runs/_plan/*.json`` (written by check-params)."""
    for f in sorted((Path(root) / "runs" / "_plan").glob("*.json")):
        if f.name == VALIDATED_PARAMS.name:  # the validated params, written beside the plan files: no runs
            continue
        runs = json.loads(f.read_text())["runs"]
        if name in runs:
            return runs[name]
    raise KeyError(f"no planned run {name!r}; see `python -m eoslib stages` (and run `python -m eoslib check-params`)")


def main(argv: list[str] | None = None) -> int:
    """``python -m eoslib.execute [--root R] (--stage ID | --run NAME) [--progress]`` (also ``eoslib train``).

    Reads only the plan files and the validated params' ``executor`` (written by check-params)."""
    import argparse
    import sys

    from .executors import build_executor
    from .io import read_params

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
            execute_stage(a.stage, root, executor=build_executor(read_params(root).get("executor")),
                          progress=a.progress)
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
