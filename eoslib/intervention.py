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
from .singular import DEFAULT_GUARD, GRAM_MAX, SingularPairs, _gram_pair, krylov_pairs  # noqa: F401

_krylov_pair = krylov_pairs  # the name the tests and older notebooks use
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
    #: the sub-chains (``ChainTerms(..., extended=True)`` only): M × (K−1), column k−1 = log‖Pₖ(xᵢ)‖₂
    log_sub_chains: Tensor | None = None
    #: the per-layer factors (extended only): M × (K−1), column k−1 = aₖ(xᵢ) (:func:`layer_factors`)
    factors: Tensor | None = None

    @property
    def log_alpha(self) -> Tensor:
        """log α(xᵢ) = log‖P₁‖ − Σₖ log‖Jᵏ‖ (M)."""
        return self.log_chain - self.log_norms.sum(dim=1)

    @property
    def sub_alphas(self) -> Tensor:
        """αₖ(xᵢ) = ‖Pₖ(xᵢ)‖₂ / Πⱼ₌ₖᴷ⁻¹‖Jʲ(xᵢ)‖₂, M × (K−1), column k−1 = sub-chain k (α₁ = α; α_{K−1} = 1)."""
        if self.log_sub_chains is None:
            raise ValueError("sub-chain alignments need ChainTerms(..., extended=True)")
        tail = self.log_norms.flip(1).cumsum(1).flip(1)  # Σ_{j ≥ k} log‖Jʲ‖
        return (self.log_sub_chains - tail).exp()

    def summary(self) -> dict[str, float]:
        """The chain-gain decomposition: ``abar`` = ᾱ (mean α), ``log_alpha_mean`` = mean log α,
        ``log_norms_mean`` = mean Σₖ log‖Jᵏ‖, ``log_chain_mean`` = mean log‖P₁‖ = the sum of the previous two;
        extended terms add ``abar_k`` (mean αₖ, k = 2..K−2) and ``afac_mean_k`` (mean aₖ, k = 1..K−1)."""
        la = self.log_alpha.detach().double()
        out = {"abar": float(la.exp().mean()), "log_alpha_mean": float(la.mean()),
               "log_norms_mean": float(self.log_norms.detach().double().sum(dim=1).mean()),
               "log_chain_mean": float(self.log_chain.detach().double().mean())}
        if self.log_sub_chains is not None:
            sa = self.sub_alphas.detach().double().mean(0)
            out |= {f"abar_{k + 1}": float(sa[k]) for k in range(1, len(sa) - 1)}
        if self.factors is not None:
            fa = self.factors.detach().double().mean(0)
            out |= {f"afac_mean_{k + 1}": float(fa[k]) for k in range(len(fa))}
        return out

    def detach(self) -> "Terms":
        d = lambda x: None if x is None else x.detach()  # noqa: E731
        return Terms(self.log_norms.detach(), self.log_chain.detach(), d(self.log_sub_chains), d(self.factors))


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


@CONSTRAINTS.register("chain", label="mean log‖P₁‖ (chain gain; the positive control)")
def mean_log_chain(t: Terms) -> Tensor:
    """(1/M) Σᵢ log‖P₁(xᵢ)‖₂: the chain gain that carries the G blocks of layer 1. Holding it is the positive
    control of the intervention: λ_max(G) grows with ‖P₁‖², so holding it should stop the sharpening."""
    return t.log_chain.mean()


@CONSTRAINTS.register("vector", label="every āₖ and every sub-chain ᾱₖ (vector)", extended=True)
def every_alignment(t: Terms) -> Tensor:
    """The vector c = [ā₁ … ā_{K−1}, ᾱ₁ … ᾱ_{K−2}] (2K − 3 entries): the probe means of every per-layer factor
    aₖ (:func:`layer_factors`) and of every sub-chain alignment αₖ = ‖Pₖ‖/Πⱼ₌ₖ‖Jʲ‖ (α₁ = α; α_{K−1} ≡ 1 is
    left out: it is constant). Holding it holds the alignment of every layer and of every sub-chain at once."""
    return torch.cat([t.factors.mean(0), t.sub_alphas[:, :-1].mean(0)])


def layer_factors(layers: list[tuple[Tensor, Tensor]], u_top: Tensor, log_norms: Tensor) -> Tensor:
    """aₖ(xᵢ) = ‖uₖ₊₁ᵀJᵏ‖ / ‖Jᵏ‖₂ (M × (K−1), column k−1 = layer k) along the backpropagated top output direction:
    u_K = ``u_top`` (M × Q, the top left singular vector of P₁), uₖᵀ = uₖ₊₁ᵀJᵏ/‖uₖ₊₁ᵀJᵏ‖ (the definition of
    :func:`eoslib.alignment.factors`; Πₖ aₖ = α). ``layers``: [(Aᵏ⁺¹, σ′(x̂ᵏ))] for k = 1..K−1; differentiable."""
    w, out = u_top, []
    for k in range(len(layers) - 1, -1, -1):
        A, d = layers[k]
        r = (w @ A) * d  # uₖ₊₁ᵀ Jᵏ = (uₖ₊₁ᵀ Aᵏ⁺¹) diag(σ′)
        nr = r.norm(dim=1)
        out.append(nr / log_norms[:, k].exp())
        w = r / nr[:, None]
    return torch.stack(out[::-1], dim=1)


def sub_chain_norms(p: MLPPass) -> tuple[Tensor, Tensor]:
    """(log‖Pₖ(xᵢ)‖₂ as M × (K−1), column k−1 = Pₖ; the top left singular vectors u of P₁, M × Q), by the
    envelope theorem: (u, v) from ``eigh`` of each detached Q × Q Gram matrix PₖPₖᵀ, then σ = uᵀPₖv on ``p``'s
    graph (the gradient of ‖Pₖ‖₂ where its top singular value is simple). u of P₁ is differentiable (``eigh`` on
    the graph: the factors aₖ depend on it, not only through a stationary value)."""
    logs, P1 = [], None
    for P in list(chain_from_top(p))[1:]:  # P_{K−1}, …, P₁
        with torch.no_grad():
            ev, U = torch.linalg.eigh(P @ P.mT)
            u = U[..., -1]
            v = (u[:, None, :] @ P).squeeze(1) / ev[..., -1].clamp_min(0).sqrt()[:, None]
        logs.append(((u[:, None, :] @ P).squeeze(1) * v).sum(1).log())
        P1 = P
    u1 = torch.linalg.eigh(P1 @ P1.mT)[1][..., -1]
    return torch.stack(logs[::-1], dim=1), u1


# ----------------------------------------------------------------------------------------------------------
# the terms with envelope-theorem gradients
# ----------------------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """One evaluation at θ: the detached ``terms``, ``grads`` (constraint name → ∇c(θ)) for the constraints
    asked for, and the ``certificate`` of its singular pairs (``chain_converged``, ``chain_residual``: every
    Krylov layer's top pair converged, and the largest relative residual; Gram layers are direct)."""

    theta: Tensor
    terms: Terms
    grads: dict[str, Tensor]
    certificate: dict | None = None


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
                 gram_max: int = GRAM_MAX, seed: int = 0, guard: int = DEFAULT_GUARD, extended: bool = False) -> None:
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
        self.extended = extended  # also the sub-chains Pₖ and the factors aₖ (Terms.log_sub_chains, .factors)
        self.vectors: dict[int, Tensor] = {}  # layer index → Ritz block (M × (1+guard) × n) of the last call
        self.matvecs = 0  # Krylov products of the last call (all layers, per example)
        self.certificates: dict[int, dict] = {}  # layer index → certificate of its Krylov solve in the last call
        self.cache: list[Evaluation] = []  # the latest evaluations, newest last

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, theta: Tensor, grads: tuple[str, ...] = ()) -> Evaluation:
        """Terms at θ and ∇c(θ) for each constraint name in ``grads`` (one forward pass for all; a vector
        constraint of m entries gets its m × P Jacobian, one backward pass per entry)."""
        for c in reversed(self.cache):
            if c.theta.shape == theta.shape and torch.equal(c.theta, theta) and all(g in c.grads for g in grads):
                return c
        for g in grads:
            if CONSTRAINTS.entry(g).meta.get("extended") and not self.extended:
                raise ValueError(f"constraint {g!r} needs ChainTerms(..., extended=True)")
        values = [CONSTRAINTS[g] for g in grads]
        th = theta.detach().clone().requires_grad_(bool(grads))
        with torch.enable_grad() if grads else torch.no_grad():
            p = mlp_pass(self.objective.model, self.X, self.objective.unflatten(th))
            terms = self._terms(p)
            raw = [fn(terms) for fn in values]
            outs = [r.reshape(-1) for r in raw]
            jobs = [(i, j) for i, o in enumerate(outs) for j in range(len(o))]
            rows: list[list[Tensor]] = [[] for _ in outs]
            for n, (i, j) in enumerate(jobs):
                rows[i].append(torch.autograd.grad(outs[i][j], th, retain_graph=n < len(jobs) - 1)[0])
            out = {g: (r[0] if c.ndim == 0 else torch.stack(r)) for g, r, c in zip(grads, rows, raw)}
        ev = Evaluation(theta.detach().clone(), terms.detach(), out,
                        {"chain_converged": self.converged, "chain_residual": self.residual})
        self.cache = self.cache[-(self.CACHE - 1):] + [ev]
        return ev

    def _terms(self, p: MLPPass) -> Terms:
        """σ = uᵀMv with the pairs of :func:`eoslib.alignment.chain_kernel` (found on detached copies, Gram or
        Krylov by size); differentiable through ``p`` when it is."""
        from .alignment import chain_kernel

        layers = list(zip(p.weights[1:], p.slopes))  # (Aᵏ⁺¹, σ′(x̂ᵏ)), k = 1..K−1
        ch = chain_kernel(p, "auto", warm=self.vectors, tol=self.tol, guard=self.guard,
                          max_matvecs=self.max_matvecs, gram_max=self.gram_max, seed=self.seed)
        krylov = {k: sp for k, sp in enumerate(ch.layers) if sp.matvecs > 0}
        self.vectors |= {k: sp.block for k, sp in krylov.items()}
        self.matvecs = sum(sp.matvecs for sp in krylov.values())
        self.certificates = {k: sp.certificate() for k, sp in krylov.items()}
        sig = [((sp.u @ A) * d * sp.v).sum(dim=1) for sp, (A, d) in zip(ch.layers, layers)]  # uᵀ A diag(d) v
        w = ch.top.v
        for A, d in layers:  # P₁v = Jᴷ⁻¹(⋯(J¹v)), Jᵏw = Aᵏ⁺¹(σ′ ⊙ w)
            w = (w * d) @ A.mT
        log_norms, log_chain = torch.stack(sig, dim=1).log(), (ch.top.u * w).sum(dim=1).log()
        if not self.extended:
            return Terms(log_norms, log_chain)
        subs, u1 = sub_chain_norms(p)
        return Terms(log_norms, log_chain, subs, layer_factors(layers, u1, log_norms))

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

    def value(self, theta: Tensor) -> float | Tensor:
        """c(θ): a float, or a float64 vector for a vector constraint."""
        return _as_value(CONSTRAINTS[self.name](self.terms.evaluate(theta).terms))

    def value_and_grad(self, theta: Tensor) -> tuple[float | Tensor, Tensor]:
        """(c(θ), ∇c(θ)): ∇c is a P-vector, or the m × P Jacobian of a vector constraint."""
        ev = self.terms.evaluate(theta, (self.name,))
        return _as_value(CONSTRAINTS[self.name](ev.terms)), ev.grads[self.name]

    def state_dict(self) -> dict:
        return self.terms.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.terms.load_state_dict(state)


def _as_value(c: Tensor) -> float | Tensor:
    return float(c) if c.ndim == 0 else c.detach().to(torch.float64).cpu()


def constraint(name: str, objective, probe: int | None = None, seed: int = 0, **kw) -> Constraint:
    """The registered constraint ``name`` of an MLP objective on ``probe_subset(objective.X, probe, seed)``
    (the probe rows :class:`eoslib.measurement.Measurement` uses with the same probe and seed). ``kw``: of
    :class:`ChainTerms` (tol, max_matvecs, gram_max, guard)."""
    from .alignment import probe_subset

    kw.setdefault("extended", bool(CONSTRAINTS.entry(name).meta.get("extended")))
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

    ``grad``/``loss_and_grad`` return Pg: for a scalar c, g − (n·g)n with n = ∇c/‖∇c‖ (no projection where
    ∇c = 0); for a vector c (m entries, Jacobian A, m × P) the projection onto the intersection of the m tangent
    spaces, Pg = g − Aᵀ(AAᵀ)⁺Ag (:func:`eoslib.constraints.project_tangent`: dependent rows dropped). Every other
    attribute is ``objective``'s (``loss`` is the true loss; ``hvp`` the true Hessian). ``target``: the value c is
    held at (``None``: c at the first θ projected or corrected). :meth:`correct` is the Gauss–Newton correction
    onto c = target with absolute tolerance ``tol`` per entry (default 100·eps·max(1, |targetⱼ|) of the dtype)
    in at most ``max_newton`` steps (20: a vector constraint far off after a large step needs 6–8 on a toy network,
    converging quadratically at the end; mean log‖P₁‖ on Fashion-MNIST-mini converges only linearly, by 0.3–0.6
    per step from a step drift of ~0.1, measured: 9–11 steps to its tolerance; a step that still fails is
    retaken shorter by :class:`ProjectedSolver`). Each projection is logged (θ, c, ‖∇c‖, removed fraction ‖g − Pg‖²/‖g‖²,
    rank) for :class:`ProjectedSolver`'s records."""

    def __init__(self, objective, constraint: ConstraintFunction, target: float | Tensor | None = None,
                 tol: float | None = None, max_newton: int = 20) -> None:
        self.objective, self.constraint = objective, constraint
        self.target = None if target is None else _target(target)
        self._tol, self.max_newton = tol, max_newton
        self.log: list[tuple[Tensor, dict]] = []

    def __getattr__(self, name: str):
        if name == "objective":  # not yet set (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.objective, name)

    def _tols(self) -> Tensor:
        """Per entry: ``tol``, or 100·eps·max(1, |targetⱼ|) for a scalar c and 1000·eps·max(1, |targetⱼ|) for a
        vector: its factors aₖ pass through the eigenvector u_K and K − 1 normalisations, whose rounding (measured
        3e-14 in float64 on a depth-5 network) exceeds the scalar's 100·eps."""
        tv = _vec(self.target)
        if self._tol is not None:
            return torch.full_like(tv, self._tol)
        return (100 if len(tv) == 1 else 1000) * torch.finfo(self.objective.dtype).eps * tv.abs().clamp_min(1.0)

    @property
    def tol(self) -> float:
        """The largest per-entry tolerance of the correction."""
        return float(self._tols().max())

    def _constraint(self, theta: Tensor) -> tuple[float | Tensor, Tensor]:
        c, gc = self.constraint.value_and_grad(theta)
        if self.target is None:
            self.target = _target(c)
        return c, gc

    def _drift(self, c: float | Tensor) -> float:
        """c − target (scalar), or the entry of largest |cⱼ − targetⱼ| (vector)."""
        d = _vec(c) - _vec(self.target)
        return float(d[d.abs().argmax()])

    def project(self, theta: Tensor, g: Tensor) -> Tensor:
        """Pg at θ (and a log entry)."""
        from .constraints import project_tangent

        c, gc = self._constraint(theta)
        A = gc.reshape(-1, g.shape[0])
        tp = project_tangent(g, A.T)  # P × m: a view of the m contiguous gradient rows
        scalar = not isinstance(c, Tensor)
        self.log.append((theta, {"c": float(c) if scalar else float("nan"), "c_drift": self._drift(c),
                                 "c_grad_norm": float(A.double().norm(dim=1).min()), "removed": tp.removed,
                                 "rank": tp.rank}))
        return tp.velocity

    def loss_and_grad(self, theta: Tensor, keep_graph: bool = False) -> tuple[Tensor, Tensor]:
        """(L(θ), P∇L(θ)); ``keep_graph`` as for the wrapped objective (its Hessian products follow)."""
        loss, g = self.objective.loss_and_grad(theta, keep_graph=keep_graph)
        return loss, self.project(theta, g)

    def grad(self, theta: Tensor) -> Tensor:
        """P∇L(θ)."""
        return self.loss_and_grad(theta)[1]

    def describe(self, theta: Tensor) -> dict:
        """c, c_drift and ‖∇c‖ at θ without a gradient to project (``removed`` NaN)."""
        c, gc = self._constraint(theta)
        A = gc.reshape(-1, theta.shape[0])
        return {"c": float(c) if not isinstance(c, Tensor) else float("nan"), "c_drift": self._drift(c),
                "c_grad_norm": float(A.double().norm(dim=1).min()), "removed": float("nan")}

    def correct(self, theta: Tensor) -> tuple[Tensor, dict]:
        """Gauss–Newton steps θ ← θ − Aᵀ(AAᵀ)⁺(c − target) (scalar: θ − (c − target)∇c/‖∇c‖²) until every
        |cⱼ − targetⱼ| ≤ tolⱼ. Returns (θ, record with ``c_step_drift`` = the largest drift before and ``newton``
        = steps taken); θ itself (the same tensor) when no step was needed. Raises
        :class:`ConstraintDriftError` when ``max_newton`` steps do not suffice."""
        drift0, tols = None, None
        for it in range(self.max_newton + 1):
            c, gc = self._constraint(theta)
            tols = self._tols() if tols is None else tols
            d = _vec(c) - _vec(self.target)
            drift0 = self._drift(c) if drift0 is None else drift0
            if bool((d.abs() <= tols).all()):
                return theta, {"c_step_drift": drift0, "newton": it}
            A = gc.reshape(-1, theta.shape[0]).double()
            AAt = A @ A.T
            ok = bool(AAt.diagonal().min() > 0)
            if it == self.max_newton or not ok:
                raise ConstraintDriftError(
                    f"the constraint drifted to c − target = {self._drift(c):.3g} (tolerance {self.tol:.3g}) and "
                    f"{it} Newton steps did not bring it back ({'∇c = 0' if not ok else 'not converging'}); "
                    "take smaller solver steps (lower dt_max or c) or loosen the tolerance")
            step = A.T @ (torch.linalg.pinv(AAt, hermitian=True) @ d.to(A.device))
            theta = theta - step.to(theta.dtype)
        raise AssertionError("unreachable")

    def logged(self, theta: Tensor) -> dict | None:
        """The log entry of the latest projection at this θ tensor (by identity), or None."""
        for th, rec in reversed(self.log):
            if th is theta:
                return rec
        return None


def _target(c: float | Tensor) -> float | Tensor:
    return float(c) if not isinstance(c, Tensor) else c.detach().to(torch.float64).cpu().clone()


def _vec(c: float | Tensor) -> Tensor:
    return torch.as_tensor(c, dtype=torch.float64).reshape(-1).cpu()


class PlaceboObjective(ProjectedObjective):
    """The matched placebo (claim C3): remove from ∇L a fraction ρ of ‖∇L‖² along the direction nearest a fixed
    random unit vector ``direction`` that removes exactly ρ (:func:`eoslib.constraints.matched_placebo`), with ρ
    the fraction the treatment removes: ``schedule(clock)`` — the scalar arm's removed fraction against the flow
    time since the switch, ``clock`` the flow time of the step's start point (set by :class:`ProjectedSolver`) — or, without a schedule,
    ρ(θ) = (∇c·∇L)²/(‖∇c‖²‖∇L‖²), what holding the reference c (ᾱ) would remove at this θ. Either way the
    reference c is recorded (``c``, ``c_drift`` from its value at the switch; ``rho_state`` = ρ(θ)) and free to
    move: nothing is held, no correction."""

    def __init__(self, objective, reference: ConstraintFunction, direction: Tensor, target: float | None = None,
                 schedule: Callable[[float], float] | None = None) -> None:
        super().__init__(objective, reference, target)
        self.direction, self.schedule, self.clock = direction, schedule, 0.0

    def project(self, theta: Tensor, g: Tensor) -> Tensor:
        from .constraints import matched_placebo

        c, gc = self._constraint(theta)
        gc64, g64 = gc.reshape(-1).double(), g.double()
        den = float(gc64 @ gc64) * float(g64 @ g64)
        state = float(gc64 @ g64) ** 2 / den if den > 0 else 0.0
        rho = min(self.schedule(self.clock) if self.schedule is not None else state, 1.0 - 1e-9)
        pl = matched_placebo(g, self.direction.to(g.device), max(rho, 0.0))
        self.log.append((theta, {"c": float(c), "c_drift": self._drift(c), "c_grad_norm": float(gc64.norm()),
                                 "removed": pl.removed, "rho_target": rho, "rho_state": state, "cos_u": pl.cos_u}))
        return pl.velocity

    def correct(self, theta: Tensor) -> tuple[Tensor, dict]:
        """Nothing is held: θ unchanged."""
        return theta, {"c_step_drift": float("nan"), "newton": 0}


class ProjectedSolver:
    """Any gradient-only solver (one that calls ``objective.loss_and_grad``/``grad``, plus the Hessian for its
    step size) run on a :class:`ProjectedObjective`, with the Newton correction after every step.

    **Step rejection.** The projected flow θ' = −P∇L keeps c = target exactly and lets L only fall
    (dL/dt = −‖P∇L‖²). A discrete step leaves the constraint by O(Δt²), and the correction moves θ by as much,
    so a step that is too long for the constraint's curvature can (a) leave c farther off than ``max_newton``
    Gauss–Newton steps bring back (:class:`ConstraintDriftError`: measured on Fashion-MNIST-mini CE with mean
    log‖P₁‖ held, a step drift of ~0.1 that the correction reduces only linearly, by 0.3–0.6 per step, because
    log‖P₁(xᵢ)‖ has near-kinks where P₁'s top two singular values meet), or (b) end, after the correction,
    above the loss it started from. Either way the step is retaken from θ with half its Δt (``dt_cap``), up to
    ``max_halvings`` times: halving divides the drift by ~4 and the correction's displacement with it, while
    the descent shrinks only by 2, so a short enough step passes both where c is smooth. The error is raised
    only when even Δt/2^max_halvings fails — except at a **jump** of c (:meth:`step`: measured on the
    Fashion-MNIST-mini MSE vector arm, a drift of 9.5e-4 in one factor that stayed 9.5e-4 over 32× shorter
    steps, the correction then raising L by 1e-3 relative), which is accepted and recorded. The loss test is
    rounding only, 1000·eps·L of the dtype, and replaces the train loop's (:attr:`flow` is False). Steps that
    pass the first time are exactly the unguarded ones (one extra loss evaluation at the end point).

    ``step(objective, θ, dt_cap)`` needs ``objective is projected``; the record is the inner solver's plus
    ``c`` (at θ), ``c_drift`` = c − target at θ, ``c_grad_norm`` = ‖∇c(θ)‖, ``removed`` = (n·g)²/‖g‖² of
    the projection at θ (NaN where the solver took no gradient at θ), ``c_step_drift`` = c − target after the
    inner step, before the correction, ``newton`` = correction steps, ``halvings`` = times the step was
    retaken shorter, ``c_jump`` and ``loss_jump`` (an accepted jump's drift and loss rise, else 0). ``state_dict`` carries the inner solver's state, the constraint's (warm start, cache) and
    the target."""

    #: a rise whose step drift at the shortest step is still this fraction of the first step's is a jump of c
    JUMP_FRACTION = 0.25

    def __init__(self, solver, projected: ProjectedObjective, max_halvings: int = 5) -> None:
        self.solver, self.projected, self.max_halvings = solver, projected, max_halvings
        # flow time of the iterates (for a placebo's schedule): (start θ, its t, end θ, its t) of the last step
        self._last: tuple | None = None
        self._t0 = 0.0

    def _time_of(self, theta: Tensor | None) -> float:
        """The flow time of ``theta``: the end of the last step (the usual case, after a resume, and for
        ``None``), or its start (a step retaken shorter to land on an event or the loss threshold)."""
        if self._last is None:
            return self._t0
        start, t_start, _, t_end = self._last
        return t_start if theta is start else t_end

    @property
    def flow(self) -> bool:
        """False: :func:`eoslib.training.train`'s loss-rise test is off for the projected flow, because this
        solver applies its own to every step (:meth:`step`), which knows the correction and its jumps."""
        return False

    def _rise(self, loss0: float, theta_next: Tensor) -> float:
        """L(θ_next) − L(θ) where it exceeds rounding (1000·eps·L of the dtype), else 0; always 0 when the
        inner solver does not integrate a flow (plain GD at a fixed η may raise the loss)."""
        if not getattr(self.solver, "flow", False):
            return 0.0
        rise = float(self.projected.loss(theta_next)) - loss0
        return rise if rise > 1000 * torch.finfo(self.projected.dtype).eps * abs(loss0) else 0.0

    def step(self, objective, theta: Tensor, dt_cap: float | None = None) -> tuple[Tensor, dict]:
        """One inner step and its correction, retaken with half the Δt while the correction fails or the loss
        rises (class docstring). A rise that survives every halving while the step drift of c does not shrink
        (|c_step_drift| at the shortest step ≥ ``JUMP_FRACTION`` of the first's, where a smooth c's O(Δt²)
        drift would have fallen 4^max_halvings-fold) is a **jump**: c is discontinuous there (a factor aₖ is
        defined through a top singular vector, which swaps where two singular values cross), so holding it
        moves θ by a finite amount whatever the step. The shortest step is then accepted and recorded
        (``c_jump`` = its drift, ``loss_jump`` = the rise; both 0 otherwise); any other failure is raised."""
        from .training import LossRoseError

        if objective is not self.projected:
            raise ValueError("ProjectedSolver.step: pass the ProjectedObjective this solver was built with "
                             "(train(ProjectedSolver(s, po), po, ...))")
        pr = self.projected
        # keep only projections at θ itself (a solver may reuse the gradient it took there last step)
        pr.log = [e for e in pr.log if e[0] is theta]
        t = self._time_of(theta)
        if hasattr(pr, "clock"):  # a placebo reads its schedule at the step's start time
            pr.clock = t
        cap, drifts, rise = dt_cap, [], 0.0
        for halvings in range(self.max_halvings + 1):
            theta_next, rec = self.solver.step(pr, theta, dt_cap=cap)
            try:
                theta_next, corr = pr.correct(theta_next)
            except ConstraintDriftError as e:
                failure: Exception | None = e
            else:
                drifts.append(abs(corr["c_step_drift"]))
                rise = self._rise(rec["loss"], theta_next)
                failure = None if not rise else LossRoseError(
                    f"the loss rose by {rise:.3g} (from {rec['loss']:.10g}) over the corrected step "
                    f"(Δt = {rec['dt']:.4g}, c − target before the correction {corr['c_step_drift']:.3g}); "
                    "take smaller solver steps (lower dt_max or c)")
            if failure is None:
                break
            cap = rec["dt"] / 2
        else:
            jump = (isinstance(failure, LossRoseError) and self.max_halvings >= 3 and len(drifts) == halvings + 1
                    and drifts[-1] >= self.JUMP_FRACTION * drifts[0] > 0)
            if not jump:
                raise type(failure)(f"{failure} — after {self.max_halvings} halvings of the step")
        jumped = {"c_jump": corr["c_step_drift"] if rise else 0.0, "loss_jump": rise}
        at = pr.logged(theta)
        if at is None:  # the solver took no gradient at θ: c and ∇c from the constraint, no removed fraction
            at = pr.describe(theta)
        rec = dict(rec) | at | corr | {"halvings": halvings} | jumped
        self._last = (theta, t, theta_next, t + rec["dt"])
        return theta_next, rec

    def state_dict(self) -> dict:
        c = self.projected.constraint
        return {"solver": self.solver.state_dict(), "target": self.projected.target,
                "constraint": c.state_dict() if hasattr(c, "state_dict") else None,
                "clock": self._time_of(None)}

    def load_state_dict(self, state: dict) -> None:
        self.solver.load_state_dict(state["solver"])
        self.projected.target = state["target"]
        self._t0, self._last = state.get("clock", 0.0), None
        c = self.projected.constraint
        if state.get("constraint") is not None and hasattr(c, "load_state_dict"):
            c.load_state_dict(state["constraint"])


__all__ = ["CONSTRAINTS", "Terms", "SingularPairs", "ChainTerms", "Evaluation", "Constraint", "constraint",
           "ConstraintFunction", "ConstraintDriftError", "ProjectedObjective", "PlaceboObjective", "ProjectedSolver",
           "layer_factors", "sub_chain_norms"]
