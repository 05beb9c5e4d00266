"""The Slurm executor against a real single-node Slurm cluster that this file starts (tests/slurm_cluster.py).

Tiny gradient-descent runs (a 16-wide, 3-layer MLP on 24 digits; seconds each) go through ``sbatch``:
a stage finishes and matches the same runs executed locally bit for bit; a job cancelled mid-run is reported
and the re-run resumes it from its checkpoint to the same end as an uninterrupted run; a run that diverges
fails the stage with its name, error and job log while the other run finishes; ``python -m eoslib train``
with ``executor: {kind: slurm}`` submits, a restarted stage process waits for its still-running job instead
of submitting it again, and cancels and resubmits it when the run's config changed meanwhile. Skipped (with the reason) without root or without Debian's ``slurm-wlm`` and
``munge`` packages. Run: ``pytest tests/test_slurm.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from eoslib.execute import StageFailed, execute_stage, run_finished
from eoslib.executors import EXECUTORS, build_executor
from eoslib.schema import ParamsError, Tagged, check
from eoslib.slurm import SlurmExecutor, job_name

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import Cluster, skip_reason  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
POLL = 0.3  # seconds between squeue calls in the tests (a real cluster: the default 10 s)


@pytest.fixture(scope="session")
def cluster():
    """A running cluster for the whole session; ``SLURM_CONF`` points at it meanwhile."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="eoslib-slurm-"))
    old = os.environ.get("SLURM_CONF")
    c = Cluster.start(folder)
    os.environ["SLURM_CONF"] = str(c.conf)
    try:
        yield c
    finally:
        c.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def gd_config():
    """A resolved ``gd`` run config (planned from the repository's params.yaml, shrunk): 16-wide 3-layer MLP,
    24 digits in 3 classes, η = 0.05, no measurements between the first and last iterate, and a loss threshold
    no run reaches (runs stop at ``max_steps``); :func:`make_config` sets steps, seed, η and the CPU device."""
    from eoslib.config import plan, validate

    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["model"] |= {"width": 16, "depth": 3}
    p["settings"]["digits-elu-ce"] |= {"classes": 3}
    p["loss_threshold"]["ce"] = 1e-6
    p["gd"] |= {"setups": [{"setting": "digits-elu-ce", "n": 24, "lrs": [0.05]}], "seeds": [0], "time": 1e6,
                "max_steps": 20, "measure_every": 10**6, "track_every": 10**6}
    return plan(validate(p))["gd"]["runs"]["gd/digits-elu-ce/lr0.05/seed0"]


def make_config(base: dict, steps: int = 20, seed: int = 0, lr: float = 0.05, checkpoint_every: int = 20) -> dict:
    c = json.loads(json.dumps(base))
    c |= {"max_steps": steps, "seed": seed, "checkpoint_every": checkpoint_every, "device": "cpu"}
    c["solver"] |= {"lr": lr}
    return c


def write_stage(root: Path, stage: str, runs: dict[str, dict]) -> None:
    """A plan file ``runs/_plan/<stage>.json`` (what check-params writes) for runs under ``runs/<stage>/``."""
    f = root / "runs" / "_plan" / f"{stage}.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"kind": "gd", "dir": f"runs/{stage}", "runs": runs}, indent=1, sort_keys=True))


def write_params(root: Path, doc: dict) -> None:
    """params.yaml and the validated params check-params would write from it (only ``executor`` is read here)."""
    (root / "params.yaml").write_text(yaml.safe_dump(doc))
    f = root / "runs" / "_plan" / "params.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(doc))


def theta(root: Path, name: str) -> torch.Tensor:
    return torch.load(root / "runs" / name / "final.pt", weights_only=False)["theta"]


def table(root: Path, name: str) -> pd.DataFrame:
    """The run's trajectory without its wall-clock columns (which differ between any two executions)."""
    t = pd.read_csv(root / "runs" / name / "trajectory.csv")
    return t[[c for c in t.columns if "seconds" not in c]]


def slurm_executor(**kw) -> SlurmExecutor:
    return SlurmExecutor(time=10, poll=POLL, **kw)


# ------------------------------------------------------------------------------------------ without a cluster
def test_schema_defaults_and_unknown_keys():
    spec = Tagged(EXECUTORS, key="kind")
    got = check({"kind": "slurm", "partition": "gpu", "sbatch": {"qos": "high"}}, spec, "executor")
    assert got["time"] == 60 and got["cpus_per_task"] == 1 and got["folder"] == "runs/_slurm"
    assert got["sbatch"] == {"qos": "high"} and got["partition"] == "gpu"
    with pytest.raises(ParamsError, match="executor.gpus: unknown key"):
        check({"kind": "slurm", "gpus": 1}, spec, "executor")
    with pytest.raises(ParamsError, match="executor.time"):
        check({"kind": "slurm", "time": 0}, spec, "executor")
    ex = build_executor({"kind": "slurm", "partition": "gpu", "mem_gb": 8})
    assert isinstance(ex, SlurmExecutor) and ex.partition == "gpu" and ex.mem_gb == 8
    assert job_name("sweep/a/n16/seed0") == "eoslib:sweep/a/n16/seed0"


def test_local_executor_works_without_submitit(tmp_path):
    """submitit is imported only when a Slurm stage runs: with it unimportable, eoslib and the local
    executor still load (and the Slurm executor says how to install it); without ``srun`` on PATH the Slurm
    executor says where to run instead."""
    code = ("import sys\n"
            "if sys.argv[2] == 'no-submitit': sys.modules['submitit'] = None\n"
            "from eoslib.executors import build_executor\n"
            "ex = build_executor({'kind': 'local'})\n"
            "try:\n    build_executor({'kind': 'slurm'}).run([('x', {})], sys.argv[1])\n"
            "except RuntimeError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path), "no-submitit"], capture_output=True, text=True,
                       check=True)
    assert "pip install submitit" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path), "no-srun"], capture_output=True, text=True,
                       check=True, env=dict(os.environ, PATH=str(tmp_path)))
    assert "no `srun` on PATH" in r.stdout and "kind: local" in r.stdout, r.stdout + r.stderr


# ------------------------------------------------------------------------------------------ on the cluster
def test_stage_runs_through_sbatch_and_matches_local(cluster, gd_config, tmp_path):
    runs = {"a/s0": make_config(gd_config, seed=0), "a/s1": make_config(gd_config, seed=1)}
    slurm_root, local_root = tmp_path / "slurm", tmp_path / "local"
    for root in (slurm_root, local_root):
        write_stage(root, "a", runs)
    execute_stage("a", slurm_root, executor=slurm_executor())
    jobs = {j["name"]: j for j in cluster.squeue()}
    for name in runs:
        assert (slurm_root / "runs" / name / "summary.json").exists()
        assert jobs[job_name(name)]["state"] == "COMPLETED"  # it really went through sbatch
        assert (slurm_root / "runs" / "_slurm" / f"{jobs[job_name(name)]['id']}_0_log.out").exists()
    execute_stage("a", local_root)  # the default local executor
    for name in runs:
        assert torch.equal(theta(slurm_root, name), theta(local_root, name)), name  # deterministic on CPU
        pd.testing.assert_frame_equal(table(slurm_root, name), table(local_root, name))
    n_jobs = len(cluster.squeue())
    execute_stage("a", slurm_root, executor=slurm_executor())  # finished runs: nothing submitted
    assert len(cluster.squeue()) == n_jobs


def cancel_mid_run(root: Path, config: dict) -> StageFailed | None:
    """Run stage ``b`` (one run, ``b/long``) on Slurm and ``scancel`` its job as soon as the run has written a
    checkpoint; the stage's error (None when the run finished before the job was killed)."""
    write_stage(root, "b", {"b/long": config})
    ckpt = root / "runs" / "b" / "long" / "checkpoint.pt"
    errors: list[BaseException] = []

    def stage():
        try:
            execute_stage("b", root, executor=slurm_executor())
        except BaseException as e:  # noqa: BLE001 — inspected by the caller
            errors.append(e)

    th = threading.Thread(target=stage)
    th.start()
    deadline = time.monotonic() + 120
    while not ckpt.exists() and th.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ckpt.exists() or (root / "runs" / "b" / "long" / "summary.json").exists(), "no checkpoint was written"
    subprocess.run(["scancel", f"--name={job_name('b/long')}"], check=True)
    th.join(120)
    assert not th.is_alive() and all(isinstance(e, StageFailed) for e in errors), errors
    return errors[0] if errors else None


def test_cancelled_job_is_reported_and_resumed_from_its_checkpoint(cluster, gd_config, tmp_path):
    """``scancel`` a job once its run wrote a checkpoint; the stage fails naming it. Before the re-run, a
    marker column is added to the checkpoint's first row: the resumed run's trajectory carries it, so its
    rows up to the checkpoint come from the checkpoint (a run restarted from step 0 would not have it). The
    resumed run then ends with the same θ, bit for bit, as an uninterrupted run of the same config (run
    locally, meanwhile).

    A cancelled job's processes get SIGTERM (which submitit's job wrapper ignores) and SIGKILL ~5 s later on
    this cluster, whatever KillWait says (measured: 4.7 s with KillWait 0 and 2); a run that finishes within
    that time is not interrupted, so on a machine fast enough for that the run is made longer and the test
    tried again."""
    steps = 4000  # ≈ 8 s of GD steps at ~2 ms each on an idle machine of this kind
    for attempt in range(3):
        long = make_config(gd_config, steps=steps, checkpoint_every=5)
        ref = tmp_path / f"reference{attempt}"
        write_stage(ref, "b", {"b/long": long})
        write_params(ref, {"executor": {"kind": "local"}})
        reference = subprocess.Popen([sys.executable, "-m", "eoslib", "train", "--stage", "b", "--root", str(ref)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        root = tmp_path / f"slurm{attempt}"
        err = cancel_mid_run(root, long)
        if err is not None:
            break
        reference.kill()  # our child, by its pid
        reference.wait()
        steps *= 3
    else:
        pytest.fail("the run always finished before its cancelled job was killed")
    msg = str(err)
    assert "b/long" in msg and "CANCELLED" in msg, msg
    assert not (root / "runs" / "b" / "long" / "summary.json").exists()

    ckpt = root / "runs" / "b" / "long" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=False)  # the job is over (the executor waited for it): safe to edit
    assert 0 < state["step"] < long["max_steps"], state["step"]
    state["rows"][0]["resumed_from_checkpoint"] = 1.0
    torch.save(state, ckpt)

    execute_stage("b", root, executor=slurm_executor())
    traj = pd.read_csv(root / "runs" / "b" / "long" / "trajectory.csv")
    assert traj["resumed_from_checkpoint"].iloc[0] == 1.0  # rows up to the checkpoint came from it
    assert traj["step"].tolist() == list(range(long["max_steps"] + 1))
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    resumed, uninterrupted = table(root, "b/long").drop(columns="resumed_from_checkpoint"), table(ref, "b/long")
    pd.testing.assert_frame_equal(resumed.iloc[:-1], uninterrupted.iloc[:-1])  # every step, bit for bit
    # The final row's measurements (curvature, shares, alignment) agree to the eigensolver's tolerance only:
    # eoslib.measurement.Measurement warm-starts its eigenvectors from its previous measurement, and that state is
    # not in the checkpoint, so after a resume it starts cold. Both results meet the solver's relative residual
    # tol = 1e-3 (Measurement's default), so eigenvalues agree to ~1e-3 relative and shares (fractions summing
    # to 1) to ~1e-3 absolute; measured: ≤ 6e-6 relative and ≤ 5e-5 absolute.
    pd.testing.assert_frame_equal(resumed.iloc[-1:], uninterrupted.iloc[-1:], check_exact=False, rtol=1e-3,
                                  atol=1e-3)
    assert resumed["loss"].iloc[-1] == uninterrupted["loss"].iloc[-1]
    assert torch.equal(theta(root, "b/long"), theta(ref, "b/long"))


def test_failed_job_names_its_run_and_log(cluster, gd_config, tmp_path, capsys):
    """A run that diverges (GD at η = 10⁴: DivergenceError inside training) fails the stage, named with its
    error and the job's log; the other run finishes. ``max_jobs: 1``: the second job is submitted only once the
    first is over."""
    runs = {"c/diverges": make_config(gd_config, lr=1e4) | {"n": 32}, "c/ok": make_config(gd_config, seed=2)}
    write_stage(tmp_path, "c", runs)
    with pytest.raises(StageFailed) as e:
        execute_stage("c", tmp_path, executor=slurm_executor(max_jobs=1))
    events = [tuple(ln.split()[:2]) for ln in capsys.readouterr().out.splitlines() if ln.startswith("c/")]
    assert events == [("c/diverges:", "submitted"), ("c/diverges:", "FAILED"), ("c/ok:", "submitted"),
                      ("c/ok:", "done")], events  # the stage's order: largest N first (the quick failure)
    msg = str(e.value)
    assert msg.startswith("1 run(s) failed") and "c/diverges" in msg and "c/ok" not in msg, msg
    assert "DivergenceError" in msg and "loss became nan" in msg, msg
    logs = [Path(w.rstrip(",;)")) for w in msg.split() if w.rstrip(",;)").endswith("_log.err")]
    assert logs and logs[0].exists(), msg
    assert "Traceback" in logs[0].read_text() and "DivergenceError" in logs[0].read_text()
    assert "DivergenceError" in (tmp_path / "runs" / "c" / "diverges" / "error.log").read_text()
    assert (tmp_path / "runs" / "c" / "ok" / "summary.json").exists()  # the other run still finished


def start_until(cmd: list[str], marker: str) -> str:
    """Start ``cmd``, read its output until a line containing ``marker``, then kill it (our child, by its pid:
    as if the login-node session died); that line."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            break
    proc.kill()
    proc.wait()
    assert marker in seen[-1], "".join(seen)
    return seen[-1]


def test_cli_submits_and_a_restarted_stage_waits_for_its_job(cluster, gd_config, tmp_path):
    """``python -m eoslib train --stage`` with ``executor: {kind: slurm}`` in params.yaml. The first stage
    process is killed after submitting; a second one waits for that job (no second submission) and is killed
    too; the run's config then changes, and a third cancels the job (it runs the old config) and submits the
    run again; a fourth finds the run finished."""
    write_params(tmp_path, {"executor": {"kind": "slurm", "time": 10, "poll": POLL}})
    # the old config must still be running when the third process starts: 4000 steps (~10 s) were not always
    # enough while other jobs loaded the 2 cores (it finished first and nothing was left to cancel); the job is
    # cancelled by the test, and its Slurm time limit (10 min) bounds it if the test fails before that
    old, new = make_config(gd_config, steps=400_000, seed=3), make_config(gd_config, steps=100, seed=4)
    write_stage(tmp_path, "d", {"d/run": old})
    cmd = [sys.executable, "-m", "eoslib", "train", "--stage", "d", "--root", str(tmp_path)]
    jid = start_until(cmd, "submitted as Slurm job").split()[-1]
    assert start_until(cmd, "d/run:").strip() == f"d/run: waiting for its Slurm job {jid}, queued from an earlier start"

    write_stage(tmp_path, "d", {"d/run": new})
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"its Slurm job {jid}, queued from an earlier start, runs another config: cancelling it" in r.stdout
    jobs = {j["id"]: j for j in cluster.squeue() if j["name"] == job_name("d/run")}
    assert len(jobs) == 2 and jobs.pop(jid)["state"] == "CANCELLED", jobs
    assert [j["state"] for j in jobs.values()] == ["COMPLETED"] and f"submitted as Slurm job {[*jobs][0]}" in r.stdout
    assert run_finished("d/run", new, tmp_path)  # with the new config
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    assert "1 of 1 runs finished, 0 to run" in r.stdout, r.stdout
