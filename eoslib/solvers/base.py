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

from ..eigen import (DEFAULT_GUARD, EigenConvergenceError, EigenConvergenceWarning, EigenResult,
                     default_max_matvecs, top_eigenpairs)
from ..objective import Objective


class EigenTracker:
    """Warm-started top-k eigenpairs of an operator (∇²L by default) along a trajectory, each with a certificate.

    **Warm start.** With ``extrapolate`` (default) the warm start is the previous eigenvectors moved on linearly
    along the trajectory: V₁ + f·(V₁ − V₀R), where V₀, V₁ are the two previous solutions, R the orthogonal
    Procrustes rotation aligning V₀ to V₁ (signs, rotations inside clusters) and f = ‖θ − θ₁‖/‖θ₁ − θ₀‖
    (clipped to [0, 2]). It costs no product and cuts the matvecs of a steady-state solve by ~15–25%.

    **Why a warm solve needs checking.** A warm start near an eigenvector that is no longer the top one (after
    a crossing) is a near-invariant start: its residual is small and, alone, it is accepted as converged. Three
    guards, cheapest first (issue 17; ``tests/test_certified.py``):

    1. every ``guard_every``-th call (default 10) solves with ``guard`` extra columns (default 2, carried warm
       from the previous guarded solve) that must converge too (:data:`~eoslib.eigen.GUARD_TOL`): a value rising
       from just below the tracked set enters it within ``guard_every`` calls. (Guarding every 5th call cost
       20 % more Hessian products on a default GD run, every 10th 15 %; ``benchmarks/certified_cost.py``,
       ``metrics/certified_cost.json``.)
    2. every ``cold_every``-th call, and whenever λ₁ left its trend by more than ``jump`` (relative; see
       :meth:`jumped`), a *cold* check: a seeded random block with the guard, solved to ``check_tol``. If a cold Ritz value
       exceeds the warm one of the same rank by more than the cold pair's residual (by interlacing, a Ritz
       value never exceeds the true eigenvalue of its rank, so this can only mean the warm solve missed one),
       the warm result is replaced by a full-tolerance solve warm-started from the cold block and the event is
       counted (``corrections``; ``corrected`` on the result).
    3. each pair converges relative to itself (:func:`~eoslib.eigen.pair_limits`), so λ_(k+1) is as accurate
       as the Δt it sets.

    **Unconverged solves.** With ``strict`` (solvers: a step built on an unconverged spectrum integrates the
    wrong flow) an unconverged warm solve is retried once, cold, in float64, with ``retry_guard`` (default
    guard + max(2, k // 2)) guard columns and ``RETRY_BUDGET``× the budget; an unconverged retry raises
    :class:`~eoslib.eigen.EigenConvergenceError` and leaves the state as it was. Without ``strict``
    (measurements) the best estimate is returned with ``converged=False`` in its certificate, to be stored.

    ``operator``: which operator of the objective (``hessian``, ``ggn``, ``residual``)."""

    RETRY_BUDGET = 2

    def __init__(self, k: int, tol: float, guard: int = DEFAULT_GUARD, extrapolate: bool = True,
                 max_matvecs: int | None = None, retry_guard: int | None = None, guard_every: int = 10,
                 cold_every: int = 100, jump: float = 0.25, check_tol: float = 1e-2, strict: bool = True,
                 operator: str = "hessian") -> None:
        if guard_every < 1 or cold_every < 1:
            raise ValueError(f"guard_every and cold_every must be ≥ 1 (got {guard_every}, {cold_every})")
        self.k, self.tol, self.guard, self.extrapolate = k, tol, guard, extrapolate
        self.max_matvecs, self.retry_guard = max_matvecs, retry_guard
        self.guard_every, self.cold_every, self.jump, self.check_tol = guard_every, cold_every, jump, check_tol
        self.strict, self.operator = strict, operator
        self.vectors: Tensor | None = None
        self.guard_vectors: Tensor | None = None  # the guard columns of the last guarded solve
        self._prev_vectors: Tensor | None = None  # the solution before ``vectors``
        self._thetas: tuple[Tensor | None, Tensor | None] = (None, None)  # θ of those two solves
        self.calls = 0  # solves so far (decides when to guard and when to check cold)
        self.corrections = 0  # warm results replaced after a cold check
        self._tops: tuple[float | None, float | None] = (None, None)  # λ₁ of the two previous solves

    def warm_start(self, theta: Tensor) -> Tensor | None:
        """The starting block (k columns) for a solve at θ."""
        V1, V0 = self.vectors, self._prev_vectors
        th0, th1 = self._thetas
        if V1 is not None and V1.shape[1] != self.k:
            return None  # k changed (exponential Euler sets it from the objective): start cold
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
        op = objective.hvp_operator(theta) if self.operator == "hessian" else objective.hvp_operator(theta, self.operator)
        P = objective.P
        guarded = self.guard > 0 and self.calls % self.guard_every == 0
        v0 = self.warm_start(theta)
        if guarded and v0 is not None and self.guard_vectors is not None and \
                self.guard_vectors.shape[1] == min(self.guard, P - self.k):
            v0 = torch.cat([v0, self.guard_vectors.to(v0.dtype)], 1)
        r = self._solve(op, P, v0, self.guard if guarded else 0, self.max_matvecs, dtype, theta.device)
        if not r.converged and self.strict:
            r = self._retry(op, P, r, theta.device)
        if r.warm and (self.calls % self.cold_every == 0 or self.jumped(float(r.values[0]), theta)):
            r = self._cold_check(op, P, r, dtype, theta.device)
        self.calls += 1
        self._tops = (self._tops[1], float(r.values[0]))
        if self.extrapolate:
            self._prev_vectors = self.vectors
            self._thetas = (self._thetas[1], theta.detach().clone())
        self.vectors = r.vectors.to(objective.dtype)
        if r.block is not None and r.block.shape[1] > self.k:
            self.guard_vectors = r.block[:, self.k:].to(objective.dtype)
        return r

    def jumped(self, top: float, theta: Tensor) -> bool:
        """Whether λ₁ left its trend: |λ₁ − λ̂₁| > ``jump``·|λ₁'| with λ̂₁ = λ₁' + f·(λ₁' − λ₁''), the two
        previous values extrapolated linearly (f as in :meth:`warm_start`; f = 0 without a history). A smooth
        fast rise (progressive sharpening) follows its trend; a warm solve that switched pairs, or missed one
        rising past it, does not."""
        l0, l1 = self._tops
        if l1 is None:
            return False
        pred = l1
        th0, th1 = self._thetas
        if l0 is not None and th0 is not None and th1 is not None and th1.shape == theta.shape:
            d_prev = float((th1 - th0).norm())
            f = min(max(float((theta - th1).norm()) / d_prev, 0.0), 2.0) if d_prev > 0 else 0.0
            pred = l1 + f * (l1 - l0)
        return abs(top - pred) > self.jump * max(abs(l1), 1e-30)

    def _solve(self, op, P: int, v0: Tensor | None, guard: int, max_matvecs: int | None, dtype: torch.dtype,
               device: torch.device, tol: float | None = None) -> EigenResult:
        with warnings.catch_warnings():  # the tracker decides what an unconverged solve means
            warnings.simplefilter("ignore", EigenConvergenceWarning)
            return top_eigenpairs(op, P, self.k, v0=v0, tol=self.tol if tol is None else tol,
                                  max_matvecs=max_matvecs, guard=guard, dtype=dtype, device=device)

    def _cold_check(self, op, P: int, warm: EigenResult, dtype: torch.dtype, device: torch.device) -> EigenResult:
        """A seeded cold solve to ``check_tol``; the warm result, or its replacement when the cold one found a
        larger eigenvalue (see the class docstring). Products of both are counted in ``matvecs``."""
        guard = max(self.guard, DEFAULT_GUARD)
        cold = self._solve(op, P, None, guard, self.max_matvecs, dtype, device, tol=self.check_tol)
        used = warm.matvecs + cold.matvecs
        missed = bool((cold.values > warm.values + cold.residuals).any())
        if not missed:
            return replace(warm, matvecs=used, cold_checked=True)
        self.corrections += 1
        fixed = self._solve(op, P, cold.block, guard, self.max_matvecs, dtype, device)
        if not fixed.converged and self.strict:
            fixed = self._retry(op, P, fixed, device)
        warnings.warn(f"EigenTracker: a cold check found λ = {cold.values.tolist()} above the warm "
                      f"{warm.values.tolist()}; the warm result was replaced (correction {self.corrections})",
                      EigenConvergenceWarning, stacklevel=3)
        return replace(fixed, matvecs=used + fixed.matvecs, cold_checked=True, corrected=True, warm=True)

    def _retry(self, op, P: int, first: EigenResult, device: torch.device) -> EigenResult:
        """The cold retry after an unconverged warm solve ``first``: its result, or EigenConvergenceError."""
        guard = self.guard + max(2, self.k // 2) if self.retry_guard is None else self.retry_guard
        m = min(self.k + guard, P)
        budget = self.RETRY_BUDGET * (default_max_matvecs(P, m) if self.max_matvecs is None else self.max_matvecs)
        r = self._solve(op, P, None, guard, budget, torch.float64, device)
        r = replace(r, matvecs=first.matvecs + r.matvecs, iterations=first.iterations + r.iterations,
                    warm=first.warm)
        attempts = (f"{first.matvecs} products warm (guard {first.guard}), then {r.matvecs - first.matvecs} in a "
                    f"cold float64 retry (guard {guard}, budget {budget})")
        if not r.converged:
            worst = float(r.rel_residuals.max())
            if not torch.isfinite(r.values).all() or not torch.isfinite(r.residuals).all():
                why = ("the Hessian product returned non-finite values (NaN/inf) at this θ: the parameters or the "
                       "loss have diverged, or the model produces NaN")
            else:
                why = (f"max relative residual {worst:.3g} against tol={self.tol:g}. A step on this spectrum would "
                       f"follow the wrong flow. Loosen the eigen tolerance (tol), add guard columns (guard, now "
                       f"{self.guard}: they help when λ_k ≈ λ_(k+1)) or allow more products (max_matvecs)")
            raise EigenConvergenceError(f"the top {self.k} Hessian eigenpairs did not converge after {attempts}: "
                                        f"{why}.", result=r, matvecs=r.matvecs)
        warnings.warn(f"EigenTracker: the warm solve stopped unconverged; converged after {attempts}",
                      EigenConvergenceWarning, stacklevel=3)
        return r

    def state_dict(self) -> dict:
        return {"vectors": self.vectors, "prev_vectors": self._prev_vectors, "thetas": self._thetas,
                "guard_vectors": self.guard_vectors, "calls": self.calls, "corrections": self.corrections,
                "tops": self._tops}

    def load_state_dict(self, state: dict) -> None:
        self.vectors = state.get("vectors")
        self._prev_vectors = state.get("prev_vectors")
        self._thetas = tuple(state.get("thetas", (None, None)))
        self.guard_vectors = state.get("guard_vectors")
        self.calls, self.corrections = state.get("calls", 0), state.get("corrections", 0)
        self._tops = tuple(state.get("tops", (None, None)))


def eig_record(r: EigenResult) -> dict:
    """The record fields of an eigen-solve: ``eigs`` (largest first), its cost and its certificate
    (``eig_converged``, ``eig_residual`` — the max relative residual, ``eig_warm``, ``eig_cold_checked``,
    ``eig_corrected``: 1 when a cold check replaced the warm result at this step)."""
    return {"eigs": r.values.tolist(), "eig_matvecs": r.matvecs, "eig_converged": r.converged,
            "eig_residual": float(r.rel_residuals.max()), "eig_warm": r.warm, "eig_cold_checked": r.cold_checked,
            "eig_corrected": int(r.corrected)}


class Solver:
    """Base class: ``step`` (abstract) and the state plumbing for checkpoints.

    ``state_dict`` holds the tracker's warm-start state and every attribute named in ``_state``; ``flow``: the
    loss must not rise along its runs."""

    tracker: EigenTracker | None = None
    _state: tuple[str, ...] = ()
    #: an integrator of the gradient flow, along which the loss cannot rise (checked by
    #: :func:`eoslib.training.train`); False for GD at a fixed step size, which may leave the flow (the edge)
    flow: bool = True

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
