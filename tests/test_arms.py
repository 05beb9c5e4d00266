"""The arms of the C3 intervention (issue 18) against float64 oracles: the sub-chain norms ‖Pₖ‖₂ against dense
``torch.func.jacrev`` Jacobians of the network cut at x̂ᵏ and ``matrix_norm(ord=2)``; the per-layer factors aₖ
against :mod:`eoslib.alignment` (another implementation) and Πₖ aₖ = α; the vector constraint's Jacobian against
central differences; the vector projection and its Gauss–Newton correction holding every entry; the matched
placebo removing exactly the fraction the ᾱ projection would; and every arm end to end on a tiny network."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import jacrev

from conftest import tiny_objective

from eoslib.alignment import alignment_stats
from eoslib.constraints import random_direction
from eoslib.experiments import KINDS
from eoslib.intervention import ChainTerms, PlaceboObjective, ProjectedObjective, ProjectedSolver, constraint
from eoslib.jacobians import mlp_parts
from eoslib.objective import Objective
from eoslib.solvers import AdaptiveGD

F64 = torch.float64


def objective(width=12, depth=5, n=6, d=5, q=3, seed=1, activation="elu") -> Objective:
    return tiny_objective(n=n, d=d, width=width, depth=depth, q=q, activation=activation, seed=seed)


def dense_sub_chains(ob: Objective, theta: torch.Tensor) -> torch.Tensor:
    """‖Pₖ(xᵢ)‖₂ = ‖∂f/∂x̂ᵏ‖₂ from jacrev of the network's tail from the preactivation x̂ᵏ (N × (K−1))."""
    model = ob.to_model(theta)
    lins, acts = mlp_parts(model)
    out = []
    for x in ob.X:
        h, pre = x, []
        for i, lin in enumerate(lins[:-1]):
            h = lin(h)
            pre.append(h)
            h = acts[i](h)

        def tail(z, k):
            for j in range(k, len(lins) - 1):
                z = lins[j + 1](acts[j](z))
            return z

        out.append([float(torch.linalg.matrix_norm(jacrev(lambda z: tail(z, k))(pre[k].detach()), ord=2))
                    for k in range(len(pre))])
    return torch.tensor(out, dtype=F64)


@pytest.mark.parametrize("activation", ["elu", "tanh"])
def test_sub_chains_and_factors_against_dense_oracles(activation):
    ob = objective(activation=activation)
    theta = ob.theta0 + 0.05 * torch.randn(ob.P, dtype=F64, generator=torch.Generator().manual_seed(2))
    t = ChainTerms(ob, tol=1e-13, extended=True).evaluate(theta).terms
    dense = dense_sub_chains(ob, theta)
    assert torch.allclose(t.log_sub_chains.exp(), dense, rtol=1e-10, atol=0)
    assert torch.allclose(t.log_sub_chains[:, 0], t.log_chain, rtol=1e-10)
    _, _, fac = alignment_stats(ob.to_model(theta), ob.X)
    assert torch.allclose(t.factors, torch.as_tensor(np.asarray(fac), dtype=F64), rtol=1e-8, atol=1e-12)
    assert torch.allclose(t.factors.prod(1), t.log_alpha.exp(), rtol=1e-10)  # Πₖ aₖ = α
    sa = t.sub_alphas
    assert torch.allclose(sa[:, 0], t.log_alpha.exp(), rtol=1e-12) and torch.allclose(sa[:, -1], torch.ones(6, dtype=F64))
    s = t.summary()
    assert {"abar_2", "abar_3", "afac_mean_1", "afac_mean_4"} <= set(s) and "abar_4" not in s


def test_vector_constraint_jacobian_matches_central_differences():
    """Each of the 2K − 3 entries' gradient against (c(θ + hv) − c(θ − hv))/2h along 3 random unit directions,
    h = 1e-6: truncation h²·c‴ and rounding eps·|c|/h ~ 1e-10 against slopes ≥ 1e-3, so 1e-5 relative. (Steps of
    1e-4 along v are already off by 3 %: a singular value or the top output direction u_K turns that fast here.)"""
    ob = objective()
    theta = ob.theta0 + 0.05 * torch.randn(ob.P, dtype=F64, generator=torch.Generator().manual_seed(3))
    con = constraint("vector", ob, tol=1e-13)
    c, A = con.value_and_grad(theta)
    assert c.shape == (2 * 5 - 3,) and A.shape == (7, ob.P)
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        v = torch.randn(ob.P, generator=g, dtype=F64)
        v /= v.norm()
        h = 1e-6
        fd = (con.value(theta + h * v) - con.value(theta - h * v)) / (2 * h)
        assert torch.allclose(A @ v, fd, rtol=1e-5, atol=0), (A @ v, fd)


def test_vector_projection_holds_every_entry():
    """Projected sharpness-adaptive GD with the Gauss–Newton correction: after 15 steps every āₖ and ᾱₖ is at its
    target within the correction's tolerance, while the free flow moves them by > 1e-3; removed fraction in [0, 1]."""
    ob = objective()
    con = constraint("vector", ob, tol=1e-13)
    po = ProjectedObjective(ob, con)
    solver = ProjectedSolver(AdaptiveGD(dt_max=0.5, c=1.0), po)
    theta, free = ob.theta0.clone(), ob.theta0.clone()
    c0 = con.value(theta)
    for _ in range(15):
        theta, rec = solver.step(po, theta)
        free, _ = AdaptiveGD(dt_max=0.5, c=1.0).step(ob, free)
        assert 0.0 <= rec["removed"] <= 1.0 and rec["rank"] == 7
    assert float((con.value(theta) - c0).abs().max()) <= po.tol
    assert float((con.value(free) - c0).abs().max()) > 1e-3
    assert float(ob.loss(theta)) < float(ob.loss(ob.theta0))


def test_placebo_removes_the_fraction_holding_abar_would():
    ob = objective()
    theta = ob.theta0 + 0.05 * torch.randn(ob.P, dtype=F64, generator=torch.Generator().manual_seed(5))
    ref = constraint("alpha", ob, tol=1e-13)
    u = random_direction(ob.P, seed=1)
    pl = PlaceboObjective(ob, ref, u)
    g = ob.grad(theta)
    w = pl.project(theta, g)
    _, gc = ref.value_and_grad(theta)
    rho = float((gc @ g) ** 2 / ((gc @ gc) * (g @ g)))
    rec = pl.log[-1][1]
    assert rec["removed"] == pytest.approx(rho, rel=1e-10) and rec["rho_target"] == pytest.approx(rho, rel=1e-12)
    assert float(w @ w) == pytest.approx((1 - rho) * float(g @ g), rel=1e-10)
    # not the ᾱ projection: the placebo's velocity still changes ᾱ to first order
    held = ProjectedObjective(ob, ref).project(theta, g)
    assert abs(float(gc @ held)) < 1e-12 * float(gc.norm() * g.norm()) < abs(float(gc @ w))
    assert pl.correct(theta)[0] is theta


def tiny(hold, alpha_star=None) -> dict:
    return {"kind": "intervene", "setting": {"name": "d", "dataset": "digits", "activation": "elu", "loss": "ce",
                                             "classes": 3, "standardize": False},
            "n": 24, "seed": 0, "model": {"width": 16, "depth": 4, "init": "default", "dtype": "float64"},
            "threads": 1, "loss_threshold": 0.3, "device": "cpu", "solver": {"name": "agd", "dt_max": 0.5, "c": 1.0},
            "probe": 12, "measure_every": 5, "max_steps": 400, "time": 40.0, "levels": [0.5, 1.0],
            "curvature": ["hessian"], "checkpoint_every": 50, "check_every": 10, "hold": hold,
            "alpha_star": alpha_star}


@pytest.mark.parametrize("hold", ["vector", "chain", "placebo"])
def test_every_arm_end_to_end(tmp_path, hold):
    tab, info = KINDS["intervene"].run(tiny(hold, 0.7), tmp_path, False)
    assert info["switched"] and info["arm"] == hold
    held = tab[tab["phase"] == "hold"]
    assert held["removed"].dropna().between(0, 1).all() and held["output_weight_norm"].notna().all()
    drift = info["hold_drift"]
    if hold == "vector":
        for k in ("abar", "abar_2", "afac_mean_1", "afac_mean_3"):
            assert max(abs(drift[k]["min"]), abs(drift[k]["max"])) < 1e-9, k
    elif hold == "chain":
        assert max(abs(drift["log_chain_mean"]["min"]), abs(drift["log_chain_mean"]["max"])) < 1e-9
    else:  # the placebo holds nothing: ᾱ moves
        assert max(abs(drift["abar"]["min"]), abs(drift["abar"]["max"])) > 1e-4
        assert held["rho_target"].notna().sum() >= 1


def test_the_mechanism_control_trains_the_taylor_model(tmp_path):
    tab, info = KINDS["intervene"].run(tiny("taylor"), tmp_path, False)
    tl = info["taylor"]
    assert info["arm"] == "taylor" and tl["lam_start"] > 0 and tl["lam_peak"] >= tl["lam_start"]
    assert tl["sharpening"] == pytest.approx(tl["lam_peak"] / tl["lam_min"])
    assert tab["loss"].iloc[-1] < tab["loss"].iloc[0]


def test_the_placebo_follows_the_scalar_arms_removed_fraction_over_time(tmp_path):
    """The placebo removes, at each flow time since the switch, the fraction the scalar arm removed then (its record
    interpolated in time; the scalar arm run in-process gives the same bits as its own run, so the two placebos
    — beside a finished scalar arm and alone — agree to the last bit)."""
    from eoslib.run import execute_run

    name = "intervene/d/seed0/a0.7-{}"
    execute_run(name.format("alpha"), tiny("alpha", 0.7), tmp_path / "both")
    execute_run(name.format("placebo"), tiny("placebo", 0.7), tmp_path / "both")
    execute_run(name.format("placebo"), tiny("placebo", 0.7), tmp_path / "alone")  # no sibling: computed here
    read = lambda root, arm: pd.read_csv(root / "runs" / name.format(arm) / "trajectory.csv")  # noqa: E731
    a, pl, alone = read(tmp_path / "both", "alpha"), read(tmp_path / "both", "placebo"), read(tmp_path / "alone", "placebo")
    timing = [c for c in pl if "seconds" in c]
    pd.testing.assert_frame_equal(pl.drop(columns=timing), alone.drop(columns=timing))
    assert not (tmp_path / "alone" / "runs" / name.format("placebo") / "alpha-arm").exists()
    ha, hp = a[a.phase == "hold"], pl[pl.phase == "hold"].dropna(subset=["removed"])
    t0 = ha.t.iloc[0]
    ok = ha.removed.notna()
    want = np.interp(hp.t - t0, ha.t[ok] - t0, ha.removed[ok])
    assert np.allclose(hp.removed, want, rtol=1e-9, atol=1e-12)
    assert np.allclose(hp.rho_target, want, rtol=1e-12, atol=1e-15)
