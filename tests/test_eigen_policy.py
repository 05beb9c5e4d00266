"""What a solver's EigenTracker does with an eigen-solve that does not converge: one cold retry, then
EigenConvergenceError — never a step on an unconverged spectrum (the review's bug 3: exponential Euler went on
after a warning with a residual 34·|λ₁| and took a wrong trajectory)."""
import math
import warnings

import pytest
import torch

from conftest import tiny_objective
from eoslib.eigen import EigenConvergenceError, EigenConvergenceWarning
from eoslib.solvers import EigenTracker, ExponentialEuler


class MatrixObjective:
    """The part of an Objective the tracker uses (P, dtype, hvp_operator) for an explicit symmetric matrix.

    ``noise`` > 0 makes the matrix change at every product: A + noise·‖A‖·cos(i)·E for the i-th call, with a
    fixed random symmetric E (deterministic), so no residual can settle below ~noise·‖A‖. ``blocks`` logs
    every block multiplied."""

    def __init__(self, evals: torch.Tensor, noise: float = 0.0, seed: int = 0) -> None:
        n = len(evals)
        g = torch.Generator().manual_seed(seed)
        Q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
        E = torch.randn(n, n, generator=g, dtype=torch.float64)
        self.A, self.E = (Q * evals) @ Q.T, noise * evals.abs().max() * (E + E.T) / 2
        self.P, self.dtype = n, torch.float64
        self.blocks: list[torch.Tensor] = []

    def hvp_operator(self, theta):
        def op(V):
            self.blocks.append(V.clone())
            return self.A @ V.double() + math.cos(len(self.blocks)) * (self.E @ V.double())
        return op

    def products(self) -> int:
        return sum(V.shape[1] for V in self.blocks)


# λ₃ − λ₄ = 1e-5 (relative gap 1e-6): without guard columns pair 3 converges slowly; with two it is quick
NEAR_DEGENERATE = torch.cat([torch.tensor([10.0, 8.0, 6.0, 6.0 - 1e-5, 3.0]), torch.linspace(-1, 2, 95)]).double()
THETA = torch.zeros(3)


def test_unconvergeable_solve_retries_cold_then_raises():
    ob = MatrixObjective(NEAR_DEGENERATE, noise=1e-3)  # the matrix moves by 1e-3·‖A‖ ≫ tol = 1e-6 per product
    tracker = EigenTracker(3, 1e-6, guard=0, max_matvecs=60)  # the retry policy, without the guard's calls
    v0 = torch.linalg.qr(torch.randn(100, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)).Q
    tracker.vectors = v0
    state = tracker.state_dict()
    with warnings.catch_warnings(record=True) as caught, pytest.raises(EigenConvergenceError) as err:
        warnings.simplefilter("always")
        tracker(ob, THETA)
    assert not [w for w in caught if issubclass(w.category, EigenConvergenceWarning)]  # an error, not a warning
    e = err.value
    assert torch.equal(ob.blocks[0], v0)  # the first attempt: the warm start, guard 0 (3 columns)
    retry_start = next(i for i, V in enumerate(ob.blocks) if V.shape[1] == 5)  # the retry: guard 0 + 2
    first = sum(V.shape[1] for V in ob.blocks[:retry_start])
    assert 60 <= first < 60 + 3  # the first budget, spent (the loop stops at the first check past it)
    assert not torch.allclose(ob.blocks[retry_start][:, :3], v0)  # cold: a seeded random block
    assert all(V.dtype == torch.float64 for V in ob.blocks[retry_start:])
    retry = ob.products() - first
    assert 2 * 60 <= retry < 2 * 60 + 5  # RETRY_BUDGET = 2 times the first budget
    assert e.matvecs == e.result.matvecs == ob.products()
    assert not e.result.converged
    msg = str(e)
    for part in ("did not converge", "residual", "tol=1e-06", str(first), str(retry), "guard", "max_matvecs"):
        assert part in msg
    assert "non-finite" not in msg
    after = tracker.state_dict()  # a failed solve leaves the tracker as it was (a checkpoint stays valid)
    assert after["vectors"] is state["vectors"] and after["prev_vectors"] is None and after["thetas"] == (None, None)


def test_solve_that_converges_on_retry_continues_deterministically():
    def run():
        ob = MatrixObjective(NEAR_DEGENERATE)
        tracker = EigenTracker(3, 1e-8, guard=0, max_matvecs=40)  # guard 0 needs > 120 products here (measured), guard 2: 56
        with pytest.warns(EigenConvergenceWarning, match="converged after"):
            r = tracker(ob, THETA)
        return ob, tracker, r

    ob, tracker, r = run()
    assert r.converged and r.matvecs == ob.products()  # both attempts counted
    assert [V.shape[1] for V in ob.blocks][0] == 3 and any(V.shape[1] == 5 for V in ob.blocks)
    ref = NEAR_DEGENERATE[:3]  # the eigenvalues by construction; Ritz values err by ≤ residual²/gap ≈ 1e-9
    assert torch.allclose(r.values, ref, rtol=0, atol=1e-8)
    true_res = (ob.A @ r.vectors - r.vectors * r.values).norm(dim=0)
    assert (true_res <= 1e-8 * 10 * (1 + 1e-6)).all()
    assert torch.equal(tracker.vectors, r.vectors)  # the tracker goes on from the retry's solution

    ob2, tracker2, r2 = run()  # deterministic: the same products, the same numbers
    assert len(ob2.blocks) == len(ob.blocks) and all(torch.equal(a, b) for a, b in zip(ob.blocks, ob2.blocks))
    assert torch.equal(r2.values, r.values) and torch.equal(r2.vectors, r.vectors)

    with warnings.catch_warnings():  # the next solve, warm from the retry's vectors, converges at once
        warnings.simplefilter("error", EigenConvergenceWarning)
        n = len(ob.blocks)
        r3 = tracker(ob, THETA)
    assert r3.converged and r3.matvecs == 3 and len(ob.blocks) == n + 1
    assert torch.allclose(r3.values, r.values, rtol=0, atol=1e-12)


def test_exponential_euler_stops_instead_of_stepping_on_an_unconverged_spectrum():
    ob = tiny_objective("ce")
    solver = ExponentialEuler(dt_max=0.5)
    solver.tracker.max_matvecs = 1  # neither attempt gets past its first block
    theta = ob.theta0.clone()
    with pytest.raises(EigenConvergenceError, match="did not converge"):
        solver.step(ob, theta)
    assert torch.equal(theta, ob.theta0) and solver.tracker.vectors is None


def test_non_finite_products_raise_a_clear_error():
    ob = MatrixObjective(NEAR_DEGENERATE)
    op = ob.hvp_operator

    def nan_operator(theta):
        f = op(theta)
        return lambda V: f(V) * float("nan")

    ob.hvp_operator = nan_operator
    with pytest.raises(EigenConvergenceError, match="non-finite"):
        EigenTracker(2, 1e-6)(ob, THETA)
