"""Gradient descent, as an integrator of the flow with Δt = η (and a sharpness-adaptive variant)."""
from __future__ import annotations

from .base import EigenTracker, Solver, eig_record


class GradientDescent(Solver):
    """Full-batch GD θ ← θ − η∇L(θ) (Δt = η). Tracks the top ``k`` Hessian eigenvalues every ``track_every``
    steps when set (warm-started, so tracking every step costs about one block HVP). The step counter that
    decides when to track is part of ``state_dict``, so a resumed run tracks the same steps."""

    _state = ("count",)
    flow = False  # at a fixed η the loss may rise (the edge of stability is the point of these runs)

    def __init__(self, lr: float, track_every: int | None = None, k: int = 1, tol: float = 1e-3) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive (got {lr})")
        self.lr, self.track_every = lr, track_every
        self.tracker = EigenTracker(k, tol) if track_every else None
        self.count = 0

    def step(self, objective, theta, dt_cap=None):
        track = self.tracker is not None and self.count % self.track_every == 0
        loss, g = objective.loss_and_grad(theta, keep_graph=track)
        rec = {"dt": self.lr, "loss": loss.item(), "grad_norm": g.norm().item()}
        if track:
            rec |= eig_record(self.tracker(objective, theta))
        self.count += 1
        return theta - self.lr * g, rec


class AdaptiveGD(Solver):
    """GD with the step tied to the sharpness: Δt = min(Δt_max, c/λ₁) (λ₁ ≤ 0 gives Δt_max).

    With c < 2 the step stays below the edge of stability 2/λ₁ of the local quadratic model."""

    def __init__(self, dt_max: float, c: float = 1.0, tol: float = 1e-3) -> None:
        if not (dt_max > 0 and c > 0):
            raise ValueError(f"dt_max and c must be positive (got {dt_max}, {c})")
        self.dt_max, self.c = dt_max, c
        self.tracker = EigenTracker(1, tol)

    def step(self, objective, theta, dt_cap=None):
        loss, g = objective.loss_and_grad(theta, keep_graph=True)  # one gradient graph for g and the HVPs
        r = self.tracker(objective, theta)
        lam = r.values[0].item()
        dt = self.dt_max if lam <= 0 else min(self.dt_max, self.c / lam)
        dt = dt if dt_cap is None else min(dt, dt_cap)
        rec = {"dt": dt, "loss": loss.item(), "grad_norm": g.norm().item()} | eig_record(r)
        return theta - dt * g, rec
