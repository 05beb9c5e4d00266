"""The training loop: landing on a loss threshold and on a flow time against the exact flow of a quadratic,
the final row keeping every solver field, checkpoints resuming the landing state."""
import math

import numpy as np
import pytest
import torch

from eoslib.solvers import ExponentialEuler, GradientDescent, phi1
from eoslib.training import Stop, train
from conftest import interrupted_and_resumed, quadratic


def exact_loss(ob, t: float) -> float:
    """L(θ(t)) on the exact gradient flow θ(t) = θ* + e^{−At}(θ₀ − θ*) of the quadratic, from the dense Hessian."""
    A = ob.hvp(ob.theta0, torch.eye(ob.P, dtype=torch.float64))
    lam, V = torch.linalg.eigh((A + A.T) / 2)
    lam = torch.where(lam.abs() < 1e-12, torch.zeros_like(lam), lam)
    th = ob.theta0 - V @ (phi1(lam, t) * (V.T @ ob.grad(ob.theta0)))
    return ob.loss(th).item()


def exact_crossing(ob, target: float) -> float:
    """The flow time at which the exact flow's loss equals ``target`` (bisection; L(t) is decreasing)."""
    lo, hi = 0.0, 1.0
    while exact_loss(ob, hi) > target:
        hi *= 2
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if exact_loss(ob, mid) > target else (lo, mid)
    return (lo + hi) / 2


def test_lands_on_the_loss_threshold_of_the_exact_flow():
    """Exponential Euler with every Hessian direction stiff integrates the quadratic exactly, for any Δt; so the
    landed end point must sit where the exact flow's loss crosses the threshold, to the 1 % of the loss
    tolerance (the loss is smooth in t: a 1 % loss error is a small time error)."""
    ob = quadratic()
    target = 0.3 * ob.loss(ob.theta0).item()
    solver = ExponentialEuler(dt_max=0.5, stiff_dim=ob.N * ob.Q, tol=1e-10)
    r = train(solver, ob, until=Stop(loss=target), progress=False)
    end = r.table.iloc[-1]
    assert r.stopped_by == "loss" and bool(end["landed"])
    assert abs(end["loss"] / target - 1) <= 0.01
    t_star = exact_crossing(ob, target)
    # |dL/dt| = ‖∇L‖² near the crossing bounds the time error of a 1 % loss error: Δt ≤ 0.01·L/‖∇L‖²
    g2 = ob.grad(r.theta).pow(2).sum().item()
    assert abs(end["t"] - t_star) <= 0.01 * target / g2 * 1.01 + 1e-9
    assert r.table["t"].iloc[-2] < t_star <= end["t"] + 1e-9 or abs(end["t"] - t_star) < 1e-6
    # the table is consistent: t of each row = Σ of the Δt before it, with the shortened last step
    dts = r.table["dt"].to_numpy()[:-1]
    assert np.allclose(np.cumsum(dts), r.table["t"].to_numpy()[1:], rtol=0, atol=1e-12)


def test_landing_can_be_switched_off_and_gd_cannot_land():
    ob = quadratic()
    target = 0.3 * ob.loss(ob.theta0).item()
    lam1 = torch.linalg.eigvalsh(ob.hvp(ob.theta0, torch.eye(ob.P, dtype=torch.float64)))[-1].item()
    r = train(ExponentialEuler(dt_max=0.5, stiff_dim=ob.N * ob.Q, tol=1e-10), ob,
              until=Stop(loss=target, land=False), progress=False)
    assert not bool(r.table["landed"].iloc[-1]) and r.table["loss"].iloc[-1] < target
    # the final row keeps every field the solver recorded at that iterate (no whitelist: new fields survive)
    assert {"lam1", "eig_matvecs", "grad_norm", "sharpness"} <= set(r.table.columns)
    assert np.isfinite(r.table["eig_matvecs"].iloc[-1]) and np.isnan(r.table["dt"].iloc[-1])
    g = train(GradientDescent(0.5 / lam1), ob, until=Stop(loss=target), progress=False)
    assert g.stopped_by == "loss" and not bool(g.table["landed"].iloc[-1])


def test_final_row_keeps_new_solver_fields():
    """Regression: the threshold row was filtered through a whitelist of columns, so a solver's new record
    field vanished on exactly the row the sweep's threshold end point reads."""

    class Recording(GradientDescent):
        def step(self, objective, theta, dt_cap=None):
            th, rec = super().step(objective, theta, dt_cap)
            return th, rec | {"stages": 7}

    ob = quadratic()
    r = train(Recording(0.01), ob, until=Stop(loss=0.9 * ob.loss(ob.theta0).item(), land=False), progress=False)
    assert r.stopped_by == "loss" and r.table["stages"].iloc[-1] == 7


def test_time_stop_is_exact_and_resume_keeps_landing(tmp_path):
    ob = quadratic()
    T = 1.3
    r = train(ExponentialEuler(dt_max=0.4, stiff_dim=1, tol=1e-10), ob, until=Stop(time=T), progress=False)
    assert r.stopped_by == "time" and r.table["t"].iloc[-1] == pytest.approx(T, abs=1e-12)
    target = 0.05 * ob.loss(ob.theta0).item()
    mk = lambda: ExponentialEuler(dt_max=0.05, stiff_dim=ob.N * ob.Q, tol=1e-10)  # noqa: E731
    full, resumed = interrupted_and_resumed(mk, ob, Stop(loss=target), tmp_path / "ck.pt", at_step=3,
                                            checkpoint_every=2)
    assert bool(resumed.table["landed"].iloc[-1])
    assert resumed.table["t"].iloc[-1] == pytest.approx(full.table["t"].iloc[-1], rel=0, abs=1e-12)
    assert torch.allclose(resumed.theta, full.theta, rtol=0, atol=1e-12)
    assert math.isclose(resumed.table["loss"].iloc[-1], full.table["loss"].iloc[-1], rel_tol=1e-12)


def test_failed_eigen_solve_stops_the_run_naming_the_step():
    """A solver whose eigen-solve cannot converge stops the run with an error naming the run, step and t
    (never a silently wrong step)."""
    from eoslib.eigen import EigenConvergenceError

    class Failing(GradientDescent):
        def step(self, objective, theta, dt_cap=None):
            if self.count == 2:
                raise EigenConvergenceError("residual 34·|λ₁| after 1258 products")
            return super().step(objective, theta, dt_cap)

    ob = quadratic()
    with pytest.raises(EigenConvergenceError, match=r"myrun: step 2 \(t=0\.02\): residual"):
        train(Failing(0.01), ob, until=Stop(steps=5), progress=False, desc="myrun")


def test_cost_columns_count_the_solver_work():
    """GD costs one gradient per step and no HVP; exponential Euler one gradient plus its eigen-solve's products
    (the eig_matvecs it reports)."""
    ob = quadratic()
    r = train(GradientDescent(0.01), ob, until=Stop(steps=4), progress=False)
    assert list(r.table.cost_grad[:-1]) == [1, 1, 1, 1] and (r.table.cost_hvp[:-1] == 0).all()
    e = train(ExponentialEuler(dt_max=0.2, stiff_dim=1, tol=1e-6), ob, until=Stop(steps=3), progress=False)
    steps = e.table.iloc[:-1]
    assert (steps.cost_grad == 1).all() and (steps.cost_hvp == steps.eig_matvecs).all()


def test_resume_restores_the_measurement_hook(tmp_path):
    """The measurement hook's warm-start eigenvectors are checkpointed: a resumed run measures the same values
    bit for bit (before, the measured rows after a resume differed within the eigensolver tolerance)."""
    from conftest import tiny_objective
    from eoslib.measurement import Measurement

    ob = tiny_objective("ce")
    mk = lambda: [Measurement(every=2, tol=1e-3, alignment=False)]  # noqa: E731
    full, resumed = interrupted_and_resumed(lambda: ExponentialEuler(0.3), ob, Stop(steps=9), tmp_path / "ck.pt",
                                            at_step=5, checkpoint_every=4, hooks=mk)
    cols = ["hess_lam1", "ggn_lam1", "res_lam1"]
    assert resumed.table[cols].equals(full.table[cols])
