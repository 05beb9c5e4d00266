"""Curvature products against dense float64 oracles (torch.func.hessian / jacrev) on tiny networks.

One grid (architecture × loss) and one set of independent oracles (tests/conftest.py): ∇²L by
torch.func.hessian of an independently written loss, G from jacrev Jacobians and D_i = hessian of the
per-example loss in z, H from the per-example, per-output Hessians of the network. A new model goes into
``conftest.ARCHS`` and is checked by the same tests.

Tolerance 1e-10: the oracle and the products compute the same sums in a different order in float64, so
they agree to a few ulps times the entries' magnitude (~1); we observe ~1e-15."""
import pytest
import torch
from torch.func import hessian

from conftest import ARCHS, dense_ggn, dense_loss, dense_residual, tiny_objective
from eoslib.models import mlp
from eoslib.objective import NotDifferentiableError, Objective

TOL = 1e-10


@pytest.fixture(params=[(a, l) for a in ARCHS for l in ("ce", "mse")], ids=lambda p: "-".join(p))
def setup(request):
    arch, loss = request.param
    ob = ARCHS[arch](loss)
    theta = ob.theta0 + 0.3 * torch.randn(ob.P, dtype=torch.float64)
    return ob, theta


def test_loss_and_grad_match_autograd(setup):
    ob, theta = setup
    L = dense_loss(ob)
    loss, g = ob.loss_and_grad(theta)
    assert abs(loss.item() - L(theta).item()) < TOL
    assert abs(ob.loss(theta).item() - L(theta).item()) < TOL
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
    H_oracle = dense_residual(ob, theta)
    assert H_oracle.abs().max() > 1e-3  # the residual is not trivially zero here (ELU networks are curved)
    assert (Hres - H_oracle).abs().max() < TOL
    evals = torch.linalg.eigvalsh((G + G.T) / 2)
    assert evals.min() > -1e-12 * evals.max()  # G is PSD
    rank = int((evals > 1e-10 * evals.max()).sum())
    limit = ob.N * ob.stiff_dim  # rank(G) ≤ N · rank(D_i)
    assert rank <= limit
    if ob.loss_name == "ce":  # the CE criterion Hessian annihilates 1: rank ≤ N(Q−1), attained here
        assert rank == limit


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_functional_form_is_differentiable(loss):
    """Regression: ``loss``/``outputs`` ran under torch.no_grad, so torch.func.grad(objective.loss) was silently
    zero. The functional form now gives the true derivatives; the numerical methods refuse transformed θ."""
    ob = tiny_objective(loss, chunk_size=3)  # chunked: the sum over chunks is differentiated too
    theta = ob.theta0 + 0.3 * torch.randn(ob.P, dtype=torch.float64)
    g = torch.func.grad(ob.loss)(theta)
    assert g.abs().max() > 1e-3  # not the zeros the bug returned
    assert torch.allclose(g, ob.grad(theta), atol=1e-13, rtol=0)  # same sums, different order: a few ulps
    eye = torch.eye(ob.P, dtype=torch.float64)
    assert torch.allclose(torch.func.hessian(ob.loss)(theta), ob.hvp(theta, eye), atol=TOL, rtol=0)
    thetas = theta + 0.1 * torch.randn(3, ob.P, dtype=torch.float64)
    assert torch.allclose(torch.func.vmap(ob.loss)(thetas), torch.stack([ob.loss(t) for t in thetas]), atol=1e-14)
    assert torch.func.jacrev(ob.outputs)(theta).shape == (ob.N, ob.Q, ob.P)
    leaf = theta.clone().requires_grad_(True)
    ob.loss(leaf).backward()  # plain autograd through the functional form
    assert torch.allclose(leaf.grad, g, atol=1e-13, rtol=0)
    assert ob.loss(theta).grad_fn is None  # and no graph for a θ that does not need one

    v = torch.randn(ob.P, dtype=torch.float64)
    misuses = {
        "grad": lambda: torch.func.grad(lambda t: ob.grad(t).sum())(theta),
        "hvp": lambda: torch.func.jacrev(lambda t: ob.hvp(t, v))(theta),
        "ggn_vp": lambda: torch.func.jacfwd(lambda t: ob.ggn_vp(t, v))(theta),  # forward mode: detach drops tangents
        "loss_and_grad": lambda: torch.func.vmap(lambda t: ob.loss_and_grad(t)[0])(thetas),
        "residual_vp": lambda: ob.residual_vp(leaf, v),  # autograd: θ requires grad
    }
    for name, call in misuses.items():
        with pytest.raises(NotDifferentiableError, match=r"torch\.func\.grad\(objective\.loss\)"):
            call()


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
    assert ob.loss_name == ob.criterion.name == "ce"
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        Objective(model, torch.randn(6, 4), torch.zeros(6, dtype=torch.long), loss="hinge")
    with pytest.raises(TypeError, match="loss must be"):
        Objective(model, torch.randn(6, 4), torch.zeros(6, dtype=torch.long), loss=3)
    with pytest.raises(ValueError, match="buffers"):
        Objective(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)), torch.randn(6, 4),
                  torch.zeros(6, dtype=torch.long))
    for loss in ("ce", "mse"):
        for bad in (5, -1):
            with pytest.raises(ValueError, match="labels must lie in 0..2"):
                Objective(model, torch.randn(6, 4, dtype=torch.float64), torch.full((6,), bad), loss=loss)
