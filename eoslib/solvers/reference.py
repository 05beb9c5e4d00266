"""The high-accuracy reference flow the other solvers are measured against."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from ..objective import Objective


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
