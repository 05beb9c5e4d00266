"""The mechanism control with no layer structure (claim C3): the second-order Taylor model of a network.

Around θ₀, with δ = θ − θ₀,

    f₂(x; θ) = f(x; θ₀) + J₀(x)δ + ½ δᵀ∇²f(x; θ₀)δ,

a model quadratic in θ whose Jacobian J₂(θ) = J₀ + ∇²f(θ₀)[δ, ·] moves along training but which has no layers:
no layerwise Jacobians to align. If its gradient flow sharpens (λ_max of its loss Hessian rises), sharpening
needs no layerwise alignment as such; the quadratic model of Agarwala, Pedregosa & Pennington (2023) is of this
kind. Its loss Hessian is ∇²L₂ = (1/N) Σᵢ J₂ᵢᵀ Dᵢ J₂ᵢ + (1/N) Σᵢ Σ_q (∂l/∂z_q) ∇²f_q(xᵢ; θ₀): at θ = θ₀ it
equals the network's ∇²L(θ₀) exactly.

**Matrix-free.** :func:`second_order_terms` gets all three terms from one forward-mode derivative of another:
with h(θ) = (f(θ), Df(θ)[δ]) (``torch.func.jvp`` of f along δ), the jvp of h at θ₀ along δ returns
(f(θ₀), Df(θ₀)[δ]) and (Df(θ₀)[δ], D²f(θ₀)[δ, δ]); D²f(θ₀)[δ, δ] = δᵀ∇²f(θ₀)δ. No P × P matrix is formed.

**As a model.** :class:`TaylorModel` is an ``nn.Module`` with one parameter, the flat θ (P), whose forward is
f₂; the network is kept as a plain attribute (not a submodule, so its parameters are not the model's) and θ₀ as
a plain tensor (not a buffer: :class:`~eoslib.objective.Objective` refuses buffers). So :func:`taylor_objective`
is an ordinary :class:`~eoslib.objective.Objective` of it — the same data, loss, chunking and Hessian-product
method — and every solver, eigen-solver and hook runs on it unchanged: its gradient and Hessian products go
through autograd over the nested forward-mode derivatives (the ``backward`` and ``jvp`` Hessian methods both
work). :func:`sharpness_along_flow` runs a solver on any objective with a λ_max hook;
:func:`taylor_flow` does so for the Taylor model at θ₀.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from .eigen import EigenResult
from .objective import Objective
from .solvers.base import EigenTracker
from .training import Stop, TrainResult, train


def second_order_terms(f: Callable[[Tensor], Tensor], theta0: Tensor, delta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(f(θ₀), Df(θ₀)[δ] = J₀δ, D²f(θ₀)[δ, δ] = δᵀ∇²f(θ₀)δ) of f: ℝᴾ → any shape, by one jvp of a jvp
    (module docstring). Differentiable in θ₀ and δ by autograd."""
    def h(th: Tensor) -> tuple[Tensor, Tensor]:
        return jvp(f, (th,), (delta,))

    (f0, d1), (_, d2) = jvp(h, (theta0,), (delta,))
    return f0, d1, d2


class TaylorModel(nn.Module):
    """f₂(x; θ) = f(x; θ₀) + J₀δ + ½δᵀ∇²f(x; θ₀)δ, δ = θ − θ₀, of the network ``model`` (module docstring).

    One parameter ``theta`` (flat, P = the network's parameter count, in the order of ``model.named_parameters``),
    initialised to θ₀ (default: the network's current parameters). ``model`` itself is not modified and is not
    a submodule; θ₀ is a plain tensor attribute that follows ``.to()``/``.double()`` with the parameter."""

    def __init__(self, model: nn.Module, theta0: Tensor | None = None) -> None:
        super().__init__()
        named = list(model.named_parameters())
        object.__setattr__(self, "network", model)  # not registered: its parameters are not this model's
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        flat = torch.cat([p.detach().reshape(-1) for _, p in named]) if theta0 is None else theta0.detach()
        if flat.shape != (sum(self.numels),):
            raise ValueError(f"theta0 must be a flat vector of the network's {sum(self.numels)} parameters "
                             f"(got shape {tuple(flat.shape)})")
        self.theta0 = flat.clone()
        self.theta = nn.Parameter(flat.clone())

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.theta0 = fn(self.theta0)
        return self

    def network_outputs(self, theta: Tensor, x: Tensor) -> Tensor:
        """f(x; θ) of the network at flat parameters θ."""
        params = {n: t.view(s) for n, t, s in zip(self.names, theta.split(self.numels), self.shapes)}
        return functional_call(self.network, params, (x,))

    def forward(self, x: Tensor) -> Tensor:
        f0, d1, d2 = second_order_terms(lambda th: self.network_outputs(th, x), self.theta0, self.theta - self.theta0)
        return f0 + d1 + 0.5 * d2


def taylor_objective(objective: Objective, theta0: Tensor | None = None) -> Objective:
    """The :class:`Objective` of the Taylor model of ``objective``'s network around θ₀ (default
    ``objective.theta0``): the same X, y, loss, chunk size and Hessian-product method; its ``theta0`` is θ₀, so
    the loss, gradient and Hessian at its start equal the network's."""
    th0 = objective.theta0 if theta0 is None else theta0.to(objective.device, objective.dtype)
    chunk = objective.chunk_size if objective.chunk_size < objective.N else None
    return Objective(TaylorModel(objective.model, th0), objective.X, objective.y, loss=objective.criterion,
                     chunk_size=chunk, hvp_method=objective.hvp_method)


class Sharpness:
    """Train hook adding ``lam_hess`` = λ_max(∇²L(θ)) (largest algebraic eigenvalue) with its certificate
    (``lam_hess_converged``, ``lam_hess_residual``: the max relative residual) every ``every`` steps and at the
    final iterate: a warm-started, guarded :class:`~eoslib.solvers.base.EigenTracker` at relative tolerance
    ``tol`` (never raising; an unconverged value is stored with ``lam_hess_converged`` False). Its own column
    names: a solver's record may hold its own, looser ``lam_max`` (RKC's, at tol 1e-2)."""

    def __init__(self, every: int = 1, tol: float = 1e-6) -> None:
        if every < 1:
            raise ValueError(f"every must be ≥ 1 (got {every})")
        self.every = every
        self.tracker = EigenTracker(1, tol, strict=False, guard_every=1)

    def __call__(self, objective, theta: Tensor, step: int, t: float, final: bool) -> dict | None:
        if not final and step % self.every:
            return None
        r: EigenResult = self.tracker(objective, theta)
        return {"lam_hess": float(r.values[0]), "lam_hess_converged": bool(r.converged),
                "lam_hess_residual": float(r.rel_residuals.max())}

    def state_dict(self) -> dict:
        return {"tracker": self.tracker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.tracker.load_state_dict(state["tracker"])


@dataclass(frozen=True)
class SharpnessRun:
    """A run's :class:`~eoslib.training.TrainResult` (``result``; its table has ``lam_hess``) and its summary:
    ``lam_start`` = λ_max(θ₀), ``lam_end`` at the last iterate, ``lam_peak`` the largest measured, ``sharpening``
    = lam_end / lam_start."""

    result: TrainResult
    lam_start: float
    lam_end: float
    lam_peak: float

    @property
    def sharpening(self) -> float:
        return self.lam_end / self.lam_start

    @property
    def table(self) -> pd.DataFrame:
        return self.result.table


def sharpness_along_flow(objective, solver, until: Stop | dict, every: int = 1, tol: float = 1e-6,
                         theta0: Tensor | None = None, hooks=(), **train_kw) -> SharpnessRun:
    """Run ``solver`` on ``objective`` (from ``theta0``, default its own) with the :class:`Sharpness` hook and
    report λ_max(∇²L) along the flow. Further hooks and :func:`~eoslib.training.train` keywords pass through."""
    res = train(solver, objective, theta0=theta0, until=until, hooks=[Sharpness(every, tol), *hooks],
                progress=train_kw.pop("progress", False), **train_kw)
    lam = res.table["lam_hess"].dropna()
    return SharpnessRun(res, float(lam.iloc[0]), float(lam.iloc[-1]), float(lam.max()))


def taylor_flow(objective: Objective, solver, until: Stop | dict, theta0: Tensor | None = None, every: int = 1,
                tol: float = 1e-6, **kw) -> SharpnessRun:
    """The gradient flow of the Taylor model of ``objective``'s network around θ₀ (default ``objective.theta0``)
    integrated by ``solver`` from θ₀, with λ_max of its loss Hessian along it (:func:`sharpness_along_flow`):
    does a model with no layer structure sharpen?"""
    return sharpness_along_flow(taylor_objective(objective, theta0), solver, until, every=every, tol=tol, **kw)


__all__ = ["second_order_terms", "TaylorModel", "taylor_objective", "Sharpness", "SharpnessRun",
           "sharpness_along_flow", "taylor_flow"]
