"""The package works installed from its wheel, away from the repository (offline, CPU, ~1 min).

A wheel is built from a copy of the working tree's package (building in the repository would write build/ and
eoslib.egg-info there) and installed, without ``-e`` and without dependencies, into a fresh virtual environment;
a ``.pth`` file makes this interpreter's third-party packages (torch, numpy, …) visible there, while the
repository's own eoslib (an editable install: its finder is started by a ``.pth`` file of that site-packages,
which a directory added by a ``.pth`` line does not run) is not. From a folder outside the repository, a tiny
profile is planned, checked and one of its runs trained; the run's id, computed by the installed package from the
installed files, equals the id the repository computes for the same config (ids name files relative to the
package, not to where it lies).

What needs the repository and is not checked here: the notebooks (``notebooks/src``: ``eoslib notebook``, the
pipeline's notebook stages), ``eoslib plan``'s calibration (the committed ``metrics/run_costs.json`` of the
repository's profiles; installed, it plans without), the Fashion-MNIST-mini file (``data/``; installed, the
profile's own ``data/`` folder is searched), and ``eoslib pipeline`` (its dependencies point into the package).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RUN = "sweep/digits-elu-ce/n12/seed0"

pytestmark = pytest.mark.slow


def tiny_params(p: dict) -> dict:
    """The default profile cut to one sweep run on digits: width 8, depth 3, N = 12, one seed, a few steps."""
    p = json.loads(json.dumps(p))
    for section in ("trajectories", "gd", "reference", "cost", "intervention", "sensitivity", "agreement"):
        p.pop(section, None)
    p["profile"] = "tiny-wheel"
    p["executor"] = {"kind": "local", "workers": 1}
    p["model"] |= {"width": 8, "depth": 3}
    p["settings"] = {"digits-elu-ce": {"dataset": "digits", "activation": "elu", "loss": "ce", "classes": 3}}
    p["sweep"] |= {"settings": ["digits-elu-ce"], "sizes": [12], "seeds": [0], "time": 1.0, "max_steps": 5,
                   "probe": 12}
    p["criteria"] = {"C4": [1]}
    p["notebooks"] = {"06_power_law": {}}  # listed (the schema wants one), not run: installed, there are none
    p["powerlaw"]["n_boot"] = 10
    return p


def _run(cmd, cwd, env, timeout=600):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-4000:]}\n"
                               f"{r.stderr[-4000:]}")
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, its site-packages, a folder outside the repository, env) with the wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env |= {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    src = tmp / "src"
    shutil.copytree(REPO / "eoslib", src / "eoslib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / f, src / f)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp / "dist",
          src], tmp, env)
    (wheel,) = (tmp / "dist").glob("eoslib-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp, env)
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "--no-deps", "--no-index", wheel], tmp, env)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))  # torch & co., added after it
    (site / "_eoslib_test_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    away = tmp / "elsewhere"
    away.mkdir()
    return py, site, away, env, wheel


def test_wheel_ships_every_module_and_the_claims_lock(installed):
    *_, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {f.relative_to(REPO).as_posix() for f in (REPO / "eoslib").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    assert "eoslib/claims/claims.lock" in names


def test_installed_eoslib_is_the_wheel_not_the_repository(installed):
    py, site, away, env, _ = installed
    r = _run([py, "-c", "import eoslib, torch; print(eoslib.__file__); print(torch.__file__)"], away, env)
    eos, torch_file = r.stdout.split()
    assert Path(eos).resolve() == (site / "eoslib" / "__init__.py").resolve(), eos
    assert not Path(torch_file).resolve().is_relative_to(site.resolve())  # torch comes from this interpreter's env
    pkg = site / "eoslib"
    for sub in ("experiments", "solvers", "datasets", "claims"):
        assert (pkg / sub / "__init__.py").is_file(), sub
    assert (pkg / "claims" / "claims.lock").is_file()
    assert {f.relative_to(pkg).as_posix() for f in pkg.rglob("*.py")} == {
        f.relative_to(REPO / "eoslib").as_posix() for f in (REPO / "eoslib").rglob("*.py")}


def test_plan_check_and_train_a_tiny_profile_from_the_wheel(installed):
    py, site, away, env, _ = installed
    prof = away / "tiny"
    prof.mkdir()
    p = tiny_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    (prof / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))

    r = _run([py, "-m", "eoslib", "plan", "--root", prof], away, env)
    assert "sweep-digits-elu-ce" in r.stdout and "1 runs in 1 training stages" in r.stdout, r.stdout
    _run([py, "-m", "eoslib", "check-params", "--root", prof], away, env)
    r = _run([py.parent / "eoslib", "stages", "--root", prof], away, env)  # the console script
    assert r.stdout.split() == ["sweep-digits-elu-ce:", RUN], r.stdout
    _run([py, "-m", "eoslib", "train", "--root", prof, "--run", RUN], away, env)

    folder = prof / "runs" / RUN
    for f in ("config.json", "provenance.json", "trajectory.csv", "summary.json", "final.pt"):
        assert (folder / f).is_file(), f
    summary = json.loads((folder / "summary.json").read_text())
    assert 1 <= summary["steps"] <= 2 * p["sweep"]["max_steps"]  # max_steps bounds each of the sweep's two phases
    prov = json.loads((folder / "provenance.json").read_text())
    assert summary["run_id"] == prov["run_id"]
    assert {"eoslib/training.py", "eoslib/datasets/digits.py", "eoslib/experiments/sweep.py"} <= set(prov["code"])
    assert all(f.startswith("eoslib/") and (site / f).is_file() for f in prov["code"]), prov["code"]

    from eoslib.provenance import run_provenance  # the repository's package, on the same config

    config = json.loads((prof / "runs" / "_plan" / "sweep-digits-elu-ce.json").read_text())["runs"][RUN]
    assert run_provenance(config, away / "data") == prov  # same code bytes → same id, installed or not
