"""The Slurm executor: each run of a training stage is one Slurm job, submitted through ``submitit``.

``params.yaml``::

    executor: {kind: slurm, partition: gpu, time: 120, cpus_per_task: 4, gpus_per_node: 1, mem_gb: 16}

Every unfinished run of the stage becomes one ``sbatch`` job named ``eoslib:<run name>`` that calls
:func:`eoslib.execute.execute_run` on a compute node — so a finished run is skipped and an interrupted one
resumes from its own ``runs/<name>/checkpoint.pt``. The stage process (``dvc repro`` on the login node)
waits for all its jobs and raises :class:`eoslib.execute.StageFailed` naming every run that did not finish,
with its error (the last line of the traceback, or the Slurm state of a job that was cancelled, timed out
or ran out of memory) and the job's stderr/stdout logs (``<folder>/<job id>_0_log.err|out``).

Job states come from ``squeue`` (every job the controller still knows, any state) and the run folders
themselves (``summary.json`` means done), never from ``sacct``: a cluster without an accounting daemon has no
``sacct`` (submitit then reports every state as UNKNOWN). A job is over when ``squeue`` shows it in a final
state (COMPLETED, FAILED, CANCELLED, TIMEOUT, …; COMPLETING is not final: its processes are still being
killed) or no longer lists it.

Requeue and preemption: a job that reaches its time limit gets ``USR2`` shortly before it; submitit then
requeues it (at most ``requeues`` times) and the run continues from its last checkpoint. A job that Slurm
preempts and requeues resumes the same way. (Slurm holds a requeued job for a while before it runs again:
about 3 minutes on the test cluster.) A stage started again while its jobs are still queued or running
(e.g. after the login-node process was killed) waits for those jobs instead of submitting duplicates: a job
is recognised by its name and its ``--comment`` (the profile folder's absolute path).

submitit is imported only when a Slurm stage runs; the local executor works without it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path


#: Slurm job states after which a job never runs again (COMPLETING is not one: its processes are alive)
FINAL_STATES = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                          "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"})

def job_name(run: str) -> str:
    """The Slurm job name of run ``run`` (deterministic, so a re-run finds the run's queued job)."""
    return f"eoslib:{run}"


class RunJob:
    """What a job executes: ``execute_run(name, config, root)``. On failure the traceback is written to
    ``runs/<name>/error.log`` (as by the local executor) and re-raised, so the job ends FAILED and submitit's
    result file holds the traceback. ``checkpoint`` makes submitit requeue the job at its time limit or on
    preemption with the same arguments: the run resumes from its own checkpoint."""

    def __call__(self, name: str, config: dict, root: str) -> dict:
        from .run import execute_run

        try:
            return execute_run(name, config, root)
        except Exception:
            log = Path(root) / "runs" / name / "error.log"
            if log.parent.exists():
                log.write_text(traceback.format_exc())
            raise

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


@dataclass
class TrackedJob:
    """One run's job as the stage process tracks it."""

    name: str
    config: dict
    id: str
    folder: Path
    start: float
    state: str = "PENDING"  # as last seen by squeue
    final_seen: int = 0  # consecutive polls that showed a final state (or no job) without a finished run
    traceback: bool = False  # the run raised (its traceback is in runs/<name>/error.log and the job's log)
    stale: bool = False  # a job of an earlier start running another config, cancelled: resubmit when over

    @property
    def stdout(self) -> Path:
        return self.folder / f"{self.id}_0_log.out"

    @property
    def stderr(self) -> Path:
        return self.folder / f"{self.id}_0_log.err"

    @property
    def result(self) -> Path:
        return self.folder / f"{self.id}_0_result.pkl"


class SlurmExecutor:
    """One Slurm job per run (see the module docstring); every parameter is optional."""

    def __init__(self, partition: str | None = None, time: int = 60, cpus_per_task: int = 1,
                 gpus_per_node: int = 0, mem_gb: float | None = None, max_jobs: int = 0,
                 folder: str = "runs/_slurm", poll: float = 10.0, requeues: int = 3,
                 setup: list[str] | None = None, sbatch: dict | None = None) -> None:
        self.partition, self.time, self.cpus_per_task = partition, time, cpus_per_task
        self.gpus_per_node, self.mem_gb, self.max_jobs = gpus_per_node, mem_gb, max_jobs
        self.folder, self.poll, self.requeues = folder, poll, requeues
        self.setup, self.sbatch = list(setup or []), dict(sbatch or {})

    # ------------------------------------------------------------------------------------------ the stage
    def run(self, items: list[tuple[str, dict]], root: Path, progress: bool = False) -> None:
        """Submit a job per run (or attach to its job still in the queue), wait for all, raise
        :class:`~eoslib.run.StageFailed` naming every run that did not finish. ``progress``: also print
        how many jobs run and wait whenever that changes."""
        root = Path(root).resolve()
        folder = root / self.folder
        submitter = self._submitter(folder, root)
        todo, active = self._attach(items, root, folder)
        failures, done, shown = [], 0, ""
        try:
            while todo or active:
                while todo and (not self.max_jobs or len(active) < self.max_jobs):
                    active.append(self._submit(submitter, *todo.pop(0), root, folder))
                time.sleep(self.poll)
                for job, outcome in self._ended(active, root):
                    if job.stale:  # a job of an earlier start, cancelled, now over: the run can go
                        todo.append((job.name, job.config))
                        continue
                    done += 1
                    self._report(job, outcome, failures)
                running = sum(j.state == "RUNNING" for j in active)
                status = f"{done} of {len(items)} runs over, {running} running, {len(items) - done - running} waiting"
                if progress and status != shown:
                    print(status, flush=True)
                    shown = status
        except KeyboardInterrupt:
            ids = " ".join(j.id for j in active)
            if ids:
                print(f"interrupted: Slurm job(s) {ids} keep running; starting the stage again waits for them "
                      f"(cancel them with `scancel {ids}`)", file=sys.stderr, flush=True)
            raise
        self._raise(failures, root)

    def _ended(self, active: list[TrackedJob], root: Path) -> list[tuple[TrackedJob, bool | str]]:
        """The jobs of ``active`` that are over, with their outcome (see :meth:`_outcome`); removed from it."""
        states = self._queue()
        ended = []
        for job in list(active):
            outcome = self._outcome(job, states.get(job.id, (None,))[0], root)
            if outcome is not None:
                active.remove(job)
                ended.append((job, outcome))
        return ended

    @staticmethod
    def _report(job: TrackedJob, outcome: bool | str, failures: list[tuple[TrackedJob, str]]) -> None:
        """Print how the run ended; a failure goes to ``failures``, a success drops submitit's pickles (the
        logs and the sbatch script stay)."""
        print(f"{job.name}: {'done' if outcome is True else 'FAILED'} (Slurm job {job.id}, "
              f"{time.time() - job.start:.1f} s)", flush=True)
        if outcome is True:
            for f in (job.result, job.folder / f"{job.id}_submitted.pkl"):
                f.unlink(missing_ok=True)
        else:
            failures.append((job, outcome))

    def _attach(self, items: list[tuple[str, dict]], root: Path, folder: Path
                ) -> tuple[list[tuple[str, dict]], list[TrackedJob]]:
        """(runs to submit, jobs to wait for). A run whose job (same name, comment = this root) is still in the
        queue from an earlier start of the stage is waited for, not submitted again — unless that job runs
        another config (params changed since): then it is cancelled, and the run submitted once it is over."""
        queued = {name: jid for jid, (state, name, comment) in self._queue().items()
                  if comment == str(root) and state not in FINAL_STATES}
        todo, active = [], []
        for name, config in items:
            jid = queued.get(job_name(name))
            if jid is None:
                todo.append((name, config))
                continue
            stale = _submitted_config(folder, jid) != config
            if stale:
                print(f"{name}: its Slurm job {jid}, queued from an earlier start, runs another config: "
                      "cancelling it", flush=True)
                subprocess.run(["scancel", jid], capture_output=True, timeout=120)
            else:
                print(f"{name}: waiting for its Slurm job {jid}, queued from an earlier start", flush=True)
            active.append(TrackedJob(name, config, jid, folder, time.time(), stale=stale))
        return todo, active

    def _submit(self, submitter, name: str, config: dict, root: Path, folder: Path) -> TrackedJob:
        submitter.update_parameters(job_name=job_name(name))
        job = submitter.submit(RunJob(), name, config, str(root))
        print(f"{name}: submitted as Slurm job {job.job_id}", flush=True)
        return TrackedJob(name, config, str(job.job_id), folder, time.time())

    def _outcome(self, job: TrackedJob, state: str | None, root: Path) -> bool | str | None:
        """True (run finished), an error text (job over, run not finished) or None (still going); records the
        job's last state. An error raised by the run is the last line of its traceback; a job killed by Slurm
        (cancelled, timed out, out of memory, node failure) is described by slurmstepd's ``*** … ***`` line.

        A job without a result that looks over must look so on two consecutive polls: a preempted job is
        requeued (PENDING again) under the same id, and a shared filesystem may show files late."""
        from .run import run_finished

        job.state = state or "gone from the queue"
        if state is not None and state not in FINAL_STATES:
            job.final_seen = 0
            return None
        if run_finished(job.name, job.config, root):
            return True
        if job.result.exists():
            from submitit.core.utils import pickle_load

            outcome, value = pickle_load(job.result)
            if outcome == "error":
                job.traceback = True
                return _last_line(str(value))
        job.final_seen += 1
        if job.final_seen < 2:
            return None
        log = job.stderr.read_text(errors="replace") if job.stderr.exists() else ""
        why = _last_line("\n".join(ln for ln in log.splitlines() if "***" in ln) or log)
        return "the job ended before the run finished" + (f" ({why})" if why else "")

    def _raise(self, failures: list[tuple[TrackedJob, str]], root: Path) -> None:
        from .run import StageFailed

        if failures:
            lines = [f"{len(failures)} run(s) failed:"]
            for job, err in failures:
                tb = root / "runs" / job.name / "error.log"
                where = f"; traceback in {tb}" if job.traceback and tb.exists() else ""
                lines.append(f"  {job.name}: {err} (Slurm job {job.id} {job.state}; logs {job.stderr}, "
                             f"{job.stdout}{where})")
            raise StageFailed("\n".join(lines))

    # ------------------------------------------------------------------------------------------ Slurm
    def _submitter(self, folder: Path, root: Path):
        """A configured ``submitit.SlurmExecutor`` writing its pickles and logs to ``folder``."""
        try:
            import submitit
        except ImportError:
            raise RuntimeError("executor kind 'slurm' needs submitit: pip install submitit==1.5.4 "
                               "(pinned in requirements.lock)") from None
        try:
            ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=self.requeues)
        except RuntimeError:
            raise RuntimeError("executor kind 'slurm': no `srun` on PATH — run the stage on a Slurm login node, "
                               "or set `executor: {kind: local}` in params.yaml") from None
        params = {"time": self.time, "cpus_per_task": self.cpus_per_task, "comment": str(root),
                  "signal_delay_s": min(90, 15 * self.time), "setup": self.setup or None,
                  "additional_parameters": self.sbatch or None, "partition": self.partition,
                  "gpus_per_node": self.gpus_per_node or None,
                  "mem": None if self.mem_gb is None else f"{round(self.mem_gb * 1024)}M"}
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return ex

    def _queue(self) -> dict[str, tuple[str, str, str]]:
        """job id → (state, name, comment) of every job of this user that ``squeue`` still lists (any state).
        A failing ``squeue`` (controller busy or restarting) is retried for ~30 polls before giving up."""
        cmd = ["squeue", "--noheader", "--states=all", f"--user={os.getuid()}", "--format=%i|%T|%j|%k"]
        for attempt in range(30):
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as e:
                err = str(e)
            else:
                if r.returncode == 0:
                    rows = (ln.split("|", 3) for ln in r.stdout.splitlines() if ln.count("|") >= 3)
                    return {jid: (state.split()[0], name, comment) for jid, state, name, comment in rows}
                err = r.stderr.strip()
            print(f"squeue failed ({err}); retrying", file=sys.stderr, flush=True)
            time.sleep(min(self.poll, 10.0) * (attempt > 0))
        raise RuntimeError(f"squeue keeps failing ({err}); the stage's jobs may still be running")


def _submitted_config(folder: Path, jid: str) -> dict | None:
    """The run config job ``jid`` was submitted with (None when its submitit file cannot be read)."""
    try:
        from submitit.core.utils import DelayedSubmission

        return DelayedSubmission.load(folder / f"{jid}_submitted.pkl").args[1]
    except Exception:  # noqa: BLE001 — missing, another folder, unreadable: treat as another config
        return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
