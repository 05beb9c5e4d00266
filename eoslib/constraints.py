"""Tangent projections for several constraints at once, and the matched placebo projection (claim C3).

**Several constraints.** Holding m functions c₁(θ) … c_m(θ) fixed along a flow θ' = v means keeping the velocity
in the intersection of their tangent spaces, {w : ∇cⱼ·w = 0 for every j} = (span A)^⊥ with A = [∇c₁ … ∇c_m]
(P × m). The orthogonal projection onto it is

    Pv = v − A(AᵀA)⁺Aᵀv = v − QQᵀv,

Q (P × r) an orthonormal basis of span A, r = rank A. :func:`orthonormal_constraints` builds Q by classical
Gram–Schmidt with one re-orthogonalisation pass ("CGS2", as orthogonal as Householder QR to working precision),
column by column in the given order, in float64: a column whose part orthogonal to the columns kept before it has
norm ≤ ``rtol``·(its own norm) depends on them and is dropped (the tolerance is relative to each column's own
norm, so the result does not change when a constraint is rescaled: ∇ᾱ and ∇Σlog‖Jᵏ‖ differ in scale by orders
of magnitude). :func:`project_tangent` returns Pv with the rank, the constraints kept and the *removed fraction*

    ρ = ‖v − Pv‖² / ‖v‖² = ‖Qᵀv‖² / ‖v‖² ∈ [0, 1]

(P is an orthogonal projection, so ‖Pv‖² = (1 − ρ)‖v‖² and v·Pv = ‖Pv‖²; along θ' = −P∇L the loss falls at
dL/dt = −(1 − ρ)‖∇L‖²). With one constraint this is :class:`eoslib.intervention.ProjectedObjective`'s
projection g − (n·g)n, n = ∇c/‖∇c‖.

**Matched placebo.** An intervention that holds ᾱ removes a fraction ρ(t) of the gradient; a placebo must remove
the same fraction along a direction unrelated to the chain. :func:`matched_placebo` takes a fixed unit direction
u (e.g. :func:`random_direction`, seeded) and removes from v its component along the unit vector

    n = s√ρ v̂ + √(1 − ρ) e,   v̂ = v/‖v‖,  a = u·v̂,  e = (u − a v̂)/‖u − a v̂‖,  s = sign(a) (+1 at a = 0),

i.e. w = v − (n·v)n. Then (n·v̂)² = ρ, so w is an orthogonal rank-one projection of v removing exactly
‖v − w‖²/‖v‖² = ρ, with ‖w‖² = (1 − ρ)‖v‖² and v·w = ‖w‖² — the same speed and the same instantaneous loss
decrease −(1 − ρ)‖∇L‖² as the intervention arm. Among all unit vectors n with (n·v̂)² = ρ this n is the nearest
to u (it maximises n·u = √ρ|a| + √(1 − ρ)√(1 − a²); the maximiser lies in span{u, v}): the removal is along u
itself when a² = ρ, and otherwise along u turned within the plane span{u, v} just far enough to remove ρ. A
random u in ℝᴾ has a² ~ 1/P, so n·u ≈ √(1 − ρ) (reported as ``cos_u``): the placebo direction is chain-unrelated
to the extent that √(1 − ρ) is close to 1. Undefined when u ∥ v (then every admissible n is ±v̂ and only ρ = 1
can be removed): a :class:`ValueError`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

F64 = torch.float64


def _as_matrix(A: Tensor | Sequence[Tensor], P: int) -> Tensor:
    """Constraint gradients as a P × m float64 matrix (a P × m tensor, a P-vector, or a sequence of P-vectors).
    A sequence is stacked as rows and returned transposed (a view): each gradient stays contiguous in memory."""
    if isinstance(A, Tensor):
        M = A[:, None] if A.ndim == 1 else A
    else:
        M = torch.stack([a.reshape(-1) for a in A]).T if len(A) else torch.zeros(P, 0)
    if M.ndim != 2 or M.shape[0] != P:
        raise ValueError(f"constraint gradients must be P × m with P = {P} (got shape {tuple(M.shape)})")
    return M.to(F64)


def default_rtol(dtype: torch.dtype) -> float:
    """1000·eps of ``dtype``: 2.2e-13 for float64 gradients, 1.2e-4 for float32 ones (a constraint repeated, or
    a sum of others computed in float32, leaves a residual of a few eps·‖a‖ and is dropped)."""
    return 1000 * torch.finfo(dtype).eps


def orthonormal_constraints(A: Tensor, rtol: float) -> tuple[Tensor, tuple[int, ...]]:
    """(Q, kept): an orthonormal basis Q (P × r, float64) of span A and the indices of the columns of A that
    contributed one, by Gram–Schmidt with re-orthogonalisation (CGS2) in column order: column j is kept when
    ‖(I − QQᵀ)²aⱼ‖ > ``rtol``·‖aⱼ‖ (a zero column is dropped). Computed on rows (the gradients aⱼᵀ and the basis
    qᵢᵀ each contiguous; Q is returned as the transposed view of its r × P rows): with P ≫ m a column of a
    row-major P × m matrix is strided and every product with it reads the whole matrix, ~10× slower."""
    rows = A.to(F64).T.contiguous()  # m × P
    Q = rows.new_empty(rows.shape)  # its first r rows: the basis found so far
    kept: list[int] = []
    for j, a in enumerate(rows):
        B = Q[:len(kept)]
        na = float(a.norm())
        r = a - (B @ a) @ B
        r = r - (B @ r) @ B  # the second pass restores orthogonality lost to cancellation
        nr = float(r.norm())
        if na > 0 and nr > rtol * na:
            Q[len(kept)] = r / nr
            kept.append(j)
    return Q[:len(kept)].T, tuple(kept)


def removed_fraction(v: Tensor, w: Tensor) -> float:
    """ρ = ‖v − w‖² / ‖v‖² (float64; 0 when v = 0)."""
    v64, d = v.to(F64), (v - w).to(F64)
    vv = float(v64 @ v64)
    return float(d @ d) / vv if vv > 0 else 0.0


@dataclass(frozen=True)
class TangentProjection:
    """Pv (``velocity``, in v's dtype), the removed fraction ‖v − Pv‖²/‖v‖² (``removed``), ``rank`` r of the
    constraint gradients, the indices of the constraints ``kept`` (the others depend on them) and the
    orthonormal ``basis`` Q (P × r, float64) of their span."""

    velocity: Tensor
    removed: float
    rank: int
    kept: tuple[int, ...]
    basis: Tensor


def project_tangent(v: Tensor, A: Tensor | Sequence[Tensor], rtol: float | None = None) -> TangentProjection:
    """Pv = v − A(AᵀA)⁺Aᵀv = v − QQᵀv: v projected onto the intersection of the constraints' tangent spaces
    {w : Aᵀw = 0} (module docstring). ``A``: P × m (columns ∇cⱼ) or a sequence of m P-vectors; ``rtol``: the
    relative rank tolerance of :func:`orthonormal_constraints` (default :func:`default_rtol` of A's dtype).
    Computed in float64 (Pv is recomputed as v − QQᵀv from the float64 v, then cast to v's dtype)."""
    if v.ndim != 1:
        raise ValueError(f"v must be a vector (got shape {tuple(v.shape)})")
    src = A if isinstance(A, Tensor) else (A[0] if len(A) else v)
    M = _as_matrix(A, v.shape[0])
    Q, kept = orthonormal_constraints(M, default_rtol(src.dtype) if rtol is None else rtol)
    v64 = v.to(F64)
    coef = Q.T @ v64
    pv = v64 - Q @ coef
    vv = float(v64 @ v64)
    removed = float(coef @ coef) / vv if vv > 0 else 0.0
    return TangentProjection(pv.to(v.dtype), removed, Q.shape[1], kept, Q)


def random_direction(P: int, seed: int = 0, dtype: torch.dtype = F64, device: torch.device | str | None = None
                     ) -> Tensor:
    """A unit vector in ℝᴾ, uniform on the sphere (a standard Gaussian normalised), from a CPU generator seeded
    with ``seed`` (so the same seed gives the same direction on every device), then moved to ``device``."""
    g = torch.randn(P, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return (g / g.norm()).to(dtype=dtype, device=device)


@dataclass(frozen=True)
class PlaceboProjection:
    """w = v − (n·v)n (``velocity``, in v's dtype), the unit ``direction`` n removed (float64), the ``removed``
    fraction ‖v − w‖²/‖v‖² (= ρ up to rounding) and ``cos_u`` = n·u (1 when n = u)."""

    velocity: Tensor
    direction: Tensor
    removed: float
    cos_u: float


def placebo_direction(v: Tensor, u: Tensor, rho: float) -> Tensor:
    """The unit vector n = s√ρ v̂ + √(1 − ρ) e nearest u with (n·v̂)² = ρ (module docstring), float64.

    Raises ValueError for ρ outside [0, 1), v = 0, or u parallel to v (no admissible n)."""
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"the removed fraction ρ must lie in [0, 1) (got {rho})")
    v64, u64 = v.to(F64), u.to(F64)
    nv, nu = float(v64.norm()), float(u64.norm())
    if not (nv > 0 and nu > 0):
        raise ValueError("the placebo needs a non-zero velocity v and direction u")
    vh, uh = v64 / nv, u64 / nu
    a = float(uh @ vh)
    e = uh - a * vh
    e = e - float(e @ vh) * vh  # re-orthogonalise: e ⊥ v̂ to rounding even when a is near ±1
    ne = float(e.norm())
    if not ne > 1e-12:
        raise ValueError(f"the placebo direction u is parallel to v (|u·v̂| = {abs(a):.17g}): no unit vector in "
                         "span{u, v} removes a fraction ρ < 1; draw another direction")
    s = 1.0 if a >= 0 else -1.0
    return s * math.sqrt(rho) * vh + math.sqrt(1.0 - rho) * (e / ne)


def matched_placebo(v: Tensor, u: Tensor, rho: float) -> PlaceboProjection:
    """w = v − (n·v)n with n = :func:`placebo_direction`: removes exactly the fraction ρ of ‖v‖² (so
    ‖w‖² = (1 − ρ)‖v‖², v·w = ‖w‖²) along the direction nearest the fixed direction u that can (module
    docstring). ρ = 0 returns v (n ⊥ v)."""
    n = placebo_direction(v, u, rho)
    v64 = v.to(F64)
    w = v64 - float(n @ v64) * n
    return PlaceboProjection(w.to(v.dtype), n, removed_fraction(v64, w), float(n @ (u.to(F64) / u.to(F64).norm())))


__all__ = ["TangentProjection", "PlaceboProjection", "default_rtol", "orthonormal_constraints", "removed_fraction",
           "project_tangent", "random_direction", "placebo_direction", "matched_placebo"]
