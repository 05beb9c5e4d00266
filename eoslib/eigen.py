"""Top-k eigenpairs of a symmetric operator given as a block matvec, by warm-startable LOBPCG.

We want the k largest *algebraic* eigenvalues λ₁ ≥ … ≥ λ_k of A (∇²L, G or H; H is indefinite).
LOBPCG (Knyazev 2001) maximises the Rayleigh quotient over span[X, R, P] — current Ritz vectors,
their residuals R = AX − XΛ and the previous search directions — with a Rayleigh–Ritz step per iteration.
Each iteration costs one block matvec over the *unconverged* columns only (soft locking: converged leading
pairs are locked, i.e. deflated). A pair (λ, v) is converged when ‖Av − λv‖ ≤ tol·max_{j≤k}|λ_j| (tol·λ₁ for
a positive top), the scale taken from the current Ritz values; since it shrinks while negative values
converge towards 0, a locked pair that no longer meets it is unlocked. Warm-starting from the previous
training step's vectors typically costs two to three blocks' worth of products (the warm start's own block,
then the residuals of the pairs still above the tolerance) against five to seven from a cold start
(``benchmarks/README.md``). A solve that stops unconverged returns its best estimate with a warning; the
solvers' ``EigenTracker`` retries it once and then raises :class:`EigenConvergenceError` rather than step on it.
The basis [X, W, P] is kept orthonormal: W is projected off X and P (a second pass only where the first
removed most of a column, the Daniel–Gragg–Kaufman–Stewart test) and orthonormalised (SVQB,
near-dependent directions dropped); P is formed from Ritz coefficients orthogonalised in the small
coefficient space (Duersch et al. 2018), so no cancellation ever happens in R^dim and the carried
products AX, AP stay consistent with X, P to rounding.

Cost: besides the matvecs, every iteration streams a few dozen dim-long columns through memory, which for
wide networks (dim ~ 10⁶) is comparable to the Hessian products themselves. So the dim-sized blocks live
in ``dtype`` (pass the operator's float32 to halve that traffic; the small Rayleigh–Ritz matrices are always
solved in float64), blocks are not concatenated (but on the rare unlocking), the Gram matrix is built from
its upper block triangle, search directions are formed only when another iteration needs them, and a full
warm start is used as it comes (its Gram matrix folded into the first Rayleigh–Ritz step instead of a QR
factorisation). The blocks are kept column-major and their tall-skinny products formed transposed
(``_combine``): BLAS runs B·C (dim × 3m times 3m × m) 3.5–6× slower than the same product as (CᵀBᵀ)ᵀ on one
CPU thread (``benchmarks/README.md``).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


class EigenConvergenceWarning(RuntimeWarning):
    """`top_eigenpairs` stopped (at ``max_matvecs``, or on non-finite values) before every residual met the
    tolerance, and returned its best estimate."""


class EigenConvergenceError(RuntimeError):
    """An eigen-solve that a caller must not go on without did not converge (raised by
    :class:`eoslib.solvers.base.EigenTracker` after its retry; `top_eigenpairs` itself never raises it).

    ``result``: the last (best) estimate; ``matvecs``: the single products spent on every attempt."""

    def __init__(self, message: str, result: EigenResult | None = None, matvecs: int | None = None) -> None:
        super().__init__(message)
        self.result, self.matvecs = result, matvecs


#: Guard columns by default: a warm start is only accepted once ≥ 2 extra directions, seeded at random or carried
#: from the previous solve, have been converged to ``GUARD_TOL`` — so a larger eigenvalue that the warm block
#: missed (a crossing) has room to appear in the Rayleigh–Ritz steps instead of the warm pair being accepted
#: after one step. One guard is not enough when the two missed directions are degenerate in the start.
DEFAULT_GUARD = 2
#: Guard pairs converge to this relative residual (of the top |λ|): loose, since only their values' order
#: matters (a guard Ritz value above a wanted one swaps in), but it forces the guard block to iterate until
#: it has explored past the warm start.
GUARD_TOL = 0.05
#: Each wanted pair j also converges relative to itself: ‖Av_j − θ_j v_j‖ ≤ PAIR_RTOL·|θ_j| puts an eigenvalue
#: within 1 % of θ_j — the accuracy exponential Euler's Δt = 1/λ_(k+1) needs — where the top's scale alone
#: (tol·max|λ|) would allow an error of tol·λ₁, i.e. 10 % of a λ_(k+1) a hundred times below λ₁.
PAIR_RTOL = 1e-2
#: ... down to REL_FLOOR·tol·max|λ| (values near 0 cannot be resolved relative to themselves).
REL_FLOOR = 1e-2


def pair_limits(values: Tensor, k: int, tol: float, guard_tol: float = GUARD_TOL, strict: int = 0) -> Tensor:
    """The residual limit of every Ritz pair in ``values`` (any order), with s = max over the k largest of |λ|:
    max(min(tol·s, PAIR_RTOL·|λ_j|), REL_FLOOR·tol·s) for the k largest (never looser than tol·s; tighter for
    pairs below (tol/PAIR_RTOL)·s = 0.1·s at tol 1e-3), max(guard_tol, tol)·s for the others (guards), except
    the first ``strict`` guards, held to tol·s.

    Why ``strict``: where the guards start at random beside a partial warm start, a guard Ritz vector mixing
    the missed top eigenvector with the continuum just below the warm one can have a residual under
    guard_tol·s while its value is still below the warm pair's (a two-eigenvector mixture at value λ₂ has
    residual √(g·h)·λ₂, g = λ₁/λ₂ − 1, h the relative gap below λ₂): at λ₁/λ₂ = 1.01–1.06 with a continuum
    below, 2 of 360 warm starts at exactly v₂ returned λ₂ so. Holding the first guard to tol closes it (it is
    the top of the random columns' Krylov space, which a missed λ₁ dominates)."""
    order = torch.argsort(values, descending=True, stable=True)
    scale = values[order[:k]].abs().max().clamp_min(torch.finfo(torch.float64).tiny)
    limits = torch.full_like(values, max(guard_tol, tol)) * scale
    limits[order[k:k + strict]] = tol * scale
    top = order[:k]
    own = torch.minimum(PAIR_RTOL * values[top].abs(), tol * scale)
    limits[top] = torch.maximum(own, REL_FLOOR * tol * scale)
    return limits


@dataclass(frozen=True)
class EigenResult:
    """k eigenpairs, largest first, with their certificate.

    ``residuals[j] = ‖A v_j − λ_j v_j‖`` (absolute; :attr:`rel_residuals` divides by the pair's own scale);
    ``matvecs`` counts single columns; ``warm``: started from a full or partial ``v0``; ``guard``: the guard
    columns solved with it; ``tol``: the requested relative tolerance; ``block``: all k + guard Ritz vectors
    (largest first, the warm start of the next solve); ``cold_checked``/``corrected``: set by
    :class:`~eoslib.solvers.base.EigenTracker` when a cold solve checked this one / replaced it."""

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    matvecs: int
    iterations: int
    converged: bool
    warm: bool = False
    guard: int = 0
    tol: float = 0.0
    block: Tensor | None = None
    cold_checked: bool = False
    corrected: bool = False

    @property
    def rel_residuals(self) -> Tensor:
        """‖Av_j − λ_j v_j‖ / max|λ|, the quantity ``tol`` bounds (each pair is also within PAIR_RTOL of its
        own value: :func:`pair_limits`)."""
        return self.residuals / self.values.abs().max().clamp_min(torch.finfo(torch.float64).tiny)

    def certificate(self) -> dict:
        """What a stored number carries: converged, max relative residual, products, warm/cold, guard."""
        return {"converged": bool(self.converged), "residual": float(self.rel_residuals.max()),
                "matvecs": int(self.matvecs), "warm": bool(self.warm), "guard": int(self.guard),
                "cold_checked": bool(self.cold_checked), "corrected": bool(self.corrected)}


def _cm(T: Tensor) -> Tensor:
    """T (dim × c) in column-major layout — every column contiguous; the layout all dim-sized blocks of this
    module are kept in, so the products below always take their fast path (a copy only when needed)."""
    return T if T.stride(0) == 1 else T.T.contiguous().T


def _addmm(V: Tensor, B: Tensor, C: Tensor, alpha: float) -> Tensor:
    """V + α·B @ C in the layout of :func:`_combine` (V, B column-major)."""
    return torch.addmm(V.T, C.T, B.T, alpha=alpha).T


def _drop(drop: float, dtype: torch.dtype) -> float:
    """The SVQB drop threshold, never below what ``dtype`` can resolve in a Gram matrix."""
    return max(drop, 64 * torch.finfo(dtype).eps)


def _eigh(T: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh``, except that a matrix it cannot factor (non-finite entries, from a NaN/inf product)
    gives NaN eigenvalues and unit vectors instead of an exception: NaN is never kept by SVQB and stops the
    solve as unconverged (top_eigenpairs never raises on its operator's values)."""
    try:
        return torch.linalg.eigh(T)
    except torch.linalg.LinAlgError:
        return torch.full_like(T[0], float("nan")), torch.eye(len(T), dtype=T.dtype, device=T.device)


def _svqb_map(G: Tensor, drop: float) -> Tensor:
    """T with Tᵀ G T = I for a (float64) Gram matrix G, dropping directions whose eigenvalue after column
    scaling is below ``drop`` (keeps the basis well conditioned: carried products err by ≤ drop^{-1/2})."""
    if G.shape[0] == 0:
        return G.new_zeros(0, 0)
    tiny = torch.finfo(G.dtype).tiny
    norms = G.diagonal().clamp_min(0).sqrt().clamp_min(tiny)
    evals, U = _eigh(G / norms / norms[:, None])
    keep = evals > drop * evals.max().clamp_min(tiny)
    return (U[:, keep] / evals[keep].sqrt()) / norms[:, None]


def _svqb(S: Tensor, AS: Tensor | None = None, drop: float = 1e-12) -> tuple[Tensor, Tensor | None]:
    """Orthonormalise the columns of S (applying the same map to AS), dropping near-dependent directions."""
    T = _svqb_map((S.T @ S).double(), _drop(drop, S.dtype)).to(S.dtype)
    return _combine([S], T), None if AS is None else _combine([AS], T)


def _project_out(V: Tensor, AV: Tensor | None, bases: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor | None]:
    """V ← (I − BBᵀ)V for each orthonormal basis B, carrying AV ← AV − (AB)(BᵀV). A second pass runs only
    when the first removed more than half of some column's norm (DGKS: "twice is enough")."""
    norms2 = V.pow(2).sum(0)
    removed = torch.zeros_like(norms2)
    for B, AB in bases:
        c = B.T @ V
        removed += c.pow(2).sum(0)
        V = _addmm(V, B, c, -1)
        if AV is not None:
            AV = _addmm(AV, AB, c, -1)
    if bool((removed > 0.5 * norms2).any()):
        for B, AB in bases:
            c = B.T @ V
            V = _addmm(V, B, c, -1)
            if AV is not None:
                AV = _addmm(AV, AB, c, -1)
    return V, AV


def _combine(blocks: list[Tensor], C: Tensor) -> Tensor:
    """[B₁ B₂ …] @ C for tall column-major blocks Bᵢ (dim × cᵢ) and a small C, without concatenating the blocks
    (no dim × n copy). Formed as (Cᵀ Bᵀ)ᵀ so the long dimension runs along the GEMM's contiguous rows: the
    same products, on one CPU thread 3.5–6× faster than the tall-skinny B @ C (measured dim 1.8·10⁵,
    c = 12–30). The result is column-major."""
    out, start = None, 0
    for B in blocks:
        Ci = C[start : start + B.shape[1]].to(B.dtype)
        out = Ci.T @ B.T if out is None else out.addmm_(Ci.T, B.T)  # the transpose, accumulated row-major
        start += B.shape[1]
    return out.T


def _gram(blocks: list[Tensor], Ablocks: list[Tensor]) -> Tensor:
    """The symmetric Rayleigh–Ritz matrix Sᵀ(AS) in float64, from its upper block triangle."""
    sizes = [B.shape[1] for B in blocks]
    offs = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    T = torch.empty(offs[-1], offs[-1], dtype=torch.float64, device=blocks[0].device)
    for i, B in enumerate(blocks):
        for j in range(i, len(blocks)):
            Tij = (B.T @ Ablocks[j]).double()
            if i == j:
                T[offs[i] : offs[i + 1], offs[i] : offs[i + 1]] = (Tij + Tij.T) / 2
            else:
                T[offs[i] : offs[i + 1], offs[j] : offs[j + 1]] = Tij
                T[offs[j] : offs[j + 1], offs[i] : offs[i + 1]] = Tij.T
    return T


def _directions(S: list[Tensor], AS: list[Tensor], Y: Tensor, active: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """Search directions P (and AP) of the still-active Ritz vectors: the W/P part of their coefficients Y
    in the last basis S = [X, W, P], orthogonalised against all of Y in coefficient space (small matrices), so
    P is orthonormal and ⟂ X without cancellation in R^dim."""
    m = S[0].shape[1]
    Z = Y[:, active].clone()
    Z[:m] = 0
    for _ in range(2):
        Z = Z - Y @ (Y.T @ Z)
    Z = Z @ _svqb_map(Z.T @ Z, 1e-14)
    if Z.shape[1] == 0:
        return None, None
    return _combine(S, Z), _combine(AS, Z)


def _orthonormal(V: Tensor) -> Tensor:
    return torch.linalg.qr(V).Q


def _ritz(T: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """The m largest eigenpairs of the small symmetric float64 matrix T, largest first."""
    evals, Y = _eigh(T)
    return evals.flip(0)[:m], Y.flip(1)[:, :m]


def default_max_matvecs(dim: int, m: int) -> int:
    """The default budget of single products of :func:`top_eigenpairs` for a block of m columns on R^dim:
    ⌊60·m·√(ln(dim + 1) + 1)⌋, i.e. at least 60·√(ln(dim+1) + 1) iterations of the whole block (an
    iteration multiplies only the columns still moving): 155 at dim = 300, 204 at 4·10⁴, 231 at 10⁶.

    Why this much: LOBPCG's convergence per iteration is set by the relative gaps of the spectrum, not by
    dim; dim enters only through a random start's overlap (≈ dim^{-1/2}) with the wanted eigenvectors, so
    the cap grows only slowly with it. It is a cap, not an estimate: a warm solve at the steady state needs
    2–6 iterations and a cold one 6–18 on the benchmark networks (``metrics/bench.json``), so the budget
    ends only solves that have stalled (λ_k ≈ λ_{k+1} without a guard, an operator that is not symmetric or
    not the same at every call), and bounds what such a solve costs."""
    return int(60 * m * math.sqrt(math.log(dim + 1) + 1))


def top_eigenpairs(
    matvec: Callable[[Tensor], Tensor],
    dim: int,
    k: int,
    v0: Tensor | None = None,
    tol: float = 1e-4,
    max_matvecs: int | None = None,
    guard: int = DEFAULT_GUARD,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> EigenResult:
    """The k largest algebraic eigenpairs of the symmetric operator ``matvec`` (P × m ↦ P × m) on R^dim.

    ``v0`` (dim × j): warm start; its columns seed the search block (padded with seeded random columns).
    ``guard`` extra block columns (default ``DEFAULT_GUARD`` = 2) make a warm start safe — they must converge
    too, to ``GUARD_TOL``·max|λ|, so a larger eigenvalue the warm block missed enters the Rayleigh–Ritz steps
    instead of the warm pair being accepted after one step — and speed convergence when λ_k ≈ λ_{k+1}.
    Converged when every wanted residual ‖Av_j − λ_j v_j‖ ≤ tol·max_{i≤k}|λ_i| and ≤ PAIR_RTOL·|λ_j| (1 %
    of its own value, down to a floor; see :func:`pair_limits`) and every guard residual ≤ GUARD_TOL·max_{i≤k}|λ_i|; the
    limits are taken from the current Ritz values, so they move while those converge, and pairs locked
    earlier are unlocked when they no longer meet them. Otherwise, after ``max_matvecs`` single products
    (default :func:`default_max_matvecs`, 60·m·√(ln(dim+1) + 1) for m = k + guard; see there why) or dim
    iterations, or on non-finite values, it returns the best estimate with ``converged=False`` and an
    ``EigenConvergenceWarning``: it never raises on non-convergence, for callers that may accept an estimate
    (measurements). A caller that must not go on with one checks ``converged`` (:class:`EigenTracker
    <eoslib.solvers.base.EigenTracker>` retries, then raises :class:`EigenConvergenceError`).
    The dim-sized blocks are held in ``dtype`` (float64 by default; the operator's own float32 halves the
    memory traffic and still resolves residuals far below tol = 1e-3); the small Rayleigh–Ritz problems are
    solved in float64. Matvec inputs are cast to the dtype of v0 (or of ``dtype`` when cold). Values and
    residuals are returned in float64, vectors in the matvec dtype.
    """
    if not 1 <= k <= dim:
        raise ValueError(f"k must be in 1..dim={dim} (got {k})")
    m = min(k + guard, dim)
    if max_matvecs is None:
        max_matvecs = default_max_matvecs(dim, m)
    op_dtype = v0.dtype if v0 is not None else dtype

    def A(V: Tensor) -> Tensor:
        return _cm(matvec(V.to(op_dtype)).to(dtype))

    if v0 is not None:
        v0 = v0.reshape(dim, -1)[:, :m]
    X = None
    if v0 is not None and v0.shape[1] == m:
        # A full warm start, used as it comes: fold its Gram matrix into the Rayleigh–Ritz step (the same
        # Ritz pairs as orthonormalising first) unless its columns are close to dependent.
        X0 = _cm(v0.to(device if device is not None else v0.device, dtype))
        M = _svqb_map((X0.T @ X0).double(), 1e-6)
        if M.shape[1] == m:
            X, AX = X0, A(X0)
            theta, C = _ritz(M.T @ _gram([X], [AX]) @ M, m)
            C = M @ C
    if X is None:
        gen = torch.Generator().manual_seed(seed)
        X = torch.randn(dim, m, generator=gen, dtype=dtype)
        if device is not None or v0 is not None:
            X = X.to(device if device is not None else v0.device)
        if v0 is not None:
            X[:, : v0.shape[1]] = v0.to(X.device, dtype)
        X = _cm(_orthonormal(X))
        AX = A(X)
        theta, C = _ritz(_gram([X], [AX]), m)
    warm = v0 is not None
    strict = int(warm and m > k and v0.shape[1] < m)  # random guards beside a partial warm start (pair_limits)
    matvecs, it = m, 0
    X, AX = _combine([X], C), _combine([AX], C)
    # Converged leading Ritz pairs of the moving block are locked (deflated): kept as they are, with all later
    # directions orthogonal to them, so an iteration's dim-sized work scales with the columns still moving.
    XL: list[Tensor] = []
    AXL: list[Tensor] = []
    thetaL: list[Tensor] = []
    resL: list[Tensor] = []
    Pd = APd = None
    S = AS = Y = None  # the last Rayleigh–Ritz basis (as blocks), its products and Ritz coefficients
    finite = True
    while True:
        R = torch.addcmul(AX, X, theta.to(dtype), value=-1)  # AX − XΛ
        res = torch.linalg.vector_norm(R, dim=0).double()
        values, residuals = torch.cat(thetaL + [theta]), torch.cat(resL + [res])
        order = torch.argsort(values, descending=True, stable=True)
        # Every pair's limit from the current Ritz values (pair_limits): they move while the values converge,
        # so every test below uses these.
        scale = values[order[:k]].abs().max()
        limits = pair_limits(values, k, tol, strict=strict)
        pending = ~(residuals <= limits)  # pairs (wanted and guard) still above their limit (or NaN)
        if not pending.any():
            break
        finite = bool(torch.isfinite(residuals).all() & torch.isfinite(scale))
        if not finite or matvecs >= max_matvecs or it >= dim:
            break
        it += 1
        nL = sum(t.shape[0] for t in thetaL)
        active = res > limits[nL:]
        if XL and bool((torch.cat(resL) > limits[:nL]).any()):
            # A pair locked under an earlier, larger scale fails the tolerance now: unlock them all (they stay
            # orthonormal, their products carried) so the next Rayleigh–Ritz step improves them with the rest.
            X, AX = _cm(torch.cat(XL + [X], 1)), _cm(torch.cat(AXL + [AX], 1))
            theta, res = torch.cat(thetaL + [theta]), residuals
            R = torch.addcmul(AX, X, theta.to(dtype), value=-1)
            active = res > limits
            XL, AXL, thetaL, resL = [], [], [], []
            Y = Pd = APd = None  # the last search directions belong to the old moving block
        if Y is not None:  # search directions, formed only when another iteration needs them
            Pd, APd = _directions(S, AS, Y, active)
        q = int(active.to(torch.int8).argmax())  # converged columns at the top of the moving block
        if q > 0:
            XL.append(X[:, :q])
            AXL.append(AX[:, :q])
            thetaL.append(theta[:q])
            resL.append(res[:q])
            X, AX, theta, res, R, active = X[:, q:], AX[:, q:], theta[q:], res[q:], R[:, q:], active[q:]
        bases = list(zip(XL, AXL)) + [(X, AX)] + ([] if Pd is None else [(Pd, APd)])
        W, _ = _project_out(R if bool(active.all()) else _cm(R[:, active]), None, bases)
        W, _ = _svqb(W)
        if W.shape[1] == 0:
            break
        AW = A(W)
        matvecs += W.shape[1]
        S = [X, W] + ([] if Pd is None else [Pd])  # orthonormal, and ⟂ the locked vectors, by construction
        AS = [AX, AW] + ([] if APd is None else [APd])
        theta, Y = _ritz(_gram(S, AS), X.shape[1])
        X, AX = _combine(S, Y), _combine(AS, Y)
    converged = finite and not pending.any()
    if not converged:
        worst = (residuals / limits).max()
        why = "non-finite values or residuals (a NaN/inf product or warm start)" if not finite else \
            f"{int(pending.sum())} of {m} pairs above tol={tol:g} ({k} wanted, {m - k} guard: GUARD_TOL) after " \
            f"{matvecs} matvecs"
        warnings.warn(
            f"top_eigenpairs: {why} (max residual/limit = {worst.item():.2e}); returning the best estimate",
            EigenConvergenceWarning,
            stacklevel=2,
        )
    top = order[:k]
    allX = torch.cat(XL + [X], 1) if XL else X
    vectors = allX[:, top].contiguous()
    block = allX[:, order].contiguous().to(op_dtype)
    return EigenResult(values[top].clone(), vectors.to(op_dtype), residuals[top].clone(), matvecs, it, converged,
                       warm=warm, guard=m - k, tol=tol, block=block)
