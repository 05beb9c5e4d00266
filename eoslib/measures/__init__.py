"""The measure catalog: what can be measured at a parameter vector θ and fitted against N (claim C4).

Each measure is a name in :data:`MEASURES` with a label (for figures), a *source* and the module that defines
it, imported only when the measure is looked up (``MEASURES[name]`` is its function) — so figures and tables
can read a measure's label without importing any training code (:mod:`eoslib.plotting` does). Sources:

* ``"alignment"`` — ``fn(stats) -> float`` of the per-example layerwise-Jacobian statistics on the fixed probe
  subset (:class:`~eoslib.measures.library.ProbeStats`, computed once per point for all such measures);
* ``"curvature"`` — ``fn(objective, theta, cache) -> float`` (e.g. λ_max(∇²L); ``cache`` carries warm starts);
* ``"derived"`` — ``fn(row, init) -> float`` from other measures at this point and at θ₀ (``requires``
  lists them).

:func:`~eoslib.measures.library.measure_point` evaluates a list of names at θ; the ``endpoints`` stage calls it
at every sweep end point and :class:`eoslib.measurement.Measurement` along trajectories. Adding a measure: its
function in :mod:`eoslib.measures.library` and one line in the table below (or :func:`add` for a function
defined elsewhere), then its name in ``params.yaml`` (``powerlaw.measures``) — the end points are re-measured.

Notation (paper-notes §2): α(x) = ‖P₁(x)‖₂ / Πₖ‖Jᵏ(x)‖₂ (chain alignment), ‖P₁‖₂ the chain gain.

This module imports nothing heavy (no torch, no eoslib training code).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from ..registry import Registry

SOURCES = ("alignment", "curvature", "derived")

#: measure name → its function (imported on lookup); meta ``source`` and ``requires``
MEASURES: Registry[Callable] = Registry("measure")

for _name, _label, _source, _requires in (
        ("alpha_mean", r"mean chain alignment $\bar\alpha$", "alignment", ()),
        ("alpha_median", r"median chain alignment $\tilde\alpha$", "alignment", ()),
        ("alpha_gmean", r"geometric-mean chain alignment", "alignment", ()),
        ("chain_gain", r"chain gain $\|P_1\|_2$ (mean)", "alignment", ()),
        ("log_norm_product", r"$\sum_k \log\|J^k\|_2$ (mean)", "alignment", ()),
        ("alpha_in_mean", r"mean input-chain alignment $\bar\alpha_{\mathrm{in}}$", "alignment", ()),
        ("sharpness", r"sharpness $\lambda_{\max}(\nabla^2 L)$", "curvature", ()),
        ("one_minus_alpha", r"$1 - \bar\alpha$", "derived", ("alpha_mean",)),
        ("alpha_growth", r"$\bar\alpha_{\mathrm{end}} / \bar\alpha_{\mathrm{init}}$", "derived", ("alpha_mean",))):
    MEASURES.lazy(_name, f"{__name__}.library:{_name}", label=_label, source=_source, requires=_requires)


def add(name: str, fn: Callable, label: str, source: str, requires: Iterable[str] = ()) -> None:
    """Register ``fn`` (defined anywhere) as the measure ``name``."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    MEASURES.add(name, fn, label=label, source=source, requires=tuple(requires))


def source(name: str) -> str:
    """The source of measure ``name`` (``"alignment"``, ``"curvature"`` or ``"derived"``)."""
    return MEASURES.entry(name).meta["source"]


def requires(name: str) -> tuple[str, ...]:
    """The measures a derived measure is computed from."""
    return tuple(MEASURES.entry(name).meta.get("requires", ()))


def closure(names: Iterable[str]) -> list[str]:
    """``names`` plus everything their derived measures require, each once, requirements first."""
    out: list[str] = []

    def visit(n: str) -> None:
        for r in requires(n):
            visit(r)
        if n not in out:
            out.append(n)

    for n in names:
        visit(n)
    return out


#: names importable from this package, resolved on first use (importing the catalog imports no measure code)
_LAZY_NAMES = {"ProbeStats": "library", "probe_stats": "library", "measure_point": "library"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MEASURES", "SOURCES", "add", "source", "requires", "closure", *_LAZY_NAMES]
