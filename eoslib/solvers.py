"""Solvers for full-batch training, seen as integrators of the gradient flow dθ/dt = −∇L(θ).

Every solver has ``step(objective, θ) -> (θ_next, record)``; ``record`` holds the step's Δt, the loss and
gradient norm at θ and, where computed, the top Hessian eigenvalues at θ (``eigs``, largest first).
Flow time t = Σ Δt is accumulated by :func:`eoslib.training.train`. Solvers keep their own warm-start
eigenvectors between steps (``state_dict``/``load_state_dict`` carry them through checkpoints).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from .eigen import EigenResult, top_eigenpairs
from .objective import Objective


class _EigenTracker:
    """Warm-started top-k eigenpairs of ∇²L along a trajectory.

    With ``extrapolate`` (default) the warm start is the previous eigenvectors moved on linearly along the
    trajectory: V₁ + f·(V₁ − V₀R), where V₀, V₁ are the two previous solutions, R the orthogonal Procrustes
    rotation aligning V₀ to V₁ (signs, rotations inside clusters) and f = ‖θ − θ₁‖/‖θ₁ − θ₀‖ (clipped to
    [0, 2]). It costs no Hessian product and cuts the matvecs of a steady-state solve by ~15–25% (benchmarks/);
    the solve still runs to the same residual tolerance, so only the warm start changes."""

    def __init__(self, k: int, tol: float, guard: int = 0, extrapolate: bool = True) -> None:
        self.k, self.tol, self.guard, self.extrapolate = k, tol, guard, extrapolate
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
        r = top_eigenpairs(
            objective.hvp_operator(theta), objective.P, self.k, v0=self.warm_start(theta), tol=self.tol,
            guard=self.guard, dtype=dtype, device=theta.device,
        )
        if self.extrapolate:
            self._prev_vectors = self.vectors
            self._thetas = (self._thetas[1], theta.detach().clone())
        self.vectors = r.vectors.to(objective.dtype)
        return r

    def state_dict(self) -> dict:
        return {"vectors": self.vectors, "prev_vectors": self._prev_vectors, "thetas": self._thetas}

    def load_state_dict(self, state: dict) -> None:
        self.vectors = state.get("vectors")
        self._prev_vectors = state.get("prev_vectors")
        self._thetas = tuple(state.get("thetas", (None, None)))


def _eig_record(r: EigenResult) -> dict:
    return {"eigs": r.values.tolist(), "eig_matvecs": r.matvecs, "eig_converged": r.converged,
            "eig_residual": float(r.residuals.max())}


class Solver:
    """Base class: warm-start state plumbing shared by the solvers."""

    tracker: _EigenTracker | None = None

    def state_dict(self) -> dict:
        return self.tracker.state_dict() if self.tracker is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.tracker is not None:
            self.tracker.load_state_dict(state)

    def step(self, objective: Objective, theta: Tensor, dt_cap: float | None = None) -> tuple[Tensor, dict]:
        raise NotImplementedError


class GradientDescent(Solver):
    """Full-batch GD θ ← θ − η∇L(θ) (Δt = η). Tracks the top ``k`` Hessian eigenvalues every ``track_every``
    steps when set (warm-started, so tracking every step costs about one block HVP)."""

    def __init__(self, lr: float, track_every: int | None = None, k: int = 1, tol: float = 1e-3) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive (got {lr})")
        self.lr, self.track_every = lr, track_every
        self.tracker = _EigenTracker(k, tol) if track_every else None
        self._count = 0

    def step(self, objective, theta, dt_cap=None):
        track = self.tracker is not None and self._count % self.track_every == 0
        loss, g = objective.loss_and_grad(theta, keep_graph=track)
        rec = {"dt": self.lr, "loss": loss.item(), "grad_norm": g.norm().item()}
        if track:
            rec |= _eig_record(self.tracker(objective, theta))
        self._count += 1
        return theta - self.lr * g, rec


class AdaptiveGD(Solver):
    """GD with the step tied to the sharpness: Δt = min(Δt_max, c/λ₁) (λ₁ ≤ 0 gives Δt_max).

    With c < 2 the step stays below the edge of stability 2/λ₁ of the local quadratic model."""

    def __init__(self, dt_max: float, c: float = 1.0, tol: float = 1e-3) -> None:
        if not (dt_max > 0 and c > 0):
            raise ValueError(f"dt_max and c must be positive (got {dt_max}, {c})")
        self.dt_max, self.c = dt_max, c
        self.tracker = _EigenTracker(1, tol)

    def step(self, objective, theta, dt_cap=None):
        loss, g = objective.loss_and_grad(theta, keep_graph=True)  # one gradient graph for g and the HVPs
        r = self.tracker(objective, theta)
        lam = r.values[0].item()
        dt = self.dt_max if lam <= 0 else min(self.dt_max, self.c / lam)
        dt = dt if dt_cap is None else min(dt, dt_cap)
        rec = {"dt": dt, "loss": loss.item(), "grad_norm": g.norm().item()} | _eig_record(r)
        return theta - dt * g, rec


def phi1(lam: Tensor, dt: float) -> Tensor:
    """φ(λ) = (1 − e^{−λΔt})/λ = −expm1(−λΔt)/λ, the exact flow factor along an eigendirection of a quadratic;
    → Δt as λ → 0 (evaluated by its series there, so no 0/0)."""
    x = lam * dt
    small = x.abs() < 1e-8
    safe = torch.where(small, torch.ones_like(lam), lam)
    return torch.where(small, dt * (1 - x / 2), -torch.expm1(-x) / safe)


class ExponentialEuler(Solver):
    """Exponential Euler step (paper-notes §2; same update as the authors' Stable-Solvers, our code).

    With g = ∇L(θ) and the top k+1 Hessian eigenpairs (λ_m, v_m), k = ``stiff_dim`` (default Q, Q − 1 for CE):
        Δt = min(Δt_max, 1/|λ_{k+1}|), c_m = v_mᵀ g,
        θ ← θ − Σ_{m≤k} c_m · min(φ(λ_m), Δt) · v_m − Δt · (g − Σ_{m≤k} c_m v_m).
    The k stiff directions follow the local quadratic model exactly; the bulk takes a stable Euler step.
    """

    def __init__(self, dt_max: float, stiff_dim: int | None = None, tol: float = 1e-3, guard: int = 0) -> None:
        if not dt_max > 0:
            raise ValueError(f"dt_max must be positive (got {dt_max})")
        if stiff_dim is not None and stiff_dim < 0:
            raise ValueError(f"stiff_dim must be ≥ 0 (got {stiff_dim})")
        self.dt_max, self.stiff_dim, self.tol, self.guard = dt_max, stiff_dim, tol, guard
        self.tracker = _EigenTracker(0, tol, guard)  # k is set from the objective at the first step

    def step(self, objective, theta, dt_cap=None):
        k = objective.stiff_dim if self.stiff_dim is None else self.stiff_dim
        k = min(k, objective.P - 1)
        self.tracker.k = k + 1
        loss, g = objective.loss_and_grad(theta, keep_graph=True)  # one gradient graph for g and the HVPs
        r = self.tracker(objective, theta)
        lam_bulk = abs(r.values[k].item())
        dt = self.dt_max if lam_bulk == 0 else min(self.dt_max, 1.0 / lam_bulk)
        dt = dt if dt_cap is None else min(dt, dt_cap)
        V = r.vectors[:, :k].to(theta.dtype)
        lam = r.values[:k].to(theta.dtype)
        c = V.T @ g
        stiff = V @ (c * torch.minimum(phi1(lam, dt), torch.full_like(lam, dt)))
        theta_next = theta - stiff - dt * (g - V @ c)
        rec = {"dt": dt, "loss": loss.item(), "grad_norm": g.norm().item()} | _eig_record(r)
        return theta_next, rec


class ReferenceFlow:
    """High-accuracy integration of dθ/dt = −∇L(θ): scipy ``solve_ivp`` (explicit ``method``, default DOP853)
    with error control at ``rtol``/``atol``. The ground truth the other solvers are measured against.

    Explicit methods are limited by stability to steps ~ 3/λ₁, so the cost grows with the sharpness; use a
    float64 objective when rtol is below ~1e-6 (float32 gradients cannot support more)."""

    def __init__(self, rtol: float = 1e-8, atol: float = 1e-10, method: str = "DOP853") -> None:
        if method not in ("RK45", "DOP853", "RK23"):
            raise ValueError(f"ReferenceFlow needs an explicit method: RK45, DOP853 or RK23 (got {method!r})")
        self.rtol, self.atol, self.method = rtol, atol, method
        self.nfev = 0

    def integrate(self, objective: Objective, theta0: Tensor, times: Sequence[float]) -> Tensor:
        """θ(t) at each requested time (len(times) × P, times sorted ascending, ≥ 0)."""
        times = np.asarray(times, dtype=np.float64)
        if times.ndim != 1 or len(times) == 0 or np.any(np.diff(times) < 0) or times[0] < 0:
            raise ValueError("times must be a non-empty, ascending sequence of non-negative flow times")

        def rhs(_t, th):
            g = objective.grad(torch.from_numpy(th).to(objective.device, objective.dtype))
            if not torch.isfinite(g).all():
                raise FloatingPointError(f"non-finite gradient in the reference flow at t={_t:g}")
            return -g.double().cpu().numpy()

        sol = solve_ivp(rhs, (0.0, float(times[-1])), theta0.double().cpu().numpy(), method=self.method,
                        t_eval=times, rtol=self.rtol, atol=self.atol)
        if not sol.success:
            raise RuntimeError(f"reference flow failed: {sol.message}")
        self.nfev += sol.nfev
        return torch.from_numpy(sol.y.T.copy()).to(objective.device, objective.dtype)
