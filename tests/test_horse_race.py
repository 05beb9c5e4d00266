"""The predictor horse race (eoslib.horse_race) against oracles written here with numpy.linalg.lstsq.

The oracle fits both nested models explicitly — an intercept column, or one dummy column per group for the fixed
effects — and takes ΔR² = (SSR_base − SSR_full)/SST (SST within groups for fixed effects, from pandas groupby);
the partial correlation comes from the inverse covariance matrix of [y, x, Z(, dummies)]:
ρ = −Ω_yx/√(Ω_yy Ω_xx). The implementation uses neither (it residualises by an SVD basis, Frisch–Waugh–Lovell).
Constructed data give known answers: y = a·x₁ exactly → ΔR²(x₁ | x₂) = 1 − R²(x₂); x₁ built orthogonal to y
after the base → ΔR² = 0 exactly.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eoslib.horse_race import BASES, horse_race, increment, partial_correlation


def ssr(y: np.ndarray, D: np.ndarray) -> float:
    """Residual sum of squares of y on the columns of D (lstsq, minimum-norm for rank-deficient D)."""
    beta = np.linalg.lstsq(D, y, rcond=None)[0]
    r = y - D @ beta
    return float(r @ r)


def oracle(y, x, Z, groups=None, partial: bool = True) -> tuple[float, float, float]:
    """(R²_base, ΔR², partial r) by two explicit lstsq fits (intercept or group dummies) and the precision
    matrix (NaN without ``partial``: a collinear Z has no precision matrix)."""
    n = len(y)
    if groups is None:
        F = np.ones((n, 1))
        sst = float(((y - y.mean()) ** 2).sum())
    else:
        F = pd.get_dummies(pd.Series(groups)).to_numpy(float)
        sst = float(((y - pd.Series(y).groupby(groups).transform("mean").to_numpy()) ** 2).sum())
    base, full = np.column_stack([F, Z]), np.column_stack([F, Z, x])
    s_base, s_full = ssr(y, base), ssr(y, full)
    if not partial:
        return 1 - s_base / sst, (s_base - s_full) / sst, np.nan
    extra = F[:, 1:] if groups is not None else np.zeros((n, 0))
    omega = np.linalg.inv(np.cov(np.column_stack([y, x, Z, extra]).T))
    return 1 - s_base / sst, (s_base - s_full) / sst, -omega[0, 1] / np.sqrt(omega[0, 0] * omega[1, 1])


def trajectories(seed: int = 0, groups: int = 3, n: int = 40) -> pd.DataFrame:
    """Fake trajectory rows: per group, t rising, log norms and log ᾱ rising with t and noise, group-specific
    levels; log λ_max a mix of them plus noise."""
    rng = np.random.default_rng(seed)
    out = []
    for g in range(groups):
        t = np.linspace(0, 10, n)
        norms = 0.1 * t + rng.normal(0, 0.3, n) + g
        abar = 0.05 * t + 0.5 * norms + rng.normal(0, 0.2, n) - g
        gain = 0.3 * norms + rng.normal(0, 0.5, n)
        out_norm = 1.0 + 0.01 * t + rng.normal(0, 0.05, n)
        lam = 0.8 * abar + 0.5 * norms + 0.02 * t + rng.normal(0, 0.1, n) + 2 * g
        out.append(pd.DataFrame({"group": f"seed{g}", "t": t, "log_norms": norms, "log_abar": abar,
                                 "log_input_gain": gain, "log_output_norm": out_norm, "log_lam_max": lam}))
    return pd.concat(out, ignore_index=True)


def test_exact_linear_relation_gives_the_unexplained_share():
    """y = a·x₁ exactly: ΔR² of x₁ beyond x₂ is 1 − R²(x₂), the full R² is 1 and the partial r is sign(a)."""
    rng = np.random.default_rng(1)
    x1 = rng.normal(size=50)
    x2 = 0.6 * x1 + rng.normal(size=50)
    for a in (2.5, -0.7):
        fit = increment(a * x1, x1, x2[:, None])
        r2_x2 = np.corrcoef(a * x1, x2)[0, 1] ** 2
        assert fit.delta_r2 == pytest.approx(1 - r2_x2, abs=1e-12)
        assert fit.r2_full == pytest.approx(1.0, abs=1e-12) and fit.r2_base == pytest.approx(r2_x2, abs=1e-12)
        assert fit.partial_r == pytest.approx(np.sign(a), abs=1e-12) and fit.coef == pytest.approx(a, rel=1e-12)


def test_x_orthogonal_to_y_after_the_base_adds_nothing():
    """x₁ = (a vector orthogonal to 1, x₂ and y's residual) + c·x₂: ΔR² = 0 and partial r = 0 to rounding; and an
    independent random x₁ adds ΔR² of order 1/n only."""
    rng = np.random.default_rng(2)
    n = 200
    x2, y = rng.normal(size=n), rng.normal(size=n)
    B = np.column_stack([np.ones(n), x2, y])
    q, _ = np.linalg.qr(B)
    w = rng.normal(size=n)
    w -= q @ (q.T @ w)
    fit = increment(y, w + 3 * x2, x2[:, None])
    assert abs(fit.delta_r2) < 1e-15 and abs(fit.partial_r) < 1e-13
    rnd = increment(y, rng.normal(size=n), x2[:, None])
    assert 0 <= rnd.delta_r2 < 0.05


@pytest.mark.parametrize("fe", [False, True])
def test_horse_race_pooled_rows_match_the_lstsq_oracle(fe):
    tab = trajectories()
    res = horse_race(tab, fixed_effects=fe)
    pooled = res[res.scope == "pooled"].set_index("base")
    assert list(pooled.index) == list(BASES) and (pooled.fixed_effects == fe).all()
    for name, cols in BASES.items():
        Z = tab[list(cols)].to_numpy(float).reshape(len(tab), -1)
        r2b, dr2, pr = oracle(tab.log_lam_max.to_numpy(), tab.log_abar.to_numpy(), Z,
                              tab.group.to_numpy() if fe else None)
        row = pooled.loc[name]
        assert row.r2_base == pytest.approx(r2b, abs=1e-10), name
        assert row.delta_r2 == pytest.approx(dr2, abs=1e-10), name
        assert row.partial_r == pytest.approx(pr, abs=1e-10), name
        assert row.r2_full == pytest.approx(row.r2_base + row.delta_r2, abs=1e-14)
        assert row.n == len(tab) and row.k == len(cols)


def test_horse_race_per_group_rows_match_the_oracle_on_each_group():
    tab = trajectories(seed=3)
    res = horse_race(tab, bases={"all": BASES["all"]})
    per = res[res.scope == "group"]
    assert list(per.group) == ["seed0", "seed1", "seed2"]
    for _, row in per.iterrows():
        d = tab[tab.group == row.group]
        r2b, dr2, pr = oracle(d.log_lam_max.to_numpy(), d.log_abar.to_numpy(), d[list(BASES["all"])].to_numpy(float))
        assert (row.r2_base, row.delta_r2, row.partial_r) == pytest.approx((r2b, dr2, pr), abs=1e-10)
        assert row.n == 40 and row.k == 4 and not row.fixed_effects


def test_fixed_effects_remove_a_between_group_association():
    """x and y share only the group levels (within groups x's deviations are built orthogonal to y's): pooled
    with one intercept x explains most of y; with fixed effects it explains nothing."""
    rng = np.random.default_rng(4)
    rows = []
    for g, level in enumerate((-3.0, 0.0, 3.0)):
        e = rng.normal(size=30)
        u = rng.normal(size=30)
        c = np.column_stack([np.ones(30), e])
        q, _ = np.linalg.qr(c)
        u -= q @ (q.T @ u)
        rows.append(pd.DataFrame({"group": g, "log_lam_max": level + 0.3 * e, "log_abar": level + 0.3 * u,
                                  "t": np.arange(30.0)}))
    tab = pd.concat(rows, ignore_index=True)
    free = horse_race(tab, bases={"none": ()}, fixed_effects=False, per_group=False).iloc[0]
    fe = horse_race(tab, bases={"none": ()}, fixed_effects=True, per_group=False).iloc[0]
    assert free.delta_r2 > 0.8
    assert abs(fe.delta_r2) < 1e-14 and abs(fe.partial_r) < 1e-12
    assert partial_correlation(tab, controls=(), group="group") == pytest.approx(fe.partial_r, abs=1e-15)


def test_collinear_and_constant_base_columns_and_missing_values():
    """A base with a duplicated column and a constant one: rank 1, the same ΔR² as the oracle (lstsq minimum
    norm); rows with NaN in a used column are dropped for that base only."""
    tab = trajectories(seed=5, groups=1)
    tab["dup"], tab["const"] = 2 * tab["log_norms"], 7.0
    tab.loc[3, "log_input_gain"] = np.nan
    res = horse_race(tab, bases={"collinear": ("log_norms", "dup", "const"), "gain": ("log_input_gain",)},
                     per_group=False).set_index("base")
    Z = tab[["log_norms", "dup", "const"]].to_numpy(float)
    _, dr2, _ = oracle(tab.log_lam_max.to_numpy(), tab.log_abar.to_numpy(), Z, partial=False)
    assert res.loc["collinear"].k == 1 and res.loc["collinear"].delta_r2 == pytest.approx(dr2, abs=1e-10)
    assert res.loc["collinear"].partial_r == pytest.approx(partial_correlation(tab, controls=["log_norms"]), abs=1e-12)
    assert res.loc["gain"].n == len(tab) - 1 and res.loc["collinear"].n == len(tab)
    d = tab.drop(index=3)
    _, dr2, _ = oracle(d.log_lam_max.to_numpy(), d.log_abar.to_numpy(), d[["log_input_gain"]].to_numpy(float))
    assert res.loc["gain"].delta_r2 == pytest.approx(dr2, abs=1e-10)


def test_degenerate_fits():
    """x in the span of the base: ΔR² = 0, partial r NaN; too few rows: NaN; a missing column names itself."""
    tab = trajectories(seed=6, groups=1, n=10)
    tab["x_copy"] = 3 * tab["t"] - 1
    r = horse_race(tab, x="x_copy", bases={"time": ("t",)}, per_group=False).iloc[0]
    assert r.delta_r2 == 0.0 and np.isnan(r.partial_r)
    small = increment(np.arange(3.0), np.array([0.0, 1.0, 0.5]), np.array([[1.0], [0.0], [2.0]]))
    assert np.isnan(small.delta_r2) and small.n == 3
    with pytest.raises(KeyError, match="log_output_norm"):
        horse_race(tab.drop(columns="log_output_norm"), bases={"o": ("log_output_norm",)})
    default = horse_race(tab.drop(columns="log_output_norm"), per_group=False)
    assert set(default.base) == {"none", "norms", "time", "input_gain"}
