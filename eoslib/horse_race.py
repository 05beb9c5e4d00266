"""The predictor horse race for claim C3 (v1): does log ᾱ explain log λ_max beyond the other candidates?

Over trajectory rows (one row per measurement, many runs stacked, a ``group`` column naming the run, the seed or
the setting), with y = log λ_max and x = log ᾱ, each *base* model Z is a set of competing predictors — the layer
norms Σₖ log‖Jᵏ‖, the flow time t, the log input gain log‖∂f/∂x‖, the log output-layer norm, or all of them —
and the question is how much of y that Z leaves unexplained log ᾱ explains:

    ΔR² = R²(y ~ 1 + Z + x) − R²(y ~ 1 + Z),

computed by Frisch–Waugh–Lovell: with r_y, r_x the residuals of y and x after least squares on [1, Z],

    R²(base) = 1 − ‖r_y‖²/SST,  ρ = r_y·r_x / (‖r_y‖‖r_x‖)  (the partial correlation of y and x given Z),
    ΔR² = ρ² ‖r_y‖²/SST = ρ²(1 − R²(base)),  β = r_y·r_x/‖r_x‖²  (x's coefficient in the full model),

SST = Σ(y − ȳ)². The residuals come from an orthonormal basis of the centred Z (SVD, columns below a relative
singular-value tolerance dropped), so a base column that is constant or collinear (e.g. the output norm within
one run, or t together with something linear in t) does not break the fit; ``k`` reports the rank used.

**Fixed effects.** Pooled over groups, ``fixed_effects=True`` centres y, x and Z within each group before the
fit (the within estimator: the same coefficients and residuals as one dummy per group, and SST is then the
within-group sum of squares, so R² is the within R²); without it the pooled fit has one common intercept. Each
group alone is fitted with its own intercept (where fixed effects change nothing). Rows with a missing value in
y, x or the base's columns are dropped for that base (its ``n``); a fit that leaves the full model no residual
degree of freedom (n ≤ k + 1 + the number of intercepts) is NaN; where x lies in the span of Z (or Z fits y
exactly) ΔR² = 0 and the partial correlation and the coefficient are NaN.

No p-values: rows along one trajectory are serially dependent, so the usual F-test of ΔR² would overstate its
evidence; ΔR² and the partial correlation are descriptive, compared across bases, groups and settings.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: the default column names of the trajectory rows
Y, X, GROUP = "log_lam_max", "log_abar", "group"
NORMS, TIME, INPUT_GAIN, OUTPUT_NORM = "log_norms", "t", "log_input_gain", "log_output_norm"

#: base name → the competing predictors in it (``none``: intercept only, so ΔR² is R² of x alone)
BASES: dict[str, tuple[str, ...]] = {
    "none": (),
    "norms": (NORMS,),
    "time": (TIME,),
    "input_gain": (INPUT_GAIN,),
    "output_norm": (OUTPUT_NORM,),
    "all": (NORMS, TIME, INPUT_GAIN, OUTPUT_NORM),
}

#: base columns are scaled to unit norm after centring; singular values below RANK_RTOL × the largest are dropped
RANK_RTOL = 1e-10


@dataclass(frozen=True)
class Increment:
    """One nested comparison: ``n`` rows, base rank ``k``, ``r2_base`` = R²(y ~ 1 + Z), ``r2_full`` =
    R²(y ~ 1 + Z + x), ``delta_r2`` = their difference, ``partial_r`` = corr(r_y, r_x) given Z, ``coef`` =
    x's coefficient in the full model."""

    n: int
    k: int
    r2_base: float
    r2_full: float
    delta_r2: float
    partial_r: float
    coef: float


def _residualiser(Z: np.ndarray) -> np.ndarray:
    """An orthonormal basis U (n × k) of the span of the (already centred) columns of Z: each non-zero column
    scaled to unit norm (so the rank decision does not depend on the columns' units), then the left singular
    vectors with σ > RANK_RTOL·σ_max (none when Z has no non-zero column)."""
    norms = np.linalg.norm(Z, axis=0)
    Z = Z[:, norms > 0] / norms[norms > 0]
    if Z.shape[1] == 0:
        return np.zeros((Z.shape[0], 0))
    U, s, _ = np.linalg.svd(Z, full_matrices=False)
    if s.size == 0 or not s[0] > 0:
        return np.zeros((Z.shape[0], 0))
    return U[:, s > RANK_RTOL * s[0]]


def _centre(a: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """a − (its mean within each group), column by column (``codes``: integer group labels 0..G−1)."""
    a2 = a.reshape(len(codes), -1)
    if a2.shape[1] == 0:
        return a.copy()
    counts = np.bincount(codes).astype(float)
    sums = np.stack([np.bincount(codes, weights=a2[:, j], minlength=len(counts)) for j in range(a2.shape[1])], 1)
    return (a2 - (sums / counts[:, None])[codes]).reshape(a.shape)


def _nan(n: int, k: int) -> Increment:
    return Increment(n, k, np.nan, np.nan, np.nan, np.nan, np.nan)


def increment(y: np.ndarray, x: np.ndarray, Z: np.ndarray, groups: np.ndarray | None = None) -> Increment:
    """ΔR² of x beyond [1, Z] for y (module docstring), by Frisch–Waugh–Lovell. With ``groups`` (one label per
    row) every column is first centred within its group (fixed effects), else centred once (the intercept)."""
    y, x = np.asarray(y, float), np.asarray(x, float)
    Z = np.asarray(Z, float).reshape(len(y), -1)
    if len(y) < 2:
        return _nan(len(y), 0)
    codes = np.zeros(len(y), dtype=int) if groups is None else pd.factorize(np.asarray(groups))[0]
    yc, xc, Zc = _centre(y, codes), _centre(x, codes), _centre(Z, codes)
    U = _residualiser(Zc)
    n, k = len(y), U.shape[1]
    n_fe = len(np.unique(codes))
    if n < n_fe + k + 2:
        return _nan(n, k)
    ry, rx = yc - U @ (U.T @ yc), xc - U @ (U.T @ xc)
    sst, ssy, ssx = float(yc @ yc), float(ry @ ry), float(rx @ rx)
    if not sst > 0:
        return _nan(n, k)
    r2_base = 1.0 - ssy / sst
    if not (ssx > 1e-20 * max(float(xc @ xc), 1e-300) and ssy > 0):  # x in the span of Z, or y fitted exactly
        return Increment(n, k, r2_base, r2_base, 0.0, np.nan, np.nan)
    cross = float(ry @ rx)
    rho = cross / np.sqrt(ssy * ssx)
    delta = rho * rho * ssy / sst
    return Increment(n, k, r2_base, r2_base + delta, delta, rho, cross / ssx)


def _rows(table: pd.DataFrame, y: str, x: str, cols: Sequence[str], group: str | None) -> pd.DataFrame:
    """The rows with y, x and every base column finite and (when ``group`` is a column) a group label."""
    sub = table[[y, x, *cols]].apply(pd.to_numeric, errors="coerce")
    ok = np.isfinite(sub.to_numpy(float)).all(axis=1)
    if group is not None and group in table:
        ok &= table[group].notna().to_numpy()
    return table[ok]


def horse_race(table: pd.DataFrame, y: str = Y, x: str = X, bases: Mapping[str, Sequence[str]] | None = None,
               group: str = GROUP, fixed_effects: bool = True, per_group: bool = True) -> pd.DataFrame:
    """The nested ΔR² of ``x`` beyond each base in ``bases`` (default :data:`BASES`, restricted to the bases whose
    columns are all in ``table``), pooled over the groups (``fixed_effects``: within-group centring) and, with
    ``per_group``, in each group alone. A tidy DataFrame, one row per (scope, group, base): ``scope``
    (``pooled``/``group``), ``group`` (the group's label, ``all`` when pooled), ``fixed_effects`` (pooled rows
    only; False for per-group rows), ``base``, ``predictors`` (comma-joined), then :class:`Increment`'s fields."""
    if bases is None:
        bases = {b: cols for b, cols in BASES.items() if set(cols) <= set(table.columns)}
    missing = sorted(({c for cols in bases.values() for c in cols} | {y, x}) - set(table.columns))
    if missing:
        raise KeyError(f"horse_race: the table has no column(s) {missing} (it has {list(table.columns)})")
    out = []
    for name, cols in bases.items():
        cols = list(cols)
        d = _rows(table, y, x, cols, group)
        labels = d[group].to_numpy() if group in d else np.zeros(len(d))
        fit = increment(d[y].to_numpy(float), d[x].to_numpy(float), d[cols].to_numpy(float),
                        labels if fixed_effects else None)
        common = {"base": name, "predictors": ",".join(cols)}
        out.append({"scope": "pooled", "group": "all", "fixed_effects": fixed_effects} | common | vars(fit))
        if per_group and group in d:
            for g, dg in d.groupby(group, sort=True):
                fit = increment(dg[y].to_numpy(float), dg[x].to_numpy(float), dg[cols].to_numpy(float))
                out.append({"scope": "group", "group": g, "fixed_effects": False} | common | vars(fit))
    return pd.DataFrame(out)


def partial_correlation(table: pd.DataFrame, y: str = Y, x: str = X, controls: Sequence[str] = (),
                        group: str | None = None) -> float:
    """corr(r_y, r_x): the correlation of y and x after least squares on [1, controls] (with ``group``: on the
    controls and one fixed effect per group, by within-group centring). NaN where undefined."""
    d = _rows(table, y, x, list(controls), group)
    labels = d[group].to_numpy() if group is not None else None
    return increment(d[y].to_numpy(float), d[x].to_numpy(float), d[list(controls)].to_numpy(float), labels).partial_r


__all__ = ["BASES", "Increment", "increment", "horse_race", "partial_correlation"]
