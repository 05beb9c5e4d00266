"""Executors: how a stage's runs are carried out — local processes (default) or a cluster scheduler.

``params.yaml``: ``executor: {kind: local, workers: 2}``. An executor has ``run(items, root, progress)``
with ``items`` = [(run name, resolved config)]; it executes every item (each with
:func:`eoslib.execute.execute_run`, which skips finished runs and resumes interrupted ones from their
checkpoints), waits for all of them, and raises :class:`eoslib.execute.StageFailed` naming every run that
failed, with its error and log. A new executor is one class registered in :data:`EXECUTORS`.
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path

from .registry import Registry
from .schema import Int, Opt

#: executor kind → class; ``executor: {kind: <name>, **kwargs}`` builds ``EXECUTORS[kind](**kwargs)``
EXECUTORS: Registry[type] = Registry("executor")


def _execute_one(args: tuple[str, dict, str, bool]) -> tuple[str, float, str | None]:
    """(name, seconds, error text or None) — never raises, so one failed run does not stop the others."""
    from .execute import execute_run

    name, config, root, progress = args
    t = time.perf_counter()
    try:
        execute_run(name, config, root, progress=progress)
        return name, time.perf_counter() - t, None
    except Exception:  # noqa: BLE001 — reported per run by the executor
        err = traceback.format_exc()
        log = Path(root) / "runs" / name / "error.log"
        if log.parent.exists():
            log.write_text(err)
        return name, time.perf_counter() - t, err


def _raise_failures(failures: list[tuple[str, str]], root: Path) -> None:
    from .execute import StageFailed

    if failures:
        lines = [f"{len(failures)} run(s) failed:"]
        for name, err in failures:
            last = err.strip().splitlines()[-1] if err.strip() else "?"
            lines.append(f"  {name}: {last} (traceback in {root / 'runs' / name / 'error.log'})")
        raise StageFailed("\n".join(lines))


@EXECUTORS.register("local", label="local processes", schema={"workers": Opt(Int(), 1)})
class LocalExecutor:
    """``workers`` processes on this machine (fork; one torch thread each, as set by the run's config)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers

    def run(self, items: list[tuple[str, dict]], root: Path, progress: bool = False) -> None:
        args = [(n, c, str(root), progress) for n, c in items]
        workers = max(1, min(self.workers, len(args)))
        failures = []
        if workers == 1:
            results = map(_execute_one, args)
            pool = None
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
            results = pool.map(_execute_one, args)
        try:
            for name, sec, err in results:
                print(f"{name}: {'FAILED' if err else 'done'} in {sec:.1f} s", flush=True)
                if err:
                    failures.append((name, err))
        finally:
            if pool is not None:
                pool.shutdown()
        _raise_failures(failures, root)


def build_executor(spec: dict | None):
    """The executor of ``params.yaml``'s ``executor`` section (default: one local process)."""
    spec = dict(spec or {"kind": "local"})
    return EXECUTORS[spec.pop("kind")](**spec)


from . import slurm  # noqa: E402,F401  (registers the "slurm" executor; submitit is imported only when it runs)
