"""Solvers against closed forms: GD vs torch.optim.SGD, exponential Euler and the reference flow vs the exact
gradient flow of a quadratic, θ(t) = θ₀ − V φ_t(Λ) Vᵀ g₀ with φ_t(λ) = (1 − e^{−λt})/λ (= t at λ = 0)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from eoslib.solvers import AdaptiveGD, ExponentialEuler, GradientDescent, ReferenceFlow, phi1
from eoslib.training import DivergenceError, Stop, train
from conftest import exact_flow, interrupted_and_resumed, tiny_objective
from conftest import quadratic as _quadratic


def quadratic(n=3, d=6, q=2, seed=0):
    """The conftest quadratic with inputs N(0, 9): Hessian eigenvalues 0, 1.60, 18.6, 27.3 (each twice)."""
    return _quadratic(n, d, q, seed, scale=3.0)


def test_phi1_is_safe_at_zero():
    lam = torch.tensor([0.0, 1e-20, 1e-3, 2.0, -1.0], dtype=torch.float64)
    out = phi1(lam, 0.5)
    ref = [0.5, 0.5, -math.expm1(-0.5e-3) / 1e-3, -math.expm1(-1.0) / 2, -math.expm1(0.5) / -1]
    assert torch.allclose(out, torch.tensor(ref, dtype=torch.float64), rtol=1e-14, atol=0)


def test_gd_step_equals_sgd():
    ob = tiny_objective("ce")
    model = ob.to_model(ob.theta0)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    nn.functional.cross_entropy(model(ob.X), ob.y).backward()
    opt.step()
    theta, rec = GradientDescent(0.3).step(ob, ob.theta0)
    ref = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.allclose(theta, ref, atol=1e-15, rtol=0)
    assert rec["dt"] == 0.3


def test_exponential_euler_exact_with_all_stiff_directions():
    ob = quadratic()
    rank = ob.N * ob.Q
    solver = ExponentialEuler(dt_max=0.7, stiff_dim=rank, tol=1e-10)
    theta = ob.theta0
    for _ in range(3):  # exact for any step: the quadratic model is the loss itself
        theta, rec = solver.step(ob, theta)
    assert rec["dt"] == 0.7
    err = (theta - exact_flow(ob, ob.theta0, 2.1)).norm() / ob.theta0.norm()
    assert err < 1e-10, err


def test_exponential_euler_first_order_convergence():
    ob = quadratic()
    T, errors = 1.0, []
    ref = exact_flow(ob, ob.theta0, T)
    for dt in (0.02, 0.01, 0.005):
        res = train(ExponentialEuler(dt_max=dt, stiff_dim=1, tol=1e-10), ob, until=Stop(time=T), progress=False)
        assert res.table.t.iloc[-1] == pytest.approx(T, abs=1e-12)
        errors.append((res.theta - ref).norm().item())
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    print("errors", errors, "observed orders", rates)
    assert np.all(np.abs(rates - 1) < 0.15)  # first order: halving Δt halves the error


def test_reference_flow_matches_closed_form():
    ob = quadratic()
    times = [0.0, 0.1, 0.5, 1.0]
    thetas = ReferenceFlow(rtol=1e-10, atol=1e-12).integrate(ob, ob.theta0, times)
    for t, th in zip(times, thetas):
        assert (th - exact_flow(ob, ob.theta0, t)).norm() / ob.theta0.norm() < 1e-8


def test_adaptive_gd_step_is_c_over_sharpness():
    ob = quadratic()
    theta, rec = AdaptiveGD(dt_max=10.0, c=1.5).step(ob, ob.theta0)
    lam1 = torch.linalg.eigvalsh(ob.hvp(ob.theta0, torch.eye(ob.P, dtype=torch.float64)))[-1].item()
    assert rec["eigs"][0] == pytest.approx(lam1, rel=1e-6)  # the recorded sharpness is the dense λ₁
    assert rec["dt"] == pytest.approx(1.5 / lam1, rel=1e-6)


def test_divergence_names_the_step():
    ob = quadratic()
    lam1 = torch.linalg.eigvalsh(ob.hvp(ob.theta0, torch.eye(ob.P, dtype=torch.float64)))[-1].item()
    with pytest.raises(DivergenceError, match=r"at step \d+"):
        train(GradientDescent(lr=50 / lam1), ob, until=Stop(steps=5000), progress=False)


def test_checkpoint_resume_gives_identical_run(tmp_path):
    ob = tiny_objective("ce")
    full, resumed = interrupted_and_resumed(lambda: ExponentialEuler(0.3), ob, Stop(steps=12), tmp_path / "ck.pt",
                                            at_step=7, checkpoint_every=5)
    assert torch.equal(resumed.theta, full.theta)
    cols = ["step", "t", "loss"]
    assert resumed.table[cols].equals(full.table[cols])


def test_gd_resume_tracks_the_same_steps(tmp_path):
    """The GD step counter that decides when to track the sharpness is checkpointed: an interrupted and resumed
    run with track_every=3 tracks steps 0, 3, 6, 9 exactly as the uninterrupted run (regression: the counter
    restarted at 0 on resume, giving 0, 3, 5, 8, 11)."""
    ob = tiny_objective("ce")
    full, resumed = interrupted_and_resumed(lambda: GradientDescent(0.1, track_every=3), ob, Stop(steps=11),
                                            tmp_path / "gd.pt", at_step=5, checkpoint_every=4)
    tracked = lambda r: list(r.table.dropna(subset=["sharpness"]).step)  # noqa: E731
    assert tracked(full) == [0, 3, 6, 9]
    assert tracked(resumed) == tracked(full)
    assert torch.equal(resumed.theta, full.theta)
