"""The definitions of the measures named in the catalog :mod:`eoslib.measures` (labels, sources and the
requirements of derived measures live there), the per-example probe statistics they read, and
:func:`measure_point`, which evaluates a list of measures at θ.

Notation (paper-notes §2): α(x) = ‖P₁(x)‖₂ / Πₖ‖Jᵏ(x)‖₂ (chain alignment), ‖P₁‖₂ the chain gain.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from . import MEASURES, closure, source


@dataclass(frozen=True)
class ProbeStats:
    """Per-example statistics of the layerwise Jacobians on the probe subset (float64 numpy arrays).

    ``norms`` N × (K−1): ‖Jᵏ(xᵢ)‖₂; ``chain`` N: ‖P₁(xᵢ)‖₂; ``factors`` N × (K−1): aₖ(xᵢ);
    ``log_alpha`` = log‖P₁‖ − Σₖ log‖Jᵏ‖; ``extra``: further per-example arrays of alignment_stats."""

    norms: np.ndarray
    chain: np.ndarray
    factors: np.ndarray
    extra: Mapping[str, np.ndarray]

    @property
    def log_alpha(self) -> np.ndarray:
        return np.log(self.chain) - np.log(self.norms).sum(axis=1)

    @property
    def alpha(self) -> np.ndarray:
        return np.exp(self.log_alpha)


def probe_stats(model, X) -> ProbeStats:
    """The :class:`ProbeStats` of ``model`` on the rows X (one pass of :func:`eoslib.alignment.alignment_stats`)."""
    import torch

    from ..alignment import full_alignment_stats

    with torch.no_grad():
        out = full_alignment_stats(model, X)
    if isinstance(out, tuple):
        norms, chain, factors = out[:3]
        extra = {}
    else:  # a mapping of named per-example tensors
        norms, chain, factors = out["norms"], out["chain"], out["factors"]
        extra = {k: v for k, v in out.items() if k not in ("norms", "chain", "factors")}
    f = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
    return ProbeStats(f(norms), f(chain), f(factors), {k: f(v) for k, v in extra.items()})


# ---------------------------------------------------------------------------------------------- alignment


def alpha_mean(s: ProbeStats) -> float:
    """ᾱ = mean over the probe of α(x) = ‖P₁(x)‖₂ / Πₖ‖Jᵏ(x)‖₂ (the primary measure)."""
    return float(s.alpha.mean())


def alpha_median(s: ProbeStats) -> float:
    return float(np.median(s.alpha))


def alpha_gmean(s: ProbeStats) -> float:
    """exp(mean log α)."""
    return float(np.exp(s.log_alpha.mean()))


def chain_gain(s: ProbeStats) -> float:
    """mean ‖P₁(x)‖₂ = mean α(x)·Πₖ‖Jᵏ(x)‖₂."""
    return float(s.chain.mean())


def log_norm_product(s: ProbeStats) -> float:
    """mean Σₖ log‖Jᵏ(x)‖₂: the layer-norm part of log‖P₁‖ = log α + Σₖ log‖Jᵏ‖."""
    return float(np.log(s.norms).sum(axis=1).mean())


def alpha_in_mean(s: ProbeStats) -> float:
    """Mean over the probe of α_in(x) = ‖∂f/∂x‖₂ / (‖A¹‖₂ Πₖ‖Jᵏ(x)‖₂): the alignment of the chain from the
    input, including the input layer's Jacobian ∂x̂¹/∂x = A¹ (α_in ≤ α)."""
    ratio = s.extra["input_gain"] / (s.extra["input_norm"] * s.norms.prod(axis=1))
    return float(ratio.mean())


# ---------------------------------------------------------------------------------------------- curvature


def sharpness(objective, theta, cache: dict) -> float:
    """λ_max(∇²L) by LOBPCG to a relative residual 10⁻³ (as the solvers track it), from a seeded *cold* start
    with the default guard: an end point is a handful of solves per run, so none is trusted to a warm start
    (issue 17: a warm start at θ₀'s vector could lock onto the wrong pair). Its certificate goes to
    ``cache["certificates"]["sharpness"]`` (stored as ``sharpness_converged`` / ``sharpness_residual``)."""
    from ..eigen import top_eigenpairs

    r = top_eigenpairs(objective.hvp_operator(theta), objective.P, 1, tol=1e-3, device=theta.device)
    cache.setdefault("certificates", {})["sharpness"] = r.certificate()
    return float(r.values[0])


# ---------------------------------------------------------------------------------------------- derived


def one_minus_alpha(row: Mapping, init: Mapping) -> float:
    return 1.0 - row["alpha_mean"]


def alpha_growth(row: Mapping, init: Mapping) -> float:
    """ᾱ at this point over ᾱ at θ₀."""
    a0 = init.get("alpha_mean", np.nan)
    return row["alpha_mean"] / a0 if a0 and np.isfinite(a0) else np.nan


# ---------------------------------------------------------------------------------------------- evaluation


def measure_point(objective, theta, names: Iterable[str], probe=None, seed: int = 0, init: Mapping | None = None,
                  cache: dict | None = None) -> dict[str, float]:
    """The measures ``names`` (and what they require) at θ. ``probe``/``seed``: the fixed probe subset for
    alignment measures (:func:`eoslib.alignment.probe_subset`); ``init``: the measures at θ₀ (for derived
    ones; None means this point is θ₀); ``cache``: state carried between calls. Every curvature measure ``n``
    that leaves a certificate in ``cache["certificates"][n]`` gets the columns ``n_converged`` and
    ``n_residual`` (max relative residual) beside its value."""
    names = closure(names)
    cache = {} if cache is None else cache
    row: dict[str, float] = {}
    srcs = {source(n) for n in names}
    if "alignment" in srcs:
        from ..alignment import probe_subset

        stats = probe_stats(objective.to_model(theta), probe_subset(objective.X, probe, seed))
        row |= {n: MEASURES[n](stats) for n in names if source(n) == "alignment"}
    for n in names:
        src = source(n)
        if src == "curvature":
            row[n] = MEASURES[n](objective, theta, cache)
            cert = cache.get("certificates", {}).pop(n, None)
            if cert is not None:
                row |= {f"{n}_converged": cert["converged"], f"{n}_residual": cert["residual"]}
        elif src == "derived":
            row[n] = MEASURES[n](row, row if init is None else init)
    return row
