"""Solvers for full-batch training, seen as integrators of the gradient flow dθ/dt = −∇L(θ).

This file is the solver *catalog*: each solver's name, label and the schema of its keys under ``solver:`` in
``params.yaml`` (its constructor's keywords), with the module that defines it. It imports no solver: a solver's
module is imported when its name is looked up (``SOLVERS[name]``), so a run's code — and a DVC stage's
dependencies — include only the solvers it uses (see :mod:`eoslib.registry`, :mod:`eoslib.provenance`).
``build_solver({"name": "ee", "dt_max": 0.5})`` is how ``params.yaml`` turns into a solver.

| name | class | file |
|---|---|---|
| ``gd`` | :class:`GradientDescent` | ``gd.py`` |
| ``agd`` | :class:`AdaptiveGD` | ``gd.py`` |
| ``ee`` | :class:`ExponentialEuler` | ``exponential_euler.py`` |
| ``rkc`` | :class:`RungeKuttaChebyshev` | ``rkc.py`` |

:class:`ReferenceFlow` (``reference.py``) is the high-accuracy ground truth, not a stepping solver. A new solver
is one class in its own file (contract: :class:`eoslib.solvers.base.Solver`) plus one ``SOLVERS.lazy`` line here.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..registry import Registry
from ..schema import Flag, Int, Num, Opt

#: name → solver class (imported on lookup); ``solver: {name: <name>, **kwargs}`` builds ``SOLVERS[name](**kwargs)``
SOLVERS: Registry[type] = Registry("solver")

SOLVERS.lazy("gd", "eoslib.solvers.gd:GradientDescent", label="gradient descent",
             schema={"lr": Num(), "track_every": Opt(Int()), "k": Opt(Int(), 1), "tol": Opt(Num(), 1e-3)})
SOLVERS.lazy("agd", "eoslib.solvers.gd:AdaptiveGD", label="sharpness-adaptive GD",
             schema={"dt_max": Num(), "c": Opt(Num(), 1.0), "tol": Opt(Num(), 1e-3)})
SOLVERS.lazy("ee", "eoslib.solvers.exponential_euler:ExponentialEuler", label="exponential Euler",
             schema={"dt_max": Num(), "tol": Opt(Num(), 1e-3), "guard": Opt(Int(minimum=0), 2),  # = eigen.DEFAULT_GUARD
                     "stiff_dim": Opt(Int(minimum=0))})
SOLVERS.lazy("rkc", "eoslib.solvers.rkc:RungeKuttaChebyshev", label="Runge–Kutta–Chebyshev",
             schema={"dt_max": Num(), "damping": Opt(Num(), 2 / 13),  # = rkc.DEFAULT_DAMPING (a test checks)
                     "safety": Opt(Num(), 1.2), "tol": Opt(Num(), 1e-2), "max_stages": Opt(Int(minimum=2), 1000),
                     "adaptive": Opt(Flag(), True), "rtol": Opt(Num(), 1e-3),
                     "atol": Opt(Num(positive=False, minimum=0), 1e-5)})


def build_solver(spec: Mapping):
    """The solver of a resolved ``{"name": ..., **kwargs}`` spec (as in ``params.yaml``)."""
    spec = dict(spec)
    return SOLVERS[spec.pop("name")](**spec)


#: names importable from this package for convenience (``from eoslib.solvers import ExponentialEuler``),
#: resolved on first use so that importing the catalog imports no solver
_LAZY_NAMES = {"Solver": "base", "EigenTracker": "base", "eig_record": "base", "GradientDescent": "gd",
               "AdaptiveGD": "gd", "ExponentialEuler": "exponential_euler", "phi1": "exponential_euler",
               "RungeKuttaChebyshev": "rkc", "ReferenceFlow": "reference"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SOLVERS", "build_solver", *_LAZY_NAMES]
