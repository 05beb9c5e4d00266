"""Curvature products against dense float64 oracles (torch.func.hessian / jacrev) on tiny networks.

Tolerance 1e-10: the oracle and the products compute the same sums in a different order in float64, so
they agree to a few ulps times the entries' magnitude (~1); we observe ~1e-15."""
import pytest
import torch
from torch.func import functional_call, hessian

from conftest import dense_jacobian_and_criterion_hessian, tiny_objective
from eoslib.models import mlp
from eoslib.objective import Objective

TOL = 1e-10


def dense_loss(ob: Objective):
    def L(theta):
        z = functional_call(ob.model, ob.unflatten(theta), (ob.X,))
        if ob.loss_name == "ce":
            return torch.nn.functional.cross_entropy(z, ob.y)
        return 0.5 * (z - torch.nn.functional.one_hot(ob.y, ob.Q).double()).pow(2).sum(1).mean()
    return L


def dense_ggn(ob: Objective, theta):
    J, D = dense_jacobian_and_criterion_hessian(ob, theta)
    return torch.einsum("nqp,nqr,nrs->ps", J, D, J) / ob.N


@pytest.fixture(params=["ce", "mse"])
def setup(request):
    ob = tiny_objective(request.param)
    theta = ob.theta0 + 0.3 * torch.randn(ob.P, dtype=torch.float64)
    return ob, theta


def test_loss_and_grad_match_autograd(setup):
    ob, theta = setup
    L = dense_loss(ob)
    loss, g = ob.loss_and_grad(theta)
    assert abs(loss.item() - L(theta).item()) < TOL
    assert torch.allclose(g, torch.func.grad(L)(theta), atol=TOL, rtol=0)
    assert torch.allclose(ob.grad(theta), g, atol=0, rtol=0)


@pytest.mark.parametrize("method", ["backward", "jvp"])
def test_hvp_equals_dense_hessian(setup, method):
    ob, theta = setup
    ob.hvp_method = method
    H = hessian(dense_loss(ob))(theta)
    eye = torch.eye(ob.P, dtype=torch.float64)
    err = (ob.hvp(theta, eye) - H).abs().max().item()
    assert err < TOL, err
    v = torch.randn(ob.P, dtype=torch.float64)
    assert torch.allclose(ob.hvp(theta, v), H @ v, atol=TOL, rtol=0)  # single-vector form


def test_ggn_and_residual(setup):
    ob, theta = setup
    eye = torch.eye(ob.P, dtype=torch.float64)
    G = ob.ggn_vp(theta, eye)
    Hres = ob.residual_vp(theta, eye)
    assert (G - dense_ggn(ob, theta)).abs().max() < TOL
    assert (G + Hres - hessian(dense_loss(ob))(theta)).abs().max() < TOL  # G + H = ∇²L
    evals = torch.linalg.eigvalsh((G + G.T) / 2)
    assert evals.min() > -1e-12 * evals.max()  # G is PSD
    rank = int((evals > 1e-10 * evals.max()).sum())
    limit = ob.N * (ob.Q - 1 if ob.loss_name == "ce" else ob.Q)
    assert rank <= limit
    if ob.loss_name == "ce":  # the CE criterion Hessian annihilates 1: rank ≤ N(Q−1), attained here
        assert rank == limit


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_chunked_equals_unchunked(loss):
    a, b = tiny_objective(loss), tiny_objective(loss, chunk_size=3)
    theta = a.theta0 + 0.1 * torch.randn(a.P, dtype=torch.float64)
    V = torch.randn(a.P, 4, dtype=torch.float64)
    for f in ("hvp", "ggn_vp", "residual_vp"):
        assert torch.allclose(getattr(a, f)(theta, V), getattr(b, f)(theta, V), atol=1e-12, rtol=0)
    assert torch.allclose(a.loss_and_grad(theta)[1], b.loss_and_grad(theta)[1], atol=1e-13, rtol=0)
    assert torch.equal(a.outputs(theta), b.outputs(theta)) or torch.allclose(a.outputs(theta), b.outputs(theta))


def test_model_untouched_and_validation():
    model = mlp(4, 5, 2, 3, dtype=torch.float64)
    before = [p.clone() for p in model.parameters()]
    ob = Objective(model, torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 3, (6,)))
    ob.hvp(ob.theta0 + 1.0, torch.randn(ob.P, 2, dtype=torch.float64))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert ob.stiff_dim == 2 and ob.P == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="loss"):
        Objective(model, torch.randn(6, 4), torch.zeros(6, dtype=torch.long), loss="hinge")
    with pytest.raises(ValueError, match="buffers"):
        Objective(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)), torch.randn(6, 4),
                  torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        Objective(model, torch.randn(6, 4, dtype=torch.float64), torch.full((6,), 5))
