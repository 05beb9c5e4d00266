"""The DVC pipeline's dependencies are the code each stage runs — no more, no less.

Regression (a code review): ``fit`` and ``ledger`` read the runs through the loading code but did not depend
on it (stale outputs after an edit), while every training stage depended on it (editing the loading code
retrained all runs). The dvc.yaml files are generated from the stages' import closures; these tests check the
closures against what Python actually imports, and that every committed dvc.yaml is the generated one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eoslib.pipeline import import_closure, render

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


def test_training_does_not_depend_on_loading_code_and_fits_do():
    train = set(import_closure("eoslib.execute"))
    fit = set(import_closure("eoslib.fits"))
    ledger = set(import_closure("eoslib.claims.__main__"))
    for f in ("eoslib/results.py", "eoslib/fits.py", "eoslib/claims/ledger.py", "eoslib/config.py",
              "eoslib/plotting.py", "eoslib/powerlaw.py"):
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
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    code = lambda deps: {d for d in deps if d.startswith("eoslib/")}  # noqa: E731
    assert code(doc["traj"]["deps"]) == set(import_closure("eoslib.execute"))
    assert code(doc["sweep"]["do"]["deps"]) == set(import_closure("eoslib.execute"))
    assert code(doc["fit"]["deps"]) == set(import_closure("eoslib.fits"))
    assert code(doc["ledger"]["deps"]) == set(import_closure("eoslib.claims.__main__"))
    assert code(doc["endpoints"]["do"]["deps"]) == set(import_closure("eoslib.endpoints"))
