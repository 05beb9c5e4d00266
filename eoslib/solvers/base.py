"""What every solver shares: the :class:`Solver` contract, the registry, and the warm-started eigen tracker.

Every solver is an integrator of the gradient flow dθ/dt = −∇L(θ) with
``step(objective, θ, dt_cap=None) -> (θ_next, record)``; ``record`` holds the step's Δt, the loss and gradient
norm at θ and, where computed, the top Hessian eigenvalues at θ (``eigs``, largest first) and whatever else the
solver reports (e.g. stage counts). Flow time t = Σ Δt is accumulated by :func:`eoslib.training.train`.
Whatever a solver carries between steps (warm-start eigenvectors, step counters, spectral estimates) is in
``state_dict()`` so that checkpoints resume bit-for-bit.

A new solver is one class in its own file plus one line in the catalog, :mod:`eoslib.solvers`
(``SOLVERS.lazy(name, "eoslib.solvers.<file>:<Class>", label=..., schema=...)``; ``schema``: the keys it accepts
under ``solver:`` in ``params.yaml``, which are its constructor's keywords).
"""
from __future__ import annotations

import warnings
from dataclasses import replace

import torch
from torch import Tensor

from ..eigen import (EigenConvergenceError, EigenConvergenceWarning, EigenResult, default_max_matvecs,
                     top_eigenpairs)
from ..objective import Objective


class EigenTracker:
    """Warm-started top-k eigenpairs of ∇²L along a trajectory, converged or an error.

    With ``extrapolate`` (default) the warm start is the previous eigenvectors moved on linearly along the
    trajectory: V₁ + f·(V₁ − V₀R), where V₀, V₁ are the two previous solutions, R the orthogonal Procrustes
    rotation aligning V₀ to V₁ (signs, rotations inside clusters) and f = ‖θ − θ₁‖/‖θ₁ − θ₀‖ (clipped to
    [0, 2]). It costs no Hessian product and cuts the matvecs of a steady-state solve by ~15–25% (benchmarks/);
    the solve still runs to the same residual tolerance, so only the warm start changes.

    A solver step built on an unconverged spectrum silently integrates the wrong flow (a wrong Δt and wrong
    stiff directions; a shorter Δt does not help the solve), so the tracker never returns one. When the warm
    solve stops unconverged (its budget ``max_matvecs``, default :func:`~eoslib.eigen.default_max_matvecs`,
    spent; non-finite values) it retries once, *cold* (seeded random block, independent of the history that
    may have failed), in float64 blocks, with ``retry_guard`` (default guard + max(2, k // 2)) guard columns
    and ``RETRY_BUDGET``× the budget. A converged retry is used as any solve (deterministic: the retry's
    start is seeded), with an ``EigenConvergenceWarning`` saying so and ``matvecs`` counting both attempts;
    an unconverged one raises :class:`~eoslib.eigen.EigenConvergenceError` and leaves the tracker's state
    as it was."""

    RETRY_BUDGET = 2

    def __init__(self, k: int, tol: float, guard: int = 0, extrapolate: bool = True,
                 max_matvecs: int | None = None, retry_guard: int | None = None) -> None:
        self.k, self.tol, self.guard, self.extrapolate = k, tol, guard, extrapolate
        self.max_matvecs, self.retry_guard = max_matvecs, retry_guard
        self.vectors: Tensor | None = None
        self._prev_vectors: Tensor | None = None  # the solution before ``vectors``
        self._thetas: tuple[Tensor | None, Tensor | None] = (None, None)  # θ of those two solves

    def warm_start(self, theta: Tensor) -> Tensor | None:
        """The starting block for a solve at θ."""
        V1, V0 = self.vectors, self._prev_vectors
        th0, th1 = self._thetas
        if not self.extrapolate or V1 is None or V0 is None or th0 is None or th1 is None or V0.shape != V1.shape \
                or th1.shape != theta.shape:
            return V1
        d_prev = (th1 - th0).norm()
        if not d_prev > 0:
            return V1
        f = float(((theta - th1).norm() / d_prev).clamp(0.0, 2.0))
        U, _, Wh = torch.linalg.svd((V0.T @ V1).double())
        R = (U @ Wh).to(V0.dtype)
        # V₁ + f(V₁ − V₀R), formed transposed: the long dimension along the GEMM's rows (see eigen._combine)
        return torch.addmm(V1.T, R.T, V0.T, beta=1 + f, alpha=-f).T

    def __call__(self, objective: Objective, theta: Tensor) -> EigenResult:
        # The dim-sized LOBPCG blocks in the objective's dtype (float32 halves their memory traffic, which
        # rivals the Hessian products on wide nets); float64 when tol is beyond float32's reach.
        dtype = objective.dtype if self.tol >= 1e-5 else torch.float64
        op, P = objective.hvp_operator(theta), objective.P
        r = self._solve(op, P, self.warm_start(theta), self.guard, self.max_matvecs, dtype, theta.device)
        if not r.converged:
            r = self._retry(op, P, r, theta.device)
        if self.extrapolate:
            self._prev_vectors = self.vectors
            self._thetas = (self._thetas[1], theta.detach().clone())
        self.vectors = r.vectors.to(objective.dtype)
        return r

    def _solve(self, op, P: int, v0: Tensor | None, guard: int, max_matvecs: int | None, dtype: torch.dtype,
               device: torch.device) -> EigenResult:
        with warnings.catch_warnings():  # the tracker decides what an unconverged solve means
            warnings.simplefilter("ignore", EigenConvergenceWarning)
            return top_eigenpairs(op, P, self.k, v0=v0, tol=self.tol, max_matvecs=max_matvecs, guard=guard,
                                  dtype=dtype, device=device)

    def _retry(self, op, P: int, first: EigenResult, device: torch.device) -> EigenResult:
        """The cold retry after an unconverged warm solve ``first``: its result, or EigenConvergenceError."""
        guard = self.guard + max(2, self.k // 2) if self.retry_guard is None else self.retry_guard
        m = min(self.k + guard, P)
        budget = self.RETRY_BUDGET * (default_max_matvecs(P, m) if self.max_matvecs is None else self.max_matvecs)
        r = self._solve(op, P, None, guard, budget, torch.float64, device)
        r = replace(r, matvecs=first.matvecs + r.matvecs, iterations=first.iterations + r.iterations)
        attempts = (f"{first.matvecs} products warm (guard {self.guard}), then {r.matvecs - first.matvecs} in a "
                    f"cold float64 retry (guard {guard}, budget {budget})")
        if not r.converged:
            worst = float(r.residuals.max() / r.values.abs().max().clamp_min(torch.finfo(torch.float64).tiny))
            if not torch.isfinite(r.values).all() or not torch.isfinite(r.residuals).all():
                why = ("the Hessian product returned non-finite values (NaN/inf) at this θ: the parameters or the "
                       "loss have diverged, or the model produces NaN")
            else:
                why = (f"max residual {worst:.3g}·max|λ| against tol={self.tol:g}. A step on this spectrum would "
                       f"follow the wrong flow. Loosen the eigen tolerance (tol), add guard columns (guard, now "
                       f"{self.guard}: they help when λ_k ≈ λ_(k+1)) or allow more products (max_matvecs)")
            raise EigenConvergenceError(f"the top {self.k} Hessian eigenpairs did not converge after {attempts}: "
                                        f"{why}.", result=r, matvecs=r.matvecs)
        warnings.warn(f"EigenTracker: the warm solve stopped unconverged; converged after {attempts}",
                      EigenConvergenceWarning, stacklevel=3)
        return r

    def state_dict(self) -> dict:
        return {"vectors": self.vectors, "prev_vectors": self._prev_vectors, "thetas": self._thetas}

    def load_state_dict(self, state: dict) -> None:
        self.vectors = state.get("vectors")
        self._prev_vectors = state.get("prev_vectors")
        self._thetas = tuple(state.get("thetas", (None, None)))


def eig_record(r: EigenResult) -> dict:
    """The record fields of an eigen-solve: ``eigs`` (largest first), its cost and its residual."""
    return {"eigs": r.values.tolist(), "eig_matvecs": r.matvecs, "eig_converged": r.converged,
            "eig_residual": float(r.residuals.max())}


class Solver:
    """Base class: ``step`` (abstract) and the state plumbing for checkpoints.

    ``state_dict`` holds the tracker's warm-start state and every attribute named in ``_state``."""

    tracker: EigenTracker | None = None
    _state: tuple[str, ...] = ()

    def state_dict(self) -> dict:
        out = {"tracker": self.tracker.state_dict()} if self.tracker is not None else {}
        return out | {k: getattr(self, k) for k in self._state}

    def load_state_dict(self, state: dict) -> None:
        if self.tracker is not None:
            self.tracker.load_state_dict(state.get("tracker", state))
        for k in self._state:
            if k in state:
                setattr(self, k, state[k])

    def step(self, objective: Objective, theta: Tensor, dt_cap: float | None = None) -> tuple[Tensor, dict]:
        raise NotImplementedError
