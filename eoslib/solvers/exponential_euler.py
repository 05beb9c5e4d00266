"""The exponential Euler step (paper-notes §2; the same update as the authors' Stable-Solvers, our code)."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import EigenTracker, Solver, eig_record


def phi1(lam: Tensor, dt: float) -> Tensor:
    """φ(λ) = (1 − e^{−λΔt})/λ = −expm1(−λΔt)/λ, the exact flow factor along an eigendirection of a quadratic;
    → Δt as λ → 0 (evaluated by its series there, so no 0/0)."""
    x = lam * dt
    small = x.abs() < 1e-8
    safe = torch.where(small, torch.ones_like(lam), lam)
    return torch.where(small, dt * (1 - x / 2), -torch.expm1(-x) / safe)


class ExponentialEuler(Solver):
    """Exponential Euler step.

    With g = ∇L(θ) and the top k+1 Hessian eigenpairs (λ_m, v_m), k = ``stiff_dim`` (default Q, Q − 1 for CE):
        Δt = min(Δt_max, 1/|λ_{k+1}|), c_m = v_mᵀ g,
        θ ← θ − Σ_{m≤k} c_m · min(φ(λ_m), Δt) · v_m − Δt · (g − Σ_{m≤k} c_m v_m).
    The k stiff directions follow the local quadratic model exactly; the bulk takes a stable Euler step.
    """

    def __init__(self, dt_max: float, stiff_dim: int | None = None, tol: float = 1e-3, guard: int = 2) -> None:
        if not dt_max > 0:
            raise ValueError(f"dt_max must be positive (got {dt_max})")
        if stiff_dim is not None and stiff_dim < 0:
            raise ValueError(f"stiff_dim must be ≥ 0 (got {stiff_dim})")
        self.dt_max, self.stiff_dim, self.tol, self.guard = dt_max, stiff_dim, tol, guard
        self.tracker = EigenTracker(0, tol, guard)  # k is set from the objective at the first step

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
        rec = {"dt": dt, "loss": loss.item(), "grad_norm": g.norm().item()} | eig_record(r)
        return theta_next, rec
