"""Layerwise Jacobians: closed form and matrix-free path against per-example ``torch.func.jacrev`` oracles."""
import inspect
import math

import pytest
import torch
from torch import nn
from torch.func import grad, jacrev, vmap

from eoslib.jacobians import (
    activation_derivative, chain_from_top,
    chain_jacobian, chain_jacobians, chain_map, chain_norm_matfree, cut_indices, input_layer_norm_matfree,
    input_map, layer_map, layer_norms_matfree, layerwise_jacobians, layerwise_jacobians_dense, mlp_parts, mlp_pass,
    per_example_jvp, per_example_vjp, preactivations, spectral_norm_matfree,
)
from eoslib.models import cnn, mlp

D = torch.float64
TOL = 1e-10  # power-iteration residual tolerance used below
# torch-internal: the first forward-mode AD call scripts its JVP decompositions with the deprecated torch.jit
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
ACTS = ["elu", "tanh", "relu", "gelu", "softplus"]


def _net(act="elu", depth=4, seed=0):
    return mlp(5, 6, depth, 3, activation=act, init="default", seed=seed, dtype=D)


def _X(n=7, d=5, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=D)


def _one(seq):
    return lambda z: seq(z.unsqueeze(0)).squeeze(0)


@pytest.mark.parametrize("act", ACTS)
def test_closed_form_matches_jacrev_per_example(act):
    """Jᵏ[i] = jacrev of the cut network x̂ᵏ ↦ x̂ᵏ⁺¹ (modules 2k−1, 2k of the Sequential) at x̂ᵏᵢ."""
    model, X = _net(act), _X()
    Js = layerwise_jacobians(model, X)
    zs = preactivations(model, X)
    assert len(Js) == 3 and Js[0].shape == (7, 6, 6) and Js[-1].shape == (7, 3, 6)
    for k, J in enumerate(Js, start=1):
        seg = _one(model[2 * k - 1: 2 * k + 1])
        oracle = torch.stack([jacrev(seg)(zs[k - 1][i].detach()) for i in range(X.shape[0])])
        assert (J - oracle).abs().max() < 1e-12


@pytest.mark.parametrize("act", ["elu", "tanh"])
def test_chain_matches_jacrev_of_output(act):
    """P₁ = ∂f/∂x̂¹ (jacrev of model[1:]); every Pₖ = ∂f/∂x̂ᵏ; Pᴷ = I."""
    model, X = _net(act, depth=5), _X()
    zs = preactivations(model, X)
    P1 = chain_jacobian(model, X)
    Ps = chain_jacobians(model, X)
    assert torch.equal(P1, Ps[0]) and P1.shape == (7, 3, 6)
    assert torch.equal(Ps[-1], torch.eye(3, dtype=D).expand(7, 3, 3))
    for k, P in enumerate(Ps[:-1], start=1):
        f = _one(model[2 * k - 1:])
        oracle = torch.stack([jacrev(f)(zs[k - 1][i].detach()) for i in range(X.shape[0])])
        assert (P - oracle).abs().max() < 1e-12


#: hand-written σ′ (the closed forms eoslib used before torch.func), an oracle independent of autograd
HAND_PRIME = {
    nn.ELU: lambda a, z: torch.where(z > 0, torch.ones_like(z), a.alpha * torch.exp(z)),
    nn.Tanh: lambda a, z: 1 - torch.tanh(z) ** 2,
    nn.ReLU: lambda a, z: (z > 0).to(z.dtype),
    nn.LeakyReLU: lambda a, z: torch.where(z > 0, torch.ones_like(z), torch.full_like(z, a.negative_slope)),
    nn.Sigmoid: lambda a, z: torch.sigmoid(z) * (1 - torch.sigmoid(z)),
    nn.SiLU: lambda a, z: torch.sigmoid(z) * (1 + z * (1 - torch.sigmoid(z))),
    nn.GELU: lambda a, z: 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-z * z / 2) / math.sqrt(2 * math.pi),
    nn.Softplus: lambda a, z: torch.where(a.beta * z > a.threshold, torch.ones_like(z), torch.sigmoid(a.beta * z)),
    nn.Identity: lambda a, z: torch.ones_like(z),
}
EPS = torch.finfo(D).eps


@pytest.mark.parametrize("act", [
    nn.ELU(), nn.ELU(alpha=0.5), nn.Tanh(), nn.ReLU(), nn.LeakyReLU(0.1), nn.Sigmoid(), nn.SiLU(), nn.GELU(),
    nn.GELU(approximate="tanh"), nn.Softplus(), nn.Softplus(beta=2.0, threshold=5.0), nn.Identity(),
    nn.CELU(), nn.SELU(), nn.Mish(), nn.Softsign(),
], ids=repr)
def test_activation_derivative_matches_hand_formulas_and_autograd(act):
    """σ′ by one forward-mode pass = the hand-written closed form (where there is one) and = reverse-mode
    ``vmap(grad(σ))``, on a grid with kinks (±0) and thresholds (Softplus 2.5, 20). Tolerance 2·eps: σ′ ≤ 1.13
    here, so two roundings of the same value differ by ≤ 2 ulp of [1, 2) (measured ≤ 1 ulp)."""
    z = torch.cat([torch.linspace(-12, 12, 241, dtype=D), torch.tensor([0.0, -0.0, 2.5, 10.0, 20.0], dtype=D)])
    z = z.reshape(2, 123)
    d = activation_derivative(act, z)
    assert d.shape == z.shape and d.dtype == D
    torch.testing.assert_close(d, vmap(grad(act))(z.reshape(-1)).reshape(z.shape), rtol=0, atol=2 * EPS)
    hand = HAND_PRIME.get(type(act))
    if hand is not None and getattr(act, "approximate", "none") == "none":
        torch.testing.assert_close(d, hand(act, z), rtol=0, atol=2 * EPS)


def test_activation_derivative_branch_conventions_and_second_derivative():
    """At the kinks the same one-sided values as autograd's backward: ReLU′(0) = 0, ELU′(0) = α,
    LeakyReLU′(0) = slope; Softplus′ = 1 above its threshold. The result is differentiable again (σ″)."""
    zero = torch.zeros(3, dtype=D)
    assert torch.equal(activation_derivative(nn.ReLU(), zero), zero)
    assert torch.equal(activation_derivative(nn.ELU(alpha=0.7), zero), torch.full((3,), 0.7, dtype=D))
    assert torch.equal(activation_derivative(nn.LeakyReLU(0.2), zero), torch.full((3,), 0.2, dtype=D))
    assert torch.equal(activation_derivative(nn.Softplus(beta=1.0, threshold=5.0), torch.full((3,), 5.5, dtype=D)),
                       torch.ones(3, dtype=D))
    z = torch.linspace(-3, 3, 13, dtype=D, requires_grad=True)
    (dd,) = torch.autograd.grad(activation_derivative(nn.Tanh(), z).sum(), z)
    t = torch.tanh(z.detach())
    torch.testing.assert_close(dd, -2 * t * (1 - t * t), rtol=0, atol=4 * EPS)  # tanh″ = −2 tanh (1 − tanh²)
    with torch.no_grad():  # forward-mode AD is not switched off by no_grad
        torch.testing.assert_close(activation_derivative(nn.Tanh(), z), 1 - t * t, rtol=0, atol=2 * EPS)


def test_chain_from_top_order_and_parameter_override():
    """``chain_from_top`` yields Pᴷ = I, …, P₁ lazily (a generator); ``mlp_pass`` with the model's own
    parameters passed as ``params`` (new tensors) gives the same pass, and its inputs are x⁰..xᴷ⁻¹."""
    model, X = _net(depth=4), _X()
    p = mlp_pass(model, X)
    gen = chain_from_top(p)
    assert inspect.isgenerator(gen)
    Ps = list(gen)
    assert len(Ps) == 4 and torch.equal(Ps[0], torch.eye(3, dtype=D).expand(7, 3, 3))
    for got, want in zip(Ps, chain_jacobians(model, X)[::-1]):
        assert torch.equal(got, want)
    params = {n: t.detach().clone() for n, t in model.named_parameters()}
    q = mlp_pass(model, X, params)
    for a, b in zip(q.inputs + q.slopes, p.inputs + p.slopes):
        assert torch.equal(a, b)
    expected, h = [X], X  # x⁰ = X, xᵏ = σ(x̂ᵏ) from the modules themselves
    for m in list(model)[:-1]:
        h = m(h)
        if not isinstance(m, nn.Linear):
            expected.append(h)
    assert len(p.inputs) == 4 and all(torch.equal(a, b) for a, b in zip(p.inputs, expected))
    with pytest.raises(KeyError, match="params has no '2.weight'"):
        mlp_pass(model, X, {k: v for k, v in params.items() if k != "2.weight"})


def test_chain_is_product_of_layer_jacobians():
    model, X = _net(depth=5), _X()
    Js = layerwise_jacobians(model, X)
    prod = Js[-1]
    for J in reversed(Js[:-1]):
        prod = prod @ J
    torch.testing.assert_close(chain_jacobian(model, X), prod, rtol=0, atol=1e-13)


def test_closed_form_is_differentiable():
    """Closed-form Jacobians keep the autograd graph to the weights (useful for alignment gradients)."""
    model, X = _net(), _X()
    layerwise_jacobians(model, X)[0].sum().backward()
    assert model[2].weight.grad is not None and model[2].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "bad, match",
    [
        (nn.Sequential(nn.Linear(2, 3), nn.ELU()), "odd length"),
        (nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3), nn.Linear(3, 1)), "module 1 is Linear"),
        (nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1)), "module 1 is BatchNorm1d"),
        (nn.Sequential(nn.ELU(), nn.Linear(2, 3), nn.ELU()), "module 0 is ELU"),
    ],
)
def test_mlp_structure_is_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        layerwise_jacobians(bad, torch.randn(2, 2))


def test_structure_errors_are_clear():
    with pytest.raises(TypeError, match="nn.Sequential"):
        mlp_parts(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="last module"):
        cut_indices(nn.Sequential(nn.Linear(2, 2), nn.ELU()))
    with pytest.raises(ValueError, match="has parameters"):
        cut_indices(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Linear(2, 1)))
    with pytest.raises(ValueError, match="1..K−1"):
        layer_map(_net(), 4)


def test_matfree_jvp_vjp_match_closed_form():
    model, X = _net("gelu"), _X()
    Js, zs = layerwise_jacobians(model, X), preactivations(model, X)
    g = torch.Generator().manual_seed(3)
    for k, J in enumerate(Js, start=1):
        V = torch.randn(J.shape[0], J.shape[2], generator=g, dtype=D)
        W = torch.randn(J.shape[0], J.shape[1], generator=g, dtype=D)
        fn = layer_map(model, k)
        torch.testing.assert_close(per_example_jvp(fn, zs[k - 1], V), (J @ V[..., None])[..., 0], rtol=0, atol=1e-13)
        torch.testing.assert_close(per_example_vjp(fn, zs[k - 1], W), (W[:, None, :] @ J)[:, 0], rtol=0, atol=1e-13)


def _check_norm(est, dense, tol=TOL):
    """Rayleigh quotient ⇒ est ≤ ‖J‖₂ (up to rounding); residual r ≤ tol ⇒ relative error ≤ r/2 + O(r²)."""
    assert (est <= dense * (1 + 1e-13)).all()
    assert ((dense - est) / dense).max() <= tol


@pytest.mark.parametrize("act", ["elu", "tanh", "relu"])
def test_matfree_norms_match_dense_on_mlp(act):
    model, X = _net(act, depth=5), _X(8)
    dense = torch.stack([torch.linalg.matrix_norm(J, ord=2) for J in layerwise_jacobians(model, X)], dim=1)
    _check_norm(layer_norms_matfree(model, X, tol=TOL, max_iter=5000), dense.detach())
    chain = torch.linalg.matrix_norm(chain_jacobian(model, X), ord=2).detach()
    _check_norm(chain_norm_matfree(model, X, tol=TOL, max_iter=5000), chain)
    _check_norm(chain_norm_matfree(model, X, k=3, tol=TOL, max_iter=5000),
                torch.linalg.matrix_norm(chain_jacobian(model, X, k=3), ord=2).detach())


def test_matfree_on_cnn_matches_dense_jacrev():
    """Tiny CNN (1×6×6 → 3 channels × 2 convs → Linear): preactivations are the conv/linear outputs."""
    model = cnn((1, 6, 6), channels=3, depth=2, out_dim=4, init="default", seed=0, dtype=D)
    X = _X(5, 36)
    zs = preactivations(model, X)
    assert [z.shape[1:] for z in zs] == [(3, 3, 3), (3, 2, 2), (4,)]
    # independent oracle: loop over examples, jacrev of hand-cut segments (act, conv) and (act, flatten, linear)
    segs = [_one(model[2:4]), _one(model[4:7])]
    dense = [torch.stack([jacrev(s)(z[i]).reshape(-1, z[i].numel()) for i in range(5)]) for s, z in zip(segs, zs)]
    for a, b in zip(layerwise_jacobians_dense(model, X), dense):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    _check_norm(layer_norms_matfree(model, X, tol=TOL, max_iter=5000),
                torch.stack([torch.linalg.matrix_norm(J, ord=2) for J in dense], dim=1))
    P1 = torch.stack([jacrev(_one(model[2:]))(zs[0][i]).reshape(4, -1) for i in range(5)])
    _check_norm(chain_norm_matfree(model, X, tol=TOL, max_iter=5000), torch.linalg.matrix_norm(P1, ord=2))
    # from the input (k = 0): ∂f/∂x of the whole network, and ∂x̂¹/∂x of (Unflatten, Conv) — the same A¹ for all x
    dfdx = torch.stack([jacrev(_one(model))(X[i]) for i in range(5)])
    _check_norm(chain_norm_matfree(model, X, k=0, tol=TOL, max_iter=5000), torch.linalg.matrix_norm(dfdx, ord=2))
    A1 = torch.stack([jacrev(_one(model[:2]))(X[i]).reshape(27, 36) for i in range(5)])
    _check_norm(input_layer_norm_matfree(model, X, tol=TOL, max_iter=5000), torch.linalg.matrix_norm(A1, ord=2))


def test_input_map_with_nonlinear_preprocessing():
    """A nonlinear module before the first cut makes ∂x̂¹/∂x depend on x: one power iteration per example."""
    model = nn.Sequential(nn.Tanh(), nn.Linear(5, 4), nn.ELU(), nn.Linear(4, 3)).to(D)
    X = 2 * _X()
    dense = torch.stack([jacrev(input_map(model))(x) for x in X])
    assert not torch.allclose(dense[0], dense[1])
    _check_norm(input_layer_norm_matfree(model, X, tol=TOL, max_iter=5000), torch.linalg.matrix_norm(dense, ord=2))
    with pytest.raises(ValueError, match="0..K=2"):
        chain_map(model, 3)


def test_power_iteration_result_and_determinism():
    model, X = _net(), _X()
    fn, z = chain_map(model, 1), preactivations(model, X)[0].detach()
    r1 = spectral_norm_matfree(fn, z, tol=1e-10, seed=4)
    r2 = spectral_norm_matfree(fn, z, tol=1e-10, seed=4)
    assert torch.equal(r1.norm, r2.norm) and r1.iterations == r2.iterations
    assert (r1.residual <= 1e-10).all() and r1.norm.requires_grad is False
    P1 = chain_jacobian(model, X).detach()
    # left/right vectors are unit top singular vectors: P₁ v = σ u
    torch.testing.assert_close((P1 @ r1.right[..., None])[..., 0], r1.norm[:, None] * r1.left, rtol=0, atol=1e-12)


def test_change_criterion_is_cheaper_but_unbounded():
    """Stopping on relative change of σ takes fewer steps (230 vs 582 here) but its error is not bounded by
    tol: here 1.4e-9 relative with tol = 1e-10 (the residual criterion reaches 4e-16)."""
    model, X = _net("tanh", depth=5), _X(8)
    fn, z = layer_map(model, 2), preactivations(model, X)[1].detach()
    dense = torch.linalg.matrix_norm(layerwise_jacobians(model, X)[1], ord=2).detach()
    res = spectral_norm_matfree(fn, z, tol=TOL, max_iter=5000)
    chg = spectral_norm_matfree(fn, z, tol=TOL, max_iter=5000, criterion="change")
    assert chg.iterations < res.iterations
    _check_norm(chg.norm, dense, tol=1e-6)
    _check_norm(res.norm, dense, tol=1e-14)  # Kato–Temple: error ~ r²·θ/gap, far below r
    with pytest.raises(ValueError, match="criterion"):
        spectral_norm_matfree(fn, z, criterion="svd")


def test_power_iteration_warns_when_not_converged():
    model, X = _net(), _X()
    with pytest.warns(RuntimeWarning, match="not converged"):
        spectral_norm_matfree(chain_map(model, 1), preactivations(model, X)[0].detach(), tol=1e-300, max_iter=3)
