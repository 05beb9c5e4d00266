"""Executors: how a stage's runs are carried out — local processes (default) or a cluster scheduler.

``params.yaml``: ``executor: {kind: local, workers: 2}``. An executor has ``run(items, root, progress)``
with ``items`` = [(run name, resolved config)]; it executes every item (each with
:func:`eoslib.run.execute_run`, which skips finished runs and resumes interrupted ones from their
checkpoints), waits for all of them, and raises :class:`eoslib.run.StageFailed` naming every run that
failed, with its error and log. A new executor is one class registered in :data:`EXECUTORS`.
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path

from .registry import Registry
from .schema import Any_, Int, ListOf, MapOf, Num, Opt, Text

#: executor kind → class; ``executor: {kind: <name>, **kwargs}`` builds ``EXECUTORS[kind](**kwargs)``
EXECUTORS: Registry[type] = Registry("executor")

#: the ``executor: {kind: slurm, …}`` keys (:class:`eoslib.slurm.SlurmExecutor`'s keywords)
SLURM_SCHEMA = {
    "partition": Opt(Text()),                                # default: the cluster's default partition
    "time": Opt(Int(), 60),                                  # minutes per job (requeued at the limit)
    "cpus_per_task": Opt(Int(), 1),                          # match params.yaml's `threads`
    "gpus_per_node": Opt(Int(minimum=0), 0),
    "mem_gb": Opt(Num()),                                    # default: the partition's default
    "max_jobs": Opt(Int(minimum=0), 0),                      # jobs of a stage queued at once; 0: all
    "folder": Opt(Text(), "runs/_slurm"),                    # submitit's pickles and job logs (under root)
    "poll": Opt(Num(), 10.0),                                # seconds between squeue calls
    "requeues": Opt(Int(minimum=0), 3),                      # time-limit requeues per job
    "setup": Opt(ListOf(Text(), unique=False, nonempty=False), []),  # shell lines run before the job
    "sbatch": Opt(MapOf(Any_(), nonempty=False, what="sbatch option value"), {}),  # e.g. {qos: high}
}
EXECUTORS.lazy("slurm", "eoslib.slurm:SlurmExecutor", label="Slurm jobs (submitit)", schema=SLURM_SCHEMA)


def _execute_one(args: tuple[str, dict, str, bool]) -> tuple[str, float, str | None]:
    """(name, seconds, error text or None) — never raises, so one failed run does not stop the others."""
    from .run import execute_run

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
    from .run import StageFailed

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


