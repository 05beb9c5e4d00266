"""The second-order damped Runge–Kutta–Chebyshev (RKC2) flow integrator.

The gradient flow θ' = F(θ) = −∇L(θ) has the Jacobian −∇²L, whose spectrum is (nearly) real and ≤ 0 up to
small negative curvature: the setting stabilised explicit methods are built for. An s-stage RKC2 step
(Sommeijer, Shampine & Verwer 1998; Verwer, Sommeijer & Hundsdorfer 2004) from y₀ = θₙ with F₀ = F(θₙ):

    Y₀ = θₙ,  Y₁ = Y₀ + μ̃₁ Δt F₀,
    Yⱼ = (1 − μⱼ − νⱼ) Y₀ + μⱼ Yⱼ₋₁ + νⱼ Yⱼ₋₂ + μ̃ⱼ Δt F(Yⱼ₋₁) + γ̃ⱼ Δt F₀     (j = 2..s),
    θₙ₊₁ = Yₛ,

with Chebyshev polynomials Tⱼ evaluated at w₀ = 1 + ε/s² (damping ε, default 2/13) and

    w₁ = Tₛ′(w₀)/Tₛ″(w₀),  bⱼ = Tⱼ″(w₀)/Tⱼ′(w₀)² (j ≥ 2), b₀ = b₁ = b₂,  aⱼ = 1 − bⱼ Tⱼ(w₀),
    μ̃₁ = b₁ w₁,  μⱼ = 2 bⱼ w₀ / bⱼ₋₁,  νⱼ = −bⱼ / bⱼ₋₂,  μ̃ⱼ = 2 bⱼ w₁ / bⱼ₋₁,  γ̃ⱼ = −aⱼ₋₁ μ̃ⱼ.

On y' = −λy the step multiplies y by the stability polynomial Pₛ(z) = aₛ + bₛ Tₛ(w₀ + w₁z), z = −λΔt, which is
e^z + O(z³) (second order), and on the damped part of the interval −β(s) ≤ z ≤ −2 it stays within
[aₛ − bₛ, aₛ + bₛ] ≈ [0.33, 0.95] (ε = 2/13), with β(s) = (1 + w₀)/w₁ ≈ (2/3)(s² − 1)(1 − 2ε/15) ≈ 0.65 s².
So the step is stable when Δt·λ_max ≤ β(s): the stage count (≈ gradients per step) grows like √(Δt·λ_max), and
the cost per unit of flow time like √(λ_max/Δt), against λ_max for explicit Runge–Kutta at Δt ~ 1/λ_max.

λ_max is a warm-started top-1 eigen-solve at θₙ (:class:`EigenTracker`, ~3 Hessian products per step at
``tol`` = 1e-2); the stage count is the smallest s ≥ 2 with β(s) ≥ ``safety``·λ_max·Δt (the safety factor
covers the sharpening inside the step and the eigen-solve's tolerance).

**Error control (the default).** A mode with λΔt ≫ 1 is multiplied by Pₛ ≈ 0.33…0.95 per step where the exact
flow multiplies it by e^{−λΔt} ≈ 0: whatever is out of equilibrium in the stiff directions after a large step
lingers for many steps. The step size is therefore chosen by the embedded error estimate of Sommeijer et al.,

    est = (1/15)[12(θₙ − θₙ₊₁) + 6Δt(F(θₙ) + F(θₙ₊₁))],
    err = RMS_i( est_i / (atol + rtol·max(|θₙ,i|, |θₙ₊₁,i|)) ),

accepting the step when err ≤ 1 and proposing Δt_new = Δt·min(10, max(0.1, 0.8·err^{−1/3})) (capped at
``dt_max``); a rejected step is retried at most half as long and counted. F(θₙ₊₁) is the next step's F₀, so an
accepted step costs no extra gradient. Measured against a reference flow (notebook 2's setting; CE
Fashion-MNIST, 10 classes, N = 512): the fixed step's error depends on the problem (Δt = 0.5: 4.8e-2 and
7.4e-3) where rtol sets it (1e-3: 4.0e-3 and 2.0e-2; exponential Euler: 4.5e-2 and 6.0e-2, at 3.5× and 7.7×
RKC's wall time); a stronger damping ε did not pay with error control, and integrating the top outlier
directions exactly costs an eigen-solve per step as large as exponential Euler's. ``adaptive=False`` gives the
fixed step Δt = ``dt_max`` (the bare method, used by the order and stability tests).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from .base import EigenTracker, Solver, eig_record

#: Damping of the Chebyshev polynomial recommended by Verwer, Sommeijer & Hundsdorfer (2004).
DEFAULT_DAMPING = 2 / 13
#: Rejected tries in one step before giving up (each at least halves Δt: 2⁻⁴⁰ of the first try).
MAX_REJECTED = 40


@dataclass(frozen=True)
class RKCCoefficients:
    """The s-stage RKC2 coefficients (index j = 0..s; entries not defined for a j are 0) and β(s)."""

    s: int
    eps: float
    w0: float
    w1: float
    mu: tuple[float, ...]
    nu: tuple[float, ...]
    mu_t: tuple[float, ...]
    gamma_t: tuple[float, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    beta: float

    @property
    def damping_bound(self) -> float:
        """aₛ + bₛ: the largest |Pₛ(z)| over the damped part of the stability interval."""
        return self.a[-1] + self.b[-1]


@lru_cache(maxsize=4096)
def rkc_coefficients(s: int, eps: float = DEFAULT_DAMPING) -> RKCCoefficients:
    """The coefficients of the s-stage damped RKC2 method (module docstring), from the Chebyshev recurrences
    T₀ = 1, T₁ = w, Tⱼ = 2wTⱼ₋₁ − Tⱼ₋₂ and their first two derivatives, all in float64."""
    if s < 2:
        raise ValueError(f"RKC2 needs at least 2 stages (got {s})")
    w0 = 1.0 + eps / s**2
    T, dT, ddT = [1.0, w0], [0.0, 1.0], [0.0, 0.0]
    for j in range(2, s + 1):
        T.append(2 * w0 * T[j - 1] - T[j - 2])
        dT.append(2 * T[j - 1] + 2 * w0 * dT[j - 1] - dT[j - 2])
        ddT.append(4 * dT[j - 1] + 2 * w0 * ddT[j - 1] - ddT[j - 2])
    w1 = dT[s] / ddT[s]
    b = [0.0] * (s + 1)
    for j in range(2, s + 1):
        b[j] = ddT[j] / dT[j] ** 2
    b[0] = b[1] = b[2]
    a = [1.0 - b[j] * T[j] for j in range(s + 1)]
    mu, nu, mu_t, gamma_t = [0.0] * (s + 1), [0.0] * (s + 1), [0.0] * (s + 1), [0.0] * (s + 1)
    mu_t[1] = b[1] * w1
    for j in range(2, s + 1):
        mu[j] = 2 * b[j] * w0 / b[j - 1]
        nu[j] = -b[j] / b[j - 2]
        mu_t[j] = 2 * b[j] * w1 / b[j - 1]
        gamma_t[j] = -a[j - 1] * mu_t[j]
    return RKCCoefficients(s, eps, w0, w1, tuple(mu), tuple(nu), tuple(mu_t), tuple(gamma_t), tuple(a), tuple(b),
                           (1.0 + w0) / w1)


def stages_for(z: float, eps: float = DEFAULT_DAMPING, max_stages: int = 10_000) -> int:
    """The smallest s ≥ 2 with β(s) ≥ z (z = safety·λ_max·Δt; z ≤ 0 gives 2)."""
    if not math.isfinite(z):
        raise ValueError(f"stage count for a non-finite λ·Δt = {z}")
    # β(s) ≈ (2/3)(s² − 1)(1 − 2ε/15) from below: start just under the estimate and walk up
    s = max(2, int(math.sqrt(1.5 * max(z, 0.0) / (1 - 2 * eps / 15) + 1)) - 1)
    while s > 2 and rkc_coefficients(s - 1, eps).beta >= z:
        s -= 1
    while rkc_coefficients(s, eps).beta < z:
        s += 1
        if s > max_stages:
            raise ValueError(f"λ·Δt = {z:.4g} needs more than max_stages = {max_stages} RKC stages; "
                             "lower dt_max or raise max_stages")
    return s


class RungeKuttaChebyshev(Solver):
    """Damped second-order Runge–Kutta–Chebyshev integrator of the gradient flow (module docstring).

    ``dt_max``: the bound on Δt (with ``adaptive=False``: the step itself); ``rtol``/``atol``: the error
    control's tolerances (module docstring); ``damping``: ε; ``safety``: the stage count covers
    ``safety``·λ_max·Δt; ``tol``: relative residual of the warm-started λ_max eigen-solve; ``max_stages``: a
    guard (a step that would need more raises, naming the fix).

    Record: ``dt``, ``loss`` and ``grad_norm`` at θ, ``stages``, ``lam_max`` (the λ_max estimate the stage
    count used), ``n_grad`` / ``n_hvp`` (gradients and Hessian-vector products spent in the step, the
    rejected tries included), ``rejected`` (tries rejected by the error control), ``err`` (the accepted step's
    error norm) and the eigen-solve's ``eigs``, ``eig_matvecs``, ``eig_converged``, ``eig_residual``.
    ``state_dict`` carries the eigen-solve's warm start, the proposed next Δt and the last accepted step's
    gradient (so a resumed run is bit-identical)."""

    _state = ("dt_next", "_fsal", "_accepted")

    def __init__(self, dt_max: float, damping: float = DEFAULT_DAMPING, safety: float = 1.2, tol: float = 1e-2,
                 max_stages: int = 1000, adaptive: bool = True, rtol: float = 1e-3, atol: float = 1e-5) -> None:
        if not dt_max > 0:
            raise ValueError(f"dt_max must be positive (got {dt_max})")
        if not damping > 0:
            raise ValueError(f"damping must be positive (got {damping})")
        if not safety >= 1:
            raise ValueError(f"safety must be ≥ 1 (got {safety})")
        if max_stages < 2:
            raise ValueError(f"max_stages must be ≥ 2 (got {max_stages})")
        if not (rtol > 0 and atol >= 0):
            raise ValueError(f"rtol must be positive and atol ≥ 0 (got {rtol}, {atol})")
        self.dt_max, self.damping, self.safety, self.tol = dt_max, damping, safety, tol
        self.max_stages, self.adaptive, self.rtol, self.atol = max_stages, adaptive, rtol, atol
        self.tracker = EigenTracker(1, tol)
        self.dt_next: float | None = None  # the controller's proposal (error-controlled mode)
        self._fsal: tuple[Tensor, Tensor, Tensor] | None = None  # (θₙ₊₁, L, ∇L) of the last accepted step
        # (θ, Δt) of the last two accepted steps: a step retaken from one of them (the training loop landing on a
        # loss threshold retakes the step before the last with dt_cap < its Δt) is tried at exactly dt_cap
        self._accepted: list[tuple[Tensor, float]] = []

    # ------------------------------------------------------------------ one step
    def step(self, objective, theta, dt_cap=None):
        fsal, self._fsal = self._fsal, None
        if fsal is not None and fsal[0].shape == theta.shape and torch.equal(fsal[0], theta):
            loss, g, n_grad = fsal[1], fsal[2], 0  # F(θₙ₊₁) of the last accepted step (its graph is still cached)
        else:
            (loss, g), n_grad = objective.loss_and_grad(theta, keep_graph=True), 1
        r = self.tracker(objective, theta)
        lam = max(float(r.values[0]), 0.0)
        rec = {"loss": loss.item(), "grad_norm": g.norm().item(), "lam_max": lam} | eig_record(r)
        n_hvp = r.matvecs

        dt = self.dt_max if not self.adaptive or self.dt_next is None else min(self.dt_next, self.dt_max)
        retaken = [d for th, d in self._accepted if th.shape == theta.shape and torch.equal(th, theta)]
        if retaken:
            dt = max(retaken)
        rejected = 0
        while True:
            dt_try = dt if dt_cap is None else min(dt, dt_cap)
            s = stages_for(self.safety * lam * dt_try, self.damping, self.max_stages)
            theta_next = self._chebyshev(objective, theta, g, dt_try, s)
            n_grad += s - 1
            if not self.adaptive:
                break
            loss_next, g_next = objective.loss_and_grad(theta_next, keep_graph=True)
            n_grad += 1
            err = self._error(theta, theta_next, g, g_next, dt_try)
            # the controller of Sommeijer et al. for second order: Δt_new = Δt·min(10, max(0.1, 0.8·err^(−1/3)))
            fac = min(10.0, max(0.1, 0.8 * err ** (-1 / 3))) if err > 0 else 10.0
            fac = fac if math.isfinite(err) else 0.1
            if err <= 1.0:
                self.dt_next = dt_try * fac if dt_try == dt else dt  # a step shortened by dt_cap keeps the proposal
                self._fsal = (theta_next, loss_next, g_next)
                if not retaken:
                    self._accepted = (self._accepted + [(theta, dt_try)])[-2:]
                rec["err"] = err
                break
            rejected += 1
            if rejected > MAX_REJECTED:
                raise FloatingPointError(f"RKC: {rejected} steps rejected in a row at Δt = {dt_try:.3g} (error norm "
                                         f"{err:.3g}); θ or ∇L may be non-finite, or rtol too small for the dtype")
            dt = dt_try * min(fac, 0.5)
        rec |= {"dt": dt_try, "stages": s, "n_grad": n_grad, "n_hvp": n_hvp, "rejected": rejected}
        return theta_next, rec

    def _chebyshev(self, objective, theta: Tensor, g: Tensor, dt: float, s: int) -> Tensor:
        """The s-stage recurrence from θ (F₀ = −g): s − 1 further gradients."""
        c = rkc_coefficients(s, self.damping)
        y_prev2, y_prev = theta, theta - (c.mu_t[1] * dt) * g
        for j in range(2, s + 1):
            y = (1 - c.mu[j] - c.nu[j]) * theta + c.mu[j] * y_prev + c.nu[j] * y_prev2 \
                - (c.mu_t[j] * dt) * objective.grad(y_prev) - (c.gamma_t[j] * dt) * g
            y_prev2, y_prev = y_prev, y
        return y_prev

    def _error(self, theta: Tensor, theta_next: Tensor, g: Tensor, g_next: Tensor, dt: float) -> float:
        """RMS norm of the embedded estimate (1/15)[12(θₙ − θₙ₊₁) + 6Δt(F₀ + F(θₙ₊₁))], F = −∇L, scaled
        elementwise by atol + rtol·max(|θₙ|, |θₙ₊₁|)."""
        est = (12 * (theta - theta_next) - 6 * dt * (g + g_next)) / 15
        scale = self.atol + self.rtol * torch.maximum(theta.abs(), theta_next.abs())
        return float((est / scale).pow(2).mean().sqrt())
