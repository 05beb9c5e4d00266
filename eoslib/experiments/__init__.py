"""Experiment kinds: one module each, registered in :data:`KINDS` (see :mod:`eoslib.experiments.base`).

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
"""
from . import agreement, compare, cost, gd, intervention, sensitivity, sweep, trajectory  # noqa: F401  (each registers its kind)
from .base import KINDS, Experiment, Stage

__all__ = ["KINDS", "Experiment", "Stage"]
