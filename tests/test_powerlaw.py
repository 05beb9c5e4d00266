"""Power-law fit value ≈ c·N^β: recovery, agreement with scipy, bootstrap over groups, input checks."""
import json
import math
from dataclasses import FrozenInstanceError

import numpy as np
import pytest
from scipy import stats

from eoslib.powerlaw import PowerLawFit, fit_power_law

GRID = np.geomspace(16, 2048, 8)


def _synthetic(beta, c, noise, seeds=5, rng_seed=0):
    """Geometric grid of N × `seeds` replicates, log-normal noise: v = c·N^β·exp(noise·ε)."""
    rng = np.random.default_rng(rng_seed)
    N = np.tile(GRID, seeds)
    groups = np.repeat(np.arange(seeds), GRID.size)
    return N, c * N**beta * np.exp(noise * rng.standard_normal(N.size)), groups


def test_recovers_positive_beta_with_group_bootstrap():
    N, v, g = _synthetic(0.5, 2.0, 0.1)
    fit = fit_power_law(N, v, groups=g)
    assert abs(fit.beta - 0.5) < 0.03 and abs(math.log(fit.prefactor / 2.0)) < 0.15
    lo, hi = fit.beta_interval
    assert lo < 0.5 < hi and lo < fit.beta < hi
    assert fit.n_points == 40 and fit.n_groups == 5 and fit.n_boot_valid == 2000 and fit.r2 > 0.95


def test_recovers_negative_beta_with_point_bootstrap():
    N, v, _ = _synthetic(-0.3, 5.0, 0.2, seeds=3, rng_seed=1)
    fit = fit_power_law(N, v)
    assert fit.beta < 0 and abs(fit.beta + 0.3) < 0.06
    lo, hi = fit.beta_interval
    assert lo < -0.3 < hi and hi < 0
    assert fit.n_groups is None
    # the interval's width is of the order of the OLS standard error (≈ 2·1.96·stderr)
    assert 0.5 < (hi - lo) / (2 * 1.96 * fit.beta_stderr) < 2


def test_ols_matches_scipy_linregress():
    N, v, _ = _synthetic(0.7, 0.3, 0.5, seeds=2, rng_seed=2)
    fit = fit_power_law(N, v, n_boot=10)
    ref = stats.linregress(np.log(N), np.log(v))
    assert abs(fit.r2 - ref.rvalue**2) < 1e-12
    assert abs(fit.beta - ref.slope) < 1e-12
    assert abs(math.log(fit.prefactor) - ref.intercept) < 1e-12 and abs(fit.intercept - ref.intercept) < 1e-12
    assert abs(fit.beta_stderr - ref.stderr) < 1e-12


def test_exact_power_law():
    N = np.array([10.0, 100.0, 1000.0, 10.0])
    fit = fit_power_law(N, 3.0 * N**-0.25, n_boot=50)
    assert fit.beta == pytest.approx(-0.25, abs=1e-14) and fit.prefactor == pytest.approx(3.0, rel=1e-13)
    assert fit.r2 == pytest.approx(1.0, abs=1e-14) and fit.beta_stderr < 1e-12
    assert fit.predict(1e4) == pytest.approx(0.3, rel=1e-12)
    np.testing.assert_allclose(fit.predict([10.0, 1000.0]), [3.0 * 10**-0.25, 3.0 * 1000**-0.25], rtol=1e-12)


def test_group_bootstrap_resamples_whole_groups():
    """Four seeds, each an exact power law with slope 0.3, 0.4, 0.6 or 0.7 on the same N grid: a replicate's
    pooled slope is the mean of the 4 drawn group slopes, so it lies in [0.3, 0.7] and has sd 0.158/2."""
    slopes = [0.3, 0.4, 0.6, 0.7]
    N = np.tile(GRID, 4)
    g = np.repeat(np.array(["a", "b", "c", "d"]), GRID.size)
    v = np.concatenate([GRID**s for s in slopes])
    fit = fit_power_law(N, v, groups=g, n_boot=4000, seed=1)
    lo, hi = fit.beta_interval
    assert fit.beta == pytest.approx(0.5, abs=1e-12) and fit.n_groups == 4
    assert 0.3 <= lo < 0.5 < hi <= 0.7
    assert 0.3 < (hi - lo) / (2 * 1.96 * np.std(slopes) / 2) < 1.3
    # resampling single points instead mixes seeds within an N: a different interval
    assert fit_power_law(N, v, n_boot=4000, seed=1).beta_interval != fit.beta_interval


def test_degenerate_replicates_are_dropped():
    """With 3 points, 1/9 of point-resamples hit a single distinct N and have no slope."""
    fit = fit_power_law([1.0, 2.0, 4.0], [1.0, 1.5, 2.1], n_boot=3000, seed=0)
    assert 0.8 * 3000 < fit.n_boot_valid < 3000
    assert np.isfinite(fit.beta_interval).all()


def test_single_group_gives_fit_without_interval():
    """One seed: β, c, R² are still defined, but there is nothing to resample between groups."""
    N, v, g = _synthetic(0.5, 1.0, 0.1, seeds=1)
    fit = fit_power_law(N, v, groups=g)
    assert fit.beta == fit_power_law(N, v).beta and fit.n_groups == 1 and fit.n_boot_valid == 0
    assert np.isnan(fit.beta_interval).all()


def test_deterministic_given_seed_and_serialisable():
    N, v, g = _synthetic(0.5, 1.0, 0.3)
    a, b = fit_power_law(N, v, groups=g, seed=7), fit_power_law(N, v, groups=g, seed=7)
    assert a == b
    assert fit_power_law(N, v, groups=g, seed=8).beta_interval != a.beta_interval
    d = json.loads(json.dumps(a.to_dict()))
    assert d["beta"] == a.beta and d["beta_interval"] == list(a.beta_interval) and d["n_points"] == 40
    assert isinstance(a, PowerLawFit)
    with pytest.raises(FrozenInstanceError):
        a.beta = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "N, v, kw, match",
    [
        ([1, 2, 0], [1, 2, 3], {}, "N must be finite and > 0"),
        ([1, 2, -3], [1, 2, 3], {}, "N must be finite and > 0"),
        ([1, 2, 3], [1, np.nan, 3], {}, "values must be finite and > 0"),
        ([1, 2, np.inf], [1, 2, 3], {}, "N must be finite"),
        ([1, 2, 3], [1, 0, 3], {}, "values must be finite and > 0"),
        ([1, 2, 3], [1, 2], {}, "differ in length"),
        ([1, 2], [1, 2], {}, "at least 3 points"),
        ([5, 5, 5], [1, 2, 3], {}, "2 distinct N"),
        ([1, 2, 3], [1, 2, 3], {"groups": [0, 1]}, "groups has length"),
        ([1, 2, 3], [1, 2, 3], {"level": 1.0}, "level"),
        ([1, 2, 3], [1, 2, 3], {"n_boot": 0}, "n_boot"),
    ],
)
def test_rejects_bad_input(N, v, kw, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(N, v, **kw)
