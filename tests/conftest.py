import pytest
import torch

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
