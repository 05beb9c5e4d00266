"""Certified measurements (issue 17): warm solves that cannot lock onto the wrong pair.

Oracles: constructed symmetric matrices with a known spectrum (QΛQᵀ, Q Haar from a seeded QR) and
``torch.linalg.eigh`` in float64; every case below returned a wrong value marked converged before the guard,
the per-pair tolerance and the tracker's cold checks (checked against the code of main at 4bad927).
"""
from __future__ import annotations

import math

import pytest
import torch

from pathlib import Path

from eoslib.eigen import PAIR_RTOL, EigenResult, top_eigenpairs

REPO = Path(__file__).resolve().parents[1]

DTYPES = [torch.float64, torch.float32]


def spectrum_matrix(top: list[float], dim: int = 200, rest: tuple[float, float] = (0.0, 1.0), seed: int = 0):
    """A = QΛQᵀ with the leading eigenvalues ``top`` and the rest uniform in ``rest``; returns (A, Q, Λ)."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64)).Q
    lo, hi = rest
    ev = lo + (hi - lo) * torch.rand(dim, generator=g, dtype=torch.float64)
    ev[: len(top)] = torch.tensor(top, dtype=torch.float64)
    return (Q * ev) @ Q.T, Q, ev


def near(v: torch.Tensor, eps: float = 1e-3, seed: int = 1) -> torch.Tensor:
    """v slightly perturbed (a previous step's vector)."""
    return v + eps * torch.randn(v.shape, generator=torch.Generator().manual_seed(seed), dtype=v.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_case1_warm_start_at_the_second_eigenvector_returns_the_top(dtype):
    # The case 1: eigenvalues {10, 9, rest ≤ 1}, k = 1, tol 1e-3, warm at (a perturbed) v₂. Before: 9.0,
    # converged, 2 products. The tolerance on the value: a residual r gives |θ − λ| ≤ r²/gap, far below 1e-3·λ.
    A, Q, _ = spectrum_matrix([10.0, 9.0])
    A = A.to(dtype)
    for v0 in (Q[:, 1:2].to(dtype), near(Q[:, 1:2]).to(dtype)):
        r = top_eigenpairs(lambda V: A @ V, 200, 1, v0=v0, tol=1e-3)
        assert r.converged and r.warm and r.guard >= 2
        assert r.values[0].item() == pytest.approx(10.0, rel=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_warm_start_after_a_crossing_k3(dtype):
    # k = 3 warm at the pairs 2..4 of {10, 9, 8.5, 8, rest ≤ 1} (the top pair crossed in from below): the true top 3
    A, Q, ev = spectrum_matrix([10.0, 9.0, 8.5, 8.0])
    A = A.to(dtype)
    r = top_eigenpairs(lambda V: A @ V, 200, 3, v0=near(Q[:, 1:4]).to(dtype), tol=1e-3)
    assert r.converged
    torch.testing.assert_close(r.values, torch.tensor([10.0, 9.0, 8.5], dtype=torch.float64), rtol=1e-3, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_warm_start_after_a_crossing_negative_spectrum(dtype):
    # An indefinite/negative operator (H can be): top algebraic eigenvalues {−1, −1.1}, the rest in [−12, −2].
    # Warm at the second one.
    A, Q, _ = spectrum_matrix([-1.0, -1.1], rest=(-12.0, -2.0))
    A = A.to(dtype)
    r = top_eigenpairs(lambda V: A @ V, 200, 1, v0=near(Q[:, 1:2]).to(dtype), tol=1e-3)
    assert r.converged
    assert r.values[0].item() == pytest.approx(-1.0, rel=1e-3)


def test_each_pair_is_accurate_relative_to_itself():
    # λ_(k+1) sets exponential Euler's Δt = 1/λ_(k+1): it must be accurate relative to itself, not to λ₁.
    # Spectrum {1000, 3, rest ≤ 1}: before, the second pair was converged at a residual of tol·1000 = 1 (a third of
    # its value); now its residual is ≤ PAIR_RTOL·3 = 0.03, so an eigenvalue lies within 1 % of it, and the Ritz
    # value within 0.03²/gap(2) ≈ 5e-4 of 3.
    A, _, _ = spectrum_matrix([1000.0, 3.0])
    r = top_eigenpairs(lambda V: A @ V, 200, 2, tol=1e-3)
    assert r.converged
    assert (r.residuals <= PAIR_RTOL * r.values.abs()).all() and (r.residuals <= 1e-3 * 1000).all()
    assert r.values[1].item() == pytest.approx(3.0, abs=5e-4)


def test_certificate_fields():
    A, Q, _ = spectrum_matrix([10.0, 9.0])
    r = top_eigenpairs(lambda V: A @ V, 200, 1, tol=1e-3)
    c = r.certificate()
    assert c["converged"] and not c["warm"] and c["guard"] == 2 and c["matvecs"] == r.matvecs
    assert 0 <= c["residual"] <= 1e-3
    assert isinstance(r, EigenResult) and r.block is not None and r.block.shape == (200, 3)
    # the true residual of the returned vector, recomputed here (not copied from the solver)
    v = r.vectors[:, 0]
    assert ((A @ v - r.values[0] * v).norm() / r.values[0]).item() == pytest.approx(c["residual"], rel=1e-6, abs=1e-12)


# ------------------------------------------------------------------------------------------ trackers along a run
class MovingQuadratic:
    """L(θ) = ½ θᵀA_sθ with A_s = Q diag(λ(s)) Qᵀ: the spectrum moves with the step counter s (advanced by each
    ``loss_and_grad``), the eigenvectors stay fixed, so a warm start at the old top vectors is exactly invariant —
    the hardest case for a warm solve (residual 0 at the wrong pair). The part of an Objective that the solvers
    use (P, dtype, stiff_dim, loss_and_grad, hvp_operator)."""

    def __init__(self, spectrum, dim: int = 60, stiff_dim: int = 1, dtype=torch.float64) -> None:
        g = torch.Generator().manual_seed(0)
        self.Q = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64)).Q
        self.spectrum, self.P, self.dtype, self.stiff_dim, self.s = spectrum, dim, dtype, stiff_dim, -1

    def A(self) -> torch.Tensor:
        return ((self.Q * self.spectrum(self.s)) @ self.Q.T).to(self.dtype)

    def loss(self, theta):
        return 0.5 * theta @ (self.A() @ theta)

    def loss_and_grad(self, theta, keep_graph=False):
        self.s += 1
        g = self.A() @ theta
        return 0.5 * theta @ g, g

    def hvp_operator(self, theta, which="hessian"):
        A = self.A()
        return lambda V: A @ V


def rising_third(s: int) -> torch.Tensor:
    """{10, 8, 1 + s (the third, rising through 8 at s = 7 and 10 at s = 9, up to 21), rest in [0, 1]}."""
    ev = torch.linspace(0.0, 1.0, 60, dtype=torch.float64).flip(0)
    ev[:3] = torch.tensor([10.0, 8.0, min(1.0 + s, 21.0)])
    return ev


@pytest.mark.parametrize("dtype", DTYPES)
def test_exponential_euler_sees_an_eigenvalue_rising_into_its_top_set(dtype):
    # EE with stiff_dim 1 tracks k + 1 = 2 pairs; the 3rd eigenvalue rises into (and to the top of) that set.
    # Before (guard 0): the warm pairs (10, 8) stay exactly invariant and are accepted for ever, so Δt = 1/8 while
    # λ_max = 21 (unstable: Δt > 2/λ). Now the guard columns (every 10th solve) bring it in within 10 steps.
    from eoslib.solvers import ExponentialEuler

    ob = MovingQuadratic(rising_third, dtype=dtype)
    solver = ExponentialEuler(dt_max=1.0)
    theta = torch.ones(60, dtype=dtype)
    seen = []
    for s in range(30):
        theta, rec = solver.step(ob, theta)
        true = sorted(rising_third(s)[:3].tolist(), reverse=True)[:2]
        seen.append((s, rec["eigs"], true, rec["dt"]))
    late = [(s, e, t) for s, e, t, _ in seen if s >= 9 + 10]  # λ₃ passed both by s = 9; ≤ 10 solves to enter
    for s, e, t in late:
        assert e == pytest.approx(t, rel=1e-3), (s, e, t)
    assert late and all(dt <= 1.0 / t[1] * (1 + 1e-3) for s, _, t, dt in seen if s >= 19)  # Δt = 1/λ₂(true)


def test_a_jump_triggers_a_cold_check_that_replaces_the_warm_result():
    # The tracked top (10) drops to 5 at s = 3 while a direction outside the tracked and guard set sits at 9:
    # the warm solve returns 5 (invariant start); λ₁ moved by 50 % > jump, so a cold check runs, finds 9, and
    # the result is replaced and counted.
    from eoslib.solvers import EigenTracker

    def spectrum(s):
        ev = torch.linspace(0.0, 1.0, 60, dtype=torch.float64).flip(0)
        ev[:6] = torch.tensor([10.0 if s < 3 else 5.0, 4.0, 3.0, 2.0, 1.5, 1.2 if s < 3 else 9.0])
        return ev

    ob = MovingQuadratic(spectrum)
    tracker = EigenTracker(1, 1e-3)
    theta = torch.zeros(60, dtype=torch.float64)
    for s in range(6):
        ob.s = s
        r = tracker(ob, theta)
        assert r.converged
        assert r.values[0].item() == pytest.approx(float(spectrum(s).max()), rel=1e-3), s
    assert tracker.corrections == 1


def test_periodic_cold_check_catches_what_the_guard_cannot():
    # A direction far outside the tracked set (6th) jumps above the top without the top moving: only the periodic
    # cold check (every cold_every calls) can see it; with cold_every = 4 it is found by call 4.
    from eoslib.solvers import EigenTracker

    def spectrum(s):
        ev = torch.linspace(0.0, 1.0, 60, dtype=torch.float64).flip(0)
        ev[:6] = torch.tensor([10.0, 4.0, 3.0, 2.0, 1.5, 1.2 if s < 1 else 12.0])
        return ev

    ob = MovingQuadratic(spectrum)
    tracker = EigenTracker(1, 1e-3, guard_every=1000, cold_every=4)
    theta = torch.zeros(60, dtype=torch.float64)
    values = []
    for s in range(6):
        ob.s = s
        r = tracker(ob, theta)
        values.append((r.values[0].item(), r.cold_checked, r.corrected))
    assert values[4][0] == pytest.approx(12.0, rel=1e-3) and values[4][1] and values[4][2]
    assert values[5][0] == pytest.approx(12.0, rel=1e-3)
    assert tracker.corrections == 1
    # the count survives a checkpoint
    t2 = EigenTracker(1, 1e-3)
    t2.load_state_dict(tracker.state_dict())
    assert t2.corrections == 1 and t2.calls == 6


# ------------------------------------------------------------------------------------------------ flow integrity
def test_a_loss_rise_along_a_flow_stops_the_run_naming_the_step():
    # A "flow" solver that overshoots: GD's update at Δt = 2.5/λ_max on a quadratic, declared a flow. The loss
    # along v_max grows by (1 − 2.5)² = 2.25 per step: the run must stop at the first step, naming Δt and λ.
    from conftest import tiny_objective

    from eoslib.solvers import GradientDescent
    from eoslib.training import DivergenceError, LossRoseError, Stop, train

    class Overshoot(GradientDescent):
        flow = True

    ob = tiny_objective("mse")
    lam = top_eigenpairs(ob.hvp_operator(ob.theta0), ob.P, 1, tol=1e-6).values[0].item()
    with pytest.raises(LossRoseError, match=r"rose along the flow at step \d+ .*Δt = .*lam1") as err:
        train(Overshoot(lr=2.5 / lam, track_every=1), ob, until=Stop(steps=200), progress=False)
    assert isinstance(err.value, DivergenceError)
    # the same updates as GD at a fixed step size (not a flow: the edge of stability is allowed to raise L)
    res = train(GradientDescent(lr=2.5 / lam), ob, until=Stop(steps=20), progress=False)
    assert (res.table["loss"].diff().dropna() > 0).any()


def test_the_rise_tolerance_is_rounding_only():
    from eoslib.training import loss_rise_tolerance

    assert loss_rise_tolerance(torch.float32, 2.3, 0.1) == pytest.approx(1000 * 1.1920929e-07 * 0.1 + 10 * 1.1920929e-07 * 2.3)
    assert loss_rise_tolerance(torch.float64, 1.0, 1.0) < 1e-12


# ------------------------------------------------------------------------------- the intervention's ᾱ, checked
def test_train_lands_on_an_event():
    # Event: ‖θ − θ₀‖ reaching 0.5 along the EE flow of a tiny net: the run stops there (stopped_by = name),
    # within rtol, the crossing step retaken shorter. Oracle: the norm recomputed from the returned θ.
    from conftest import tiny_objective

    from eoslib.solvers import ExponentialEuler
    from eoslib.training import Event, Stop, train

    ob = tiny_objective("mse")
    dist = lambda th: float((th - ob.theta0).norm())  # noqa: E731
    ev = Event("far", dist, 0.5, rtol=1e-3)
    res = train(ExponentialEuler(dt_max=0.02), ob, until=Stop(steps=2000, event=ev), progress=False)
    assert res.stopped_by == "far"
    assert dist(res.theta) == pytest.approx(0.5, rel=1e-3)
    assert len(res.table) > 3
    # without the landing, the iterate after the crossing would be past the target by more than rtol
    free = train(ExponentialEuler(dt_max=0.02), ob, until=Stop(steps=len(res.table) - 1), progress=False)
    assert dist(free.theta) > 0.5 * (1 + 1e-3)


def _tiny_mlp_objective():
    from eoslib.models import mlp
    from eoslib.objective import Objective

    g = torch.Generator().manual_seed(0)
    X = torch.randn(24, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=g)
    return Objective(mlp(6, 8, 4, 3, activation="elu", seed=0, dtype=torch.float64), X, y, loss="ce")


def test_the_held_alpha_is_checked_against_the_measured_one():
    # ChainHook compares ChainTerms' ᾱ with Measurement's alpha_mean (eigvalsh of every Gram matrix) at every
    # measured row. Correct terms: the gap is rounding (≤ 1e-10 in float64). Terms that under-estimate one layer
    # norm by 2 % (as a solve locked on σ₂ would): AlignmentMismatchError naming the step.
    from eoslib.experiments.intervention import AlignmentMismatchError, ChainHook
    from eoslib.intervention import ChainTerms, Terms
    from eoslib.measurement import Measurement

    ob = _tiny_mlp_objective()
    meas = lambda: Measurement(every=1, probe=None, operators=("hessian",), shares=False)  # noqa: E731
    hook = ChainHook(ChainTerms(ob), meas())
    row = hook(ob, ob.theta0, step=0, t=0.0, final=False)
    assert abs(row["abar_gap"]) <= 1e-10 and hook.abar_rtol < 0.02

    class Biased(ChainTerms):
        def _terms(self, p):
            t = super()._terms(p)
            return Terms(t.log_norms - torch.tensor([math.log(1.02)] + [0.0] * (t.log_norms.shape[1] - 1)),
                         t.log_chain)

    bad = ChainHook(Biased(ob), meas())
    with pytest.raises(AlignmentMismatchError, match="step 3"):
        bad(ob, ob.theta0, step=3, t=0.1, final=False)


def test_an_arm_checks_its_held_alpha_cold_every_check_every_steps():
    # An arm's measurement solves only the curvature; its hook measures alpha_mean by the Gram path every
    # check_every steps and at the final iterate: the same bits as the full measurement's alpha_mean, no
    # column in between, and the 2 %-biased terms fail at a check step (and only there).
    from eoslib.experiments.intervention import AlignmentMismatchError, ChainHook
    from eoslib.intervention import ChainTerms, Terms
    from eoslib.measurement import Measurement

    ob = _tiny_mlp_objective()
    lean = lambda: Measurement(every=1, probe=None, operators=("hessian",), shares=False, alignment=False)  # noqa: E731
    full = Measurement(every=1, probe=None, operators=(), shares=False).measure(ob, ob.theta0)
    hook = ChainHook(ChainTerms(ob), lean(), check_every=5)
    assert hook(ob, ob.theta0, step=5, t=0.0, final=False)["alpha_mean"] == full["alpha_mean"]
    assert "alpha_mean" not in hook(ob, ob.theta0, step=6, t=0.0, final=False)
    assert "abar_gap" in hook(ob, ob.theta0, step=7, t=0.0, final=True)

    class Biased(ChainTerms):
        def _terms(self, p):
            t = super()._terms(p)
            return Terms(t.log_norms - torch.tensor([math.log(1.02)] + [0.0] * (t.log_norms.shape[1] - 1)),
                         t.log_chain)

    bad = ChainHook(Biased(ob), lean(), check_every=5)
    assert "abar_gap" not in bad(ob, ob.theta0, step=3, t=0.1, final=False)
    with pytest.raises(AlignmentMismatchError, match="step 10"):
        bad(ob, ob.theta0, step=10, t=0.2, final=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [44, 45, 46, 47])
def test_small_gap_with_a_continuum_below(seed, dtype):
    # λ₁/λ₂ = 1.01 with a Marchenko–Pastur-like continuum up to 0.98·λ₂, warm at exactly v₂ (k = 1). With the
    # guards held only to GUARD_TOL a random guard mixing v₁ with the continuum converged below λ₂ and λ₂ came
    # back (seed 46, both dtypes, at 4d307e1); the first guard is now held to tol (eigen.pair_limits ``strict``).
    g = torch.Generator().manual_seed(seed)
    dim = 128
    Q = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64)).Q
    rest = torch.linalg.svdvals(torch.randn(dim, dim, generator=g, dtype=torch.float64)) ** 2
    ev = rest / rest.max() * 0.98
    ev[0], ev[1] = 1.01, 1.0
    A = ((Q * ev) @ Q.T).to(dtype)
    r = top_eigenpairs(lambda V: A @ V, dim, 1, v0=Q[:, 1:2].to(dtype), tol=1e-3)
    # a residual ≤ 1e-3 puts the Ritz value within r²/gap ≈ 1e-6/0.01 of λ₁: 1e-4 relative is safe and far below
    # the 1 % that separates λ₂
    assert r.converged and r.values[0].item() == pytest.approx(1.01, rel=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_kernel_gram_and_krylov_agree_with_the_svd(dtype):
    # chain_kernel's two singular-pair methods against torch.linalg.svdvals of the formed matrices (an independent
    # LAPACK route): the layer norms, ‖P₁‖, α and Πₖ aₖ = α. Tolerances: Gram is exact to rounding (1e-10 in
    # float64, 1e-5 in float32); Krylov's values err by ≲ tol²/gap (tol = √eps), below those.
    from eoslib.alignment import chain_kernel
    from eoslib.jacobians import mlp_pass
    from eoslib.models import mlp

    model = mlp(6, 40, 4, 3, activation="elu", seed=0, dtype=dtype)
    X = torch.randn(12, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    p = mlp_pass(model, X)
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    want = torch.stack([torch.linalg.svdvals((A * d[:, None, :]).double())[:, 0]
                        for A, d in zip(p.weights[1:], p.slopes)], dim=1)
    for method in ("gram", "krylov"):
        ch = chain_kernel(p, method)
        assert ch.converged
        torch.testing.assert_close(ch.norms.double(), want, rtol=rtol, atol=0)
        torch.testing.assert_close(ch.top.sigma.double(), torch.linalg.svdvals(ch.P1.double())[:, 0], rtol=rtol, atol=0)
        torch.testing.assert_close(ch.factors.prod(dim=1).double(), ch.alpha.double(), rtol=rtol, atol=0)


def test_exponential_euler_rejects_a_step_that_raises_the_loss():
    # Far from quadratic, EE's full step can raise L: the default profile's sensitivity variant with Xavier init
    # (digits, N = 512, CE) went 2.14 → 2.85 at step 1 (found by the loss-rise check, which stopped the run). EE
    # now halves Δt until L does not rise. Oracle: the loss recomputed at the returned θ.
    from eoslib.config import load_params, run_config
    from eoslib.experiments.base import build_objective
    from eoslib.solvers import build_solver

    cfg = run_config(load_params(REPO / "params.yaml"), "sens/digits-elu-ce/init-xavier/seed0")
    ob, _ = build_objective(cfg)
    solver = build_solver(cfg["solver"])
    th, rec = solver.step(ob, ob.theta0)
    assert rec["dt_halvings"] >= 1
    assert ob.loss(th).item() <= rec["loss"]
    full = rec["dt"] * 2 ** rec["dt_halvings"]  # the step it rejected
    assert full <= 0.5 and rec["dt"] < full
