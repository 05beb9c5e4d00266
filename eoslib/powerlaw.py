"""Power-law fits value ≈ c · N^β (paper-notes §2, claim C4), and the tests that can tell one from noise.

Notation: x = log N, y = log v; runs i = 1..n, groups (seeds) g = 1..G, distinct sizes N_1 < … < N_K.

**Pooled OLS** (``fit_power_law``): y_i = log c + β x_i + ε_i over all runs. β = S_xy / S_xx,
log c = ȳ − β x̄, R²_pooled = 1 − SS_res/SS_tot = S_xy²/(S_xx S_yy), stderr(β) = √(SS_res/(n−2) / S_xx).
The stderr treats runs as independent; runs of one seed are not, so it is a lower bound on the uncertainty.
Its interval is a seeded bootstrap percentile interval: whole groups are resampled with replacement when
``groups`` is given, else single points. With few groups (3 seeds: 10 distinct resamples) that interval is
little more than the range of the per-seed slopes.

**Per-group t-interval** (``analyse_power_law``): β_g = OLS slope of y on x within group g; β_t = mean_g β_g;
s² = Σ_g (β_g − β_t)²/(G−1); interval β_t ± t_{G−1, (1+level)/2} · s/√G. Exact when the β_g are iid
normal (e.g. iid Gaussian noise on log v plus a seed-level random slope), whatever the correlation of runs
within a seed. On a balanced design (every seed on the same N grid) β_t equals the pooled β.

**R² on per-N means**: m_k = mean of y over the runs at N_k; OLS of m_k on x_k, R²_means = 1 − SS_res/SS_tot
over the K points. Seed scatter averages out of m_k, so R²_means measures how straight the mean curve is,
while R²_pooled also counts the scatter between seeds as unexplained.

**Saturating alternative** (``fit_saturating``): v = a − b · N^(−c), c > 0 — b > 0 rises to a, b < 0 falls
to a. Written as v = a · (1 − r · u^(−c)) with u = N/N_1 ∈ [1, N_K/N_1], b = a r N_1^c and r = 1 − e^s < 1
(so v > 0 on the data for every parameter value); fitted by bounded nonlinear least squares on log v.

**Model choice by AICc** on the same log-scale residuals (Gaussian likelihood, σ² at its MLE RSS/n):
AICc = n log(2π RSS/n) + n + 2k + 2k(k+1)/(n−k−1), k = parameters + 1 for σ (power law 3, saturating 4).
ΔAICc = AICc_power_law − AICc_saturating; the saturating model is preferred only when ΔAICc > 2
(``AICC_THRESHOLD``), else the power law (the simpler model) stands. The residuals of one seed are treated as
independent here as well, so ΔAICc ranks the two curves; it is not a test with a calibrated level.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

#: the saturating model is preferred only when AICc_power_law − AICc_saturating exceeds this
AICC_THRESHOLD = 2.0
#: the paper's range of R² across its settings (its abstract; claim C4): a fact about the paper, not a criterion
PAPER_R2 = (0.74, 0.98)
#: range of κ = c · log(N_K/N_1), the decay of the N^(−c) term across the data (below: a straight line in
#: log N; above: a step after the smallest N)
_KAPPA_RANGE = (1e-2, 1e2)
_S_RANGE = (-30.0, 30.0)  # s = log(1 − r)


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


@dataclass(frozen=True)
class SaturatingFit:
    """Result of ``fit_saturating``: value ≈ a − b · N^(−c) (b > 0 rises to a, b < 0 falls to a).

    ``rss`` = Σ (log v − log fit)². When the fit could not be made, a, b, c and rss are NaN and ``reason``
    says why; ``at_bound`` flags a solution on the edge of the searched range of c or r (see module doc).
    """

    a: float
    b: float
    c: float
    rss: float
    converged: bool
    at_bound: bool
    reason: str | None

    def predict(self, N: ArrayLike) -> np.ndarray | float:
        """a − b · N^(−c)."""
        out = self.a - self.b * np.asarray(N, dtype=float) ** (-self.c)
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PowerLawAnalysis:
    """Result of ``analyse_power_law`` (see the module docstring for every formula).

    Pooled OLS: ``beta``, ``prefactor``, ``beta_stderr``, ``r2_pooled``. Per-N means: ``r2_means``.
    Per group: ``group_labels``, ``group_slopes`` (NaN for a group with < 2 distinct N; left out of the
    t-interval). ``beta_t`` and ``beta_t_interval``: mean of the group slopes and its t-interval.
    ``beta_bootstrap_interval``: group-bootstrap percentile interval of the pooled β, only when
    ``n_groups ≥ min_groups_bootstrap`` (else None). ``beta_interval`` is the one to quote and
    ``interval_method`` ("t" or "bootstrap") says which. Model choice: ``saturating``, ``aicc_power_law``,
    ``aicc_saturating``, ``delta_aicc`` (> 0 favours saturating), ``preferred`` ("power_law", "saturating",
    or None when ΔAICc is NaN). Every ``*_reason`` is None when its number is defined, else says why it is NaN.
    """

    beta: float
    prefactor: float
    beta_stderr: float
    r2_pooled: float
    r2_means: float
    r2_means_reason: str | None
    n_points: int
    n_sizes: int  # distinct N
    n_groups: int  # distinct group labels (1 when groups is None)
    group_labels: tuple
    group_slopes: tuple[float, ...]
    beta_t: float
    beta_t_interval: tuple[float, float]
    beta_t_reason: str | None
    beta_bootstrap_interval: tuple[float, float] | None
    n_boot_valid: int  # 0 when the bootstrap was not run
    beta_interval: tuple[float, float]
    interval_method: str
    level: float
    saturating: SaturatingFit
    aicc_power_law: float
    aicc_saturating: float
    delta_aicc: float
    preferred: str | None
    aicc_reason: str | None

    def predict(self, N: ArrayLike) -> np.ndarray | float:
        """Pooled power law c · N^β."""
        out = self.prefactor * np.asarray(N, dtype=float) ** self.beta
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict:
        """JSON-ready: plain floats, ints, strings, lists and None (NaN where a number is undefined)."""
        d = asdict(self)
        for k in ("group_labels", "group_slopes", "beta_t_interval", "beta_interval"):
            d[k] = list(d[k])
        if d["beta_bootstrap_interval"] is not None:
            d["beta_bootstrap_interval"] = list(d["beta_bootstrap_interval"])
        return d


# ---------------------------------------------------------------------------------------------- helpers


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float]:
    """OLS of y on x: (slope, intercept, R² (NaN if S_yy = 0), SS_res, stderr of the slope)."""
    dx, dy = x - x.mean(), y - y.mean()
    sxx, sxy, syy = dx @ dx, dx @ dy, dy @ dy
    beta = sxy / sxx
    intercept = y.mean() - beta * x.mean()
    ss_res = max(syy - beta * sxy, 0.0)
    r2 = sxy * sxy / (sxx * syy) if syy > 0 else float("nan")
    stderr = np.sqrt(ss_res / (x.size - 2) / sxx) if x.size > 2 else float("nan")
    return float(beta), float(intercept), float(r2), float(ss_res), float(stderr)


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


def _bootstrap(
    x: np.ndarray, y: np.ndarray, gidx: np.ndarray | None, n_boot: int, seed: int, level: float,
) -> tuple[tuple[float, float], int]:
    """Percentile interval of the OLS slope over ``n_boot`` resamples of groups (``gidx``: group index of each
    point) or of points (``gidx`` None), and the number of replicates with a slope."""
    rng = np.random.default_rng(seed)
    if gidx is None:
        n_groups, W = None, rng.multinomial(x.size, np.full(x.size, 1.0 / x.size), size=int(n_boot))
    else:
        n_groups = int(gidx.max()) + 1
        counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=int(n_boot))
        W = counts[:, gidx]
    slopes = _weighted_slopes(x, y, W.astype(float))
    valid = slopes[np.isfinite(slopes)] if n_groups != 1 else slopes[:0]
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(valid, [q, 100 - q]) if valid.size else (np.nan, np.nan)
    return (float(lo), float(hi)), int(valid.size)


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


def _check_level_boot(level: float, n_boot: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be ≥ 1, got {n_boot}")


# ---------------------------------------------------------------------------------------------- power law


def fit_power_law(
    N: ArrayLike, values: ArrayLike, groups: ArrayLike | None = None, n_boot: int = 2000, seed: int = 0,
    level: float = 0.95,
) -> PowerLawFit:
    """Fit values ≈ c · N^β by OLS in log-log space, with a bootstrap percentile interval on β.

    ``groups`` (e.g. the seed of each point): resample whole groups with replacement (B × G multinomial
    counts, vectorised) — the right unit when points of one seed are correlated; else resample points.
    ``seed`` seeds ``numpy.random.default_rng``; ``level`` is the two-sided coverage of the interval.
    A single group (or no replicate with ≥ 2 distinct N) leaves no spread to resample: the fit is returned
    with ``beta_interval`` = (NaN, NaN) and ``n_boot_valid`` = 0. For claims use ``analyse_power_law``, whose
    t-interval is calibrated with few seeds and which also tests a saturating alternative.
    """
    n, v = _check(N, values, groups)
    _check_level_boot(level, n_boot)
    x, y = np.log(n), np.log(v)
    beta, intercept, r2, _, stderr = _ols(x, y)
    gidx = None if groups is None else np.unique(np.asarray(groups).ravel(), return_inverse=True)[1].ravel()
    (lo, hi), n_valid = _bootstrap(x, y, gidx, n_boot, seed, level)
    return PowerLawFit(
        beta=beta, prefactor=float(np.exp(intercept)), r2=r2, beta_stderr=stderr,
        beta_interval=(lo, hi), n_points=int(n.size), n_groups=None if gidx is None else int(gidx.max()) + 1,
        level=float(level), n_boot=int(n_boot), n_boot_valid=n_valid,
    )


def group_slopes(x: np.ndarray, y: np.ndarray, gidx: np.ndarray) -> np.ndarray:
    """OLS slope of y on x within each group (``gidx``: group index 0..G−1 of each point); NaN for a group
    with fewer than 2 distinct x."""
    out = np.full(int(gidx.max()) + 1, np.nan)
    for g in range(out.size):
        xg, yg = x[gidx == g], y[gidx == g]
        if np.unique(xg).size >= 2:
            out[g] = _ols(xg, yg)[0]
    return out


def t_interval(slopes: ArrayLike, level: float = 0.95) -> tuple[float, tuple[float, float], str | None]:
    """Mean of the finite ``slopes`` and its Student-t interval mean ± t_{G−1,(1+level)/2} · sd/√G.

    Returns (mean, (lo, hi), reason); with fewer than 2 finite slopes the interval is (NaN, NaN) and reason
    says why (the mean is still returned when there is one slope)."""
    from scipy import stats

    s = np.asarray(slopes, dtype=float)
    s = s[np.isfinite(s)]
    G = s.size
    if G == 0:
        return float("nan"), (float("nan"), float("nan")), "no group has 2 distinct N: no per-group slope"
    mean = float(s.mean())
    if G < 2:
        return mean, (float("nan"), float("nan")), (
            "only 1 group with a slope: the t-interval needs ≥ 2 groups (pass groups = the seed of each run)")
    half = float(stats.t.ppf((1 + level) / 2, G - 1) * s.std(ddof=1) / np.sqrt(G))
    return mean, (mean - half, mean + half), None


def r2_of_means(x: np.ndarray, y: np.ndarray) -> tuple[float, str | None]:
    """R² of the OLS line through the per-x means of y (one point per distinct x); (NaN, reason) when there
    are fewer than 3 distinct x (2 points lie on a line: R² = 1 says nothing) or the means are all equal."""
    xs, inv = np.unique(x, return_inverse=True)
    if xs.size < 3:
        return float("nan"), f"R² on means needs ≥ 3 distinct N, got {xs.size}"
    means = np.bincount(inv.ravel(), weights=y) / np.bincount(inv.ravel())
    r2 = _ols(xs, means)[2]
    return r2, None if np.isfinite(r2) else "the per-N means are all equal: no variance to explain"


# ---------------------------------------------------------------------------------------------- saturating


def _sat_log_model(p: np.ndarray, lu: np.ndarray) -> np.ndarray:
    """log(a · (1 − r u^(−c))) with p = (log a, s, log c), r = 1 − e^s, lu = log u."""
    z = np.exp(-np.exp(p[2]) * lu)
    return p[0] + np.log1p(np.expm1(p[1]) * z)


def _sat_log_jac(p: np.ndarray, lu: np.ndarray) -> np.ndarray:
    """∂ log-model / ∂(log a, s, log c)."""
    c = np.exp(p[2])
    z = np.exp(-c * lu)
    D = 1 + np.expm1(p[1]) * z
    return np.column_stack([np.ones_like(lu), np.exp(p[1]) * z / D, -np.expm1(p[1]) * c * lu * z / D])


def _sat_starts(lu: np.ndarray, v: np.ndarray, y: np.ndarray, L: float, n_starts: int = 3) -> list[np.ndarray]:
    """Deterministic starting points: for each κ on a log grid, z = u^(−κ/L) makes v ≈ A + B z linear; solve it
    by least squares weighted by 1/v (so the residual ≈ the log residual), map (A, B) to (log a, s, log c),
    keep the ``n_starts`` feasible ones with the smallest log-scale RSS, plus a flat start (r = 0)."""
    cands = []
    for kappa in np.geomspace(*_KAPPA_RANGE, 49):
        c = kappa / L
        z = np.exp(-c * lu)
        A, B = np.linalg.lstsq(np.column_stack([1 / v, z / v]), np.ones_like(v), rcond=None)[0]
        if not (A > 0 and np.isfinite(A) and np.isfinite(B)):
            continue
        one_minus_r = 1 + B / A  # r = −B/A
        if one_minus_r <= 0:
            continue
        p = np.array([np.log(A), np.clip(np.log(one_minus_r), *_S_RANGE), np.log(c)])
        cands.append((float(np.sum((y - _sat_log_model(p, lu)) ** 2)), kappa, p))
    cands.sort(key=lambda t: (t[0], t[1]))
    flat = np.array([y.mean(), 0.0, np.log(1.0 / L)])
    return [p for _, _, p in cands[:n_starts]] + [flat]


def fit_saturating(N: ArrayLike, values: ArrayLike) -> SaturatingFit:
    """Fit values ≈ a − b · N^(−c) (c > 0) by least squares on log values (see the module docstring).

    Bounded trust-region least squares (``scipy.optimize.least_squares``, analytic Jacobian) from the
    deterministic starts of ``_sat_starts``; the best converged solution is kept. Never raises on a failed
    fit: a, b, c, rss are NaN and ``reason`` says why. Inputs must be finite and > 0 (ValueError otherwise).
    """
    from scipy.optimize import least_squares

    n, v = _check(N, values, None)
    nan = float("nan")
    if np.unique(n).size < 3:
        return SaturatingFit(nan, nan, nan, nan, False, False,
                             f"the saturating model has 3 parameters: needs ≥ 3 distinct N, got {np.unique(n).size}")
    n1 = n.min()
    lu, y = np.log(n / n1), np.log(v)
    L = float(lu.max())
    lo = np.array([-np.inf, _S_RANGE[0], np.log(_KAPPA_RANGE[0] / L)])
    hi = np.array([np.inf, _S_RANGE[1], np.log(_KAPPA_RANGE[1] / L)])
    best, errors = None, []
    for p0 in _sat_starts(lu, v, y, L):
        try:
            res = least_squares(lambda p: y - _sat_log_model(p, lu), np.clip(p0, lo, hi),
                                jac=lambda p: -_sat_log_jac(p, lu), bounds=(lo, hi), method="trf",
                                x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as e:
            errors.append(f"{type(e).__name__}: {e}")
            continue
        if res.status <= 0 or not np.all(np.isfinite(res.fun)):
            errors.append(res.message)
            continue
        rss = float(res.fun @ res.fun)
        if best is None or rss < best[0]:
            best = (rss, res.x)
    if best is None:
        return SaturatingFit(nan, nan, nan, nan, False, False,
                             "least squares did not converge from any start: " + "; ".join(errors))
    rss, p = best
    a, r, c = float(np.exp(p[0])), float(-np.expm1(p[1])), float(np.exp(p[2]))
    at_bound = bool(np.any(np.isclose(p[1:], lo[1:], rtol=0, atol=1e-6) | np.isclose(p[1:], hi[1:], rtol=0, atol=1e-6)))
    return SaturatingFit(a=a, b=float(a * r * n1**c), c=c, rss=rss, converged=True, at_bound=at_bound, reason=None)


def aicc(rss: float, n: int, k: int) -> tuple[float, str | None]:
    """AICc of a Gaussian model of n residuals with k parameters (σ included): n log(2π RSS/n) + n + 2k
    + 2k(k+1)/(n−k−1). (NaN, reason) when n ≤ k + 1 or RSS is 0 or not finite."""
    if n - k - 1 <= 0:
        return float("nan"), f"AICc with k = {k} needs more than {k + 1} points, got {n}"
    if not (np.isfinite(rss) and rss > 0):
        return float("nan"), f"residual sum of squares is {rss}: the likelihood is undefined"
    return float(n * np.log(2 * np.pi * rss / n) + n + 2 * k + 2 * k * (k + 1) / (n - k - 1)), None


# ---------------------------------------------------------------------------------------------- growth tests


@dataclass(frozen=True)
class GrowthTests:
    """Result of :func:`growth_tests` (criteria C4 v3): does v grow with N as a power law over a common range?

    ``common_sizes``: the N at which every group (seed) has a run; ``min_seeds_per_size``: the fewest groups at
    any N. Over the common sizes, per group g the OLS slope β_g of log v on log N (runs of one group at one N
    averaged first): ``beta`` = mean_g β_g, ``beta_interval`` its Student-t interval, ``p_grows`` the one-sided
    p-value of H₀ β ≤ 0 (t = β/(s/√G), G − 1 degrees of freedom), ``p_two_sided`` of H₀ β = 0. The **upper-half
    slope** (``upper_sizes`` = the upper ⌈K/2⌉ ≥ 2 of the K common sizes): the same per-group slopes over those
    sizes only — a power law keeps its slope there, a curve that saturates (or is flat) loses it, so requiring
    its interval above 0 tells flat and saturating from a power law (``upper_beta``, ``upper_interval``,
    ``p_upper_grows``, and ``slope_ratio`` = upper β / β: ≈ 1 for a power law, → 0 as it saturates). Effect size: ``fold_change`` = exp(β · log(N_max/N_min)) over the common range, with the
    interval from β's. ``reason`` says why a number is NaN (fewer than 2 groups, fewer than 3 common sizes)."""

    common_sizes: tuple[int, ...]
    min_seeds_per_size: int
    n_groups: int
    beta: float
    beta_interval: tuple[float, float]
    p_grows: float
    p_two_sided: float
    upper_sizes: tuple[int, ...]
    upper_beta: float
    upper_interval: tuple[float, float]
    p_upper_grows: float
    slope_ratio: float
    fold_change: float
    fold_change_interval: tuple[float, float]
    level: float
    reason: str | None

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _slopes_over(x: np.ndarray, y: np.ndarray, gidx: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per group, the OLS slope of the per-size mean of y on x = log N over ``sizes`` (log N values)."""
    out = []
    for g in range(int(gidx.max()) + 1):
        m = [y[(gidx == g) & np.isclose(x, xs)].mean() for xs in sizes]
        out.append(_ols(sizes, np.asarray(m))[0])
    return np.asarray(out)


def _t_test(slopes: np.ndarray, level: float) -> tuple[float, tuple[float, float], float, float]:
    """Mean slope, its t-interval, the one-sided p of H₀ mean ≤ 0 and the two-sided p of H₀ mean = 0."""
    from scipy import stats

    G = slopes.size
    mean, sd = float(slopes.mean()), float(slopes.std(ddof=1))
    if sd == 0:
        p1 = 0.0 if mean > 0 else 1.0
        return mean, (mean, mean), p1, 0.0 if mean != 0 else 1.0
    se = sd / np.sqrt(G)
    t = mean / se
    half = float(stats.t.ppf((1 + level) / 2, G - 1) * se)
    return mean, (mean - half, mean + half), float(stats.t.sf(t, G - 1)), float(2 * stats.t.sf(abs(t), G - 1))


def growth_tests(N: ArrayLike, values: ArrayLike, groups: ArrayLike, level: float = 0.95) -> GrowthTests:
    """The tests of :class:`GrowthTests` (formulas there) on runs (N, value, group)."""
    n, v = _check(N, values, groups)
    x, y = np.log(n), np.log(v)
    labels, gidx = np.unique(np.asarray(groups).ravel(), return_inverse=True)
    gidx = gidx.ravel()
    sizes = np.unique(n)
    per_size = [np.unique(gidx[n == s]).size for s in sizes]
    common = np.array([s for s, c in zip(sizes, per_size) if c == labels.size])
    nan2 = (float("nan"), float("nan"))
    base = dict(common_sizes=tuple(int(s) for s in common), min_seeds_per_size=int(min(per_size)),
                n_groups=int(labels.size), level=float(level))
    reason = ("fewer than 2 groups: no spread of per-group slopes" if labels.size < 2 else
              f"fewer than 3 common sizes ({common.size}): no upper-half slope" if common.size < 3 else None)
    if reason:
        return GrowthTests(**base, beta=float("nan"), beta_interval=nan2, p_grows=float("nan"),
                           p_two_sided=float("nan"), upper_sizes=(), upper_beta=float("nan"), upper_interval=nan2,
                           p_upper_grows=float("nan"), slope_ratio=float("nan"), fold_change=float("nan"), fold_change_interval=nan2,
                           reason=reason)
    lx = np.log(common)
    beta, iv, p1, p2 = _t_test(_slopes_over(x, y, gidx, lx), level)
    up = lx[common.size - max(2, -(-common.size // 2)):]
    ub, uiv, up1, _ = _t_test(_slopes_over(x, y, gidx, up), level)
    span = lx[-1] - lx[0]
    return GrowthTests(**base, beta=beta, beta_interval=iv, p_grows=p1, p_two_sided=p2,
                       upper_sizes=tuple(int(round(np.exp(u))) for u in up), upper_beta=ub, upper_interval=uiv,
                       p_upper_grows=up1, slope_ratio=ub / beta if beta != 0 else float("nan"),
                       fold_change=float(np.exp(beta * span)),
                       fold_change_interval=(float(np.exp(iv[0] * span)), float(np.exp(iv[1] * span))), reason=None)


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values: sort the m finite p ascending, p̃₍ᵢ₎ = max_{j ≤ i} min(1, (m − j + 1)·p₍ⱼ₎);
    rejecting where p̃ ≤ α controls the family-wise error rate at α. NaN (or None, JSON's NaN) stays NaN, not
    counted in m."""
    items = sorted(((p, k) for k, p in pvalues.items() if p is not None and np.isfinite(p)))
    m, run, out = len(items), 0.0, {k: float("nan") for k in pvalues}
    for i, (p, k) in enumerate(items):
        run = max(run, min(1.0, (m - i) * p))
        out[k] = run
    return out


# ---------------------------------------------------------------------------------------------- entry point


def analyse_power_law(
    N: ArrayLike, values: ArrayLike, groups: ArrayLike | None = None, level: float = 0.95, n_boot: int = 2000,
    seed: int = 0, min_groups_bootstrap: int = 10,
) -> PowerLawAnalysis:
    """Everything the ledger reports about value ≈ c · N^β (formulas in the module docstring).

    Pooled OLS (β, c, stderr, R²_pooled); R² on per-N means; per-group slopes and their t-interval; the
    group-bootstrap interval only when there are ≥ ``min_groups_bootstrap`` groups (``beta_interval`` is then
    the bootstrap one, else the t-interval); the saturating fit a − b N^(−c) and the AICc comparison.
    ``groups`` is the seed of each run; without it all runs are one group and the t-interval is NaN.
    Raises ValueError on invalid input (non-positive or non-finite N or values, < 3 runs, < 2 distinct N,
    level ∉ (0, 1), n_boot < 1); anything that is merely undefined is NaN with a reason.
    """
    n, v = _check(N, values, groups)
    _check_level_boot(level, n_boot)
    if int(min_groups_bootstrap) < 2:
        raise ValueError(f"min_groups_bootstrap must be ≥ 2, got {min_groups_bootstrap}")
    x, y = np.log(n), np.log(v)
    beta, intercept, r2_pooled, ss_res, stderr = _ols(x, y)
    r2m, r2m_reason = r2_of_means(x, y)

    if groups is None:
        labels, gidx = np.array([0]), np.zeros(n.size, dtype=int)
    else:
        labels, gidx = np.unique(np.asarray(groups).ravel(), return_inverse=True)
        gidx = gidx.ravel()
    slopes = group_slopes(x, y, gidx)
    beta_t, t_iv, t_reason = t_interval(slopes, level)
    if groups is None:
        t_reason = "groups not given: all runs are one group; pass groups = the seed of each run"
    boot_iv, n_valid = None, 0
    if labels.size >= int(min_groups_bootstrap):
        boot_iv, n_valid = _bootstrap(x, y, gidx, n_boot, seed, level)

    sat = fit_saturating(n, v)
    aic_pl, r_pl = aicc(ss_res, n.size, 3)
    aic_sat, r_sat = aicc(sat.rss, n.size, 4) if sat.converged else (float("nan"), f"saturating fit: {sat.reason}")
    delta = aic_pl - aic_sat
    preferred = None if np.isnan(delta) else ("saturating" if delta > AICC_THRESHOLD else "power_law")
    return PowerLawAnalysis(
        beta=beta, prefactor=float(np.exp(intercept)), beta_stderr=stderr, r2_pooled=r2_pooled,
        r2_means=r2m, r2_means_reason=r2m_reason, n_points=int(n.size), n_sizes=int(np.unique(n).size),
        n_groups=int(labels.size), group_labels=tuple(np.asarray(lab).item() for lab in labels),
        group_slopes=tuple(float(s) for s in slopes), beta_t=beta_t, beta_t_interval=t_iv, beta_t_reason=t_reason,
        beta_bootstrap_interval=boot_iv, n_boot_valid=n_valid,
        beta_interval=t_iv if boot_iv is None else boot_iv, interval_method="t" if boot_iv is None else "bootstrap",
        level=float(level), saturating=sat, aicc_power_law=aic_pl, aicc_saturating=aic_sat, delta_aicc=float(delta),
        preferred=preferred, aicc_reason=r_pl or r_sat,
    )
