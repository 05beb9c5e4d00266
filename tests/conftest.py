import pytest
import torch
from torch.func import functional_call, jacrev

from eoslib.models import mlp
from eoslib.objective import Objective

# One intra-op thread: these tensors are small, and on a loaded 2-core machine two threads per process
# oversubscribe the cores (measured: the measurement-hook test took 102 s with 2 threads, 7 s with 1).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_objective(loss: str = "ce", n: int = 7, d: int = 5, width: int = 6, depth: int = 3, q: int = 3,
                   chunk_size=None, activation: str = "elu", seed: int = 1) -> Objective:
    """A float64 MLP objective small enough for dense oracles (P ≈ 100)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, q, (n,), generator=g)
    return Objective(mlp(d, width, depth, q, activation=activation, seed=seed, dtype=torch.float64), X, y, loss=loss,
                     chunk_size=chunk_size)


def dense_jacobian_and_criterion_hessian(ob: Objective, theta):
    """Dense oracle pieces of G = (1/N) Σ J_iᵀ D_i J_i: J (N × Q × P) by jacrev and D_i = ∇²_z l
    (diag(p) − ppᵀ for CE, I for MSE)."""
    J = jacrev(lambda t: functional_call(ob.model, ob.unflatten(t), (ob.X,)))(theta)
    z = ob.outputs(theta)
    if ob.loss_name == "ce":
        p = z.softmax(1)
        return J, torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return J, torch.eye(ob.Q, dtype=z.dtype).expand(ob.N, -1, -1)
