"""Top singular pairs of batched matrices, each with a certificate: the one method behind every alignment number.

For each example i a matrix Jᵢ — a layer Jacobian Jᵏ(xᵢ) = Aᵏ⁺¹ diag(σ′(x̂ᵏ(xᵢ))) or the chain P₁(xᵢ) — and its
top singular triple (σᵢ, uᵢ, vᵢ), Jᵢvᵢ = σᵢuᵢ. Two methods, chosen by the caller
(:func:`eoslib.alignment.chain_kernel`'s ``method``):

* :func:`gram_pairs`: ``eigh`` of the smaller Gram matrix JJᵀ or JᵀJ (LAPACK; exact to rounding, the residual
  recomputed and stored all the same);
* :func:`krylov_pairs`: a block Krylov method on JᵢᵀJᵢ = diag(dᵢ)AᵀA diag(dᵢ), never forming Jᵢ, warm-startable,
  with guard rows that must converge too, so a warm start at an invariant vector that is not the top one
  cannot be accepted (issue 17, case 2).

Both return :class:`SingularPairs` (values, vectors, relative residuals, converged, products, warm or cold).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

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


def krylov_pairs(A: Tensor, d: Tensor, v0: Tensor | None, tol: float, max_matvecs: int,
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




def gram_pairs(M: Tensor) -> SingularPairs:
    """The top singular pairs of each M (batch × m × n) from ``eigh`` of the smaller Gram matrix, with the
    certificate: σ = ‖Mv‖, residual ‖Mᵀu − σv‖/σ recomputed (rounding: ~eps·‖M‖/σ₁ … a few eps)."""
    u, v = _gram_pair(M)
    Mv = (M @ v.unsqueeze(-1)).squeeze(-1)
    sigma = Mv.norm(dim=-1)
    tiny = torch.finfo(M.dtype).tiny
    res = ((u.unsqueeze(-2) @ M).squeeze(-2) - sigma[..., None] * v).norm(dim=-1) / sigma.clamp_min(tiny)
    return SingularPairs(u, v, sigma, res, bool(torch.isfinite(res).all()), 0, False, 0, v[..., None, :])
