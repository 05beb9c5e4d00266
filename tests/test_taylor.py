"""The second-order Taylor model (eoslib.taylor) against dense float64 oracles and a closed-form flow.

Oracles: the network's outputs, their Jacobian (torch.func.jacrev) and Hessian (torch.func.hessian) at θ₀,
assembled densely into f₀ + J₀δ + ½δᵀH₀δ; conftest's independently written loss (dense_loss) for the loss
Hessian at θ₀; and the gradient flow of L = ½(w₁w₂ − 1)², solved by hand: with p = w₁w₂ and c = w₁² − w₂²
(conserved), p' = (1 − p)√(c² + 4p²) and λ_max(∇²L) = (√(c² + 4p²) + √(c² + 4(2p − 1)²))/2. Balanced (c = 0),
p(t) = 1/(1 + (1/p₀ − 1)e^{−2t}) (logistic) and λ_max = max(3p − 1, 1 − p); unbalanced, t(p) in closed form
(∫dx/(x√(ax² + bx + k)) = −ln((2k + bx + 2√k√(ax² + bx + k))/x)/√k), inverted by brentq.
"""
from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import brentq
from torch import nn
from torch.func import functional_call, hessian, jacrev

from conftest import dense_loss, tiny_objective
from eoslib.objective import Objective
from eoslib.solvers import RungeKuttaChebyshev
from eoslib.taylor import TaylorModel, second_order_terms, taylor_flow, taylor_objective
from eoslib.training import Stop

F64 = torch.float64


def outputs_of(ob: Objective):
    """θ ↦ f(X; θ) of the network (N × Q), by functional_call."""
    return lambda th: functional_call(ob.model, ob.unflatten(th), (ob.X,))


def taylor_outputs(ob: Objective, theta0=None):
    """θ ↦ f₂(X; θ) of the Taylor model around θ₀ (default ob.theta0)."""
    tm = TaylorModel(ob.model, theta0)
    return lambda th: functional_call(tm, {"theta": th}, (ob.X,))


def step(ob: Objective, scale: float, seed: int = 0) -> torch.Tensor:
    return scale * torch.randn(ob.P, dtype=F64, generator=torch.Generator().manual_seed(seed))


def test_a_model_quadratic_in_theta_is_its_own_taylor_model():
    """A two-layer linear network W₂(W₁x + b₁) + b₂ is quadratic in θ: f₂ = f exactly, far from θ₀ too, and the
    Taylor objective's loss, gradient and Hessian products are the network's."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5, dtype=F64), nn.Linear(5, 3, dtype=F64))
    X = torch.randn(6, 4, generator=g, dtype=F64)
    ob = Objective(net, X, torch.randint(0, 3, (6,), generator=g), loss="mse")
    tob = taylor_objective(ob)
    for scale in (0.1, 3.0):
        th = ob.theta0 + step(ob, scale, seed=1)
        assert torch.allclose(taylor_outputs(ob)(th), outputs_of(ob)(th), atol=1e-12, rtol=0)
        assert abs(float(tob.loss(th) - ob.loss(th))) < 1e-12
        assert torch.allclose(tob.grad(th), ob.grad(th), atol=1e-12, rtol=0)
        V = torch.randn(ob.P, 3, generator=g, dtype=F64)
        assert torch.allclose(tob.hvp(th, V), ob.hvp(th, V), atol=1e-11, rtol=0)
    assert float(outputs_of(ob)(ob.theta0 + step(ob, 3.0)).abs().max()) > 1.0  # not a trivial check


def test_taylor_model_of_an_mlp_matches_the_dense_expansion():
    """Tiny ELU MLP: at θ₀ the Taylor model's value, Jacobian and Hessian in θ are the network's (jacrev and
    hessian of both); at θ₀ + δ it equals f₀ + J₀δ + ½δᵀH₀δ assembled from the dense pieces (einsum), its second
    directional derivative is δᵀH₀δ at every θ, and it differs from the network by O(‖δ‖³)."""
    ob = tiny_objective("mse", n=4)
    f, f2, th0 = outputs_of(ob), taylor_outputs(ob), ob.theta0
    J0, H0 = jacrev(f)(th0), hessian(f)(th0)  # N × Q × P and N × Q × P × P
    assert torch.allclose(f2(th0), f(th0), atol=1e-14, rtol=0)
    assert torch.allclose(jacrev(f2)(th0), J0, atol=1e-12, rtol=0)
    assert torch.allclose(hessian(f2)(th0), H0, atol=1e-12, rtol=0)
    d = step(ob, 0.2, seed=2)
    dense = f(th0) + J0 @ d + 0.5 * torch.einsum("nqps,p,s->nq", H0, d, d)
    assert torch.allclose(f2(th0 + d), dense, atol=1e-12, rtol=0)
    v = step(ob, 1.0, seed=3)
    curve = lambda s: f2(th0 + d + s * v)  # noqa: E731
    second = torch.func.jacfwd(torch.func.jacfwd(curve))(torch.zeros((), dtype=F64))
    assert torch.allclose(second, torch.einsum("nqps,p,s->nq", H0, v, v), atol=1e-12, rtol=0)
    f0, d1, d2 = second_order_terms(f, th0, d)
    assert torch.allclose(d1, J0 @ d, atol=1e-13, rtol=0)
    assert torch.allclose(d2, torch.einsum("nqps,p,s->nq", H0, d, d), atol=1e-12, rtol=0)
    rem = [float((f(th0 + s * d) - f2(th0 + s * d)).abs().max()) for s in (0.1, 0.05)]
    assert rem[0] > 1e-8 and rem[0] / rem[1] == pytest.approx(8.0, rel=0.15)  # third-order remainder


@pytest.mark.parametrize("method", ["backward", "jvp"])
def test_taylor_objective_curvature(method):
    """The Taylor objective's loss Hessian at θ₀ is the network's (conftest's dense_loss, torch.func.hessian),
    and away from θ₀ its Hessian products and gradient are those of its own functional loss."""
    ob = tiny_objective("ce", n=4)
    ob.hvp_method = method
    tob = taylor_objective(ob)
    assert tob.hvp_method == method and tob.P == ob.P and torch.equal(tob.theta0, ob.theta0)
    eye = torch.eye(ob.P, dtype=F64)
    assert (tob.hvp(ob.theta0, eye) - hessian(dense_loss(ob))(ob.theta0)).abs().max() < 1e-10
    th = ob.theta0 + step(ob, 0.3, seed=4)
    assert (tob.hvp(th, eye) - hessian(tob.loss)(th)).abs().max() < 1e-10
    assert torch.allclose(tob.grad(th), torch.func.grad(tob.loss)(th), atol=1e-12, rtol=0)
    assert (tob.hvp(th, eye) - ob.hvp(th, eye)).abs().max() > 1e-4  # away from θ₀ the two models differ


def test_taylor_model_moves_theta0_with_its_dtype():
    ob = tiny_objective("mse")
    tm = TaylorModel(ob.model, ob.theta0 + 1.0).float()
    assert tm.theta.dtype == tm.theta0.dtype == torch.float32
    assert [n for n, _ in tm.named_parameters()] == ["theta"] and not list(tm.buffers())
    with pytest.raises(ValueError, match="flat vector"):
        TaylorModel(ob.model, torch.zeros(3, dtype=F64))


# ---------------------------------------------------------------------------------------------- closed-form flow


def scalar_two_layer(w1: float, w2: float) -> Objective:
    """f = w₂w₁x on the single input x = 1 with MSE to the one-hot target 1: L = ½(w₁w₂ − 1)²."""
    net = nn.Sequential(nn.Linear(1, 1, bias=False, dtype=F64), nn.Linear(1, 1, bias=False, dtype=F64))
    with torch.no_grad():
        net[0].weight.fill_(w1)
        net[1].weight.fill_(w2)
    return Objective(net, torch.ones(1, 1, dtype=F64), torch.zeros(1, dtype=torch.long), loss="mse")


def lam_exact(p: float, c: float) -> float:
    return (math.sqrt(c * c + 4 * p * p) + math.sqrt(c * c + 4 * (2 * p - 1) ** 2)) / 2


def test_balanced_flow_sharpens_as_the_logistic_solution():
    """w₁ = w₂ = √0.1 (p₀ = 0.1): λ_max falls from 0.9 to 0.5 (at p = ½) and then sharpens to 2 − O(e^{−2t});
    RKC2 at Δt = 0.01 follows the exact λ_max(t) to O(Δt²)."""
    ob = scalar_two_layer(math.sqrt(0.1), math.sqrt(0.1))
    run = taylor_flow(ob, RungeKuttaChebyshev(dt_max=0.01, adaptive=False), Stop(time=3.0), tol=1e-10)
    tab = run.table
    t = torch.tensor(tab["t"].to_numpy(), dtype=F64)
    p = 1 / (1 + (1 / 0.1 - 1) * torch.exp(-2 * t))
    exact = torch.maximum(3 * p - 1, 1 - p)
    assert tab["lam_hess_converged"].all() and len(tab) == 301
    assert float((torch.tensor(tab["lam_hess"].to_numpy()) - exact).abs().max()) < 1e-4
    assert run.lam_start == pytest.approx(0.9, abs=1e-12)
    assert run.lam_end == pytest.approx(float(exact[-1]), abs=1e-4) and run.sharpening > 2.1
    assert 0.5 - 1e-4 < float(tab["lam_hess"].min()) < 0.51  # the kink at p = ½, sampled every Δt


def test_unbalanced_flow_follows_the_closed_form():
    """w₁ = 0.2, w₂ = 0.6 (c = −0.32): λ_max(t) = λ(p(t), c) with p(t) from the closed-form t(p)."""
    u0, v0 = 0.2, 0.6
    p0, c = u0 * v0, u0 * u0 - v0 * v0
    k = 4 + c * c

    def G(x):
        return math.log((2 * k - 8 * x + 2 * math.sqrt(k) * math.sqrt(4 * x * x - 8 * x + k)) / x) / math.sqrt(k)

    def p_at(t):
        return p0 if t == 0 else brentq(lambda p: G(1 - p) - G(1 - p0) - t, p0, 1 - 1e-15, xtol=1e-15)

    run = taylor_flow(scalar_two_layer(u0, v0), RungeKuttaChebyshev(dt_max=0.01, adaptive=False),
                      Stop(time=3.0), tol=1e-10, every=5)
    tab = run.table.dropna(subset=["lam_hess"])
    assert len(tab) == 61  # every 5th of 300 steps and the final iterate
    err = max(abs(lam - lam_exact(p_at(t), c)) for t, lam in zip(tab["t"], tab["lam_hess"]))
    assert err < 1e-4
    assert run.lam_start == pytest.approx(lam_exact(p0, c), abs=1e-12) and run.sharpening > 2.0
