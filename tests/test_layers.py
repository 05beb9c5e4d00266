"""The package's layers, read from its import graph (:mod:`eoslib.imports`: imports anywhere in a source file).

* no import cycle;
* analysis code (results, fits, power laws, causal estimates, trajectory tables, the claims) never reaches training
  code — so editing a solver or a loader never re-runs the ledger, and the ledger can run without torch's stack;
* training code (the import closure of every planned run of every profile, :func:`eoslib.provenance.code_files`)
  never reaches orchestration or analysis — so rescheduling or re-analysing never changes a run's id;
* a few leaf modules import nothing of eoslib but each other.

Run: ``pytest tests/test_layers.py`` (seconds).
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from eoslib.imports import all_modules, import_closure
from eoslib.imports import graph as _graph

graph = functools.cache(_graph)  # read the sources once per session

REPO = Path(__file__).resolve().parents[1]
PROFILES = [REPO] + sorted(p.parent for p in (REPO / "profiles").glob("*/params.yaml"))
CLAIMS = [m for m in all_modules() if m == "eoslib.claims" or m.startswith("eoslib.claims.")]
ANALYSIS = ["eoslib.results", "eoslib.fits", "eoslib.powerlaw", "eoslib.causal", "eoslib.tables", *CLAIMS]
LEAVES = {"eoslib.registry", "eoslib.schema", "eoslib.paths", "eoslib.io", "eoslib.device", "eoslib.tables"}
ORCHESTRATION_OR_ANALYSIS = {"eoslib.execute", "eoslib.run", "eoslib.executors", "eoslib.slurm", "eoslib.pipeline",
                             "eoslib.provenance", "eoslib.config", "eoslib.estimate", "eoslib.endpoints",
                             "eoslib.results", "eoslib.fits", "eoslib.powerlaw", "eoslib.causal", "eoslib.plotting",
                             "eoslib.notebooks", *CLAIMS}
TRAINING_MODULES = {"eoslib.training", "eoslib.objective", "eoslib.measurement", "eoslib.eigen", "eoslib.curvature",
                    "eoslib.alignment", "eoslib.jacobians", "eoslib.intervention", "eoslib.models"}
#: packages whose catalog (``__init__``) is not training code but whose plugins are
PLUGIN_PACKAGES = ("eoslib.solvers", "eoslib.experiments", "eoslib.datasets")


def is_training(mod: str) -> bool:
    return mod in TRAINING_MODULES or any(mod.startswith(p + ".") for p in PLUGIN_PACKAGES)


def module_of(path: str) -> str:
    """``eoslib/solvers/rkc.py`` → ``eoslib.solvers.rkc``; ``eoslib/claims/__init__.py`` → ``eoslib.claims``."""
    parts = Path(path).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def closure(*modules: str) -> set[str]:
    return {module_of(f) for f in import_closure(*modules)}


def import_path(start: str, targets: set[str]) -> list[str]:
    """The shortest chain of imports from ``start`` to a module in ``targets`` (for the failure message)."""
    g, prev, todo = graph(), {start: None}, [start]
    while todo:
        m = todo.pop(0)
        if m in targets and m != start:
            chain = [m]
            while prev[chain[-1]] is not None:
                chain.append(prev[chain[-1]])
            return chain[::-1]
        for n in sorted(g.get(m, ())):
            if n not in prev:
                prev[n] = m
                todo.append(n)
    return []


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a cycle through them."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    return [_cycle_through(g, min(comp), set(comp)) for comp in comps]  # one concrete cycle per component


def _cycle_through(g: dict[str, set[str]], start: str, comp: set[str]) -> list[str]:
    """A shortest cycle from ``start`` back to itself within ``comp`` (``[start, …, start]``)."""
    prev, todo = {start: None}, [start]
    while todo:
        m = todo.pop(0)
        for n in sorted(g.get(m, ())):
            if n == start:
                chain = [m]
                while prev[chain[-1]] is not None:
                    chain.append(prev[chain[-1]])
                return chain[::-1] + [start]
            if n in comp and n not in prev:
                prev[n] = m
                todo.append(n)
    return sorted(comp)


def test_the_graph_covers_the_package():
    g = graph()
    assert set(g) == set(all_modules())
    assert {"eoslib.training", "eoslib.solvers.rkc", "eoslib.claims.c1", "eoslib.datasets.digits"} <= set(g)
    assert "eoslib.solvers.base" in g["eoslib.solvers.rkc"]  # imports are read (relative ones resolved)
    assert not g["eoslib.solvers"] & {m for m in g if m.startswith("eoslib.solvers.")}  # the catalog is lazy


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    found = cycles(graph())
    assert found == [], "import cycles: " + "; ".join(" → ".join(c) for c in found)


@pytest.mark.parametrize("module", ANALYSIS)
def test_analysis_never_imports_training_code(module):
    bad = sorted(m for m in closure(module) if is_training(m))
    assert not bad, {m: " → ".join(import_path(module, {m})) for m in bad}


def test_analysis_loads_no_training_code_when_imported():
    """What Python actually loads (lazy imports through importlib included) when the analysis modules are
    imported together — the static closure above cannot see an ``importlib.import_module`` with a computed name."""
    code = ("import importlib, json, sys\n"
            f"for m in {ANALYSIS!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(k for k in sys.modules if k.startswith('eoslib'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout)
    assert not [m for m in loaded if is_training(m)], loaded
    assert "torch" not in r.stdout


def test_plotting_never_imports_training_code():
    bad = sorted(m for m in closure("eoslib.plotting") if is_training(m))
    assert not bad, {m: " → ".join(import_path("eoslib.plotting", {m})) for m in bad}


def _training_closures() -> dict[str, set[str]]:
    """``<profile>:<stage>`` → the modules its runs execute (the files hashed into their ids)."""
    from eoslib.config import load_params, plan
    from eoslib.provenance import code_files

    out = {}
    for root in PROFILES:
        for sid, st in plan(load_params(root / "params.yaml")).items():
            out[f"{root.relative_to(REPO).as_posix()}:{sid}"] = {module_of(f) for f in code_files(st["runs"].values())}
    return out


def test_training_never_imports_orchestration_or_analysis():
    closures = _training_closures()
    assert len(closures) > len(PROFILES)
    bad = {stage: sorted(mods & ORCHESTRATION_OR_ANALYSIS) for stage, mods in closures.items()
           if mods & ORCHESTRATION_OR_ANALYSIS}
    assert not bad, bad
    used = set().union(*closures.values())
    assert {"eoslib.training", "eoslib.objective", "eoslib.solvers.rkc"} <= used  # the closures are not empty


@pytest.mark.parametrize("module", sorted(LEAVES))
def test_leaf_modules_import_only_leaves(module):
    assert graph()[module] <= LEAVES - {module}, graph()[module] - LEAVES
