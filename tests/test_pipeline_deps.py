"""The DVC pipeline's dependencies are the code each stage runs — no more, no less.

Regressions (code reviews): ``fit`` and ``ledger`` read the runs through the loading code but did not depend
on it (stale outputs after an edit), while every training stage depended on it and, through registries that
imported every plugin, on every solver, loader, executor and the analysis code. A training stage's deps are now
the code its runs execute (eoslib.provenance, from the plan); the analysis stages' deps are their modules' import
closures. These tests check the closures against what Python actually imports (a lazy catalog lookup included),
and that every committed dvc.yaml is the generated one. tests/test_staleness.py asks DVC itself."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eoslib.imports import import_closure
from eoslib.pipeline import render

REPO = Path(__file__).resolve().parents[1]
PROFILES = [REPO] + sorted(p.parent for p in (REPO / "profiles").glob("*/params.yaml"))


@pytest.mark.parametrize("module", ["eoslib.execute", "eoslib.endpoints", "eoslib.fits", "eoslib.claims.__main__",
                                    "eoslib.config", "eoslib.notebooks"])
def test_closure_covers_what_python_imports(module):
    """The static closure (imports anywhere in the source, lazy ones included) contains every eoslib module that
    importing the stage's module and running its imports loads at run time."""
    code = (f"import sys, importlib; m = importlib.import_module({module!r}); "
            "print('\\n'.join(sorted(k for k in sys.modules if k.startswith('eoslib'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    loaded = {m for m in out.split() if m != "eoslib"}
    files = set(import_closure(module))
    for m in loaded:
        rel = m.replace(".", "/")
        assert f"{rel}.py" in files or f"{rel}/__init__.py" in files, (module, m)


def _training_code() -> set[str]:
    from eoslib.config import load_params, plan
    from eoslib.provenance import code_files

    out: set[str] = set()
    for root in PROFILES:
        for st in plan(load_params(root / "params.yaml")).values():
            out |= set(code_files(st["runs"].values()))
    return out


def test_a_run_loads_only_the_code_its_id_hashes():
    """Running a planned run's kind, solver and dataset loader imports nothing outside its code files (the
    files whose hashes make its id): the catalogs' lazy lookups included."""
    from eoslib.config import load_params, plan

    p = load_params(REPO / "params.yaml")
    name, cfg = next((n, c) for st in plan(p).values() for n, c in st["runs"].items() if c["kind"] == "cost")
    code = ("import json, sys; from eoslib.experiments import KINDS; from eoslib.solvers import SOLVERS; "
            "from eoslib.data import DATASETS; cfg = json.loads(sys.argv[1]); KINDS[cfg['kind']]; "
            "[SOLVERS[s['name']] for s in cfg['solvers']]; DATASETS[cfg['setting']['dataset']]; "
            "from eoslib.experiments.base import build_objective; build_objective(dict(cfg, n=8)); "
            "print('\\n'.join(sorted(k for k in sys.modules if k.startswith('eoslib'))))")
    import json

    out = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout
    from eoslib.provenance import code_files

    files = set(code_files([cfg]))
    for m in (m for m in out.split() if m != "eoslib"):
        rel = m.replace(".", "/")
        assert f"{rel}.py" in files or f"{rel}/__init__.py" in files, (name, m)


def test_training_does_not_depend_on_loading_code_and_fits_do():
    train = _training_code()
    fit = set(import_closure("eoslib.fits"))
    ledger = set(import_closure("eoslib.claims.__main__"))
    for f in ("eoslib/results.py", "eoslib/fits.py", "eoslib/claims/ledger.py", "eoslib/config.py",
              "eoslib/plotting.py", "eoslib/powerlaw.py", "eoslib/causal.py", "eoslib/slurm.py",
              "eoslib/executors.py", "eoslib/execute.py", "eoslib/run.py", "eoslib/provenance.py"):
        assert f not in train, f
    assert {"eoslib/results.py", "eoslib/powerlaw.py", "eoslib/fits.py"} <= fit
    assert {"eoslib/results.py", "eoslib/claims/ledger.py", "eoslib/claims/c1.py",
            "eoslib/claims/sensitivity.py"} <= ledger
    assert not any(f.startswith("eoslib/claims/") for f in fit)  # a claim's edit does not re-run the fits
    for f in ("eoslib/training.py", "eoslib/solvers/base.py", "eoslib/execute.py", "eoslib/objective.py"):
        assert f not in fit and f not in ledger, f


@pytest.mark.parametrize("root", PROFILES, ids=lambda p: p.name)
def test_committed_dvc_yaml_is_generated(root):
    assert (root / "dvc.yaml").read_text() == render(root), \
        f"{root / 'dvc.yaml'} is out of date: run `python -m eoslib pipeline --root {root.relative_to(REPO) or '.'}`"


def test_stage_deps_are_the_closures():
    from eoslib.config import load_params, plan
    from eoslib.data import DATASETS
    from eoslib.measures import MEASURES
    from eoslib.provenance import stage_code, stage_data

    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    code = lambda deps: {d for d in deps if d.startswith("eoslib/")}  # noqa: E731
    planned = plan(load_params(REPO / "params.yaml"))
    for sid, st in planned.items():
        runs = list(st["runs"].values())
        assert code(doc[sid]["deps"]) == set(stage_code(runs)), sid
        assert {d for d in doc[sid]["deps"] if d.startswith("data/")} == set(stage_data(runs)), sid
    # per-run code: a digits sweep does not depend on the Fashion-MNIST-mini loader or its file, nor on RKC
    assert "eoslib/datasets/fashion_mnist_mini.py" not in doc["sweep-digits-elu-ce"]["deps"]
    assert "data/fashion-mnist-mini.npz" not in doc["sweep-digits-elu-ce"]["deps"]
    assert "eoslib/solvers/rkc.py" not in doc["sweep-digits-elu-ce"]["deps"]
    assert "eoslib/solvers/rkc.py" in doc["cost"]["deps"]
    assert code(doc["fit"]["deps"]) == set(import_closure("eoslib.fits"))
    assert code(doc["ledger"]["deps"]) - {"eoslib/claims/claims.lock"} == set(import_closure("eoslib.claims.__main__"))
    setting = "fmnist-elu-ce"
    ds = DATASETS.module("fashion-mnist-mini")
    # the end points also depend on the modules that define the registered measures (catalog lookups, not imports)
    params = load_params(REPO / "params.yaml")
    measure_mods = {MEASURES.module(m) for m in params["powerlaw"]["measures"]} | {"eoslib.measures.library"}
    assert code(doc[f"endpoints-{setting}"]["deps"]) == set(import_closure("eoslib.endpoints", ds, *measure_mods))
    assert "eoslib/alignment.py" in doc[f"endpoints-{setting}"]["deps"]


def test_every_stage_has_a_description():
    for root in PROFILES:
        doc = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
        for name, st in doc.items():
            assert (st.get("desc") or st.get("do", {}).get("desc")), (root, name)
