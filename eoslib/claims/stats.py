"""Statistics on a run's trajectory table shared by several claims' judges.

A trajectory table has one row per iterate (``t``, ``loss``, …) and, where the measurement hook fired, the
measured columns (``hess_lam1`` = λ_max(∇²L), ``alpha_mean`` = ᾱ, …; NaN elsewhere).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman's rank correlation ρ(a, b) = Pearson correlation of the ranks, over the pairs where both are
    finite; NaN with fewer than 3 such pairs."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def sharpened(tab: pd.DataFrame, col: str, factor: float) -> pd.DataFrame:
    """The rows where ``col`` is measured and has risen to ≥ ``factor`` × its first measured value
    (the *sharpened part* of a run, for ``col`` = λ_max)."""
    m = tab[tab[col].notna()]
    return m[m[col] >= factor * m[col].iloc[0]] if len(m) else m


def comovement(tab: pd.DataFrame) -> tuple[pd.DataFrame, float, float]:
    """C3's co-movement over a measured run: (the rows measuring both ᾱ and λ_max, Spearman ρ(ᾱ, λ_max), ᾱ's
    growth ᾱ_end/ᾱ_init; NaN growth with fewer than two such rows)."""
    m = tab.dropna(subset=["alpha_mean", "hess_lam1"])
    growth = float(m["alpha_mean"].iloc[-1] / m["alpha_mean"].iloc[0]) if len(m) > 1 else float("nan")
    return m, spearman(m["alpha_mean"], m["hess_lam1"]), growth
