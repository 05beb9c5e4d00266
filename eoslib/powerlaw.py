"""Power-law fits value ≈ c · N^β (paper-notes §2, claim C4).

Ordinary least squares of log value on log N: log vᵢ = log c + β log Nᵢ + εᵢ.
β = S_xy / S_xx, log c = ȳ − β x̄ (x = log N, y = log v), R² = 1 − SS_res/SS_tot = S_xy²/(S_xx S_yy),
stderr(β) = √(SS_res/(n−2) / S_xx). The interval on β is a seeded bootstrap percentile interval: whole
groups (e.g. seeds) are resampled with replacement when ``groups`` is given, else single points.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class PowerLawFit:
    """Result of ``fit_power_law``: value ≈ prefactor · N^beta."""

    beta: float
    prefactor: float  # c = exp(intercept)
    r2: float  # NaN when all log values are equal (no variance to explain)
    beta_stderr: float
    beta_interval: tuple[float, float]
    n_points: int
    n_groups: int | None  # number of distinct groups when resampling groups, else None
    level: float
    n_boot: int
    n_boot_valid: int  # replicates with ≥ 2 distinct N (others have no slope and are dropped)

    @property
    def intercept(self) -> float:
        """log c."""
        return float(np.log(self.prefactor))

    def predict(self, N: ArrayLike) -> np.ndarray | float:
        """c · N^β."""
        out = self.prefactor * np.asarray(N, dtype=float) ** self.beta
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["beta_interval"] = list(self.beta_interval)
        return d


def _weighted_slopes(x: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """OLS slope of y on x for each row of point weights W (B × n); NaN where the weighted S_xx is 0."""
    tot = W.sum(axis=1, keepdims=True)
    xm = (W @ x)[:, None] / tot
    ym = (W @ y)[:, None] / tot
    dx = x[None, :] - xm
    sxx = (W * dx * dx).sum(axis=1)
    sxy = (W * dx * (y[None, :] - ym)).sum(axis=1)
    scale = np.maximum(np.abs(x).max(), 1.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 1e-12 * scale * tot[:, 0], sxy / sxx, np.nan)


def _check(N: ArrayLike, values: ArrayLike, groups: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(N, dtype=float).ravel()
    v = np.asarray(values, dtype=float).ravel()
    if n.shape != v.shape:
        raise ValueError(f"N and values differ in length ({n.size} vs {v.size})")
    if groups is not None and np.asarray(groups).ravel().size != n.size:
        raise ValueError(f"groups has length {np.asarray(groups).size}, N has {n.size}")
    for name, a in (("N", n), ("values", v)):
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ValueError(f"{name} must be finite and > 0 for a log-log fit (got {a[~(np.isfinite(a) & (a > 0))]})")
    if n.size < 3:
        raise ValueError(f"need at least 3 points for a fit with an error estimate, got {n.size}")
    if np.unique(n).size < 2:
        raise ValueError("need at least 2 distinct N to fit a slope")
    return n, v


def fit_power_law(
    N: ArrayLike, values: ArrayLike, groups: ArrayLike | None = None, n_boot: int = 2000, seed: int = 0,
    level: float = 0.95,
) -> PowerLawFit:
    """Fit values ≈ c · N^β by OLS in log-log space, with a bootstrap percentile interval on β.

    ``groups`` (e.g. the seed of each point): resample whole groups with replacement (B × G multinomial
    counts, vectorised) — the right unit when points of one seed are correlated; else resample points.
    ``seed`` seeds ``numpy.random.default_rng``; ``level`` is the two-sided coverage of the interval.
    A single group (or no replicate with ≥ 2 distinct N) leaves no spread to resample: the fit is returned
    with ``beta_interval`` = (NaN, NaN) and ``n_boot_valid`` = 0.
    """
    n, v = _check(N, values, groups)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be ≥ 1, got {n_boot}")
    x, y = np.log(n), np.log(v)
    dx, dy = x - x.mean(), y - y.mean()
    sxx, sxy, syy = dx @ dx, dx @ dy, dy @ dy
    beta = sxy / sxx
    intercept = y.mean() - beta * x.mean()
    ss_res = max(syy - beta * sxy, 0.0)
    r2 = sxy * sxy / (sxx * syy) if syy > 0 else float("nan")
    stderr = np.sqrt(ss_res / (n.size - 2) / sxx)

    rng = np.random.default_rng(seed)
    if groups is None:
        n_groups, W = None, rng.multinomial(n.size, np.full(n.size, 1.0 / n.size), size=int(n_boot))
    else:
        _, gidx = np.unique(np.asarray(groups).ravel(), return_inverse=True)
        n_groups = int(gidx.max()) + 1
        counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=int(n_boot))
        W = counts[:, gidx]
    slopes = _weighted_slopes(x, y, W.astype(float))
    valid = slopes[np.isfinite(slopes)] if n_groups != 1 else slopes[:0]
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(valid, [q, 100 - q]) if valid.size else (np.nan, np.nan)
    return PowerLawFit(
        beta=float(beta), prefactor=float(np.exp(intercept)), r2=float(r2), beta_stderr=float(stderr),
        beta_interval=(float(lo), float(hi)), n_points=int(n.size), n_groups=n_groups, level=float(level),
        n_boot=int(n_boot), n_boot_valid=int(valid.size),
    )
