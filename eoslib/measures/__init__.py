"""The measure catalog: what can be measured at a parameter vector θ and fitted against N (claim C4).

Each measure is a name in :data:`MEASURES` with a label (for figures), a *source* and the module that defines
it, imported only when the measure is looked up (``MEASURES[name]`` is its function) — so figures and tables
can read a measure's label without importing any training code (:mod:`eoslib.plotting` does). Sources:

* ``"alignment"`` — ``fn(stats) -> float`` of the per-example layerwise-Jacobian statistics on the fixed probe
  subset (:class:`~eoslib.measures.library.ProbeStats`, computed once per point for all such measures);
* ``"curvature"`` — ``fn(objective, theta, cache) -> float``: any function of θ and the data (e.g. λ_max(∇²L),
  a weight norm; ``cache`` carries warm starts and certificates). Those marked ``probe`` (:func:`on_probe`) are
  evaluated on the probe subset (the objective restricted to its rows), the others on all training data;
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

#: measure name → its function (imported on lookup); meta ``source``, ``requires`` and ``probe``
MEASURES: Registry[Callable] = Registry("measure")

#: curvature measures evaluated on the probe subset rather than on all training data
_ON_PROBE = ("coherence",)

for _name, _label, _source, _requires in (
        ("alpha_mean", r"mean chain alignment $\bar\alpha$", "alignment", ()),
        ("alpha_median", r"median chain alignment $\tilde\alpha$", "alignment", ()),
        ("alpha_gmean", r"geometric-mean chain alignment", "alignment", ()),
        ("chain_gain", r"chain gain $\|P_1\|_2$ (mean)", "alignment", ()),
        ("log_norm_product", r"$\sum_k \log\|J^k\|_2$ (mean)", "alignment", ()),
        ("alpha_in_mean", r"mean input-chain alignment $\bar\alpha_{\mathrm{in}}$", "alignment", ()),
        ("a1_mean", r"mean first-layer factor $\bar a_1$", "alignment", ()),
        ("min_ak_mean", r"mean weakest layer factor $\overline{\min_k a_k}$", "alignment", ()),
        ("alpha_frob_mean", r"mean Frobenius alignment $\overline{\|P_1\|_F/\prod_k\|J^k\|_F}$", "alignment", ()),
        ("alpha_haar_ratio", r"alignment over Haar chance $\overline{\alpha/\alpha_{\mathrm{rand}}}$", "alignment", ()),
        ("alpha_task_mean", r"mean task alignment $\bar\alpha_{\mathrm{task}}$", "alignment", ()),
        ("input_gain", r"input gain $\|\partial f / \partial x\|_2$ (mean)", "alignment", ()),
        ("sharpness", r"sharpness $\lambda_{\max}(\nabla^2 L)$", "curvature", ()),
        ("coherence", r"GGN coherence $\lambda_{\max}(\bar G) / \overline{\lambda_{\max}(G_i)}$", "curvature", ()),
        ("output_weight_norm", r"output weight norm $\|A^K\|_F$", "curvature", ()),
        ("one_minus_alpha", r"$1 - \bar\alpha$", "derived", ("alpha_mean",)),
        ("alpha_growth", r"$\bar\alpha_{\mathrm{end}} / \bar\alpha_{\mathrm{init}}$", "derived", ("alpha_mean",))):
    MEASURES.lazy(_name, f"{__name__}.library:{_name}", label=_label, source=_source, requires=_requires,
                  probe=_name in _ON_PROBE)


def add(name: str, fn: Callable, label: str, source: str, requires: Iterable[str] = (), probe: bool = False) -> None:
    """Register ``fn`` (defined anywhere) as the measure ``name`` (``probe``: a curvature measure evaluated on the
    probe subset)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    MEASURES.add(name, fn, label=label, source=source, requires=tuple(requires), probe=probe)


def source(name: str) -> str:
    """The source of measure ``name`` (``"alignment"``, ``"curvature"`` or ``"derived"``)."""
    return MEASURES.entry(name).meta["source"]


def on_probe(name: str) -> bool:
    """Whether curvature measure ``name`` is evaluated on the probe subset (``measure_point``)."""
    return bool(MEASURES.entry(name).meta.get("probe", False))


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


__all__ = ["MEASURES", "SOURCES", "add", "source", "on_probe", "requires", "closure", *_LAZY_NAMES]
