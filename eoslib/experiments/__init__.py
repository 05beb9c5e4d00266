"""Experiment kinds: the *catalog*. One module each (defining ``EXPERIMENT``, an
:class:`eoslib.experiments.base.Experiment`), imported only when its kind is looked up (``KINDS[name]``), so a
run's code — and its DVC stage's dependencies — include its own kind only.

| kind | params section | module | what |
|---|---|---|---|
| ``sweep`` | ``sweep`` | ``sweep.py`` | power-law sweep (C4): settings × N × seeds to two end points |
| ``traj`` | ``trajectories`` | ``trajectory.py`` | measured flow trajectories (split, layers, C3) |
| ``gd`` | ``gd`` | ``gd.py`` | GD at several η with the sharpness tracked (C1) |
| ``compare`` | ``reference`` | ``compare.py`` | solvers against a high-accuracy reference flow (C2) |
| ``cost`` | ``cost`` | ``cost.py`` | error versus cost of the flow solvers against one reference (C2) |
| ``agree`` | ``agreement`` | ``agreement.py`` | the sweep's end points with a second solver |
| ``sens`` | ``sensitivity`` | ``sensitivity.py`` | trajectory claims under init / depth / width variants |
| ``intervene`` | ``intervention`` | ``intervention.py`` | the flow with ᾱ (or a placebo) held fixed (C3, causal) |

A new kind: one module defining ``EXPERIMENT`` plus one ``KINDS.lazy`` line here (``section``: its key in
``params.yaml``).
"""
from __future__ import annotations

from ..registry import Registry

#: kind name → :class:`~eoslib.experiments.base.Experiment` (imported on lookup); meta ``section``: the
#: params.yaml key that plans the kind's runs
KINDS: Registry = Registry("experiment kind")

for _name, _module, _section, _label in (
        ("sweep", "sweep", "sweep", "power-law sweep"),
        ("traj", "trajectory", "trajectories", "measured flow trajectory"),
        ("gd", "gd", "gd", "gradient descent"),
        ("compare", "compare", "reference", "comparison with the reference flow"),
        ("cost", "cost", "cost", "error versus cost"),
        ("agree", "agreement", "agreement", "solver agreement"),
        ("sens", "sensitivity", "sensitivity", "sensitivity"),
        ("intervene", "intervention", "intervention", "intervention on the alignment")):
    KINDS.lazy(_name, f"{__name__}.{_module}:EXPERIMENT", label=_label, section=_section)


def section(kind: str) -> str:
    """The params.yaml section of ``kind`` (without importing the kind's module)."""
    return KINDS.entry(kind).meta["section"]


__all__ = ["KINDS", "section"]
