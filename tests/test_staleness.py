"""An edit reruns what it touches and nothing else — asked of DVC itself, on a copy of the repository (no training).

The module's workspace is a temporary copy of the default profile (the package, the data, the source notebooks,
params.yaml and the committed dvc.yaml) in a fresh git + DVC repository: ``check-params`` writes the run plan,
every other stage's outputs are empty placeholders, and ``dvc commit -f`` records the current dependencies, so
``dvc status`` starts clean. Each test edits one source file, asks ``dvc status --json`` which stages have
changed dependencies, and restores the file. The expected stages come from the plan files (which runs load which
dataset, use which solver), not from dvc.yaml, so a wrong dependency list in the generator shows up here. Where
a training stage is concerned, the affected runs' ids (:func:`eoslib.provenance.run_id`, computed by the copy's
own code in a subprocess) must change and the others' must not: a stage is stale exactly when its runs would be
redone. Run: ``pytest tests/test_staleness.py`` (about 1-2 min; most of it DVC and importing torch).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from repo_copy import VENV_BIN, copy_env, copy_repo
from repo_copy import run as _run

COPY = ["eoslib", "data", "notebooks/src", "params.yaml", "dvc.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore",
        ".gitignore", "pyproject.toml"]
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]

#: prints {run name: run id} for the run names read from stdin, under the code of the working directory's eoslib
RUN_IDS = """
import json, sys
from pathlib import Path
from eoslib.provenance import run_id
want = set(json.load(sys.stdin))
out = {}
for f in sorted(Path("runs/_plan").glob("*.json")):
    if f.name != "params.json":
        out |= {n: run_id(c) for n, c in json.loads(f.read_text())["runs"].items() if n in want}
print(json.dumps(out))
"""


def solver_names(config, key: str = "") -> set[str]:
    """Every solver a run config names: the ``name`` of each mapping under a key containing "solver" (``solver``,
    the items of ``solvers: [...]``, ``base_solver``, …), at any depth."""
    out: set[str] = set()
    if isinstance(config, dict):
        if "solver" in key and isinstance(config.get("name"), str):
            out.add(config["name"])
        for k, v in config.items():
            out |= solver_names(v, str(k))
    elif isinstance(config, list):
        for v in config:
            out |= solver_names(v, key)
    return out


def stage_outputs(ws: Path) -> dict[str, list[str]]:
    """Stage name (``nb@<key>`` for the foreach stage) → its outputs, metrics and plots, from dvc.yaml."""
    stages = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ws / "params.yaml").read_text())
    out = {}
    for name, st in stages.items():
        if "foreach" in st:
            assert st["foreach"] == "${notebooks}", st["foreach"]
            for key in params["notebooks"]:
                out[f"{name}@{key}"] = yaml.safe_load(yaml.safe_dump(st["do"]).replace("${key}", key))
        else:
            out[name] = st
    return {n: [o if isinstance(o, str) else next(iter(o)) for k in ("outs", "metrics", "plots")
                for o in st.get(k) or []] for n, st in out.items()}


class Workspace:
    def __init__(self, root: Path, env: dict):
        self.root, self.env = root, env
        self.plan = {f.stem: json.loads(f.read_text()) for f in sorted((root / "runs" / "_plan").glob("*.json"))
                     if f.name != "params.json"}
        self.stages = set(stage_outputs(root))
        self.baseline_ids: dict[str, str] = {}

    @property
    def training(self) -> set[str]:
        return set(self.plan)

    def configs(self):
        for sid, st in self.plan.items():
            for name, cfg in st["runs"].items():
                yield sid, name, cfg

    def stages_where(self, pred) -> set[str]:
        """Training stages with at least one run whose config satisfies ``pred``."""
        return {sid for sid, _, cfg in self.configs() if pred(cfg)}

    def sample_runs(self) -> list[str]:
        """One run per training stage and (dataset, solvers) combination: every kind of run, few runs."""
        seen, out = set(), []
        for sid, name, cfg in self.configs():
            key = (sid, cfg["setting"]["dataset"], frozenset(solver_names(cfg)))
            if key not in seen:
                seen.add(key)
                out.append(name)
        return out

    def run_ids(self, names) -> dict[str, str]:
        r = _run([sys.executable, "-c", RUN_IDS], self.root, self.env, stdin=json.dumps(sorted(names)))
        return json.loads(r.stdout)

    def stale(self) -> dict[str, list[str]]:
        """Stage → what DVC reports changed for it; a changed dependency as ``deps: <path> (<how>)``."""
        r = _run(["dvc", "status", "--json"], self.root, self.env, timeout=300)
        out: dict[str, list[str]] = {}
        for stage, entries in json.loads(r.stdout or "{}").items():
            for e in entries:
                if isinstance(e, dict):
                    for what, files in e.items():
                        if what == "changed deps":
                            out.setdefault(stage, []).extend(f"deps: {f} ({how})" for f, how in files.items())
                        else:
                            out.setdefault(stage, []).append(f"{what}: {files}")
                else:
                    out.setdefault(stage, []).append(str(e))
        return out

    @contextmanager
    def edited(self, rel: str, old: str | None = None, new: str | None = None):
        """``rel`` with ``old`` replaced by ``new`` (or a comment line appended), restored afterwards (the same
        bytes: DVC rehashes the file and finds it unchanged, so the next test starts clean)."""
        f = self.root / rel
        text = f.read_bytes()
        if old is None:
            f.write_bytes(text + b"\n# touched\n")
        else:
            src = text.decode()
            assert src.count(old) == 1, f"{rel}: {old!r} must occur once"
            f.write_text(src.replace(old, new))
        try:
            yield
        finally:
            f.write_bytes(text)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    if shutil.which("dvc", path=str(VENV_BIN)) is None:
        pytest.skip("dvc is not installed next to this Python")
    root = tmp_path_factory.mktemp("staleness")
    copy_repo(root, COPY)
    env = copy_env(root, OMP_NUM_THREADS="1")
    _run(["git", "init", "-q"], root, env)
    _run([sys.executable, "-m", "eoslib.config", "check"], root, env)  # runs/_plan: the plan every stage reads
    for stage, outs in stage_outputs(root).items():
        for o in outs:
            p = root / o
            if p.exists():
                continue
            if p.suffix:  # a file output (metrics, CLAIMS.md, endpoint tables, notebooks, figures)
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(f"placeholder of {stage}\n")
            else:  # a run directory
                p.mkdir(parents=True)
                (p / "placeholder").write_text(f"placeholder of {stage}\n")
    _run(GIT + ["add", "-A"], root, env)
    _run(GIT + ["commit", "-qm", "copy"], root, env)
    _run(["dvc", "commit", "-f"], root, env, timeout=300)  # the lock records every stage's current deps and outs
    w = Workspace(root, env)
    assert w.stale() == {}, "a fresh workspace must be up to date"
    assert w.training == {s for s in w.stages if s.split("-")[0] in ("sweep", "agree") or s in
                          ("traj", "gd", "compare", "cost", "sens", "intervene")}
    w.baseline_ids = w.run_ids(w.sample_runs())
    return w


def _check(ws: Workspace, rel: str, expected_stale: set[str] | None = None, **edit) -> dict[str, list[str]]:
    with ws.edited(rel, **edit):
        stale = ws.stale()
    if expected_stale is not None:
        assert set(stale) == expected_stale, {
            "edited": rel, "unexpected": {s: stale[s] for s in set(stale) - expected_stale},
            "missing": sorted(expected_stale - set(stale))}
    return stale


def _assert_ids(ws: Workspace, after: dict[str, str], changed: set[str]):
    """The sampled runs in ``changed`` got a new id, every other sampled run kept its id."""
    assert set(after) == set(ws.baseline_ids)
    moved = {n for n in after if after[n] != ws.baseline_ids[n]}
    assert moved == changed & set(after), {"changed but should not": sorted(moved - changed),
                                           "unchanged but should change": sorted((changed & set(after)) - moved)}


def _stages_listing(ws: Workspace, rel: str) -> set[str]:
    """The dvc.yaml stages (``nb`` for the notebook stages) whose deps list ``rel``."""
    stages = yaml.safe_load((ws.root / "dvc.yaml").read_text())["stages"]
    return {n for n, st in stages.items() if rel in (st.get("deps") or st.get("do", {}).get("deps", []))}


@pytest.mark.parametrize("rel", ["eoslib/causal.py", "eoslib/slurm.py", "eoslib/executors.py", "eoslib/results.py"])
def test_orchestration_and_analysis_retrain_nothing(ws, rel):
    stale = _check(ws, rel)
    assert not set(stale) & ws.training, {s: stale[s] for s in set(stale) & ws.training}
    # the edit was seen: exactly the stages whose dvc.yaml lists the file (none for slurm.py) are stale
    listed = {s for s in ws.stages if s.split("@")[0] in _stages_listing(ws, rel)}
    assert set(stale) == listed, stale


@pytest.mark.parametrize("dataset, loader", [("fashion-mnist-mini", "eoslib/datasets/fashion_mnist_mini.py"),
                                             ("digits", "eoslib/datasets/digits.py")])
def test_a_loader_retrains_exactly_the_stages_that_load_its_dataset(ws, dataset, loader):
    users = ws.stages_where(lambda c: c["setting"]["dataset"] == dataset)
    assert users, f"no planned run loads {dataset}"
    with ws.edited(loader):
        stale = ws.stale()
        after = ws.run_ids(ws.baseline_ids)
    assert set(stale) & ws.training == users, {"edited": loader, "expected": sorted(users),
                                               "stale": {s: stale[s] for s in set(stale) & ws.training}}
    settings = {sid.split("-", 1)[1] for sid in users if sid.startswith(("sweep-", "agree-"))}
    allowed = {"check-params"} | {f"endpoints-{s}" for s in settings}
    other = set(stale) - ws.training
    assert other <= allowed, {s: stale[s] for s in other - allowed}
    _assert_ids(ws, after, {n for _, n, c in ws.configs() if c["setting"]["dataset"] == dataset})


def test_a_solver_retrains_exactly_the_stages_that_use_it(ws):
    users = ws.stages_where(lambda c: "rkc" in solver_names(c))
    assert "cost" in users  # the default profile's cost stage lists rkc among its solvers
    with ws.edited("eoslib/solvers/rkc.py"):
        stale = ws.stale()
        after = ws.run_ids(ws.baseline_ids)
    assert set(stale) == users, {"expected": sorted(users), "stale": stale}
    assert "check-params" not in stale
    rkc_runs = {n for _, n, c in ws.configs() if "rkc" in solver_names(c)}
    assert rkc_runs & set(after) and set(after) - rkc_runs  # the sample has both kinds of run
    _assert_ids(ws, after, rkc_runs)  # those runs re-execute; the others are reused


@pytest.mark.parametrize("rel, old, new", [
    ("eoslib/claims/c1.py", "Sharpness rises until GD trains", "Sharpness grows until GD trains"),  # the statement
    ("eoslib/claims/c1.py", "min_sharpening: float = 5.0  # and", "min_sharpening: float = 4.0  # and"),  # criterion
    ("eoslib/claims/c1.py", None, None),
    ("eoslib/claims/stats.py", None, None),  # the judges' statistics
], ids=["statement", "criterion", "touched", "stats"])
def test_a_claim_reruns_only_the_ledger(ws, rel, old, new):
    _check(ws, rel, {"ledger"}, old=old, new=new)


def test_the_measure_library_remeasures_the_end_points(ws):
    """The measures are catalog lookups (not imports), so the end-point stages name their modules themselves: an
    edit of the measure library re-measures every setting's end points (and retrains only the runs that measure
    along the way, which import it: trajectories, the intervention)."""
    endpoints = {s for s in ws.stages if s.startswith("endpoints-")}
    assert endpoints
    stale = _check(ws, "eoslib/measures/library.py")
    assert endpoints <= set(stale), {"not re-measured": sorted(endpoints - set(stale))}
    assert not {s for s in stale if s.startswith(("sweep-", "agree-"))}, stale  # the sweeps do not measure


def test_plotting_reruns_only_the_notebooks(ws):
    notebooks = {s for s in ws.stages if s.startswith("nb@")}
    assert notebooks
    _check(ws, "eoslib/plotting.py", notebooks)


def test_restored_files_leave_the_workspace_up_to_date(ws):
    """Runs last: every edit above was undone byte for byte, and DVC agrees."""
    assert ws.stale() == {}


def test_a_stage_whose_code_changes_while_it_runs_fails_and_drops_those_runs(tmp_path, monkeypatch):
    """A run may import the old code and record the new code's id; DVC would lock the stage under the new files.
    So when a run's id changes between the start and the end of its stage, the stage fails and that run's folder
    goes (the next call redoes it), while a run whose code did not change is kept."""
    import eoslib.execute as ex

    plan = tmp_path / "runs" / "_plan"
    plan.mkdir(parents=True)
    runs = {"x/a": {"n": 1, "k": "a"}, "x/b": {"n": 1, "k": "b"}}
    (plan / "x.json").write_text(json.dumps({"dir": "runs/x", "runs": runs}))
    edited = {"done": False}
    monkeypatch.setattr(ex, "run_finished", lambda *a: False)
    monkeypatch.setattr(ex, "run_id", lambda c: "new" if edited["done"] and c["k"] == "a" else "old")

    class Editing:  # runs both, and "edits the code of x/a" meanwhile
        def run(self, items, root, progress=False):
            for n, _ in items:
                (root / "runs" / n).mkdir(parents=True)
            edited["done"] = True

    with pytest.raises(ex.StageFailed, match="the code of 1 runs changed while the stage ran"):
        ex.execute_stage("x", tmp_path, executor=Editing())
    assert not (tmp_path / "runs" / "x" / "a").exists() and (tmp_path / "runs" / "x" / "b").exists()
    monkeypatch.setattr(ex, "run_id", lambda c: "old")  # unchanged code: no error
    shutil.rmtree(tmp_path / "runs" / "x")
    ex.execute_stage("x", tmp_path, executor=Editing())
    assert (tmp_path / "runs" / "x" / "a").exists()
