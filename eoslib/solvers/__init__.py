"""Solvers for full-batch training, seen as integrators of the gradient flow dθ/dt = −∇L(θ).

One file per solver, each registered in :data:`SOLVERS` (name → class; see :mod:`eoslib.solvers.base` for
the contract). ``build_solver({"name": "ee", "dt_max": 0.5})`` is how ``params.yaml`` turns into a solver.

| name | class | file |
|---|---|---|
| ``gd`` | :class:`GradientDescent` | ``gd.py`` |
| ``agd`` | :class:`AdaptiveGD` | ``gd.py`` |
| ``ee`` | :class:`ExponentialEuler` | ``exponential_euler.py`` |
| ``rkc`` | :class:`RungeKuttaChebyshev` | ``rkc.py`` |

:class:`ReferenceFlow` (``reference.py``) is the high-accuracy ground truth, not a stepping solver.
"""
from __future__ import annotations

from collections.abc import Mapping

from .base import SOLVERS, EigenTracker, Solver, eig_record
from .exponential_euler import ExponentialEuler, phi1
from .gd import AdaptiveGD, GradientDescent
from .reference import ReferenceFlow
from .rkc import RungeKuttaChebyshev


def build_solver(spec: Mapping) -> Solver:
    """The solver of a resolved ``{"name": ..., **kwargs}`` spec (as in ``params.yaml``)."""
    spec = dict(spec)
    return SOLVERS[spec.pop("name")](**spec)


__all__ = ["SOLVERS", "Solver", "EigenTracker", "eig_record", "build_solver", "GradientDescent", "AdaptiveGD",
           "ExponentialEuler", "phi1", "ReferenceFlow", "RungeKuttaChebyshev"]
