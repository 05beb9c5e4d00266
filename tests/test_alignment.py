"""Chain alignment α, per-layer factors aₖ and layer norms on constructed and random networks."""
import math

import pytest
import torch
from torch.func import jacrev

from eoslib.alignment import (
    alignment_stats, alignment_summary, chain_alignment, is_mlp, layer_factors, layer_norms, probe_subset,
    spectral_norms,
)
from eoslib.jacobians import layerwise_jacobians, preactivations
from eoslib.models import cnn, mlp

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
