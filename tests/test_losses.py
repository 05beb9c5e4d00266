"""The loss registry (eoslib.losses): every registered loss against dense float64 oracles, and a new loss
added as one class (registered in a local registry, so the global one is untouched) driving Objective.

Oracles (tests/conftest.py): the per-example loss written independently (CE = logsumexp(z) − z_y,
MSE = ½‖z − one_hot(y)‖²); D_i = torch.func.hessian of it in z; ‖D_i‖₂ and rank D_i from torch.linalg.eigvalsh.
Tolerance 1e-12: entries are O(1) and the two sides sum a handful of float64 terms in different orders."""
import math

import pytest
import torch

from conftest import dense_ggn, dense_loss, dense_residual, oracle_loss, tiny_objective
from eoslib.losses import LOSSES, Loss, get_loss, register_loss
from eoslib.registry import Registry, UnknownName

TOL = 1e-12


class LogCosh(Loss):
    """Toy loss l(z, y) = Σ_q log cosh(z_q − e_{y,q}): ∇ = tanh(r), D = diag(1 − tanh²(r)), r = z − e_y."""

    name = "logcosh"
    label = "log-cosh"
    convention = "log-cosh: l(z, y) = Σ_q log cosh(z_q − onehot(y)_q)"

    def _r(self, z, y):
        return z - torch.nn.functional.one_hot(y, z.shape[-1]).to(z.dtype)

    def value_sum(self, z, y):
        r = self._r(z, y)
        return (r.abs() + torch.log1p(torch.exp(-2 * r.abs())) - math.log(2)).sum()  # log cosh, overflow-free

    def hessian_vp(self, z, y, U):
        return (1 - torch.tanh(self._r(z, y)).pow(2)) * U

    def hessian_norms(self, z, y):
        return (1 - torch.tanh(self._r(z, y)).pow(2)).max(-1).values.double()

    def stiff_dim(self, Q):
        return Q


def _batch(n=6, Q=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, Q, generator=g, dtype=torch.float64) * 2, torch.randint(0, Q, (n,), generator=g)


def _oracle_D(loss, z, y):
    l = oracle_loss(loss)
    return torch.stack([torch.func.hessian(l)(z[i], y[i]) for i in range(len(y))])


ALL = [LOSSES[name]() for name in LOSSES] + [LogCosh()]


@pytest.mark.parametrize("loss", ALL, ids=lambda l: l.name)
def test_loss_against_dense_oracle(loss):
    z, y = _batch()
    n, Q = z.shape
    D = _oracle_D(loss, z, y)  # n × Q × Q
    if loss.name in LOSSES:  # the oracle's value is independent for the registered losses
        l = oracle_loss(loss)
        assert abs(loss.value_sum(z, y).item() - sum(l(z[i], y[i]) for i in range(n)).item()) < TOL
    U = torch.randn(3, n, Q, dtype=torch.float64)  # a block of m = 3, and a single n × Q
    assert torch.allclose(loss.hessian_vp(z, y, U), torch.einsum("nqr,mnr->mnq", D, U), atol=TOL, rtol=0)
    assert torch.allclose(loss.hessian_vp(z, y, U[0]), torch.einsum("nqr,nr->nq", D, U[0]), atol=TOL, rtol=0)
    evals = torch.linalg.eigvalsh(D)
    norms = loss.hessian_norms(z, y)
    assert norms.dtype == torch.float64 and norms.shape == (n,)
    assert torch.allclose(norms, evals[:, -1], atol=TOL, rtol=0)
    assert (evals > -TOL).all()  # PSD, as the Gauss–Newton split assumes
    ranks = (evals > 1e-10 * evals[:, -1:]).sum(1)
    assert (ranks == loss.stiff_dim(Q)).all()  # the number of outlier eigenvalues = rank D_i
    assert loss.label and loss.convention and loss.name


def test_registry_holds_ce_and_mse_with_labels():
    assert LOSSES.names()[:2] == ["ce", "mse"]
    for name in LOSSES:
        cls = LOSSES[name]
        assert cls.name == name and LOSSES.label(name) == cls.label
        assert LOSSES.entry(name).meta["convention"] == cls.convention
    assert get_loss("mse").stiff_dim(10) == 10 and get_loss("ce").stiff_dim(10) == 9
    assert "½" in get_loss("mse").convention  # Cohen et al.'s ½‖z − onehot(y)‖², stated for footnotes
    with pytest.raises(UnknownName, match=r"unknown loss 'hinge'; choose one of \['ce', 'mse'"):
        get_loss("hinge")


def test_a_new_loss_is_one_registered_class():
    local = Registry("loss")
    register_loss(LogCosh, registry=local)
    assert "logcosh" not in LOSSES  # the global registry is untouched
    assert local.label("logcosh") == "log-cosh"
    with pytest.raises(ValueError, match="already registered"):
        register_loss(registry=local)(LogCosh)
    with pytest.raises(TypeError, match="subclass of eoslib.losses.Loss"):
        register_loss(dict, registry=local)

    loss = get_loss("logcosh", registry=local)
    ob = tiny_objective(loss)  # Objective takes the object and uses nothing but its interface
    assert ob.criterion is loss and ob.loss_name == "logcosh" and ob.stiff_dim == ob.Q
    theta = ob.theta0 + 0.3 * torch.randn(ob.P, dtype=torch.float64)
    eye = torch.eye(ob.P, dtype=torch.float64)
    tol = 1e-10  # as tests/test_objective.py: P × P products summed in different orders
    assert torch.allclose(ob.hvp(theta, eye), torch.func.hessian(dense_loss(ob))(theta), atol=tol, rtol=0)
    assert torch.allclose(ob.ggn_vp(theta, eye), dense_ggn(ob, theta), atol=tol, rtol=0)
    assert torch.allclose(ob.residual_vp(theta, eye), dense_residual(ob, theta), atol=tol, rtol=0)
    assert torch.allclose(torch.func.grad(ob.loss)(theta), ob.grad(theta), atol=1e-13, rtol=0)
