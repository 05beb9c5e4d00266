"""Interventions on the flow (eoslib.intervention, the ``intervene`` kind) against independent oracles:

* the envelope-theorem constraint values and gradients against ``alignment_functional`` (autograd through
  ``eigvalsh``) and its Krylov singular pairs against a dense SVD, in float64;
* the projected flow of a quadratic with a linear constraint against its closed form (the flow of PAP on the
  affine set), and with the nonlinear constraint ½‖θ‖² (Oja's flow, θ(t) = r·e^{−At}θ₀/‖e^{−At}θ₀‖) — with the
  solvers' orders of accuracy, the constraint held and the Newton correction doing the holding;
* on MLPs, ᾱ (or the placebo Σlog‖Jᵏ‖) held where the free flow moves it, checked with ``alignment_summary``;
* the kind's plan (run names, schema errors naming the key) and a tiny end-to-end run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import tiny_objective

from eoslib.alignment import alignment_functional, alignment_summary
from eoslib.config import schema as config_schema
from eoslib.experiments import KINDS
from eoslib.causal import compare_arms, decomposition, value_at
from eoslib.experiments.intervention import LAND_RTOL, plan
from eoslib.intervention import (CONSTRAINTS, ChainTerms, Constraint, ConstraintDriftError, ProjectedObjective,
                                 ProjectedSolver, _krylov_pair, constraint)
from eoslib.objective import Objective
from eoslib.schema import Opt, ParamsError, check
from eoslib.solvers import AdaptiveGD, RungeKuttaChebyshev
from eoslib.training import Stop, train

REPO = Path(__file__).resolve().parents[1]
F64 = torch.float64


def mlp_objective(width=40, depth=4, n=10, d=6, q=3, seed=1, activation="elu") -> Objective:
    return tiny_objective(n=n, d=d, width=width, depth=depth, q=q, activation=activation, seed=seed)


# ---------------------------------------------------------------------------------------------- the constraints


def test_krylov_pair_matches_the_svd():
    """Top singular pairs of A·diag(dᵢ) against torch.linalg.svd of the formed matrices (float64). tol = 1e-12
    bounds the residual of JᵀJ; with the relative gaps here (≥ 1e-2) the vector error is ≤ 1e-10 and σ's
    error ~1e-22 (quadratic in the vector's), so 1e-9 / 1e-12 leave room for rounding only."""
    g = torch.Generator().manual_seed(3)
    A = torch.randn(50, 60, generator=g, dtype=F64)
    d = torch.rand(7, 60, generator=g, dtype=F64) + 0.1
    J = A * d[:, None, :]
    U, S, Vh = torch.linalg.svd(J)
    sp = _krylov_pair(A, d, None, tol=1e-12, max_matvecs=500)
    assert sp.converged and float(sp.residuals.max()) <= 1e-12 and not sp.warm
    sigma = ((sp.u[:, None, :] @ J).squeeze(1) * sp.v).sum(1)
    assert torch.allclose(sigma, S[:, 0], rtol=1e-12, atol=0)
    assert torch.allclose(sp.sigma, S[:, 0], rtol=1e-12, atol=0)
    assert torch.allclose((sp.u * U[:, :, 0]).sum(1).abs(), torch.ones(7, dtype=F64), atol=1e-9)
    assert torch.allclose((sp.v * Vh[:, 0, :]).sum(1).abs(), torch.ones(7, dtype=F64), atol=1e-9)
    assert sp.block.shape == (7, 1 + sp.guard, 60) and torch.allclose(sp.block[:, 0], sp.v, rtol=0, atol=1e-14)
    # warm at the answer (its own Ritz block): converged and cheaper than cold, but never accepted on the first
    # block product alone (the check that accepted a start at any eigenvector, issue 17)
    warm = _krylov_pair(A, d, sp.block, tol=1e-10, max_matvecs=500)
    assert warm.converged and warm.warm and 1 + warm.guard < warm.matvecs < sp.matvecs
    assert torch.allclose(warm.sigma, S[:, 0], rtol=1e-12, atol=0)
    assert warm.certificate() == {"converged": True, "residual": float(warm.residuals.max()),
                                  "matvecs": warm.matvecs, "warm": True, "guard": 2}


@pytest.mark.parametrize("gram_max", [0, 1000], ids=["krylov", "eigh"])
@pytest.mark.parametrize("activation", ["elu", "tanh"])
def test_constraints_match_alignment_functional(gram_max, activation):
    """Values and gradients of ``alpha`` and ``norms`` (envelope theorem, u and v held fixed) against
    ``alignment_functional`` (autograd through eigvalsh of every Gram matrix), float64. Values: the same
    quantities from the same top singular values, so they agree to rounding (1e-12). Gradients: both exact up to
    the singular vectors' accuracy (Krylov residual 1e-13, eigh ~1e-15) divided by the relative gap (≥ 1e-3
    here), so 1e-8 relative."""
    ob = mlp_objective(activation=activation)
    theta = ob.theta0 + 0.05 * torch.randn(ob.P, dtype=F64, generator=torch.Generator().manual_seed(9))
    terms = ChainTerms(ob, tol=1e-13, gram_max=gram_max)
    th = theta.clone().requires_grad_(True)
    f = alignment_functional(ob, th)
    for name, key in (("alpha", "alpha_mean"), ("norms", "log_norm_product_mean")):
        c, gc = Constraint(name, terms).value_and_grad(theta)
        (g,) = torch.autograd.grad(f[key], th, retain_graph=True)
        assert c == pytest.approx(f[key].item(), rel=1e-12), name
        assert float((gc - g).norm() / g.norm()) < 1e-8, name


def test_terms_summary_is_the_chain_gain_decomposition():
    """abar, mean log α, mean Σ log‖Jᵏ‖ and mean log‖P₁‖ against alignment_summary (eigvalsh of Gram matrices,
    another implementation), and log‖P₁‖ = log α + Σ log‖Jᵏ‖."""
    ob = mlp_objective()
    s = constraint("alpha", ob, probe=6, seed=4).terms.evaluate(ob.theta0).terms.summary()
    ref = alignment_summary(ob.model, ob.X, probe=6, seed=4)
    assert s["abar"] == pytest.approx(ref["alpha_mean"], rel=1e-10)
    assert s["log_norms_mean"] == pytest.approx(sum(ref["log_norm_mean"]), rel=1e-10)
    assert s["log_chain_mean"] == pytest.approx(ref["log_chain_gain_mean"], rel=1e-10)
    assert s["log_chain_mean"] == pytest.approx(s["log_alpha_mean"] + s["log_norms_mean"], rel=1e-12)
    assert set(CONSTRAINTS.names()) >= {"alpha", "norms"}


# ---------------------------------------------------------------------------------------------- projected flow


class Quadratic:
    """L(θ) = ½θᵀAθ − bᵀθ with the pieces of the Objective interface a gradient-only solver uses."""

    def __init__(self, A, b, theta0):
        self.A, self.b, self.theta0 = A, b, theta0
        self.P, self.dtype, self.device = A.shape[0], A.dtype, A.device

    def loss(self, th):
        return 0.5 * th @ self.A @ th - self.b @ th

    def loss_and_grad(self, th, keep_graph=False):
        return self.loss(th), self.A @ th - self.b

    def grad(self, th):
        return self.A @ th - self.b

    def hvp_operator(self, th, which="hessian"):
        return lambda V: self.A @ V


class Linear:
    """c(θ) = aᵀθ."""

    def __init__(self, a):
        self.a = a

    def value_and_grad(self, th):
        return float(self.a @ th), self.a.clone()


class HalfSquaredNorm:
    """c(θ) = ½‖θ‖² (held: θ stays on a sphere)."""

    def value_and_grad(self, th):
        return 0.5 * float(th @ th), th.clone()


def spd(p=6, lo=0.5, hi=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=F64))
    return Q @ torch.diag(torch.linspace(lo, hi, p, dtype=F64)) @ Q.T, g


def projected_run(ob, c, solver, T):
    po = ProjectedObjective(ob, c)
    r = train(ProjectedSolver(solver, po), po, until=Stop(time=T), progress=False)
    return r, po


def affine_flow(A, b, a, theta0, t):
    """The flow of θ' = −P(Aθ − b), P = I − aaᵀ/‖a‖² (constant): δ = θ − θ₀ ∈ range(P) obeys
    δ' = −Pg₀ − (PAP)δ, so δ(t) = −V·diag((1 − e^{−μt})/μ)·VᵀPg₀ with PAP = V diag(μ) Vᵀ (μ = 0: t)."""
    P = torch.eye(len(a), dtype=F64) - torch.outer(a, a) / (a @ a)
    mu, V = torch.linalg.eigh(P @ A @ P)
    mu = torch.where(mu.abs() < 1e-12, torch.zeros_like(mu), mu)
    phi = torch.where(mu == 0, torch.full_like(mu, t), -torch.expm1(-mu * t) / torch.where(mu == 0, 1, mu))
    return theta0 - V @ (phi * (V.T @ (P @ (A @ theta0 - b))))


@pytest.mark.parametrize("solver, order", [(lambda h: AdaptiveGD(dt_max=h, c=1e9), 1),
                                           (lambda h: RungeKuttaChebyshev(dt_max=h, adaptive=False), 2)],
                         ids=["agd", "rkc"])
def test_linear_constraint_follows_the_closed_form(solver, order):
    """Quadratic loss, c(θ) = aᵀθ held: the discrete projected flow converges to the closed form at the solver's
    order (halving Δt divides the error by 2 for Euler (agd, c = 1e9 so Δt = dt_max), by 4 for RKC2), aᵀθ
    stays at its target to rounding (the projection is exact for a linear constraint: no Newton step is
    needed), and the recorded removed fraction is (a·g)²/(‖a‖²‖g‖²) at θ₀."""
    A, g = spd()
    b, a = torch.randn(6, generator=g, dtype=F64), torch.randn(6, generator=g, dtype=F64)
    theta0 = torch.randn(6, generator=g, dtype=F64)
    ob, T = Quadratic(A, b, theta0), 1.0
    exact = affine_flow(A, b, a, theta0, T)
    errs = []
    for h in (0.02, 0.01):
        r, po = projected_run(ob, Linear(a), solver(h), T)
        errs.append(float((r.theta - exact).norm()))
        assert r.table["t"].iloc[-1] == pytest.approx(T, rel=1e-12)
        assert abs(float(a @ r.theta) - float(a @ theta0)) < 1e-12  # rounding of ~100 steps on |aᵀθ| ~ 1
        assert r.table["c_step_drift"].abs().max() < 1e-12
        g0 = A @ theta0 - b
        assert r.table["removed"].iloc[0] == pytest.approx(float((a @ g0) ** 2 / ((a @ a) * (g0 @ g0))), rel=1e-10)
    assert errs[0] / errs[1] == pytest.approx(2 ** order, rel=0.1)


@pytest.mark.filterwarnings("ignore::eoslib.eigen.EigenConvergenceWarning")  # λ₁ of a 6 × 6 A: retried cold
def test_nonlinear_constraint_follows_ojas_flow_with_the_newton_correction():
    """L = ½θᵀAθ with ½‖θ‖² held is Oja's flow, θ(t) = r·e^{−At}θ₀/‖e^{−At}θ₀‖ (checked by hand: its derivative
    is −Aθ + (θᵀAθ/r²)θ = −P∇L). Each projected Euler step leaves the sphere by O(Δt²) (c_step_drift ≫ 0);
    the Newton correction returns every iterate to it within the tolerance, and the flow converges at first
    order. Without Newton steps allowed the drift is an error naming the fix."""
    A, g = spd(seed=1)
    theta0 = torch.randn(6, generator=g, dtype=F64)
    ob, T = Quadratic(A, torch.zeros(6, dtype=F64), theta0), 2.0
    lam, V = torch.linalg.eigh(A)
    phi = V @ (torch.exp(-lam * T) * (V.T @ theta0))
    exact = theta0.norm() * phi / phi.norm()
    errs = []
    for h in (0.02, 0.01):
        r, po = projected_run(ob, HalfSquaredNorm(), AdaptiveGD(dt_max=h, c=1e9), T)
        errs.append(float((r.theta - exact).norm()))
        assert float(r.theta.norm()) == pytest.approx(float(theta0.norm()), rel=1e-13)
        assert r.table["c_drift"].abs().max() <= po.tol
        assert r.table["c_step_drift"].abs().max() > 1e-6 and r.table["newton"].max() >= 1
    assert errs[0] / errs[1] == pytest.approx(2.0, rel=0.1)
    po = ProjectedObjective(ob, HalfSquaredNorm(), max_newton=0)
    with pytest.raises(ConstraintDriftError, match="lower dt_max"):
        train(ProjectedSolver(AdaptiveGD(dt_max=0.1, c=1e9), po), po, until=Stop(steps=3), progress=False)


@pytest.mark.filterwarnings("ignore::eoslib.eigen.EigenConvergenceWarning")
def test_a_step_the_correction_cannot_repair_is_retaken_shorter():
    """Oja's flow with three Newton steps allowed: a step of Δt = 0.8 leaves the sphere farther than three steps
    bring back to 100·eps (the drift is O(Δt²), each Newton step squares it), so ProjectedSolver retakes it with
    Δt/2, /4, … until one passes, and as the flow slows (‖P∇L‖ falls) longer steps pass again. The run reaches T
    with every iterate on the sphere, a rejected attempt leaves no trace (the run is, to the bit, the one that
    takes the accepted Δt sequence directly) and it stays within the Euler error of the exact flow; without
    halvings the same run is an error."""
    A, g = spd(seed=1)
    theta0 = torch.randn(6, generator=g, dtype=F64)
    ob, T = Quadratic(A, torch.zeros(6, dtype=F64), theta0), 2.0
    lam, V = torch.linalg.eigh(A)
    phi = V @ (torch.exp(-lam * T) * (V.T @ theta0))
    exact = theta0.norm() * phi / phi.norm()
    po = ProjectedObjective(ob, HalfSquaredNorm(), max_newton=3)
    r = train(ProjectedSolver(AdaptiveGD(dt_max=0.8, c=1e9), po), po, until=Stop(time=T), progress=False)
    h = r.table["halvings"].iloc[:-1]
    assert h.iloc[0] >= 2 and h.iloc[-1] < h.iloc[0] and (r.table["newton"].iloc[:-1] <= 3).all()
    assert r.table["t"].iloc[-1] == pytest.approx(T, rel=1e-12) and r.table["c_drift"].abs().max() <= po.tol
    dts = iter(r.table["dt"].iloc[:-1].tolist())

    class Replay(AdaptiveGD):
        def step(self, objective, theta, dt_cap=None):
            return super().step(objective, theta, dt_cap=next(dts))

    po = ProjectedObjective(ob, HalfSquaredNorm(), max_newton=3)
    replay = train(ProjectedSolver(Replay(dt_max=0.8, c=1e9), po, max_halvings=0), po, until=Stop(time=T),
                   progress=False)
    assert torch.equal(replay.theta, r.theta)
    assert float((r.theta - exact).norm()) < 0.05 * float(theta0.norm())  # first order at Δt = 0.2–0.4: 0.033
    po = ProjectedObjective(ob, HalfSquaredNorm(), max_newton=3)
    with pytest.raises(ConstraintDriftError, match="after 0 halvings"):
        train(ProjectedSolver(AdaptiveGD(dt_max=0.8, c=1e9), po, max_halvings=0), po, until=Stop(time=T),
              progress=False)


def test_a_step_that_raises_the_loss_is_retaken_shorter():
    """L = ½θᵀAθ from θ₀ on A's top eigenvector (λ = 3), a linear constraint orthogonal to it: an Euler step of
    Δt = 1 multiplies L by (1 − 3Δt)² = 4. ProjectedSolver rejects it and takes Δt = 0.5 (factor 0.25): the loss
    falls at every step. With no halvings allowed the rise is a LossRoseError before the step is accepted."""
    from eoslib.training import LossRoseError

    A = torch.diag(torch.tensor([0.5, 1.0, 3.0], dtype=F64))
    theta0 = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    ob, a = Quadratic(A, torch.zeros(3, dtype=F64), theta0), torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    po = ProjectedObjective(ob, Linear(a))
    r = train(ProjectedSolver(AdaptiveGD(dt_max=1.0, c=1e9), po), po, until=Stop(steps=4), progress=False)
    assert list(r.table["halvings"].iloc[:-1]) == [1, 1, 1, 1]
    assert list(r.table["dt"].iloc[:-1]) == [0.5] * 4
    assert (np.diff(r.table["loss"]) < 0).all()
    assert r.table["loss"].iloc[-1] == pytest.approx(1.5 * 0.25 ** 4, rel=1e-12)
    po = ProjectedObjective(ob, Linear(a))
    with pytest.raises(LossRoseError, match=r"rose by 4.5 \(from 1.5\)"):
        train(ProjectedSolver(AdaptiveGD(dt_max=1.0, c=1e9), po, max_halvings=0), po, until=Stop(steps=4),
              progress=False)


class Stepped:
    """c(θ) = θ₀ + s·[θ₁ > 0]: discontinuous across θ₁ = 0, ∇c = e₀ on both sides."""

    def __init__(self, s):
        self.s = s

    def value_and_grad(self, th):
        e0 = torch.zeros_like(th)
        e0[0] = 1.0
        return float(th[0]) + (self.s if float(th[1]) > 0 else 0.0), e0


def test_a_jump_of_the_constraint_is_crossed_and_recorded():
    """L = ½(θ₀² + (θ₁ − 1)²) from (1, −0.2) with c = θ₀ + s·[θ₁ > 0], s = −0.5, held: the projected flow is
    θ₁ → 1 at fixed θ₀ until θ₁ crosses 0, where c jumps by s whatever the step, so holding it moves θ₀ to
    1 − s = 1.5 and raises L by ½(1.5² − 1) = 0.625 (more than any step descends). ProjectedSolver halves
    the steps that cross (θ₁ creeps up to 0 meanwhile) until a step of Δt/32 crosses too, sees the drift stay s, accepts it as a jump (c_jump = s, loss_jump = the rise, at exactly one step) and goes on; with
    fewer than 3 halvings allowed the same rise is an error. A smooth rise (the quadratic above) is never a jump."""
    from eoslib.training import LossRoseError

    A = torch.eye(2, dtype=F64)
    ob = Quadratic(A, torch.tensor([0.0, 1.0], dtype=F64), torch.tensor([1.0, -0.2], dtype=F64))
    po = ProjectedObjective(ob, Stepped(-0.5))
    r = train(ProjectedSolver(AdaptiveGD(dt_max=0.1, c=1e9), po), po, until=Stop(time=3.0), progress=False)
    jumps = r.table[r.table["loss_jump"] > 0]
    assert len(jumps) == 1 and jumps["halvings"].iloc[0] == 5
    assert jumps["c_jump"].iloc[0] == pytest.approx(-0.5, rel=1e-12)
    # the rise: ½(1.5² − 1) in θ₀, less the descent of the Δt/32 step in θ₁ (≈ 0.003·1², < 1 % of it)
    assert jumps["loss_jump"].iloc[0] == pytest.approx(0.625, rel=1e-2)
    assert float(r.theta[0]) == pytest.approx(1.5, rel=1e-12) and float(r.theta[1]) > 0.9
    assert r.table["c_drift"].abs().max() <= po.tol
    po = ProjectedObjective(ob, Stepped(-0.5))
    with pytest.raises(LossRoseError, match="after 2 halvings"):
        train(ProjectedSolver(AdaptiveGD(dt_max=0.1, c=1e9), po, max_halvings=2), po, until=Stop(time=3.0),
              progress=False)


def test_projected_objective_delegates_and_refuses_another_objective():
    A, g = spd()
    ob = Quadratic(A, torch.zeros(6, dtype=F64), torch.randn(6, generator=g, dtype=F64))
    po = ProjectedObjective(ob, Linear(torch.ones(6, dtype=F64)), target=0.0)
    th = ob.theta0
    assert po.loss(th) == ob.loss(th) and po.P == 6 and po.dtype == F64
    assert float(torch.ones(6, dtype=F64) @ po.grad(th)) == pytest.approx(0.0, abs=1e-14)
    with pytest.raises(ValueError, match="ProjectedObjective this solver was built with"):
        ProjectedSolver(AdaptiveGD(0.1), po).step(ob, th)


@pytest.mark.parametrize("hold, key", [("alpha", "abar"), ("norms", "log_norms_mean")])
def test_mlp_flow_holds_the_constraint_where_the_free_flow_moves_it(hold, key):
    """On a float64 MLP: the free flow moves ᾱ and mean Σlog‖Jᵏ‖; the projected flow holds the chosen one at
    its starting value (checked at the end with alignment_summary, an eigvalsh implementation: within
    1e-10, far above the Newton tolerance 100·eps and far below the free flow's change)."""
    ob = mlp_objective(width=12, depth=4, n=16)
    ref = lambda th: alignment_summary(ob.to_model(th), ob.X)  # noqa: E731
    pick = {"abar": lambda s: s["alpha_mean"], "log_norms_mean": lambda s: sum(s["log_norm_mean"])}[key]
    start = pick(ref(ob.theta0))
    free = train(AdaptiveGD(dt_max=0.5), ob, until=Stop(steps=25), progress=False)
    c = constraint(hold, ob)
    po = ProjectedObjective(ob, c)
    held = train(ProjectedSolver(AdaptiveGD(dt_max=0.5), po), po, until=Stop(steps=25), progress=False)
    assert abs(pick(ref(free.theta)) - start) > 0.05
    assert pick(ref(held.theta)) == pytest.approx(start, abs=1e-10)
    assert held.table["loss"].iloc[-1] < held.table["loss"].iloc[0]  # the held flow still trains


def test_projected_run_resumes_bit_for_bit(tmp_path):
    """A checkpointed projected run interrupted and resumed ends on the same θ as an uninterrupted one (the
    solver's, the constraint's and the target's state are in ProjectedSolver.state_dict)."""
    def make():
        ob = mlp_objective(width=40, depth=4, n=10)
        po = ProjectedObjective(ob, constraint("alpha", ob))
        return ProjectedSolver(AdaptiveGD(dt_max=5.0), po), po  # Δt = 1/λ₁: the eigen warm start matters

    ps, po = make()
    whole = train(ps, po, until=Stop(steps=8), progress=False)

    def crash(objective, theta, step, t, final):
        if step == 6:
            raise KeyboardInterrupt

    ck = tmp_path / "ck.pt"
    ps, po = make()
    with pytest.raises(KeyboardInterrupt):
        train(ps, po, until=Stop(steps=8), hooks=[crash], checkpoint=ck, checkpoint_every=4, progress=False)
    ps, po = make()
    resumed = train(ps, po, until=Stop(steps=8), checkpoint=ck, checkpoint_every=4, progress=False)
    assert torch.equal(resumed.theta, whole.theta)


# ---------------------------------------------------------------------------------------------- the kind


def params(**section) -> dict:
    """The keys the kind reads: params.yaml's settings, model, threads, loss thresholds and device, and an
    ``intervention`` section checked by its schema (as ``check-params`` does; other sections are left out so
    that this test does not depend on them)."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    sec = {"settings": ["digits-elu-ce"], "n": 64, "seeds": [0, 1], "alpha_stars": [0.1, 0.3], "holds": ["alpha", "norms"],
           "probe": 32, "measure_every": 5, "max_steps": 100, "time": 15.0} | section
    return {k: p[k] for k in ("settings", "model", "threads", "loss_threshold", "device")} | \
        {"intervention": check(sec, KINDS["intervene"].schema, "intervention")}


def test_the_section_is_in_the_params_schema():
    assert config_schema()["intervention"] == Opt(KINDS["intervene"].schema)


def test_plan_names_the_runs():
    st = plan(params())
    assert list(st) == ["intervene"] and st["intervene"].dir == "runs/intervene"
    runs = st["intervene"].runs
    want = [f"intervene/digits-elu-ce/seed{s}/{a}" for s in (0, 1)
            for a in ("free", "a0.1-alpha", "a0.1-norms", "a0.3-alpha", "a0.3-norms")]
    assert list(runs) == want
    c = runs["intervene/digits-elu-ce/seed1/a0.3-norms"]
    assert (c["hold"], c["alpha_star"], c["seed"], c["n"], c["kind"]) == ("norms", 0.3, 1, 64, "intervene")
    assert c["solver"] == {"name": "agd", "dt_max": 0.5, "c": 1.0}  # the default: sharpness-adaptive GD
    assert runs["intervene/digits-elu-ce/seed0/free"]["hold"] is None


@pytest.mark.parametrize("change, key", [
    ({"alpha_stars": [0.3, 1.5]}, "intervention.alpha_stars[1]"),
    ({"alpha_stars": [0.3, 0.1]}, "intervention.alpha_stars: must be ascending"),
    ({"holds": ["alpha", "nope"]}, "intervention.holds[1]: unknown arm"),
    ({"solver": {"name": "ee", "dt_max": 0.5}}, "intervention.solver.name: the projected flow needs"),
    ({"settings": ["nope"]}, "intervention.settings[0]: unknown setting"),
    ({"n": 100000}, "intervention.n: n=100000 exceeds"),
    ({"probes": 3}, "intervention.probes: unknown key"),
])
def test_bad_params_name_the_key(change, key):
    with pytest.raises(ParamsError, match=key.replace("[", r"\[").replace("]", r"\]")):
        plan(params(**change))


def tiny_config(hold=None, alpha_star=None) -> dict:
    return {"kind": "intervene", "setting": {"name": "d", "dataset": "digits", "activation": "elu", "loss": "ce",
                                             "classes": 3, "standardize": False},
            "n": 24, "seed": 0, "model": {"width": 16, "depth": 3, "init": "default", "dtype": "float64"},
            "threads": 1, "loss_threshold": 0.3, "device": "cpu", "solver": {"name": "agd", "dt_max": 0.5, "c": 1.0},
            "probe": 16, "measure_every": 5, "max_steps": 400, "time": 40.0, "levels": [0.5, 1.0],
            "curvature": ["hessian"], "checkpoint_every": 50, "check_every": 10, "hold": hold,
            "alpha_star": alpha_star}


def test_tiny_end_to_end(tmp_path):
    """Free run and both arms at α* = 0.7 (ᾱ starts near 0.57): the arms follow the free flow to ᾱ = α* (within
    the landing tolerance), then hold their constraint (checked with alignment_summary at the final θ); the
    free run and the ᾱ arm land on the loss threshold; compare_arms sets both arms beside the free run."""
    from eoslib.alignment import probe_subset
    from eoslib.experiments.base import build_objective

    out = {}
    for hold in (None, "alpha", "norms"):
        cfg = tiny_config(hold, None if hold is None else 0.7)
        folder = tmp_path / str(hold)
        folder.mkdir()
        tab, info = KINDS["intervene"].run(cfg, folder, False)
        out[f"intervene/d/seed0/{'free' if hold is None else 'a0.7-' + hold}"] = (tab, info)
    ob, _ = build_objective(tiny_config())
    Xp = probe_subset(ob.X, 16, 0)
    ref = lambda th: alignment_summary(ob.to_model(th), Xp)  # noqa: E731

    free_tab, free = out["intervene/d/seed0/free"]
    assert free["stopped_by"] == "loss" and abs(free_tab["loss"].iloc[-1] / 0.3 - 1) <= 0.01
    assert free_tab["abar"].notna().all() and free_tab["hess_lam1"].notna().sum() >= 3
    d = decomposition(free_tab)
    assert np.allclose(d["chain"], d["alignment"] + d["norms"], atol=1e-12) and d["alignment"].iloc[-1] > 0.3
    assert free_tab["abar"].iloc[-1] == pytest.approx(ref(free["theta"])["alpha_mean"], rel=1e-10)

    for hold, key in (("alpha", "abar"), ("norms", "log_norms_mean")):
        tab, info = out[f"intervene/d/seed0/a0.7-{hold}"]
        sw = info["switch"]
        assert info["switched"] and abs(sw["abar"] / 0.7 - 1) <= LAND_RTOL and sw["step"] >= 1
        pre = tab[tab["phase"] == "free"]
        assert np.allclose(pre["loss"].iloc[:-1], free_tab["loss"].iloc[:len(pre) - 1], rtol=1e-12, atol=0)
        held = tab[tab["phase"] == "hold"]
        assert (held[key] - sw["target"]).abs().max() < 1e-10
        checked = held.dropna(subset=["abar_gap"])  # the held ᾱ checked cold every check_every steps and at the end
        assert set(held["step"].iloc[:-1][held["abar_gap"].iloc[:-1].notna()] % 10) <= {held["step"].iloc[0] % 10}
        assert len(checked) >= 2 and pd.notna(held["abar_gap"].iloc[-1]) and "alpha_median" not in held
        s = ref(info["theta"])
        final = s["alpha_mean"] if hold == "alpha" else sum(s["log_norm_mean"])
        assert final == pytest.approx(sw["target"], abs=1e-10)
    assert out["intervene/d/seed0/a0.7-norms"][0]["abar"].iloc[-1] > 0.8  # the placebo lets ᾱ rise

    cmp = compare_arms({k: (t, {kk: v for kk, v in i.items() if kk != "theta"}) for k, (t, i) in out.items()})
    assert set(cmp["hold"]) == {"alpha", "norms"} and set(cmp["basis"]) == {"loss", "time", "peak"}
    row = cmp[(cmp.hold == "alpha") & (cmp.basis == "time") & (cmp.f == 0.5)].iloc[0]
    level = row["switch_t"] + 0.5 * (free_tab["t"].iloc[-1] - row["switch_t"])
    assert row["lam_free"] == pytest.approx(value_at(free_tab.assign(lam=free_tab["sharpness"]), "t", level, "lam",
                                                     log=False), rel=1e-12)


def test_value_at_interpolates_between_rows():
    t = pytest.importorskip("pandas").DataFrame({"loss": [1.0, 0.5, 0.25, 0.101], "y": [0.0, 1.0, 2.0, 3.0]})
    assert value_at(t, "loss", np.sqrt(0.5 * 0.25), "y") == pytest.approx(1.5)  # halfway in log loss
    assert value_at(t, "loss", 0.1, "y") is None
    assert value_at(t, "loss", 0.1, "y", rtol=0.02) == 3.0  # landed within 2 % of the level
    assert value_at(t.assign(t=[0.0, 1, 2, 3]), "t", 2.5, "y", log=False) == pytest.approx(2.5)
