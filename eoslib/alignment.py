"""Layerwise Jacobian alignment (paper-notes §2; our reconstruction — the paper's exact formula is unknown).

Notation: Jᵏ = ∂x̂ᵏ⁺¹/∂x̂ᵏ = Aᵏ⁺¹ diag(σ′(x̂ᵏ)) (k = 1..K−1), P₁ = ∂f/∂x̂¹ = Jᴷ⁻¹ ⋯ J¹.

* **Chain alignment** of an example x:  α(x) = ‖P₁(x)‖₂ / Πₖ ‖Jᵏ(x)‖₂ ∈ [0, 1]  (≤ 1 by
  submultiplicativity; 1 iff the top input singular direction of each layer's Jacobian is carried by the
  layer below onto a top output direction, so a small perturbation of x̂¹ is amplified by every layer at
  its maximal gain). ‖P₁‖ = α · Πₖ‖Jᵏ‖ is the *chain gain*.
* **Per-layer factors** along the backpropagated top output direction: v = top left singular vector of
  P₁(x); u_K = v; uₖᵀ = uₖ₊₁ᵀ Jᵏ / ‖uₖ₊₁ᵀ Jᵏ‖ (k = K−1..1); aₖ = ‖uₖ₊₁ᵀ Jᵏ‖ / ‖Jᵏ‖₂ ∈ [0, 1].
  Telescoping gives Πₖ ‖uₖ₊₁ᵀ Jᵏ‖ = ‖vᵀ Jᴷ⁻¹⋯J¹‖ = ‖vᵀ P₁‖ = ‖P₁‖₂ (v is a top left singular vector),
  hence Πₖ aₖ = α(x): aₖ says how much of layer k's maximal gain the chain actually uses.
* **Chain alignment from the input** (a candidate measure for C4): the chain including the first layer's
  Jacobian ∂x̂¹/∂x = A¹, α_in(x) = ‖∂f/∂x‖₂ / (‖A¹‖₂ · Πₖ ‖Jᵏ(x)‖₂) ∈ (0, 1] with ∂f/∂x = P₁(x) A¹;
  ‖∂f/∂x‖₂ is the *input gain*. α_in = α · ‖P₁A¹‖/(‖P₁‖‖A¹‖) ≤ α.
* **Baselines and variants** (``full_alignment_stats``, closed form): the Frobenius-normalised ratio
  ‖P₁‖_F / Πₖ‖Jᵏ‖_F; the Haar baseline α_rand(x) (:func:`haar_alignment`: the same singular values, random
  singular vectors); and, given the output errors e(x) = ∂l/∂f, the task gain ‖eᵀP₁‖/‖e‖ (P₁ is Q × width:
  its rows are the outputs, so eᵀP₁ is the error backpropagated to x̂¹).
* **Differentiable dataset level** (``alignment_functional``): mean α, mean Σₖ log‖Jᵏ‖ and mean log‖P₁‖
  as functions of the flat parameters θ that autograd and ``torch.func`` differentiate (MLPs).

**One kernel.** For MLPs every number above comes from :func:`chain_kernel` — the per-layer and chain top
singular pairs (:mod:`eoslib.singular`; ``method``: ``gram`` = ``eigh`` of Gram matrices, ``krylov`` = the
warm-startable block Krylov method, ``auto`` by size), α, aₖ and the chain gain, each pair with its
certificate — which serves the measurement hook and the end points (``method="closed"`` here: the Gram
method, chunked over examples) and the intervention (:class:`eoslib.intervention.ChainTerms`). Any other cut
``nn.Sequential`` (e.g. ``models.cnn``) uses the
matrix-free power iteration (``method="matfree"``); ``"auto"`` picks closed form when the model is an MLP.
"""
from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterator

import torch
from torch import Tensor, nn

from dataclasses import dataclass

from .jacobians import (
    MLPPass, chain_from_top, chain_map, input_layer_norm_matfree, layer_map, mlp_parts, mlp_pass, per_example_vjp,
    preactivations, spectral_norm_matfree,
)
from .singular import DEFAULT_GUARD, GRAM_MAX, SingularPairs, gram_pairs, krylov_pairs

if TYPE_CHECKING:  # annotation only
    from .objective import Objective

#: closed form: at most this many matrix entries (one layer's N_chunk × out × in) are held at once
MAX_CHUNK_ELEMENTS = 2**24


def is_mlp(model: nn.Module) -> bool:
    """True when ``model`` is ``Sequential(Linear, σ, …, Linear)`` with elementwise σ (closed form applies)."""
    try:
        mlp_parts(model)
        return True
    except (TypeError, ValueError):
        return False




def _resolve(model: nn.Module, method: str) -> str:
    if method not in ("auto", "closed", "matfree"):
        raise ValueError(f"method must be 'auto', 'closed' or 'matfree', got {method!r}")
    if method == "auto":
        return "closed" if is_mlp(model) else "matfree"
    return method


def _chunks(X: Tensor, size: int) -> Iterator[Tensor]:
    for i in range(0, X.shape[0], size):
        yield X[i: i + size]


def spectral_norms(J: Tensor) -> Tensor:
    """Batched ‖J‖₂ = √λ_max(G) with G the smaller Gram matrix (JJᵀ or JᵀJ), by ``torch.linalg.eigvalsh``.

    The top eigenvalue of a symmetric PSD G is computed to O(eps)·‖G‖ = O(eps)·λ_max, so ‖J‖₂ keeps the
    ~eps relative accuracy of ``matrix_norm(ord=2)`` (agreement 2e-15 in float64, 1e-6 in float32 measured),
    at about 2/3 of its cost (batched SVD). Only the top singular value is accurate this way.
    """
    G = J @ J.mT if J.shape[-2] <= J.shape[-1] else J.mT @ J
    return torch.linalg.eigvalsh(G)[..., -1].clamp_min(0).sqrt()


#: names of the per-example statistics: ``alignment_stats`` gives the first three, ``full_alignment_stats`` all
#: of them (the last three only in closed form: NaN for matrix-free networks), plus ``TASK_NAMES`` when given
#: the output errors
STAT_NAMES = ("norms", "chain", "factors", "input_gain", "input_norm", "frob_norms", "frob_chain", "alpha_rand")
TASK_NAMES = ("task_gain", "error_norm")

#: the Haar baseline α_rand: Monte-Carlo draws per example and their seed (the same draws for every example)
HAAR_DRAWS = 8
HAAR_SEED = 0


def singular_values(J: Tensor) -> Tensor:
    """All singular values of each J (batch × m × n), descending (batch × min(m, n)), as √eigvalsh of the smaller
    Gram matrix (~2/3 of the cost of ``svdvals``; each σᵢ² to O(eps)·‖J‖², ample for a baseline)."""
    G = J @ J.mT if J.shape[-2] <= J.shape[-1] else J.mT @ J
    return torch.linalg.eigvalsh(G).flip(-1).clamp_min(0).sqrt()


def haar_orthogonal(n: int, count: int, generator: torch.Generator) -> Tensor:
    """``count`` independent Haar-distributed n × n orthogonal matrices (float64, CPU): Q·diag(sign diag R) of
    the QR factorisation of a standard Gaussian matrix (Mezzadri 2007: without the sign fix Q is not Haar)."""
    Q, R = torch.linalg.qr(torch.randn(count, n, n, generator=generator, dtype=torch.float64))
    return Q * torch.diagonal(R, dim1=-2, dim2=-1).sign().unsqueeze(-2)


def _times_sigma(R: Tensor, s: Tensor, n: int) -> Tensor:
    """R (… × N × r × m) times the m × n rectangular diagonal matrix diag(s) (s: N × min(m, n)), per example."""
    out = R.new_zeros(*R.shape[:-1], n)
    k = s.shape[-1]
    out[..., :k] = R[..., :k] * s[:, None, :]
    return out


def haar_alignment(svals: list[Tensor], shapes: list[tuple[int, int]], draws: int = HAAR_DRAWS,
                   seed: int = HAAR_SEED) -> Tensor:
    """The Haar baseline of the chain alignment, per example (N; needs K − 1 ≥ 1 layers):

        α_rand(x) = (1/M) Σ_m ‖Πₖ Uₖ Σₖ Vₖᵀ‖₂ / Πₖ σ₁(Jᵏ),   Uₖ, Vₖ Haar-random orthogonal, M = ``draws``,

    with Σₖ the singular values of Jᵏ(x) (``svals[k−1]``: N × min(mₖ, nₖ), descending; Jᵏ is ``shapes[k−1]``
    = mₖ × nₖ). The norm is invariant to U_{K−1} on the left and V₁ on the right, and Wₖ = Vₖ₊₁ᵀUₖ are
    independent Haar matrices, so each draw is computed as ‖Σ_{K−1} W_{K−2} Σ_{K−2} ⋯ W₁ Σ₁‖₂ from the output
    side (Q rows: cost M·N·Σₖ Q·mₖ² per call, as one (N·Q) × mₖ by mₖ × mₖ product per draw and layer, plus
    the QR of M·(K−2) Gaussian matrices). Deterministic: the draws come from a generator seeded with ``seed``
    (not the global RNG), the same for every example, so α_rand(x) depends on x's singular values alone, not on
    the chunk or the probe it is measured in."""
    gen = torch.Generator().manual_seed(seed)
    s, (q, n) = svals[-1], shapes[-1]
    R = _times_sigma(torch.eye(q, dtype=s.dtype, device=s.device).expand(draws, s.shape[0], q, q), s, n)
    for s, (m, n) in zip(svals[-2::-1], shapes[-2::-1]):
        W = haar_orthogonal(m, draws, gen).to(s.dtype).to(s.device)
        R = _times_sigma((R.reshape(draws, -1, m) @ W).reshape(R.shape), s, n)  # one matmul per draw
    tops = torch.stack([sv[:, 0] for sv in svals], dim=1).prod(dim=1)
    return spectral_norms(R).mean(dim=0) / tops


def _stack(cols: list[Tensor], X: Tensor) -> Tensor:
    """Columns (N each) as N × len(cols), also for no columns (K = 1)."""
    return torch.stack(cols, dim=1) if cols else X.new_zeros(X.shape[0], 0)


@dataclass(frozen=True)
class Chain:
    """What :func:`chain_kernel` returns for N examples: ``layers`` (the top pairs of J¹ … Jᴷ⁻¹), ``top`` (of
    P₁), ``factors`` aₖ (N × (K−1)) and ``P1`` (N × Q × width, detached)."""

    layers: list[SingularPairs]
    top: SingularPairs
    factors: Tensor
    P1: Tensor

    @property
    def norms(self) -> Tensor:
        """‖Jᵏ‖₂, N × (K−1)."""
        return _stack([p.sigma for p in self.layers], self.top.sigma[:, None])

    @property
    def alpha(self) -> Tensor:
        """α = ‖P₁‖ / Πₖ‖Jᵏ‖ per example."""
        return self.top.sigma / self.norms.prod(dim=1)

    @property
    def converged(self) -> bool:
        return all(p.converged for p in [*self.layers, self.top])

    @property
    def residual(self) -> float:
        """The largest relative residual of any pair."""
        return max(float(p.residuals.max()) for p in [*self.layers, self.top])


def chain_kernel(p: MLPPass, method: str = "gram", warm: dict[int, Tensor] | None = None, tol: float | None = None,
                 guard: int = DEFAULT_GUARD, max_matvecs: int = 1000, gram_max: int = GRAM_MAX,
                 seed: int = 0) -> Chain:
    """The one alignment kernel: top singular pairs of every Jᵏ(xᵢ) = Aᵏ⁺¹ diag(σ′(x̂ᵏ(xᵢ))) and of P₁(xᵢ), and
    the per-layer factors aₖ (module docstring), for the examples of the MLP pass ``p`` (detached here).

    ``method`` picks the layers' singular-pair method: ``gram`` (eigh of the Gram matrix of the formed Jᵏ),
    ``krylov`` (:func:`~eoslib.singular.krylov_pairs` on JᵏᵀJᵏ without forming it; ``warm``: layer index →
    the previous call's block, ``tol`` its relative residual, default √eps of the dtype), ``auto`` (Gram
    where a side of Aᵏ⁺¹ is ≤ ``gram_max``, else Krylov). P₁ (Q rows) always by Gram. Every pair carries its
    certificate."""
    if method not in ("gram", "krylov", "auto"):
        raise ValueError(f"method must be 'gram', 'krylov' or 'auto' (got {method!r})")
    warm = {} if warm is None else warm
    with torch.no_grad():
        layers = [(A.detach(), d.detach()) for A, d in zip(p.weights[1:], p.slopes)]  # (Aᵏ⁺¹, σ′(x̂ᵏ))
        tol = math.sqrt(torch.finfo(p.weights[0].dtype).eps) if tol is None else tol
        pairs = []
        for k, (A, d) in enumerate(layers):
            if method == "gram" or (method == "auto" and min(A.shape) <= gram_max):
                pairs.append(gram_pairs(A * d[:, None, :]))
            else:
                pairs.append(krylov_pairs(A, d, warm.get(k), tol, max_matvecs, guard=guard, seed=seed + k))
        for P in chain_from_top(MLPPass([w.detach() for w in p.weights], p.inputs, [d for _, d in layers])):
            pass  # keep only the last, P₁
        top = gram_pairs(P)
        u, factors = top.u, []
        for (A, d), sp in zip(reversed(layers), reversed(pairs)):  # k = K−1..1: uₖᵀ ∝ uₖ₊₁ᵀ Jᵏ
            w = (u @ A) * d
            g = w.norm(dim=1)
            factors.append(g / sp.sigma)
            u = w / g.clamp_min(torch.finfo(g.dtype).tiny)[:, None]
        return Chain(pairs, top, _stack(factors[::-1], top.sigma[:, None]), P)


def _closed_stats(model: nn.Sequential, X: Tensor, full: bool, errors: Tensor | None = None) -> dict[str, Tensor]:
    """The statistics of ``STAT_NAMES`` (the first three, or all ``full``) for an MLP by :func:`chain_kernel`
    (Gram method), plus ``TASK_NAMES`` for the output errors ``errors`` (N × Q)."""
    p = mlp_pass(model, X)
    ch = chain_kernel(p, "gram")
    out = {"norms": ch.norms, "chain": ch.top.sigma, "factors": ch.factors}
    if full:  # ∂f/∂x = P₁ A¹; ‖A¹‖₂ is the same for every example
        A1 = p.weights[0].detach()
        layers = [(A.detach(), d.detach()) for A, d in zip(p.weights[1:], p.slopes)]
        svals = [singular_values(A * d[:, None, :]) for A, d in layers]  # one Jᵏ formed at a time
        out |= {"input_gain": spectral_norms(ch.P1 @ A1), "input_norm": spectral_norms(A1).expand(X.shape[0]),
                # ‖A diag(d)‖_F² = Σⱼ dⱼ² ‖A₍:,ⱼ₎‖²
                "frob_norms": _stack([(d.pow(2) @ A.pow(2).sum(0)).sqrt() for A, d in layers], X),
                "frob_chain": torch.linalg.matrix_norm(ch.P1),
                "alpha_rand": haar_alignment(svals, [tuple(A.shape) for A, _ in layers]) if layers
                else X.new_ones(X.shape[0])}
    if errors is not None:
        out |= _task_stats(errors.to(ch.P1), lambda u: (u[:, None, :] @ ch.P1).squeeze(1))
    return out


def _task_stats(errors: Tensor, backprop: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
    """``task_gain`` ‖êᵀP₁‖₂ for ê = e/‖e‖ (0 where e = 0) and ``error_norm`` ‖e‖₂; ``backprop(ê)`` = êᵀP₁ per row."""
    norm = errors.norm(dim=1)
    unit = errors / norm.clamp_min(torch.finfo(norm.dtype).tiny)[:, None]
    return {"task_gain": backprop(unit).flatten(1).norm(dim=1), "error_norm": norm}


def _matfree_stats(model: nn.Sequential, X: Tensor, full: bool, errors: Tensor | None = None,
                   **power) -> dict[str, Tensor]:
    """Same as ``_closed_stats`` by power iteration and VJPs (any cut Sequential); the closed-form-only
    statistics (Frobenius norms, the Haar baseline) are NaN."""
    zs = preactivations(model, X)
    K = len(zs)
    norms = [spectral_norm_matfree(layer_map(model, k), zs[k - 1], **power).norm for k in range(1, K)]
    top = spectral_norm_matfree(chain_map(model, 1), zs[0], **power)
    u, factors = top.left, []
    for k in range(K - 1, 0, -1):
        w = per_example_vjp(layer_map(model, k), zs[k - 1], u)  # (uₖ₊₁ᵀ Jᵏ)ᵀ
        g = w.flatten(1).norm(dim=1)
        factors.append(g / norms[k - 1])
        u = w / g.clamp_min(torch.finfo(g.dtype).tiny).reshape((-1,) + (1,) * (w.dim() - 1))
    out = {"norms": _stack(norms, X), "chain": top.norm, "factors": _stack(factors[::-1], X)}
    if full:  # x ↦ f is the whole network (chain_map k = 0)
        nan = torch.full_like(top.norm, float("nan"))
        out |= {"input_gain": spectral_norm_matfree(chain_map(model, 0), X, **power).norm,
                "input_norm": input_layer_norm_matfree(model, X, **power),
                "frob_norms": nan[:, None].expand(-1, K - 1), "frob_chain": nan, "alpha_rand": nan}
    if errors is not None:
        f = zs[-1]
        out |= _task_stats(errors.to(f).reshape(f.shape[0], -1),
                           lambda u: per_example_vjp(chain_map(model, 1), zs[0], u.reshape(f.shape)))
    return out


def _stats(
    model: nn.Sequential, X: Tensor, method: str, chunk_size: int | None, full: bool, errors: Tensor | None = None,
    **power
) -> dict[str, Tensor]:
    """The statistics of ``STAT_NAMES`` (the first three, or all ``full``; ``TASK_NAMES`` with ``errors``),
    chunked over X."""
    method = _resolve(model, method)
    if method == "closed":
        lins, _ = mlp_parts(model)
        biggest = max([A.weight.numel() for A in lins[1:]] + [lins[-1].out_features * lins[0].in_features])
        size = chunk_size or max(1, MAX_CHUNK_ELEMENTS // biggest)
        fn = _closed_stats
    else:
        size, fn = chunk_size or 1024, partial(_matfree_stats, **power)
    E = [None] * len(range(0, X.shape[0], size)) if errors is None else list(_chunks(errors, size))
    parts = [fn(model, Xc, full, Ec) for Xc, Ec in zip(_chunks(X, size), E)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@torch.no_grad()
def alignment_stats(
    model: nn.Sequential, X: Tensor, method: str = "auto", chunk_size: int | None = None, **power
) -> tuple[Tensor, Tensor, Tensor]:
    """One pass giving (‖Jᵏ(xᵢ)‖₂: N × (K−1), ‖P₁(xᵢ)‖₂: N, aₖ(xᵢ): N × (K−1)); column k−1 = layer k.

    Chunked over examples: closed form holds ≤ ``MAX_CHUNK_ELEMENTS`` Jacobian entries at a time unless
    ``chunk_size`` is given (matrix-free: 1024 examples). ``power`` (tol, max_iter, seed, criterion) goes
    to ``jacobians.spectral_norm_matfree`` (ignored by the closed form, which is exact).
    ``full_alignment_stats`` adds the statistics of the chain from the input.
    """
    s = _stats(model, X, method, chunk_size, False, **power)
    return s["norms"], s["chain"], s["factors"]


@torch.no_grad()
def full_alignment_stats(
    model: nn.Sequential, X: Tensor, method: str = "auto", chunk_size: int | None = None,
    errors: Tensor | None = None, **power
) -> dict[str, Tensor]:
    """The per-example statistics of ``alignment_stats``, of the chain from the input, and the baselines, by name:

    ``norms`` ‖Jᵏ(xᵢ)‖₂ (N × (K−1)), ``chain`` ‖P₁(xᵢ)‖₂ (N), ``factors`` aₖ(xᵢ) (N × (K−1)),
    ``input_gain`` ‖∂f/∂x (xᵢ)‖₂ = ‖P₁(xᵢ) A¹‖₂ (N) and ``input_norm`` ‖∂x̂¹/∂x‖₂ = ‖A¹‖₂ (N, the same
    for every example: the first layer is affine); ``frob_norms`` ‖Jᵏ(xᵢ)‖_F (N × (K−1)), ``frob_chain``
    ‖P₁(xᵢ)‖_F (N) and ``alpha_rand`` the Haar baseline α_rand(xᵢ) (N, :func:`haar_alignment`; 1 for K ≤ 2) —
    these three in closed form only (NaN matrix-free). With ``errors`` (N × Q, the output errors
    eᵢ = ∂l/∂f at xᵢ): ``task_gain`` ‖êᵢᵀP₁(xᵢ)‖₂ with êᵢ = eᵢ/‖eᵢ‖ (0 where eᵢ = 0) and ``error_norm`` ‖eᵢ‖₂.
    Closed form: ``input_gain`` from the Q × Q Gram matrix of P₁A¹, ``input_norm`` exact; the singular values
    for α_rand by one ``eigvalsh`` of each Jᵏ's Gram matrix (measured, float32, one thread, width 128, depth 6,
    N = 256: 0.43 s of the pass's 1.24 s; the Haar draws themselves 0.05 s).
    Matrix-free: both by power iteration (the whole network x ↦ f, and the first Linear/Conv map once per input
    shape, ``jacobians.input_layer_norm_matfree``), ``task_gain`` by one VJP. Same keywords as ``alignment_stats``.
    """
    return _stats(model, X, method, chunk_size, True, errors, **power)


def layer_norms(model: nn.Sequential, X: Tensor, **kw) -> Tensor:
    """N × (K−1) matrix of ‖Jᵏ(xᵢ)‖₂ (column k−1 = layer k). Keywords as in ``alignment_stats``."""
    return alignment_stats(model, X, **kw)[0]


def chain_alignment(model: nn.Sequential, X: Tensor, **kw) -> Tensor:
    """(N,) α(xᵢ) = ‖P₁(xᵢ)‖₂ / Πₖ ‖Jᵏ(xᵢ)‖₂ ∈ [0, 1], computed as exp(log‖P₁‖ − Σₖ log‖Jᵏ‖).

    NaN where some ‖Jᵏ‖ = 0 (e.g. a ReLU layer dead on that example). K = 1 gives α = 1 (empty product).
    """
    norms, chain, _ = alignment_stats(model, X, **kw)
    return torch.exp(chain.log() - norms.log().sum(dim=1))


def layer_factors(model: nn.Sequential, X: Tensor, **kw) -> Tensor:
    """N × (K−1) factors aₖ(xᵢ) = ‖uₖ₊₁ᵀ Jᵏ‖ / ‖Jᵏ‖₂ along the backpropagated top output direction
    (u_K = top left singular vector of P₁, uₖᵀ = uₖ₊₁ᵀJᵏ/‖uₖ₊₁ᵀJᵏ‖); column k−1 = layer k; Πₖ aₖ = α."""
    return alignment_stats(model, X, **kw)[2]


def input_alignment(model: nn.Sequential, X: Tensor, **kw) -> Tensor:
    """(N,) α_in(xᵢ) = ‖∂f/∂x‖₂ / (‖A¹‖₂ · Πₖ ‖Jᵏ(xᵢ)‖₂) ∈ (0, 1], the chain alignment from the input.

    ∂f/∂x = P₁ A¹, so α_in = α · ‖P₁A¹‖/(‖P₁‖‖A¹‖): α times how well the first layer's range meets P₁'s
    top input direction. NaN where some ‖Jᵏ‖ = 0. Keywords as in ``alignment_stats``.
    """
    return _log_alpha_in(full_alignment_stats(model, X, **kw)).exp()


def _log_alpha_in(s: dict[str, Tensor]) -> Tensor:
    return s["input_gain"].log() - s["input_norm"].log() - s["norms"].log().sum(dim=1)


def probe_subset(X: Tensor, probe: int | None, seed: int = 0) -> Tensor:
    """The fixed evaluation subset: all of X when ``probe`` is None or ≥ N, else ``probe`` rows chosen by
    ``torch.randperm(N)`` from a generator seeded with ``seed`` (kept in original order). The same
    (N, probe, seed) always gives the same rows, so a curve over training follows the same examples."""
    n = X.shape[0]
    if probe is None or probe >= n:
        return X
    if probe < 1:
        raise ValueError(f"probe must be ≥ 1, got {probe}")
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:probe].sort().values
    return X[idx.to(X.device)]


def alignment_summary(model: nn.Sequential, X: Tensor, probe: int | None = None, seed: int = 0, **kw) -> dict:
    """Dataset-level alignment summary of ``model`` on X (or on ``probe_subset(X, probe, seed)``).

    Keys: ``n_examples``; ``alpha_mean``, ``alpha_median``, ``alpha_gmean`` (exp of mean log α) of the
    chain alignment α(xᵢ); ``chain_gain_mean`` = mean ‖P₁(xᵢ)‖₂ and ``log_chain_gain_mean``;
    ``log_norm_mean`` = [mean log ‖Jᵏ‖₂ for k = 1..K−1]; ``factor_mean`` = [mean aₖ for k = 1..K−1];
    from the input: ``alpha_in_mean``, ``alpha_in_median``, ``alpha_in_gmean`` of α_in(xᵢ)
    (``input_alignment``), ``input_gain_mean`` = mean ‖∂f/∂x (xᵢ)‖₂ and ``log_input_gain_mean``,
    ``input_layer_norm`` = ‖A¹‖₂. Plain floats / lists (JSON-ready). Further keywords go to
    ``full_alignment_stats``.
    """
    Xs = probe_subset(X, probe, seed)
    s = full_alignment_stats(model, Xs, **kw)
    norms, chain, factors = s["norms"], s["chain"], s["factors"]
    log_alpha = chain.log() - norms.log().sum(dim=1)
    alpha = log_alpha.exp()
    log_alpha_in = _log_alpha_in(s)
    alpha_in = log_alpha_in.exp()
    return {
        "n_examples": int(Xs.shape[0]),
        "alpha_mean": float(alpha.mean()),
        "alpha_median": float(alpha.double().quantile(0.5)),
        "alpha_gmean": float(log_alpha.mean().exp()),
        "chain_gain_mean": float(chain.mean()),
        "log_chain_gain_mean": float(chain.log().mean()),
        "log_norm_mean": norms.log().mean(dim=0).tolist(),
        "factor_mean": factors.mean(dim=0).tolist(),
        "alpha_in_mean": float(alpha_in.mean()),
        "alpha_in_median": float(alpha_in.double().quantile(0.5)),
        "alpha_in_gmean": float(log_alpha_in.mean().exp()),
        "input_gain_mean": float(s["input_gain"].mean()),
        "log_input_gain_mean": float(s["input_gain"].log().mean()),
        "input_layer_norm": float(s["input_norm"].mean()),
    }


# ----------------------------------------------------------------------------------------------------------
# differentiable dataset-level alignment (for interventions on the flow)
# ----------------------------------------------------------------------------------------------------------
def alignment_functional(objective: Objective, theta: Tensor, X: Tensor | None = None) -> dict[str, Tensor]:
    """Dataset-level alignment as differentiable 0-dim functions of the flat parameters θ (MLPs):

    ``alpha_mean`` = (1/N) Σᵢ α(xᵢ), ``log_norm_product_mean`` = (1/N) Σᵢ Σₖ log‖Jᵏ(xᵢ)‖₂ and
    ``log_chain_gain_mean`` = (1/N) Σᵢ log‖P₁(xᵢ)‖₂, so that log α = log‖P₁‖ − Σₖ log‖Jᵏ‖ per example. On
    ``objective.X`` unless X is given (e.g. ``probe_subset(objective.X, probe, seed)``); uses only
    ``objective.model``, ``objective.unflatten`` and ``objective.X``.

    Same formulas as ``alignment_summary`` (values agree to rounding) but kept on the autograd graph: the
    pass ``jacobians.mlp_pass`` takes its weights from ``objective.unflatten(θ)``, σ′ comes from forward-mode AD
    (differentiable again, σ″), and the norms are √λ_max of Gram matrices by ``eigvalsh``, whose derivative
    d‖J‖ = uᵀ dJ v exists where the top singular value is simple (almost everywhere; a tie is a kink).
    ``torch.autograd.grad`` and ``torch.func.grad`` both differentiate it. Not chunked: the graph holds
    every Jᵏ with its Gram matrix and eigenvectors, ≈ 3 numbers per entry of the Jᵏ (N = 256, width 128,
    depth 6: measured +200 MB peak in float32; value and gradient ≈ 2.5× one ``alignment_summary``).
    """
    model = objective.model
    try:
        mlp_parts(model)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"alignment_functional needs an MLP Sequential(Linear, σ, …, Linear) ({e}); for other networks "
            "alignment_summary measures α, but not differentiably"
        ) from None
    X = objective.X if X is None else X
    p = mlp_pass(model, X, objective.unflatten(theta))
    log_norms = [spectral_norms(A * d[:, None, :]).log() for A, d in zip(p.weights[1:], p.slopes)]
    log_prod = sum(log_norms, torch.zeros(X.shape[0], dtype=X.dtype, device=X.device))
    for P in chain_from_top(p):  # keep only the last, P₁
        pass
    log_chain = spectral_norms(P).log()
    return {
        "alpha_mean": (log_chain - log_prod).exp().mean(),
        "log_norm_product_mean": log_prod.mean(),
        "log_chain_gain_mean": log_chain.mean(),
    }
