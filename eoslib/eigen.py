"""Top-k eigenpairs of a symmetric operator given as a block matvec, by warm-startable LOBPCG.

We want the k largest *algebraic* eigenvalues λ₁ ≥ … ≥ λ_k of A (∇²L, G or H; H is indefinite).
LOBPCG (Knyazev 2001) maximises the Rayleigh quotient over span[X, R, P] — current Ritz vectors,
their residuals R = AX − XΛ and the previous search directions — with a Rayleigh–Ritz step per iteration.
Each iteration costs one block matvec over the *unconverged* columns only (soft locking). A pair (λ, v) is
converged when ‖Av − λv‖ ≤ tol·|λ₁|. Warm-starting from the previous training step's vectors typically
converges after the single block matvec that the initial Rayleigh–Ritz needs.
The basis [X, W, P] is kept orthonormal: W is projected off X and P twice and orthonormalised (SVQB,
near-dependent directions dropped); P is formed from Ritz coefficients orthogonalised in the small
coefficient space (Duersch et al. 2018), so no cancellation ever happens in R^dim and the carried
products AX, AP stay consistent with X, P to rounding.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


class EigenConvergenceWarning(RuntimeWarning):
    """`top_eigenpairs` stopped at ``max_matvecs`` before every residual met the tolerance."""


@dataclass(frozen=True)
class EigenResult:
    """k eigenpairs, largest first. ``residuals[j] = ‖A v_j − λ_j v_j‖``; ``matvecs`` counts single columns."""

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    matvecs: int
    iterations: int
    converged: bool


def _svqb(S: Tensor, AS: Tensor | None = None, drop: float = 1e-12) -> tuple[Tensor, Tensor | None]:
    """Orthonormalise the columns of S (applying the same map to AS), dropping directions whose Gram
    eigenvalue is below ``drop`` after column scaling: keeps the basis well conditioned, so the error in
    AS (carried, not recomputed) is amplified by at most drop^{-1/2}."""
    norms = S.norm(dim=0).clamp_min(torch.finfo(S.dtype).tiny)
    evals, U = torch.linalg.eigh((S.T @ S) / norms / norms[:, None])  # Gram of the scaled columns, no P×m copy
    keep = evals > drop * evals.max().clamp_min(torch.finfo(S.dtype).tiny)
    T = (U[:, keep] / evals[keep].sqrt()) / norms[:, None]
    return S @ T, None if AS is None else AS @ T


def _project_out(V: Tensor, AV: Tensor | None, bases: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor | None]:
    """V ← (I − BBᵀ)V for each orthonormal basis B (twice: Kahan–Parlett), carrying AV ← AV − (AB)(BᵀV)."""
    for _ in range(2):
        for B, AB in bases:
            c = B.T @ V
            V = torch.addmm(V, B, c, alpha=-1)
            if AV is not None:
                AV = torch.addmm(AV, AB, c, alpha=-1)
    return V, AV


def _combine(blocks: list[Tensor], C: Tensor) -> Tensor:
    """[B₁ B₂ …] @ C without concatenating the blocks (no P × n copy)."""
    out, start = None, 0
    for B in blocks:
        Ci = C[start : start + B.shape[1]]
        out = B @ Ci if out is None else out.addmm_(B, Ci)
        start += B.shape[1]
    return out


def _gram(blocks: list[Tensor], Ablocks: list[Tensor]) -> Tensor:
    """The symmetric Rayleigh–Ritz matrix Sᵀ(AS) from the upper block triangle (6 of 9 products for 3 blocks)."""
    sizes = [B.shape[1] for B in blocks]
    offs = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    T = blocks[0].new_empty(offs[-1], offs[-1])
    for i, B in enumerate(blocks):
        for j in range(i, len(blocks)):
            Tij = B.T @ Ablocks[j]
            if i == j:
                T[offs[i] : offs[i + 1], offs[i] : offs[i + 1]] = (Tij + Tij.T) / 2
            else:
                T[offs[i] : offs[i + 1], offs[j] : offs[j + 1]] = Tij
                T[offs[j] : offs[j + 1], offs[i] : offs[i + 1]] = Tij.T
    return T


def _orthonormal(V: Tensor) -> Tensor:
    return torch.linalg.qr(V).Q


def top_eigenpairs(
    matvec: Callable[[Tensor], Tensor],
    dim: int,
    k: int,
    v0: Tensor | None = None,
    tol: float = 1e-4,
    max_matvecs: int | None = None,
    guard: int = 0,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> EigenResult:
    """The k largest algebraic eigenpairs of the symmetric operator ``matvec`` (P × m ↦ P × m) on R^dim.

    ``v0`` (dim × j): warm start; its columns seed the search block (padded with seeded random columns).
    ``guard`` extra block columns speed convergence when λ_k is close to λ_{k+1}.
    Converged when every residual ‖Av_j − λ_j v_j‖ ≤ tol·|λ₁|; otherwise, after ``max_matvecs`` single
    products (default 50·dim^{1/2}·(k+guard), at most ~dim·…), returns the best estimate with
    ``converged=False`` and an ``EigenConvergenceWarning`` — never raises mid-training.
    The Rayleigh–Ritz algebra runs in ``dtype`` (float64 by default); matvec inputs are cast to the
    dtype of v0 (or of ``dtype`` when cold).
    """
    if not 1 <= k <= dim:
        raise ValueError(f"k must be in 1..dim={dim} (got {k})")
    m = min(k + guard, dim)
    if max_matvecs is None:
        max_matvecs = max(20 * m, int(60 * m * math.sqrt(math.log(dim + 1) + 1)))
    op_dtype = v0.dtype if v0 is not None else dtype
    if v0 is not None:
        v0 = v0.reshape(dim, -1)[:, :m]
    if v0 is not None and v0.shape[1] == m:  # a full warm start: no random padding to draw
        X = v0.to(device if device is not None else v0.device, dtype)
    else:
        gen = torch.Generator().manual_seed(seed)
        X = torch.randn(dim, m, generator=gen, dtype=dtype)
        if device is not None or v0 is not None:
            X = X.to(device if device is not None else v0.device)
        if v0 is not None:
            X[:, : v0.shape[1]] = v0.to(X.device, dtype)
    X = _orthonormal(X)

    def A(V: Tensor) -> Tensor:
        return matvec(V.to(op_dtype)).to(dtype)

    AX = A(X)
    matvecs, it = m, 0
    theta, C = torch.linalg.eigh(X.T @ AX)
    theta, C = theta.flip(0), C.flip(1)
    X, AX = X @ C, AX @ C
    Pd = APd = None
    S = AS = Z = None  # the last Rayleigh–Ritz basis (as blocks), its products and P's coefficients in it
    while True:
        R = torch.addcmul(AX, X, theta, value=-1)  # AX − XΛ
        res = torch.linalg.vector_norm(R, dim=0)
        scale = theta.abs().max().clamp_min(torch.finfo(dtype).tiny)
        active = res > tol * scale
        if not active[:k].any() or matvecs >= max_matvecs or it >= dim:
            break
        it += 1
        if Z is not None:  # formed only when another iteration needs them
            Pd, APd = (_combine(S, Z), _combine(AS, Z)) if Z.shape[1] else (None, None)
        bases = [(X, AX)] + ([] if Pd is None else [(Pd, APd)])
        W, _ = _project_out(R if bool(active.all()) else R[:, active], None, bases)
        W, _ = _svqb(W)
        if W.shape[1] == 0:
            break
        AW = A(W)
        matvecs += W.shape[1]
        S = [X, W] + ([] if Pd is None else [Pd])  # orthonormal by construction
        AS = [AX, AW] + ([] if APd is None else [APd])
        evals, Y = torch.linalg.eigh(_gram(S, AS))
        theta, Y = evals.flip(0)[:m], Y.flip(1)[:, :m]
        X, AX = _combine(S, Y), _combine(AS, Y)
        # Search directions: the W/P part of the Ritz coefficients, orthogonalised against Y in coefficient
        # space (small matrices), so P is orthonormal and ⟂ X without cancellation in R^dim.
        Z = Y.clone()
        Z[:m] = 0
        for _ in range(2):
            Z = Z - Y @ (Y.T @ Z)
        Z, _ = _svqb(Z, drop=1e-14)
    converged = not active[:k].any()
    if not converged:
        warnings.warn(
            f"top_eigenpairs: {int(active[:k].sum())} of {k} pairs above tol={tol:g}·|λ₁| after {matvecs} matvecs "
            f"(max residual/|λ₁| = {(res[:k].max() / scale).item():.2e}); returning the best estimate",
            EigenConvergenceWarning,
            stacklevel=2,
        )
    return EigenResult(theta[:k].clone(), X[:, :k].to(op_dtype), res[:k].clone(), matvecs, it, converged)
