"""Interventions on the flow (claim C3): hold a function c(θ) of the layerwise Jacobians fixed while training.

**Constraint functions** (paper-notes §2 notation: Jᵏ = Aᵏ⁺¹ diag(σ′(x̂ᵏ)), P₁ = Jᴷ⁻¹⋯J¹), on a fixed probe subset
x₁..x_M of the training set, registered by name in :data:`CONSTRAINTS` as functions of the per-example terms
sₖᵢ = log‖Jᵏ(xᵢ)‖₂ and pᵢ = log‖P₁(xᵢ)‖₂ (:class:`Terms`):

* ``alpha``: c = ᾱ = (1/M) Σᵢ α(xᵢ), α(x) = ‖P₁(x)‖₂ / Πₖ‖Jᵏ(x)‖₂ = exp(pᵢ − Σₖ sₖᵢ) — the mean chain alignment;
* ``norms`` (the placebo): c = (1/M) Σᵢ Σₖ log‖Jᵏ(xᵢ)‖₂ — the log of the geometric mean over the probe of
  Πₖ‖Jᵏ(x)‖₂. Holding it fixes the layer-norm product in that geometric-mean sense (each example's product
  may still move, their log-average may not).

Per example log‖P₁‖ = log α + Σₖ log‖Jᵏ‖ exactly, so mean log‖P₁‖ = mean log α + mean Σₖ log‖Jᵏ‖: the chain
gain's growth splits into an alignment part and a layer-norm part (:meth:`Terms.summary`).

**Cheap gradients (envelope theorem).** With (u, v) a top singular pair of a matrix M(θ₀) whose top singular
value is simple, σ(θ) = uᵀ M(θ) v (u, v held fixed) has σ(θ₀) = ‖M(θ₀)‖₂ and ∇σ(θ₀) = ∇‖M‖₂(θ₀) (the
derivative of ‖M‖₂ is uᵀ dM v). :class:`ChainTerms` finds the pairs without autograd — the Q-row matrices
(P₁, and the last Jacobian Jᴷ⁻¹) exactly from ``eigh`` of their Q × Q Gram matrices, the wide square Jᵏ by a
warm-started batched block Krylov method on JᵀJ with guard rows (:func:`_krylov_pair`: the top pair to a
relative residual ``tol``, two guard pairs beside it, so that a warm start at an eigenvector of JᵀJ that is
not the top one is not accepted), applied as products with Aᵏ⁺¹ and σ′ without forming Jᵏ; each solve
returns a certificate (:class:`SingularPairs`, :attr:`ChainTerms.certificates`) — then evaluates
uᵀJᵏv = (Aᵏ⁺¹ᵀu)·(σ′⊙v) and uᵀP₁v (v pushed through the chain, one vector per example) on the autograd
graph of one forward pass, and differentiates that. Same values and gradients as
:func:`eoslib.alignment.alignment_functional` (which differentiates through ``eigvalsh`` of every Gram matrix;
tests/test_intervention.py), measured side by side (CPU process time, one thread, digits, width 128, depth 6,
float32, value and gradient of ᾱ at θ along an agd trajectory): probe 64 330 ms against 69 ms cold (4.8×)
and 16 ms warm-started from the previous iterate (21×, about 7 products per Krylov layer); probe 256 1.15 s
against 230 ms and 41 ms (28×). (The single-vector Lanczos method it replaced, which accepted such a warm
start, took 33 ms cold and 15 ms warm at probe 64 on the same machine, with 17 % more products warm and 30 %
fewer cold.)

**Projected flow.** :class:`ProjectedObjective` wraps an :class:`~eoslib.objective.Objective`: ``grad`` and
``loss_and_grad`` return the projected gradient Pg = g − (n·g)n, n = ∇c/‖∇c‖, so the flow θ' = −P∇L keeps c
constant to first order; ``loss`` is the true loss and everything else (``hvp``, ``hvp_operator``, ``P``,
``dtype``, ``X``, ``to_model``, ``stiff_dim``, …) is the wrapped objective's, so a solver's sharpness is
λ_max(∇²L) of the true loss. The projection of a discrete step drifts off c = target by O(Δt²);
:class:`ProjectedSolver` wraps any gradient-only solver (``gd``, ``agd``, ``rkc``) and, after each of its
steps, applies Newton steps θ ← θ − (c(θ) − target)·∇c/‖∇c‖² until |c − target| ≤ tol, so every iterate it
returns lies on the constraint. (A solver wrapper, not a train hook: hooks cannot change θ.)
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from .jacobians import MLPPass, chain_from_top, mlp_parts, mlp_pass
from .registry import Registry


# ----------------------------------------------------------------------------------------------------------
# per-example terms and the registered constraint functions
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Terms:
    """Per-example terms on the probe: ``log_norms`` M × (K−1) (column k−1: log‖Jᵏ(xᵢ)‖₂) and ``log_chain`` M
    (log‖P₁(xᵢ)‖₂); on the autograd graph when built for a gradient."""

    log_norms: Tensor
    log_chain: Tensor

    @property
    def log_alpha(self) -> Tensor:
        """log α(xᵢ) = log‖P₁‖ − Σₖ log‖Jᵏ‖ (M)."""
        return self.log_chain - self.log_norms.sum(dim=1)

    def summary(self) -> dict[str, float]:
        """The chain-gain decomposition: ``abar`` = ᾱ (mean α), ``log_alpha_mean`` = mean log α,
        ``log_norms_mean`` = mean Σₖ log‖Jᵏ‖, ``log_chain_mean`` = mean log‖P₁‖ = the sum of the previous two."""
        la = self.log_alpha.detach().double()
        return {"abar": float(la.exp().mean()), "log_alpha_mean": float(la.mean()),
                "log_norms_mean": float(self.log_norms.detach().double().sum(dim=1).mean()),
                "log_chain_mean": float(self.log_chain.detach().double().mean())}


#: constraint name → c(terms) (a 0-dim tensor, differentiable through the terms)
CONSTRAINTS: Registry[Callable[[Terms], Tensor]] = Registry("constraint")


@CONSTRAINTS.register("alpha", label="ᾱ (mean chain alignment)")
def mean_alignment(t: Terms) -> Tensor:
    """ᾱ = (1/M) Σᵢ exp(log‖P₁(xᵢ)‖ − Σₖ log‖Jᵏ(xᵢ)‖)."""
    return t.log_alpha.exp().mean()


@CONSTRAINTS.register("norms", label="mean Σₖ log‖Jᵏ‖ (layer norms)")
def mean_log_norm_product(t: Terms) -> Tensor:
    """(1/M) Σᵢ Σₖ log‖Jᵏ(xᵢ)‖₂ = log of the probe's geometric mean of Πₖ‖Jᵏ‖₂."""
    return t.log_norms.sum(dim=1).mean()


# ----------------------------------------------------------------------------------------------------------
# top singular pairs without autograd
# ----------------------------------------------------------------------------------------------------------
#: a layer Jacobian with a side ≤ this is handled by ``eigh`` of its Gram matrix (exact), wider ones by Krylov
GRAM_MAX = 32


def _gram_pair(M: Tensor) -> tuple[Tensor, Tensor]:
    """(u, v): a top singular pair of each M (batch × m × n) from ``eigh`` of the smaller Gram matrix, with
    uᵀMv = ‖M‖₂ ≥ 0 (exact to rounding)."""
    tiny = torch.finfo(M.dtype).tiny
    if M.shape[-2] <= M.shape[-1]:
        _, U = torch.linalg.eigh(M @ M.mT)
        u = U[..., -1]
        w = (u.unsqueeze(-2) @ M).squeeze(-2)  # Mᵀu = σ v
        return u, w / w.norm(dim=-1, keepdim=True).clamp_min(tiny)
    _, V = torch.linalg.eigh(M.mT @ M)
    v = V[..., -1]
    w = (M @ v.unsqueeze(-1)).squeeze(-1)  # Mv = σ u
    return w / w.norm(dim=-1, keepdim=True).clamp_min(tiny), v


#: Guard rows of the Krylov block by default: besides the top pair, two more Ritz pairs must converge before a
#: solve is accepted, so a warm start at an invariant vector (an exact eigenvector of JᵀJ that is not the top
#: one: residual 0) still has directions that go on exploring and find a larger singular value.
DEFAULT_GUARD = 2
#: Guard pairs carried from a previous solve (a full warm block) converge to the residual max(tol, GUARD_TOL)·θ₁
#: (θ₁ the top Ritz value): loose, since only their values' order matters (a guard Ritz value above the top
#: one swaps in), but it makes the guard rows iterate — their Krylov space grow — until they have explored
#: past the warm start, instead of being accepted at once. Too loose beside a warm start of fewer rows than the
#: block (one vector per example), whose guards start at random: a guard Ritz vector mixing v₁ with
#: eigenvectors below v₂ has a residual under 5 % while its value is still below σ₂² once √(g·h) < 0.05
#: (g = σ₁²/σ₂² − 1, h = 1 − σ₃²/σ₂²: a two-eigenvector mixture at the value σ₂² has residual √(g·h)·σ₂²):
#: started at the exact v₂ with a Gaussian matrix's singular values below σ₂ and σ₁/σ₂ ∈ {1.01, 1.03, 1.06},
#: 4 of 600 (spectrum, ratio, dtype) cases returned σ₂ so. There the first guard converges to ``tol`` like the
#: top (it is then the top of the random rows' Krylov space, which a missed σ₁ would dominate): 0 of the 600
#: (those 4 are in the tests). A cold start needs no such care: its top pair is itself from random rows.
GUARD_TOL = 0.05


@dataclass(frozen=True)
class SingularPairs:
    """Top singular pairs of Jᵢ = A diag(dᵢ) (one per example i) with their certificate.

    ``u`` (M × m), ``v`` (M × n): unit vectors with Jᵢvᵢ = σᵢuᵢ (up to the residual); ``sigma`` (M):
    σᵢ = ‖Jᵢvᵢ‖; ``residuals`` (M): the top pair's relative residual ‖JᵢᵀJᵢvᵢ − θᵢvᵢ‖/θᵢ (θᵢ ≈ σᵢ², the Ritz
    value); ``converged``: every top residual ≤ tol and every guard pair's within its limit (:data:`GUARD_TOL`);
    ``matvecs``: single-vector products with JᵢᵀJᵢ per example (block rows × iterations); ``warm``: started
    from a given vector or block; ``guard``: the guard rows; ``block`` (M × (1+guard) × n): the Ritz vectors,
    largest first (the next call's warm start)."""

    u: Tensor
    v: Tensor
    sigma: Tensor
    residuals: Tensor
    converged: bool
    matvecs: int
    warm: bool
    guard: int
    block: Tensor

    def certificate(self) -> dict:
        """What a stored number carries: converged, max relative residual, products, warm/cold, guard."""
        return {"converged": bool(self.converged), "residual": float(self.residuals.max()),
                "matvecs": int(self.matvecs), "warm": bool(self.warm), "guard": int(self.guard)}


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def _project_off(B: Tensor, Q: Tensor) -> Tensor:
    """(I − QᵀQ) applied to every row of B (M × c × n), Q (M × k × n) with orthonormal rows."""
    return B - (B @ Q.mT) @ Q


def _orthonormal_rows(B: Tensor, Q: Tensor, floor: Tensor, randn: Callable[[], Tensor], local: int = 0) -> Tensor:
    """The rows of B (M × c × n) orthonormalised against the basis rows Q (M × k × n) and each other.

    First off Q's last ``local`` rows (the Lanczos recurrence's own terms, when B = M·those rows), then off all
    of Q, a second time where that removed more than half of a row's squared norm in some example (DGKS:
    "twice is enough"), then Gram–Schmidt (twice) within the block. A row left with at most 10⁻³ of its
    norm, or below ``floor`` (M), lay in the basis to rounding (an invariant direction, e.g. the residual of
    an exact eigenvector, or a breakdown) and is replaced by a seeded Gaussian row (``randn``: M × n)
    orthogonalised the same way, so the block never shrinks."""
    before = B.norm(dim=-1)
    if local:
        B = _project_off(B, Q[:, -local:])
    mid = B.norm(dim=-1)
    B = _project_off(B, Q)
    if bool((B.norm(dim=-1) < 0.7 * mid).any()):
        B = _project_off(B, Q)
    rows: list[Tensor] = []

    def orth(x: Tensor) -> Tensor:
        for _ in range(2):
            for r in rows:
                x = x - (x * r).sum(-1, keepdim=True) * r
        return x

    for j in range(B.shape[1]):
        x = orth(B[:, j])
        bad = ~(x.norm(dim=-1) > torch.maximum(1e-3 * before[:, j], floor))
        if bool(bad.any()):
            g = _project_off(_project_off(randn()[:, None], Q), Q)[:, 0]
            x = torch.where(bad[:, None], orth(g), x)
        rows.append(_unit(x))
    return torch.stack(rows, dim=1)


def _start_block(v0: Tensor | None, shape: tuple[int, int, int], randn: Callable[[int], Tensor]) -> Tensor:
    """The first block (M × b × n): the warm start's rows (``v0``: M × n, one vector per example, or M × c × n,
    a block; at most b used) in front of seeded Gaussian rows."""
    M, b, n = shape
    if v0 is None:
        return randn(b)
    v0 = v0[:, None, :] if v0.dim() == 2 else v0
    if v0.dim() != 3 or v0.shape[0] != M or v0.shape[-1] != n:
        raise ValueError(f"warm start of shape {tuple(v0.shape)} for {M} examples in R^{n}")
    c = min(b, v0.shape[1])
    rows = v0[:, :c].to(randn(0))
    return torch.cat([rows, randn(b - c)], dim=1) if c < b else rows


def _ritz(Q: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
    """Rayleigh–Ritz on the basis rows Q (M × k × n) with W = MQ carried: the eigenpairs (θ, S) of H = QᵀMQ
    (solved in float64), largest first; Ritz vectors SᵀQ, their products SᵀW."""
    H = (Q @ W.mT).double()
    lam, S = torch.linalg.eigh((H + H.mT) / 2)
    return lam.flip(-1).to(Q.dtype), S.flip(-1).to(Q.dtype)


def _krylov_pair(A: Tensor, d: Tensor, v0: Tensor | None, tol: float, max_matvecs: int,
                 guard: int = DEFAULT_GUARD, restart: int = 24, check: int = 3, seed: int = 0) -> SingularPairs:
    """Top singular pairs of Jᵢ = A diag(dᵢ) (A: m × n, d: M × n; Jᵢ is never formed) by a block Krylov method
    on Mᵢ = JᵢᵀJᵢ, batched over the M examples, products MX = dᵢ ⊙ Aᵀ(A(dᵢ ⊙ X)) for a whole block at once.

    The block has b = 1 + ``guard`` rows: the warm start ``v0`` (M × n, or an M × c × n block such as the
    previous call's :attr:`SingularPairs.block`) first, then seeded Gaussian rows (``seed``). A Rayleigh–Ritz
    step on the whole basis Q (rows orthonormal, W = MQ carried, so H = QᵀMQ is exact and a breakdown
    harmless) gives the b largest Ritz pairs (θⱼ, xⱼ) and residuals rⱼ = Mxⱼ − θⱼxⱼ. The top pair has
    converged when ‖r₁‖ ≤ ``tol``·θ₁, a guard pair when ‖rⱼ‖ ≤ max(tol, GUARD_TOL)·θ₁ — the first guard to
    ``tol`` too beside a warm start of fewer than b rows (see :data:`GUARD_TOL`). Until all have, the basis
    grows by a block Lanczos chain from the c pairs still pending (in any example): their residuals, then
    ``check`` − 1 times M·(the last c rows), each orthonormalised against the basis (Davidson's expansion
    without preconditioner, continued as Lanczos), so a Rayleigh–Ritz step — a batched ``eigh``, as dear as
    several products — comes every ``check`` products per pending pair. Once the guards have converged the
    top pair goes on as single-vector Lanczos; with every pair pending the basis is block Lanczos' Krylov
    space K_j(M, X₀).

    A solve is never accepted after its first block product (unless the block spans Rⁿ): with nothing pending
    there the block's residuals are expanded all the same (a row that lies in the basis to rounding — the
    residual of an exact eigenvector — is replaced by a Gaussian one). A warm start at an invariant vector
    that is not the top one (residual 0) is refuted by the guards: their Krylov space finds the larger θ
    before they converge, and the top pair swaps in. At ``restart`` basis rows the basis restarts from the
    leading Ritz vectors (their products carried: a thick restart). Unconverged after ``max_matvecs``
    products (or with the basis spanning Rⁿ): the best estimate, ``converged=False`` and a RuntimeWarning."""
    Mb, n = d.shape
    b = min(1 + guard, n)
    cap = min(max(restart, 2 * b), n)
    eps, tiny = torch.finfo(A.dtype).eps, torch.finfo(A.dtype).tiny
    gen = torch.Generator().manual_seed(seed)

    def randn(c: int) -> Tensor:
        return torch.randn(Mb, c, n, generator=gen, dtype=A.dtype).to(A.device)

    def mv(X: Tensor) -> Tensor:  # MX = d ⊙ Aᵀ(A(d ⊙ X)) for every row of every example: one GEMM pair
        return (((X * d[:, None]) @ A.mT) @ A) * d[:, None]

    Q, W = d.new_empty(Mb, cap, n), d.new_empty(Mb, cap, n)
    X = _orthonormal_rows(_start_block(v0, (Mb, b, n), randn), Q[:, :0], d.new_zeros(Mb), lambda: randn(1)[:, 0])
    Q[:, :b], W[:, :b] = X, mv(X)
    k = used = b
    first, strict = True, int(b > 1 and v0 is not None and (v0.dim() == 2 or v0.shape[1] < b))
    while True:
        lam, S = _ritz(Q[:, :k], W[:, :k])
        theta, X, MX = lam[:, :b], S[:, :, :b].mT @ Q[:, :k], S[:, :, :b].mT @ W[:, :k]
        top = theta[:, :1].clamp_min(tiny)
        R = MX - theta[..., None] * X
        res = R.norm(dim=-1)  # M × b
        limit = torch.cat([tol * top, max(tol, GUARD_TOL) * top.expand(-1, b - 1)], dim=1)
        limit[:, 1:1 + strict] = tol * top  # random guards: the first converges like the top
        pending = ~(res <= limit)  # NaN pending
        done = not bool(pending.any()) and (not first or k == n)
        if done or used >= max_matvecs or k == n or not bool(torch.isfinite(res).all()):
            break
        active = pending.any(dim=0) if bool(pending.any()) else torch.ones(b, dtype=torch.bool, device=A.device)
        active &= active.cumsum(0) <= cap - b  # (a basis of at most 2b − 1 rows: n < 2b)
        c = int(active.sum())
        rows = min(check * c, (cap - b) // c * c)  # a block Lanczos chain of width c
        if k + rows > cap:  # thick restart from the leading Ritz vectors, their products carried
            keep = max(b, (cap - rows) // 2)
            Q[:, :keep], W[:, :keep] = S[:, :, :keep].mT @ Q[:, :k], S[:, :, :keep].mT @ W[:, :k]
            k = keep
        floor, fill, B = 16 * eps * top[:, 0], lambda: randn(1)[:, 0], R[:, active]
        for step in range(rows // c):  # (I − QQᵀ)·(the residuals, then M·the last c rows): no Rayleigh–Ritz between
            if used >= max_matvecs:
                break
            B = _orthonormal_rows(B, Q[:, :k], floor, fill, local=min(2 * c, k) if step else 0)
            Q[:, k:k + c], W[:, k:k + c] = B, mv(B)
            B, k, used, first = W[:, k:k + c], k + c, used + c, False
    converged, rel = not bool(pending.any()), res[:, 0] / top[:, 0]
    if not converged:
        n_pending = int(pending.any(dim=0).sum())
        warnings.warn(f"Krylov top singular pairs: {n_pending} of {b} pairs ({b - 1} guard) above their limits after "
                      f"{used} products (top residual {float(rel.max()):.3g}, tol {tol:g}; the constraint's gradient "
                      "is then approximate)", RuntimeWarning, stacklevel=3)
    v = _unit(X[:, 0])
    Jv = (v * d) @ A.mT
    return SingularPairs(_unit(Jv), v, Jv.norm(dim=-1), rel, converged, used, v0 is not None, b - 1, X)


# ----------------------------------------------------------------------------------------------------------
# the terms with envelope-theorem gradients
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """One evaluation at θ: the detached ``terms``, and ``grads`` (constraint name → ∇c(θ)) for the
    constraints asked for."""

    theta: Tensor
    terms: Terms
    grads: dict[str, Tensor]


class ChainTerms:
    """The per-example terms log‖Jᵏ(xᵢ)‖₂, log‖P₁(xᵢ)‖₂ of an MLP objective on the probe rows ``X`` and the
    gradients of registered constraints (module docstring: envelope theorem).

    ``tol``: relative residual of the top pair of JᵀJ in the Krylov method (default √eps of the dtype: 3.5e-4
    in float32, 1.5e-8 in float64; the norms' values are then exact to ~tol²/gap, their gradients to ~tol/gap,
    gap = 1 − σ₂²/σ₁²); ``max_matvecs``: products per layer and call (a warning if spent); ``guard``: guard
    columns of the Krylov block (:func:`_krylov_pair`); ``gram_max``: a Jacobian with a side ≤ this uses
    ``eigh`` of its Gram matrix. Each layer's Ritz block (M × (1+guard) × n) warm-starts the next call, and
    the last ``CACHE`` evaluations are kept (keyed on θ's values): a solver step evaluates c at its end
    point, a train hook then asks at the step's start point, the next step's projection at the end point
    again. Both are in ``state_dict`` (a checkpoint's M × n vectors, one per example, are accepted as a warm
    start too). ``certificates`` (Krylov layer index → :meth:`SingularPairs.certificate`), ``matvecs``,
    :attr:`converged` and :attr:`residual` describe the last call that solved (not a cache hit)."""

    CACHE = 6

    def __init__(self, objective, X: Tensor | None = None, tol: float | None = None, max_matvecs: int = 1000,
                 gram_max: int = GRAM_MAX, seed: int = 0, guard: int = DEFAULT_GUARD) -> None:
        try:
            lins, _ = mlp_parts(objective.model)
        except (TypeError, ValueError) as e:
            raise ValueError(f"ChainTerms needs an MLP Sequential(Linear, σ, …, Linear) ({e})") from None
        if len(lins) < 2:
            raise ValueError("ChainTerms needs at least 2 Linear layers (with one there is no layerwise Jacobian)")
        self.objective = objective
        self.X = objective.X if X is None else X.to(objective.device, objective.dtype)
        self.tol = math.sqrt(torch.finfo(objective.dtype).eps) if tol is None else tol
        self.max_matvecs, self.gram_max, self.seed, self.guard = max_matvecs, gram_max, seed, guard
        self.vectors: dict[int, Tensor] = {}  # layer index → Ritz block (M × (1+guard) × n) of the last call
        self.matvecs = 0  # Krylov products of the last call (all layers, per example)
        self.certificates: dict[int, dict] = {}  # layer index → certificate of its Krylov solve in the last call
        self.cache: list[Evaluation] = []  # the latest evaluations, newest last

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, theta: Tensor, grads: tuple[str, ...] = ()) -> Evaluation:
        """Terms at θ and ∇c(θ) for each constraint name in ``grads`` (one forward+backward for all)."""
        for c in reversed(self.cache):
            if c.theta.shape == theta.shape and torch.equal(c.theta, theta) and all(g in c.grads for g in grads):
                return c
        fns = [CONSTRAINTS[g] for g in grads]
        th = theta.detach().clone().requires_grad_(bool(grads))
        with torch.enable_grad() if grads else torch.no_grad():
            p = mlp_pass(self.objective.model, self.X, self.objective.unflatten(th))
            terms = self._terms(p)
            out = {}
            for i, (g, fn) in enumerate(zip(grads, fns)):
                out[g] = torch.autograd.grad(fn(terms), th, retain_graph=i < len(fns) - 1)[0]
        ev = Evaluation(theta.detach().clone(), Terms(terms.log_norms.detach(), terms.log_chain.detach()), out)
        self.cache = self.cache[-(self.CACHE - 1):] + [ev]
        return ev

    def _terms(self, p: MLPPass) -> Terms:
        """σ = uᵀMv with the pairs found on detached copies; differentiable through ``p`` when it is."""
        layers = list(zip(p.weights[1:], p.slopes))  # (Aᵏ⁺¹, σ′(x̂ᵏ)), k = 1..K−1
        with torch.no_grad():
            det = [(A.detach(), d.detach()) for A, d in layers]
            pairs, used, certificates = [], 0, {}
            for k, (A, d) in enumerate(det):
                if min(A.shape) <= self.gram_max:
                    pairs.append(_gram_pair(A * d[:, None, :]))
                else:
                    sp = _krylov_pair(A, d, self.vectors.get(k), self.tol, self.max_matvecs, guard=self.guard,
                                      seed=self.seed + k)
                    self.vectors[k], used, certificates[k] = sp.block, used + sp.matvecs, sp.certificate()
                    pairs.append((sp.u, sp.v))
            for P1 in chain_from_top(MLPPass(p.weights, p.inputs, [d for _, d in det])):  # keep only P₁
                pass
            uP, vP = _gram_pair(P1)
            self.matvecs, self.certificates = used, certificates
        sig = [((u @ A) * d * v).sum(dim=1) for (u, v), (A, d) in zip(pairs, layers)]  # uᵀ A diag(d) v
        w = vP
        for A, d in layers:  # P₁v = Jᴷ⁻¹(⋯(J¹v)), Jᵏw = Aᵏ⁺¹(σ′ ⊙ w)
            w = (w * d) @ A.mT
        return Terms(torch.stack(sig, dim=1).log(), (uP * w).sum(dim=1).log())

    @property
    def converged(self) -> bool:
        """Every Krylov layer of the last call converged (True when none used Krylov)."""
        return all(c["converged"] for c in self.certificates.values())

    @property
    def residual(self) -> float:
        """The largest relative residual of a top pair over the Krylov layers of the last call (0 when none)."""
        return max((c["residual"] for c in self.certificates.values()), default=0.0)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"vectors": dict(self.vectors), "cache": list(self.cache)}

    def load_state_dict(self, state: dict) -> None:
        self.vectors = dict(state.get("vectors", {}))
        self.cache = list(state.get("cache", []))


class Constraint:
    """c(θ) = ``CONSTRAINTS[name]`` of the :class:`ChainTerms` ``terms``: ``value(θ)`` (no autograd) and
    ``value_and_grad(θ)``. :func:`constraint` builds one on a probe subset."""

    def __init__(self, name: str, terms: ChainTerms) -> None:
        CONSTRAINTS.entry(name)  # an unknown name fails here, listing the registered ones
        self.name, self.terms = name, terms

    def value(self, theta: Tensor) -> float:
        return float(CONSTRAINTS[self.name](self.terms.evaluate(theta).terms))

    def value_and_grad(self, theta: Tensor) -> tuple[float, Tensor]:
        ev = self.terms.evaluate(theta, (self.name,))
        return float(CONSTRAINTS[self.name](ev.terms)), ev.grads[self.name]

    def state_dict(self) -> dict:
        return self.terms.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.terms.load_state_dict(state)


def constraint(name: str, objective, probe: int | None = None, seed: int = 0, **kw) -> Constraint:
    """The registered constraint ``name`` of an MLP objective on ``probe_subset(objective.X, probe, seed)``
    (the probe rows :class:`eoslib.measurement.Measurement` uses with the same probe and seed). ``kw``: of
    :class:`ChainTerms` (tol, max_matvecs, gram_max, guard)."""
    from .alignment import probe_subset

    return Constraint(name, ChainTerms(objective, probe_subset(objective.X, probe, seed), **kw))


# ----------------------------------------------------------------------------------------------------------
# the projected flow
# ----------------------------------------------------------------------------------------------------------
class ConstraintFunction(Protocol):
    """What the projection needs of a constraint: c(θ) and ∇c(θ) (e.g. :class:`Constraint`)."""

    def value_and_grad(self, theta: Tensor) -> tuple[float, Tensor]: ...


class ConstraintDriftError(RuntimeError):
    """The Newton correction could not bring c back to its target."""


class ProjectedObjective:
    """``objective`` with its gradient projected onto the tangent space of {c = target} (module docstring).

    ``grad``/``loss_and_grad`` return Pg = g − (n·g)n with n = ∇c/‖∇c‖ (no projection where ∇c = 0); every
    other attribute is ``objective``'s (``loss`` is the true loss; ``hvp`` the true Hessian). ``target``: the
    value c is held at (``None``: c at the first θ projected or corrected). :meth:`correct` is the Newton
    correction onto c = target with absolute tolerance ``tol`` (default 100·eps·max(1, |target|) of the
    dtype) in at most ``max_newton`` steps. Each projection is logged (θ, c, ‖∇c‖, removed fraction
    (n·g)²/‖g‖²) for :class:`ProjectedSolver`'s records."""

    def __init__(self, objective, constraint: ConstraintFunction, target: float | None = None,
                 tol: float | None = None, max_newton: int = 5) -> None:
        self.objective, self.constraint = objective, constraint
        self.target = None if target is None else float(target)
        self._tol, self.max_newton = tol, max_newton
        self.log: list[tuple[Tensor, dict]] = []

    def __getattr__(self, name: str):
        if name == "objective":  # not yet set (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.objective, name)

    @property
    def tol(self) -> float:
        if self._tol is not None:
            return self._tol
        return 100 * torch.finfo(self.objective.dtype).eps * max(1.0, abs(self.target or 0.0))

    def _constraint(self, theta: Tensor) -> tuple[float, Tensor]:
        c, gc = self.constraint.value_and_grad(theta)
        if self.target is None:
            self.target = float(c)
        return float(c), gc

    def project(self, theta: Tensor, g: Tensor) -> Tensor:
        """Pg at θ (and a log entry)."""
        c, gc = self._constraint(theta)
        gc64, g64 = gc.double(), g.double()
        nc2, gg = float(gc64 @ gc64), float(g64 @ g64)
        if nc2 > 0:
            coef = float(gc64 @ g64) / nc2
            pg, removed = g - coef * gc, coef * coef * nc2 / gg if gg > 0 else 0.0
        else:
            pg, removed = g, 0.0
        self.log.append((theta, {"c": c, "c_grad_norm": math.sqrt(nc2), "removed": removed}))
        return pg

    def loss_and_grad(self, theta: Tensor, keep_graph: bool = False) -> tuple[Tensor, Tensor]:
        """(L(θ), P∇L(θ)); ``keep_graph`` as for the wrapped objective (its Hessian products follow)."""
        loss, g = self.objective.loss_and_grad(theta, keep_graph=keep_graph)
        return loss, self.project(theta, g)

    def grad(self, theta: Tensor) -> Tensor:
        """P∇L(θ)."""
        return self.loss_and_grad(theta)[1]

    def correct(self, theta: Tensor) -> tuple[Tensor, dict]:
        """Newton steps θ ← θ − (c − target)∇c/‖∇c‖² until |c − target| ≤ tol. Returns (θ, record with
        ``c_step_drift`` = c − target before and ``newton`` = steps taken); θ itself (the same tensor) when
        no step was needed. Raises :class:`ConstraintDriftError` when ``max_newton`` steps do not suffice."""
        drift0 = None
        for it in range(self.max_newton + 1):
            c, gc = self._constraint(theta)
            drift = c - self.target
            drift0 = drift if drift0 is None else drift0
            if abs(drift) <= self.tol:
                return theta, {"c_step_drift": drift0, "newton": it}
            nc2 = float(gc.double() @ gc.double())
            if it == self.max_newton or not nc2 > 0:
                raise ConstraintDriftError(
                    f"the constraint drifted to c − target = {drift:.3g} (tolerance {self.tol:.3g}) and "
                    f"{it} Newton steps did not bring it back ({'∇c = 0' if not nc2 > 0 else 'not converging'}); "
                    "take smaller solver steps (lower dt_max or c) or loosen the tolerance")
            theta = theta - (drift / nc2) * gc
        raise AssertionError("unreachable")

    def logged(self, theta: Tensor) -> dict | None:
        """The log entry of the latest projection at this θ tensor (by identity), or None."""
        for th, rec in reversed(self.log):
            if th is theta:
                return rec
        return None


class ProjectedSolver:
    """Any gradient-only solver (one that calls ``objective.loss_and_grad``/``grad``, plus the Hessian for its
    step size) run on a :class:`ProjectedObjective`, with the Newton correction after every step.

    ``step(objective, θ, dt_cap)`` needs ``objective is projected``; the record is the inner solver's plus
    ``c`` (at θ), ``c_drift`` = c − target at θ, ``c_grad_norm`` = ‖∇c(θ)‖, ``removed`` = (n·g)²/‖g‖² of
    the projection at θ (NaN where the solver took no gradient at θ), ``c_step_drift`` = c − target after the
    inner step, before the correction, and ``newton`` = correction steps. ``state_dict`` carries the inner
    solver's state, the constraint's (warm start, cache) and the target."""

    def __init__(self, solver, projected: ProjectedObjective) -> None:
        self.solver, self.projected = solver, projected

    @property
    def flow(self) -> bool:
        """The projected flow θ' = −P∇L is a descent flow too (dL/dt = −‖P∇L‖² ≤ 0) when the inner solver
        integrates one, so :func:`eoslib.training.train` checks that its loss does not rise."""
        return bool(getattr(self.solver, "flow", False))

    def step(self, objective, theta: Tensor, dt_cap: float | None = None) -> tuple[Tensor, dict]:
        if objective is not self.projected:
            raise ValueError("ProjectedSolver.step: pass the ProjectedObjective this solver was built with "
                             "(train(ProjectedSolver(s, po), po, ...))")
        pr = self.projected
        # keep only projections at θ itself (a solver may reuse the gradient it took there last step)
        pr.log = [e for e in pr.log if e[0] is theta]
        theta_next, rec = self.solver.step(pr, theta, dt_cap=dt_cap)
        at = pr.logged(theta)
        if at is None:  # the solver took no gradient at θ: c and ∇c from the constraint, no removed fraction
            c, gc = pr._constraint(theta)
            at = {"c": c, "c_grad_norm": float(gc.norm()), "removed": float("nan")}
        theta_next, corr = pr.correct(theta_next)
        rec = dict(rec) | at | {"c_drift": at["c"] - pr.target} | corr
        return theta_next, rec

    def state_dict(self) -> dict:
        c = self.projected.constraint
        return {"solver": self.solver.state_dict(), "target": self.projected.target,
                "constraint": c.state_dict() if hasattr(c, "state_dict") else None}

    def load_state_dict(self, state: dict) -> None:
        self.solver.load_state_dict(state["solver"])
        self.projected.target = state["target"]
        c = self.projected.constraint
        if state.get("constraint") is not None and hasattr(c, "load_state_dict"):
            c.load_state_dict(state["constraint"])


__all__ = ["CONSTRAINTS", "Terms", "SingularPairs", "ChainTerms", "Evaluation", "Constraint", "constraint",
           "ConstraintFunction", "ConstraintDriftError", "ProjectedObjective", "ProjectedSolver"]
