"""Layer shares, block bounds and the per-example bound against dense float64 Gram/NTK computations,
and the measurement hook against a fresh eigen-solve."""
import copy

import pytest
import torch
from torch.func import jacrev

from conftest import dense_jacobian_and_criterion_hessian, tiny_objective
from eoslib.curvature import block_bounds, layer_blocks, layer_shares, per_example_bound, top_curvature
from eoslib.eigen import top_eigenpairs
from eoslib.measurement import Measurement
from eoslib.objective import Objective
from eoslib.solvers import ExponentialEuler
from eoslib.training import Stop, train

# torch-internal: the first forward-mode AD call scripts its JVP decompositions with the deprecated torch.jit
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def gram_blocks(ob, theta):
    """B = D^{1/2} J / √N (NQ × P) so that G = BᵀB; returns the per-layer kernels K_k = B_k B_kᵀ."""
    J, D = dense_jacobian_and_criterion_hessian(ob, theta)
    ev, U = torch.linalg.eigh(D)
    Dh = U @ torch.diag_embed(ev.clamp_min(0).sqrt()) @ U.transpose(1, 2)
    B = (Dh @ J).reshape(ob.N * ob.Q, ob.P) / ob.N ** 0.5
    return [sum(B[:, s] @ B[:, s].T for s in sl) for sl in layer_blocks(ob).values()], B


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_layer_shares_equal_ntk_split(loss):
    ob = tiny_objective(loss, depth=4)
    theta = ob.theta0 + 0.2 * torch.randn(ob.P, dtype=torch.float64)
    Ks, B = gram_blocks(ob, theta)
    lam, U = torch.linalg.eigh(sum(Ks))
    u, lam1 = U[:, -1], lam[-1]
    ref = torch.stack([u @ K @ u / lam1 for K in Ks])
    shares = layer_shares(ob, theta, tol=1e-10)
    assert len(shares) == 4  # one per Linear layer (weight + bias)
    assert abs(shares.sum().item() - 1) < 1e-12 and (shares >= 0).all()
    # eigenvector error ~ residual/gap ≤ 1e-10·λ₁/gap; shares are quadratic in it
    assert (shares - ref).abs().max() < 1e-8
    G_dense = B.T @ B
    assert abs(torch.linalg.eigvalsh(G_dense)[-1] - lam1) < 1e-10 * lam1  # same λ_max from both sides


def test_block_bounds_and_per_example_bound():
    ob = tiny_objective("ce", depth=4)
    theta = ob.theta0 + 0.2 * torch.randn(ob.P, dtype=torch.float64)
    bb = block_bounds(ob, theta, tol=1e-10)
    G = ob.ggn_vp(theta, torch.eye(ob.P, dtype=torch.float64))
    dense = []
    for sl in layer_blocks(ob).values():
        idx = torch.cat([torch.arange(s.start, s.stop) for s in sl])
        dense.append(torch.linalg.eigvalsh(G[idx][:, idx])[-1])
    assert torch.allclose(bb.block_lams, torch.stack(dense), rtol=1e-8)
    assert bb.lower <= bb.ggn_lam * (1 + 1e-9) and bb.ggn_lam <= bb.upper * (1 + 1e-9)
    bound = per_example_bound(ob, theta)
    assert (bound >= bb.block_lams * (1 - 1e-9)).all(), (bound, bb.block_lams)


def test_per_example_bound_by_hand():
    """ReLU net A¹ = I, b = 0, A² = [[2, 0], [1, 1]], MSE (D = I), x₁ = (1, 2), x₂ = (3, −1) (unit 2 dead on x₂).
    Layer 1: P₁(x₁) = A², ‖A²‖² = λ_max([[5, 1], [1, 1]]) = 3 + √5, ‖x₁‖² + 1 = 6; P₁(x₂) = A² diag(1, 0),
    ‖·‖² = 5, ‖x₂‖² + 1 = 11: bound ½(6(3 + √5) + 55) = (73 + 6√5)/2. Layer 2: P₂ = I, x¹ = (1, 2), (3, 0):
    bound ½(6 + 10) = 8."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
        model[2].bias.zero_()
    ob = Objective(model, torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64), torch.tensor([0, 1]),
                   loss="mse")
    bound = per_example_bound(ob, ob.theta0)
    want = torch.tensor([(73 + 6 * 5 ** 0.5) / 2, 8.0], dtype=torch.float64)
    torch.testing.assert_close(bound, want, rtol=1e-15, atol=0)  # a handful of roundings of numbers ≤ 73


def _dense_per_example_bound(ob, theta):
    """(1/N) Σ_i ‖D_i‖₂ ‖P_k(x_i)‖₂² (‖x_i^{k−1}‖² + 1) example by example: P_k by jacrev of the modules after
    the k-th Linear (x̂ᵏ ↦ f) at x̂ᵏ_i, x^{k−1}_i and x̂ᵏ_i by running the modules before, ‖·‖₂ by SVD, and
    D_i = ∇²_z l(z_i, y_i) from the conftest oracle (torch.func.hessian of the per-example loss)."""
    model = copy.deepcopy(ob.model).double()
    torch.nn.utils.vector_to_parameters(theta.double(), model.parameters())
    K = len(model) // 2 + 1
    D = dense_jacobian_and_criterion_hessian(ob, theta)[1]
    Dn = torch.linalg.matrix_norm(D, ord=2)
    out = []
    with torch.no_grad():
        for k in range(1, K + 1):
            terms = []
            for i in range(ob.N):
                x_prev = model[: 2 * (k - 1)](ob.X[i: i + 1])  # input of layer k
                z = model[: 2 * k - 1](ob.X[i: i + 1])[0]  # x̂ᵏ
                after = model[2 * k - 1:]
                Pk = jacrev(lambda u: after(u[None])[0])(z)
                terms.append(Dn[i] * torch.linalg.matrix_norm(Pk, ord=2) ** 2 * (x_prev.pow(2).sum() + 1))
            out.append(torch.stack(terms).mean())
    return torch.stack(out)


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("act", ["elu", "relu"])
def test_per_example_bound_matches_dense_oracle(loss, act):
    ob = tiny_objective(loss, depth=4, activation=act)
    theta = ob.theta0 + 0.2 * torch.randn(ob.P, dtype=torch.float64)
    # eigvalsh/SVD of the same small matrices and sums of ≤ 7 positive terms: agreement to ~1e-15 relative
    torch.testing.assert_close(per_example_bound(ob, theta), _dense_per_example_bound(ob, theta), rtol=1e-13, atol=0)


def test_top_curvature_split():
    ob = tiny_objective("mse", depth=3)
    theta = ob.theta0 + 0.3 * torch.randn(ob.P, dtype=torch.float64)
    r = top_curvature(ob, theta, k=2, tol=1e-10)
    eye = torch.eye(ob.P, dtype=torch.float64)
    for name, fn in [("hessian", ob.hvp), ("ggn", ob.ggn_vp), ("residual", ob.residual_vp)]:
        M = fn(theta, eye)
        ref = torch.linalg.eigvalsh((M + M.T) / 2).flip(0)[:2]
        assert torch.allclose(r[name].values, ref, rtol=1e-8, atol=1e-10), name


def test_measurement_hook_on_digits_run():
    from eoslib.data import load_dataset
    from eoslib.models import mlp
    from eoslib.objective import Objective

    ds = load_dataset("digits", n=128, seed=0)
    ob = Objective(mlp(64, 32, 4, 10, init="default", seed=0), ds.X, ds.y)
    hook = Measurement(every=5, tol=1e-4)
    res = train(ExponentialEuler(dt_max=0.5), ob, until=Stop(steps=10), hooks=[hook], progress=False)
    tb = res.table
    measured = tb.dropna(subset=["hess_lam1"])
    assert list(measured.step) == [0, 5, 10]
    shares = measured[[f"share_{k}" for k in range(1, 5)]].sum(axis=1)
    assert ((shares - 1).abs() < 1e-9).all()
    assert measured.alpha_mean.between(0, 1).all()
    assert {"alpha_median", "alpha_gmean", "chain_gain", "jnorm_1", "afac_3", "accuracy"} <= set(tb.columns)
    # the recorded sharpness at the final iterate equals a fresh, cold, tight eigen-solve there
    fresh = top_eigenpairs(ob.hvp_operator(res.theta), ob.P, 1, tol=1e-8).values[0].item()
    assert measured.hess_lam1.iloc[-1] == pytest.approx(fresh, rel=1e-4)
    print(f"measurement cost {measured.measure_seconds.median():.3f}s per call")


def test_top_subspace_shares_match_the_dense_eigenspace():
    """shareq_k = Σ_j λ_j‖w_{j,k}‖²/Σ_j λ_j over the top-q eigenpairs of G (q = the loss's outlier count),
    against the dense eigendecomposition of G; the shares sum to 1."""
    from eoslib.curvature import layer_blocks
    from eoslib.measurement import Measurement

    ob = tiny_objective("ce", depth=3, q=4)
    theta = ob.theta0 + 0.3 * torch.randn(ob.P, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    row = Measurement(every=1, tol=1e-10, alignment=False, operators=("ggn",)).measure(ob, theta)
    G = ob.ggn_vp(theta, torch.eye(ob.P, dtype=torch.float64))
    lam, V = torch.linalg.eigh((G + G.T) / 2)
    q = ob.stiff_dim
    lam, V = lam.flip(0)[:q], V.flip(1)[:, :q]
    blocks = list(layer_blocks(ob).values())
    ref = [sum(float(lam[j]) * sum(V[s, j].pow(2).sum() for s in sl) for j in range(q)) / float(lam.sum())
           for sl in blocks]
    got = [row[f"shareq_{k + 1}"] for k in range(len(blocks))]
    assert sum(got) == pytest.approx(1.0, abs=1e-12)
    assert got == pytest.approx([float(x) for x in ref], abs=1e-8)  # residual 1e-10·λ₁ → vectors to ~1e-9
    assert row["ggn_lamq"] == pytest.approx(float(lam[-1]), rel=1e-8)
