"""C4 v3's statistics (eoslib.powerlaw.growth_tests, holm) against independent computations: numpy.polyfit per
seed, scipy's one-sample t-test and t-interval, hand-computed Holm adjustments, and curves whose local slope is
known in closed form (a power law keeps it at the top of the range, a saturating curve loses it)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from eoslib.powerlaw import growth_tests, holm

SIZES = np.array([64, 128, 256, 512, 1024, 2048, 4096])


def runs(fn, seeds=5, noise=0.02, skip=None, rng=0):
    r = np.random.default_rng(rng)
    N, v, g = [], [], []
    for s in range(seeds):
        slope_noise = r.normal(0, noise)
        for n in SIZES:
            if skip and (s, n) in skip:
                continue
            N.append(n), g.append(s)
            v.append(fn(n) * np.exp(slope_noise * np.log(n / 64) + r.normal(0, noise)))
    return np.array(N), np.array(v), np.array(g)


def test_slopes_interval_and_p_match_scipy():
    N, v, g = runs(lambda n: 0.3 * n ** 0.1)
    gt = growth_tests(N, v, g)
    slopes = [np.polyfit(np.log(N[g == s]), np.log(v[g == s]), 1)[0] for s in range(5)]
    assert gt.beta == pytest.approx(np.mean(slopes), rel=1e-10)
    assert gt.p_grows == pytest.approx(stats.ttest_1samp(slopes, 0, alternative="greater").pvalue, rel=1e-8)
    assert gt.p_two_sided == pytest.approx(stats.ttest_1samp(slopes, 0).pvalue, rel=1e-8)
    lo, hi = stats.t.interval(0.95, 4, loc=np.mean(slopes), scale=stats.sem(slopes))
    assert gt.beta_interval == pytest.approx((lo, hi), rel=1e-8)
    assert gt.common_sizes == tuple(SIZES) and gt.upper_sizes == (512, 1024, 2048, 4096)
    assert gt.fold_change == pytest.approx(np.exp(gt.beta * np.log(64)), rel=1e-12)
    assert gt.upper_interval[0] > 0 and 0.5 < gt.slope_ratio < 1.5  # a power law keeps its slope


def test_common_range_drops_sizes_a_seed_lacks():
    N, v, g = runs(lambda n: n ** 0.2, skip={(0, 4096), (3, 64)})
    gt = growth_tests(N, v, g)
    assert gt.common_sizes == (128, 256, 512, 1024, 2048) and gt.min_seeds_per_size == 4
    keep = np.isin(N, gt.common_sizes)
    slopes = [np.polyfit(np.log(N[keep & (g == s)]), np.log(v[keep & (g == s)]), 1)[0] for s in range(5)]
    assert gt.beta == pytest.approx(np.mean(slopes), rel=1e-10)


def test_flat_and_saturating_are_not_power_laws():
    flat = growth_tests(*runs(lambda n: 0.7))
    assert flat.upper_interval[0] <= 0 <= flat.upper_interval[1] or flat.p_upper_grows > 0.05
    # a − b·N^(−1): local slope b/(a N − b) is 1/63 at N = 64 and ≈ 2.4e-4 at 4096; noise-free and unmistakable
    sat = growth_tests(*runs(lambda n: 1 - 0.9 * (64 / n), noise=1e-4))
    assert sat.beta > 0 and sat.p_grows < 1e-6  # it does grow over the range ...
    assert sat.slope_ratio < 0.2  # ... but loses its slope at the top, as a power law would not


def test_falling_values_do_not_grow():
    gt = growth_tests(*runs(lambda n: n ** -0.3))
    assert gt.beta < 0 and gt.p_grows > 0.99 and gt.p_two_sided < 1e-3


def test_reasons_instead_of_numbers():
    N, v, g = runs(lambda n: n ** 0.1, seeds=1)
    assert "fewer than 2 groups" in growth_tests(N, v, g).reason
    N, v, g = runs(lambda n: n ** 0.1, seeds=2)
    keep = N <= 128
    assert "fewer than 3 common sizes" in growth_tests(N[keep], v[keep], g[keep]).reason


def test_holm_by_hand():
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan")})
    assert adj["a"] == pytest.approx(0.03) and adj["c"] == pytest.approx(0.06) and adj["b"] == pytest.approx(0.06)
    assert np.isnan(adj["d"])
    assert holm({"x": 0.6, "y": 0.2}) == pytest.approx({"x": 0.6, "y": 0.4})
    assert holm({"x": None, "y": 0.2})["y"] == pytest.approx(0.2)  # None: JSON's NaN
