"""Chain alignment α, per-layer factors aₖ and layer norms on constructed and random networks."""
import math

import pytest
import torch
from torch.func import jacrev

from eoslib.alignment import (
    alignment_functional, alignment_stats, alignment_summary, chain_alignment, full_alignment_stats, input_alignment,
    is_mlp, layer_factors, layer_norms, probe_subset, spectral_norms,
)
from eoslib.jacobians import layerwise_jacobians, preactivations
from eoslib.models import cnn, mlp
from eoslib.objective import Objective

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
D = torch.float64


def _X(n=9, d=3, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=D)


def _set(layer, W, b):
    with torch.no_grad():
        layer.weight.copy_(W)
        layer.bias.copy_(b)


def _positive_regime_net(depth, width, hidden, last):
    """ELU MLP whose preactivations are all > 0, so σ′ ≡ 1 and Jᵏ = Aᵏ⁺¹ exactly.

    x̂¹ = 0.05·A x + 5 > 0 for |x| ≲ 10; the hidden weights `hidden[j]` are entrywise ≥ 0 and the biases
    are 1, so every later hidden preactivation is > 0 as well (ELU is the identity on positives).
    """
    model = mlp(3, width, depth, 2, activation="elu", seed=0, dtype=D)
    lins = model[0::2]
    _set(lins[0], 0.05 * lins[0].weight, torch.full((width,), 5.0, dtype=D))
    for lin, W in zip(lins[1:-1], hidden):
        _set(lin, W, torch.ones(width, dtype=D))
    _set(lins[-1], last, torch.zeros(2, dtype=D))
    return model


def _assert_positive_regime(model, X):
    assert all((z > 0).all() for z in preactivations(model, X)[:-1])


def test_aligned_rank_one_layers_give_alpha_one():
    """Aᵏ = cₖ p pᵀ (k = 2..K−1), Aᴷ = c q pᵀ with σ′ ≡ 1: every Jᵏ is rank one with right singular vector p
    equal to the left singular vector p of the layer below, so ‖P₁‖ = Πₖ‖Jᵏ‖ and α = 1, all aₖ = 1."""
    p = torch.full((4,), 0.5, dtype=D)  # unit, positive
    q = torch.tensor([0.6, 0.8], dtype=D)
    model = _positive_regime_net(5, 4, [c * torch.outer(p, p) for c in (2.0, 0.5, 3.0)], 1.5 * torch.outer(q, p))
    X = _X()
    _assert_positive_regime(model, X)
    torch.testing.assert_close(chain_alignment(model, X), torch.ones(9, dtype=D), rtol=0, atol=1e-14)
    torch.testing.assert_close(layer_factors(model, X), torch.ones(9, 4, dtype=D), rtol=0, atol=1e-14)
    torch.testing.assert_close(layer_norms(model, X), torch.tensor([2.0, 0.5, 3.0, 1.5], dtype=D).expand(9, 4))


def test_misaligned_layers_give_known_alpha():
    """J¹ = A² = e₂e₁ᵀ maps coordinate 1 to 2, but J² = A³ = q (c e₁ + s e₂)ᵀ reads mostly coordinate 1:
    P₁ = s q e₁ᵀ, ‖J¹‖ = ‖J²‖ = 1, so α = s = 0.6 < 1; backpropagating v = q gives a₂ = 1, a₁ = s."""
    e = torch.eye(3, dtype=D)
    q = torch.tensor([0.6, 0.8], dtype=D)
    c, s = 0.8, 0.6
    model = _positive_regime_net(3, 3, [torch.outer(e[1], e[0])], torch.outer(q, c * e[0] + s * e[1]))
    X = _X()
    _assert_positive_regime(model, X)
    torch.testing.assert_close(chain_alignment(model, X), torch.full((9,), s, dtype=D), rtol=0, atol=1e-14)
    torch.testing.assert_close(layer_factors(model, X), torch.tensor([s, 1.0], dtype=D).expand(9, 2),
                               rtol=0, atol=1e-14)


@pytest.mark.parametrize("act", ["elu", "tanh", "relu", "gelu"])
def test_factors_multiply_to_alpha_on_random_nets(act):
    """‖vᵀP₁‖ = ‖P₁‖ for the top left singular vector v telescopes into Πₖ aₖ = α; also 0 < α ≤ 1."""
    model, X = mlp(3, 8, 6, 3, activation=act, init="default", seed=2, dtype=D), _X(20)
    alpha = chain_alignment(model, X)
    assert ((alpha > 0) & (alpha <= 1 + 1e-12)).all()
    factors = layer_factors(model, X)
    assert factors.shape == (20, 5) and ((factors > 0) & (factors <= 1 + 1e-12)).all()
    torch.testing.assert_close(factors.prod(dim=1), alpha, rtol=1e-12, atol=0)


def test_layer_norms_and_chunking():
    """Gram-eigvalsh norms equal matrix_norm(ord=2) to ~eps, also for wide/tall and float32 matrices."""
    model, X = mlp(3, 8, 5, 3, init="default", seed=3, dtype=D), _X(11)
    dense = torch.stack([torch.linalg.matrix_norm(J, ord=2) for J in layerwise_jacobians(model, X)], 1).detach()
    torch.testing.assert_close(layer_norms(model, X), dense, rtol=1e-14, atol=0)
    g = torch.Generator().manual_seed(0)
    for shape, dtype, rtol in [((4, 3, 9), D, 1e-14), ((4, 9, 3), D, 1e-14), ((4, 64, 64), torch.float32, 1e-5)]:
        J = torch.randn(shape, generator=g, dtype=D).to(dtype)
        torch.testing.assert_close(spectral_norms(J), torch.linalg.matrix_norm(J, ord=2), rtol=rtol, atol=0)
    for a, b in zip(alignment_stats(model, X, chunk_size=4), alignment_stats(model, X)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


def test_alpha_invariant_to_positive_rescaling():
    """(a) ReLU with zero biases: scaling Aᵏ by c > 0 scales every preactivation x̂ʲ, j ≥ k, by c (ReLU is
    positively homogeneous), so σ′ = 1[x̂ > 0] is unchanged; only Jᵏ⁻¹ = Aᵏ diag(σ′) scales (and P₁ with
    it, k ≥ 2), so α = ‖P₁‖/Πₖ‖Jᵏ‖ and every aₖ are unchanged. (b) Any activation, nonzero biases: scaling
    the last layer Aᴷ scales only Jᴷ⁻¹ and P₁. (Contrast: scaling a middle ELU layer with biases moves σ′.)"""
    X = _X(15)
    relu = mlp(3, 16, 5, 2, activation="relu", init="xavier", seed=4, dtype=D)  # xavier: zero biases
    alpha0, f0, n0 = chain_alignment(relu, X), layer_factors(relu, X), layer_norms(relu, X)
    assert alpha0.isfinite().all()  # no layer dead on an example (α would be 0/0 there)
    for j, lin in enumerate(relu[0::2]):  # Aʲ⁺¹
        with torch.no_grad():
            lin.weight.mul_(3.7)
        torch.testing.assert_close(chain_alignment(relu, X), alpha0, rtol=1e-12, atol=0)
        torch.testing.assert_close(layer_factors(relu, X), f0, rtol=1e-12, atol=0)
        scaled = n0.clone()
        if j >= 1:
            scaled[:, j - 1] *= 3.7
        torch.testing.assert_close(layer_norms(relu, X), scaled, rtol=1e-12, atol=0)
        with torch.no_grad():
            lin.weight.div_(3.7)

    elu = mlp(3, 6, 5, 2, activation="elu", init="default", seed=5, dtype=D)  # nonzero biases
    alpha0 = chain_alignment(elu, X)
    with torch.no_grad():
        elu[-1].weight.mul_(0.3)
    torch.testing.assert_close(chain_alignment(elu, X), alpha0, rtol=1e-12, atol=0)
    with torch.no_grad():
        elu[2].weight.mul_(3.0)
    assert not torch.allclose(chain_alignment(elu, X), alpha0, rtol=1e-6)


def test_matfree_agrees_with_closed_form_on_mlp():
    model, X = mlp(3, 7, 5, 3, activation="tanh", init="default", seed=6, dtype=D), _X(10)
    closed = alignment_stats(model, X, method="closed")
    free = alignment_stats(model, X, method="matfree", tol=1e-12, max_iter=5000)
    for a, b in zip(closed, free):  # residual ≤ 1e-12 ⇒ norms to ~1e-12 relative; factors via the top vectors
        torch.testing.assert_close(b, a, rtol=1e-9, atol=0)


def test_cnn_alignment_matches_dense_oracle():
    model = cnn((1, 6, 6), channels=3, depth=2, out_dim=4, init="default", seed=0, dtype=D)
    X = _X(5, 36)
    zs = preactivations(model, X)
    one = lambda seq: (lambda z: seq(z.unsqueeze(0)).squeeze(0))  # noqa: E731
    J = [torch.stack([jacrev(one(s))(z[i]).reshape(-1, z[i].numel()) for i in range(5)])
         for s, z in zip([model[2:4], model[4:7]], zs)]
    P1 = J[1] @ J[0]
    dense_alpha = torch.linalg.matrix_norm(P1, ord=2) / math.prod(torch.linalg.matrix_norm(j, ord=2) for j in J)
    alpha = chain_alignment(model, X, tol=1e-12, max_iter=5000)  # "auto" → matrix-free
    torch.testing.assert_close(alpha, dense_alpha, rtol=1e-10, atol=0)
    torch.testing.assert_close(layer_factors(model, X, tol=1e-12, max_iter=5000).prod(1), alpha, rtol=1e-10, atol=0)
    assert not is_mlp(model)
    with pytest.raises(ValueError, match="expected nn.Linear"):
        chain_alignment(model, X, method="closed")


def test_single_layer_and_bad_method():
    model, X = mlp(3, 4, 1, 2, dtype=D), _X(4)
    assert torch.equal(chain_alignment(model, X), torch.ones(4, dtype=D))
    assert layer_factors(model, X).shape == (4, 0)
    with pytest.raises(ValueError, match="method"):
        chain_alignment(model, X, method="svd")


def test_alignment_summary_and_probe():
    model, X = mlp(3, 8, 6, 3, seed=7, dtype=D), _X(50)
    s = alignment_summary(model, X, probe=20, seed=3)
    assert s == alignment_summary(model, X, probe=20, seed=3)  # deterministic subset
    assert s["n_examples"] == 20 and len(s["log_norm_mean"]) == 5 and len(s["factor_mean"]) == 5
    sub = probe_subset(X, 20, seed=3)
    alpha = chain_alignment(model, sub)
    assert s["alpha_mean"] == pytest.approx(float(alpha.mean()), rel=1e-12)
    assert s["alpha_median"] == pytest.approx(float(alpha.quantile(0.5)), rel=1e-12)
    assert s["alpha_gmean"] == pytest.approx(float(alpha.log().mean().exp()), rel=1e-12)
    assert s["alpha_gmean"] <= s["alpha_mean"]
    assert math.exp(s["log_chain_gain_mean"]) <= s["chain_gain_mean"]
    assert probe_subset(X, None) is X and probe_subset(X, 80) is X
    assert alignment_summary(model, X, probe=20, seed=4) != s
    assert alignment_summary(model, X)["n_examples"] == 50


# ---------------------------------------------------------------------------------------------- from the input
def _one(seq):
    return lambda z: seq(z.unsqueeze(0)).squeeze(0)


def _dense_alpha_in(model, X, segments, first):
    """α_in(xᵢ) = ‖∂f/∂x‖₂ / (‖∂x̂¹/∂x‖₂ Πₖ‖Jᵏ‖₂) with every Jacobian by jacrev of a hand-cut piece of the
    network at each example and every norm by SVD (matrix_norm): independent of the closed/matrix-free paths."""
    zs = preactivations(model, X)
    n = X.shape[0]
    J = [torch.stack([jacrev(_one(s))(z[i]).reshape(-1, z[i].numel()) for i in range(n)]) for s, z in zip(segments, zs)]
    dfdx = torch.stack([jacrev(_one(model))(X[i]) for i in range(n)])
    A1 = torch.stack([jacrev(_one(first))(X[i]).reshape(zs[0][i].numel(), -1) for i in range(n)])
    norm = lambda M: torch.linalg.matrix_norm(M, ord=2)  # noqa: E731
    return norm(dfdx) / (norm(A1) * math.prod(norm(j) for j in J)), norm(dfdx), norm(A1)


@pytest.mark.parametrize("act", ["elu", "tanh", "relu"])
def test_input_alignment_closed_form_matches_jacrev(act):
    model, X = mlp(3, 8, 4, 2, activation=act, init="default", seed=8, dtype=D), _X(8)
    segments = [model[2 * k - 1: 2 * k + 1] for k in (1, 2, 3)]
    alpha_in, gain, A1 = _dense_alpha_in(model, X, segments, model[:1])
    assert alpha_in.isfinite().all()  # no ReLU layer dead on an example
    s = full_alignment_stats(model, X, method="closed")
    torch.testing.assert_close(s["input_gain"], gain, rtol=1e-13, atol=0)  # eigvalsh vs SVD: ~eps·cond
    torch.testing.assert_close(s["input_norm"], A1, rtol=1e-13, atol=0)
    torch.testing.assert_close(input_alignment(model, X), alpha_in, rtol=1e-13, atol=0)
    assert ((alpha_in > 0) & (alpha_in <= chain_alignment(model, X) * (1 + 1e-12))).all()  # α_in ≤ α


def test_input_alignment_on_cnn_matches_dense_oracle():
    """Matrix-free: power iteration on x ↦ f and on (Unflatten, Conv) — residual ≤ 1e-12 ⇒ ~1e-12 relative."""
    model = cnn((1, 6, 6), channels=3, depth=2, out_dim=4, init="default", seed=0, dtype=D)
    X = _X(5, 36)
    alpha_in, gain, A1 = _dense_alpha_in(model, X, [model[2:4], model[4:7]], model[:2])
    s = full_alignment_stats(model, X, tol=1e-12, max_iter=5000)
    torch.testing.assert_close(s["input_gain"], gain, rtol=1e-10, atol=0)
    torch.testing.assert_close(s["input_norm"], A1, rtol=1e-10, atol=0)
    torch.testing.assert_close(input_alignment(model, X, tol=1e-12, max_iter=5000), alpha_in, rtol=1e-10, atol=0)


def test_input_alignment_on_constructed_nets():
    """σ′ ≡ 1 (positive regime), so ∂f/∂x = Aᴷ ⋯ A². (a) Aligned: A¹ = c p rᵀ has range p, the right singular
    vector of the rank-one chain, so ‖P₁A¹‖ = ‖P₁‖‖A¹‖ and α_in = α = 1. (b) The misaligned net of
    ``test_misaligned_layers_give_known_alpha`` (α = s) with A¹ = c (cos φ e₁ + sin φ e₂) rᵀ: P₁ = s q e₁ᵀ,
    so ∂f/∂x = s c cos φ q rᵀ, ‖A¹‖ = c, Π‖Jᵏ‖ = 1 and α_in = s cos φ."""
    X, r = _X(), torch.tensor([2.0, -1.0, 2.0], dtype=D) / 3  # unit r
    p = torch.full((4,), 0.5, dtype=D)
    q = torch.tensor([0.6, 0.8], dtype=D)
    aligned = _positive_regime_net(5, 4, [c * torch.outer(p, p) for c in (2.0, 0.5, 3.0)], 1.5 * torch.outer(q, p))
    _set(aligned[0], 0.3 * torch.outer(p, r), torch.full((4,), 5.0, dtype=D))
    _assert_positive_regime(aligned, X)
    torch.testing.assert_close(input_alignment(aligned, X), torch.ones(9, dtype=D), rtol=0, atol=1e-14)
    s = full_alignment_stats(aligned, X)
    torch.testing.assert_close(s["input_gain"], torch.full((9,), 0.3 * 2.0 * 0.5 * 3.0 * 1.5, dtype=D),
                               rtol=1e-14, atol=0)

    e = torch.eye(3, dtype=D)
    c, sn, cos_phi, sin_phi = 0.8, 0.6, 0.8, 0.6
    mis = _positive_regime_net(3, 3, [torch.outer(e[1], e[0])], torch.outer(q, c * e[0] + sn * e[1]))
    _set(mis[0], 0.2 * torch.outer(cos_phi * e[0] + sin_phi * e[1], r), torch.full((3,), 5.0, dtype=D))
    _assert_positive_regime(mis, X)
    torch.testing.assert_close(chain_alignment(mis, X), torch.full((9,), sn, dtype=D), rtol=0, atol=1e-14)
    torch.testing.assert_close(input_alignment(mis, X), torch.full((9,), sn * cos_phi, dtype=D), rtol=0, atol=1e-14)


def test_summary_input_keys():
    model, X = mlp(3, 8, 6, 3, seed=7, dtype=D), _X(50)
    s = alignment_summary(model, X, probe=20, seed=3)
    sub = probe_subset(X, 20, seed=3)
    a_in, full = input_alignment(model, sub), full_alignment_stats(model, sub)
    assert s["alpha_in_mean"] == pytest.approx(float(a_in.mean()), rel=1e-12)
    assert s["alpha_in_median"] == pytest.approx(float(a_in.quantile(0.5)), rel=1e-12)
    assert s["alpha_in_gmean"] == pytest.approx(float(a_in.log().mean().exp()), rel=1e-12)
    assert s["input_gain_mean"] == pytest.approx(float(full["input_gain"].mean()), rel=1e-12)
    assert math.exp(s["log_input_gain_mean"]) <= s["input_gain_mean"]
    A1 = model[0].weight.detach()
    assert s["input_layer_norm"] == pytest.approx(float(torch.linalg.matrix_norm(A1, ord=2)), rel=1e-13)
    assert s["alpha_in_mean"] <= s["alpha_mean"]
    for a, b in zip(alignment_stats(model, sub), (full["norms"], full["chain"], full["factors"])):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------- differentiable
FUNCTIONAL_KEYS = ("alpha_mean", "log_norm_product_mean", "log_chain_gain_mean")


def _objective(act, depth=4, seed=3):
    g = torch.Generator().manual_seed(seed)
    X, y = torch.randn(9, 4, generator=g, dtype=D), torch.randint(0, 3, (9,), generator=g)
    return Objective(mlp(4, 7, depth, 3, activation=act, init="default", seed=seed, dtype=D), X, y)


@pytest.mark.parametrize("act", ["elu", "tanh"])
def test_alignment_functional_value_equals_summary(act):
    """Same formulas as alignment_summary, summed in another order: agreement to a few ulps of |value| ≲ 3."""
    ob = _objective(act)
    theta = ob.theta0 + 0.1 * torch.randn(ob.P, generator=torch.Generator().manual_seed(1), dtype=D)
    F = alignment_functional(ob, theta)
    assert set(F) == set(FUNCTIONAL_KEYS) and all(v.dim() == 0 for v in F.values())
    s = alignment_summary(ob.to_model(theta), ob.X)
    assert F["alpha_mean"].item() == pytest.approx(s["alpha_mean"], rel=0, abs=1e-14)
    assert F["log_chain_gain_mean"].item() == pytest.approx(s["log_chain_gain_mean"], rel=0, abs=1e-14)
    assert F["log_norm_product_mean"].item() == pytest.approx(sum(s["log_norm_mean"]), rel=0, abs=1e-14)
    assert torch.exp(F["log_chain_gain_mean"] - F["log_norm_product_mean"]).item() == pytest.approx(s["alpha_gmean"],
                                                                                                     rel=1e-14)
    sub = probe_subset(ob.X, 5, seed=2)  # on a subset
    assert alignment_functional(ob, theta, sub)["alpha_mean"].item() == pytest.approx(
        alignment_summary(ob.to_model(theta), ob.X, probe=5, seed=2)["alpha_mean"], rel=0, abs=1e-14)


@pytest.mark.parametrize("act", ["elu", "tanh", "gelu"])
def test_alignment_functional_gradient_matches_finite_differences(act):
    """∇F·v (autograd; torch.func.grad gives the same) against the central difference (F(θ+hv) − F(θ−hv))/2h
    along a random unit v, h = 1e-4. Its error is h²|F‴|/6 + O(eps·|F|/h): measured |F‴| ≲ 1 here (the error
    falls 100× per 10× smaller h from h = 1e-2 to 1e-4, ≤ 1.1e-9 at 1e-4) and eps·|F|/h ≈ 1e-11, so 2e-8 bounds it
    with > 10× headroom; a gradient that misses the σ″ terms is off by 1e-3–1e-1."""
    ob = _objective(act)
    theta = ob.theta0.clone()
    g = torch.Generator().manual_seed(5)
    v = torch.randn(ob.P, generator=g, dtype=D)
    v /= v.norm()
    h = 1e-4
    for key in FUNCTIONAL_KEYS:
        F = lambda t: alignment_functional(ob, t)[key]  # noqa: E731
        t = theta.clone().requires_grad_(True)
        (grad_autograd,) = torch.autograd.grad(F(t), t)
        torch.testing.assert_close(torch.func.grad(F)(theta), grad_autograd, rtol=0, atol=1e-15)
        fd = (F(theta + h * v) - F(theta - h * v)) / (2 * h)
        assert abs(float(grad_autograd @ v - fd)) < 2e-8, (key, float(grad_autograd @ v), float(fd))


def test_alignment_functional_needs_an_mlp():
    model = cnn((1, 4, 4), channels=2, depth=1, out_dim=3, dtype=D)
    ob = Objective(model, _X(4, 16), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="needs an MLP"):
        alignment_functional(ob, ob.theta0)
