"""The definitions of the measures named in the catalog :mod:`eoslib.measures` (labels, sources and the
requirements of derived measures live there), the per-example probe statistics they read, and
:func:`measure_point`, which evaluates a list of measures at θ.

Notation (paper-notes §2): α(x) = ‖P₁(x)‖₂ / Πₖ‖Jᵏ(x)‖₂ (chain alignment), ‖P₁‖₂ the chain gain.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import MEASURES, closure, on_probe, source

if TYPE_CHECKING:  # annotations only: importing this module loads no torch
    from torch import Tensor, nn

    from ..losses import Loss
    from ..objective import Objective


@dataclass(frozen=True)
class ProbeStats:
    """Per-example statistics of the layerwise Jacobians on the probe subset (float64 numpy arrays).

    ``norms`` N × (K−1): ‖Jᵏ(xᵢ)‖₂; ``chain`` N: ‖P₁(xᵢ)‖₂; ``factors`` N × (K−1): aₖ(xᵢ);
    ``log_alpha`` = log‖P₁‖ − Σₖ log‖Jᵏ‖; ``extra``: the further per-example arrays of
    :func:`eoslib.alignment.full_alignment_stats` (``input_gain``, ``input_norm``, ``frob_norms``,
    ``frob_chain``, ``alpha_rand``, and ``task_gain``, ``error_norm`` when the labels were given)."""

    norms: np.ndarray
    chain: np.ndarray
    factors: np.ndarray
    extra: Mapping[str, np.ndarray]

    @property
    def log_alpha(self) -> np.ndarray:
        return np.log(self.chain) - np.log(self.norms).sum(axis=1)

    @property
    def alpha(self) -> np.ndarray:
        return np.exp(self.log_alpha)


def output_errors(model: nn.Module, X: Tensor, y: Tensor, loss: str | Loss) -> Tensor:
    """e(xᵢ) = ∂l(z, yᵢ)/∂z at z = f(xᵢ) (N × Q, float64): the loss's error at the output, by autograd of
    ``loss.value_sum`` (a row's gradient of the sum is its own example's gradient)."""
    import torch

    from ..losses import get_loss

    with torch.no_grad():
        z = model(X).double()
    with torch.enable_grad():
        z.requires_grad_(True)
        return torch.autograd.grad(get_loss(loss).value_sum(z, y), z)[0]


def probe_stats(model: nn.Module, X: Tensor, y: Tensor | None = None, loss: str | Loss | None = None) -> ProbeStats:
    """The :class:`ProbeStats` of ``model`` on the rows X (one pass of
    :func:`eoslib.alignment.full_alignment_stats`); with labels ``y`` and ``loss`` (a name or
    :class:`~eoslib.losses.Loss`) also the task statistics of the output errors (:func:`output_errors`)."""
    import torch

    from ..alignment import full_alignment_stats

    errors = None if y is None else output_errors(model, X, y, loss)
    with torch.no_grad():
        out = dict(full_alignment_stats(model, X, errors=errors))
    f = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
    norms, chain, factors = (f(out.pop(k)) for k in ("norms", "chain", "factors"))
    return ProbeStats(norms, chain, factors, {k: f(v) for k, v in out.items()})


def probe_objective(objective: Objective, probe: int | None, seed: int = 0) -> Objective:
    """The objective restricted to the probe subset (:func:`eoslib.alignment.probe_subset` of X and of y, the same
    rows), same model, loss and chunking; ``objective`` itself when the probe holds every example."""
    from ..alignment import probe_subset
    from ..objective import Objective

    if probe is None or probe >= objective.N:
        return objective
    return Objective(objective.model, probe_subset(objective.X, probe, seed), probe_subset(objective.y, probe, seed),
                     loss=objective.criterion, chunk_size=objective.chunk_size, hvp_method=objective.hvp_method)


# ---------------------------------------------------------------------------------------------- alignment


def alpha_mean(s: ProbeStats) -> float:
    """ᾱ = mean over the probe of α(x) = ‖P₁(x)‖₂ / Πₖ‖Jᵏ(x)‖₂ (the primary measure)."""
    return float(s.alpha.mean())


def alpha_median(s: ProbeStats) -> float:
    return float(np.median(s.alpha))


def alpha_gmean(s: ProbeStats) -> float:
    """exp(mean log α)."""
    return float(np.exp(s.log_alpha.mean()))


def chain_gain(s: ProbeStats) -> float:
    """mean ‖P₁(x)‖₂ = mean α(x)·Πₖ‖Jᵏ(x)‖₂."""
    return float(s.chain.mean())


def log_norm_product(s: ProbeStats) -> float:
    """mean Σₖ log‖Jᵏ(x)‖₂: the layer-norm part of log‖P₁‖ = log α + Σₖ log‖Jᵏ‖."""
    return float(np.log(s.norms).sum(axis=1).mean())


def alpha_in_mean(s: ProbeStats) -> float:
    """Mean over the probe of α_in(x) = ‖∂f/∂x‖₂ / (‖A¹‖₂ Πₖ‖Jᵏ(x)‖₂): the alignment of the chain from the
    input, including the input layer's Jacobian ∂x̂¹/∂x = A¹ (α_in ≤ α)."""
    ratio = s.extra["input_gain"] / (s.extra["input_norm"] * s.norms.prod(axis=1))
    return float(ratio.mean())


def a1_mean(s: ProbeStats) -> float:
    """Mean over the probe of the first layer's factor a₁(x) = ‖u₂ᵀJ¹‖ / ‖J¹‖₂ (J¹ = ∂x̂²/∂x̂¹), where u_K = v is
    the top left singular vector of P₁(x) and uₖᵀ = uₖ₊₁ᵀJᵏ/‖uₖ₊₁ᵀJᵏ‖ backpropagates it (k = K−1..2); so
    a₁ = ‖vᵀP₁‖ / (‖vᵀP₂‖ ‖J¹‖₂): how much of J¹'s maximal gain the chain's top output direction uses
    (Πₖ aₖ = α). NaN for K = 1."""
    return float(s.factors[:, 0].mean()) if s.factors.shape[1] else float("nan")


def min_ak_mean(s: ProbeStats) -> float:
    """Mean over the probe of minₖ aₖ(x) (the weakest link of the chain; ≥ α(x) since Πₖ aₖ = α, aₖ ≤ 1); 1 for
    K = 1 (no layer Jacobian: α = 1)."""
    return float(s.factors.min(axis=1).mean()) if s.factors.shape[1] else 1.0


def alpha_frob_mean(s: ProbeStats) -> float:
    """Mean over the probe of ‖P₁(x)‖_F / Πₖ‖Jᵏ(x)‖_F ∈ [0, 1] (Frobenius-normalised ratio; ≤ 1 because
    ‖AB‖_F ≤ ‖A‖_F‖B‖_F). NaN for matrix-free networks."""
    return float((s.extra["frob_chain"] / s.extra["frob_norms"].prod(axis=1)).mean())


def alpha_haar_ratio(s: ProbeStats) -> float:
    """Mean over the probe of α(x) / α_rand(x): the alignment against the Haar baseline with the same singular
    values, α_rand(x) = mean over M draws of ‖Πₖ UₖΣₖVₖᵀ‖₂ / Πₖσ₁(Jᵏ) (Uₖ, Vₖ Haar-random; M =
    ``alignment.HAAR_DRAWS``, fixed seed; :func:`eoslib.alignment.haar_alignment`). > 1: more aligned than
    chance given the layers' conditioning. NaN for matrix-free networks."""
    return float((s.alpha / s.extra["alpha_rand"]).mean())


def alpha_task_mean(s: ProbeStats) -> float:
    """Mean over the probe of the task-weighted alignment α_task(x) = ‖P₁(x)ᵀe(x)‖₂ / (‖e(x)‖₂ Πₖ‖Jᵏ(x)‖₂) ≤ α(x),
    e(x) = ∂l(f(x), y)/∂f the loss's error at the output (P₁ is Q × width: P₁ᵀe is e backpropagated to x̂¹).
    Examples with e(x) = 0 (fitted exactly) are left out of the mean (NaN when all are); NaN when the stats were
    computed without labels (``probe_stats(model, X)``; :func:`measure_point` passes them)."""
    if "task_gain" not in s.extra:
        return float("nan")
    keep = s.extra["error_norm"] > 0
    ratio = s.extra["task_gain"][keep] / s.norms[keep].prod(axis=1)
    return float(ratio.mean()) if keep.any() else float("nan")


def input_gain(s: ProbeStats) -> float:
    """Mean over the probe of ‖∂f/∂x(x)‖₂ = ‖P₁(x)A¹‖₂, the input–output Jacobian's spectral norm (rival
    predictor: MacDonald, Valmadre & Lucey 2023)."""
    return float(s.extra["input_gain"].mean())


# ---------------------------------------------------------------------------------------------- curvature


def sharpness(objective, theta, cache: dict) -> float:
    """λ_max(∇²L) by LOBPCG to a relative residual 10⁻³ (as the solvers track it), from a seeded *cold* start
    with the default guard: an end point is a handful of solves per run, so none is trusted to a warm start
    (issue 17: a warm start at θ₀'s vector could lock onto the wrong pair). Its certificate goes to
    ``cache["certificates"]["sharpness"]`` (stored as ``sharpness_converged`` / ``sharpness_residual``)."""
    from ..eigen import top_eigenpairs

    r = top_eigenpairs(objective.hvp_operator(theta), objective.P, 1, tol=1e-3, device=theta.device)
    cache.setdefault("certificates", {})["sharpness"] = r.certificate()
    return float(r.values[0])


def output_weight_norm(objective: Objective, theta: Tensor, cache: dict) -> float:
    """‖Aᴷ‖_F: the Frobenius norm of the output layer's weight (the last parameter named ``*.weight``) at θ, a
    function of θ alone (rival predictor: Li, Wang & Li, NeurIPS 2022)."""
    name = [n for n in objective.names if n.endswith("weight")][-1]
    return float(objective.unflatten(theta)[name].double().norm())


#: ``coherence``: above this many rows n·Q of the output Gram matrix, λ_max(Ḡ) by the eigensolver instead
COHERENCE_GRAM_MAX = 4096


def coherence(objective: Objective, theta: Tensor, cache: dict) -> float:
    """Across-example coherence of the Gauss–Newton matrix on the objective's n examples (:func:`measure_point`
    passes the probe's objective): c = λ_max(Ḡ) / ((1/n) Σᵢ λ_max(Gᵢ)) ∈ [1/n, 1], with Gᵢ = JᵢᵀDᵢJᵢ example i's
    GGN (Jᵢ = ∂f(xᵢ)/∂θ, Q × P; Dᵢ = ∇²_z l) and Ḡ = (1/n) Σᵢ Gᵢ. c = 1 when every example's top curvature
    direction is the same, 1/n when the examples' GGNs act on orthogonal subspaces.

    With Sᵢ = Dᵢ^{1/2} and the output Gram blocks Kᵢⱼ = JᵢJⱼᵀ (:func:`_output_gram`): λ_max(Gᵢ) = λ_max(SᵢKᵢᵢSᵢ)
    (Q × Q) and λ_max(Ḡ) = λ_max([SᵢKᵢⱼSⱼ]ᵢⱼ) / n (nQ × nQ: BᵀB and BBᵀ share their nonzero spectrum, B's rows
    SᵢJᵢ). Cost (MLP): O(K·(nQ)²·width) for the Gram matrix and O((nQ)³) for its eigvalsh, (nQ)² numbers held
    — probe 256, Q = 4, width 128, depth 6: 10⁶ numbers, 0.4 s measured (one thread). Above
    ``COHERENCE_GRAM_MAX`` rows nQ, λ_max(Ḡ) by :func:`eoslib.eigen.top_eigenpairs` on the objective's GGN
    operator (relative residual 10⁻⁴, certificate in ``cache["certificates"]["coherence"]``) and only the Kᵢᵢ
    are formed. NaN when every Gᵢ = 0."""
    import torch

    from ..eigen import top_eigenpairs

    S = _loss_hessian_roots(objective, theta)
    n, Q = S.shape[:2]
    if n * Q <= COHERENCE_GRAM_MAX:
        B = (S @ _output_gram(objective, theta, True).reshape(n, Q, n * Q)).reshape(n * Q, n, Q)
        B = torch.einsum("mjc,jcd->mjd", B, S).reshape(n * Q, n * Q)
        top = float(_eigvalsh(B)[-1]) / n
        blocks = B.reshape(n, Q, n, Q).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
    else:
        r = top_eigenpairs(objective.hvp_operator(theta, "ggn"), objective.P, 1, tol=1e-4, device=theta.device)
        cache.setdefault("certificates", {})["coherence"] = r.certificate()
        top, blocks = float(r.values[0]), S @ _output_gram(objective, theta, False) @ S
    mean = float(_eigvalsh(blocks)[:, -1].mean())
    return top / mean if mean > 0 else float("nan")


def _eigvalsh(M: Tensor) -> Tensor:
    """Eigenvalues (ascending) of the symmetric part of M (batched), float64."""
    import torch

    M = M.double()
    return torch.linalg.eigvalsh((M + M.mT) / 2)


def _loss_hessian_roots(objective: Objective, theta: Tensor) -> Tensor:
    """Sᵢ = Dᵢ^{1/2} (n × Q × Q, float64) for Dᵢ = ∇²_z l(f(xᵢ), yᵢ), from the loss's ``hessian_vp`` on the unit
    vectors (Dᵢ is PSD: negative rounding is clipped)."""
    import torch

    with torch.no_grad():
        z = objective.outputs(theta.detach()).double()
    n, Q = z.shape
    E = torch.eye(Q, dtype=z.dtype, device=z.device)[:, None, :].expand(Q, n, Q)
    D = objective.criterion.hessian_vp(z, objective.y, E).permute(1, 2, 0)  # D[i, :, m] = Dᵢ e_m
    w, V = torch.linalg.eigh((D + D.mT) / 2)
    return (V * w.clamp_min(0).sqrt()[:, None, :]) @ V.mT


def _output_gram(objective: Objective, theta: Tensor, full: bool) -> Tensor:
    """The output Gram (NTK) blocks Kᵢⱼ = JᵢJⱼᵀ, Jᵢ = ∂f(xᵢ)/∂θ: n × Q × n × Q (``full``) or only Kᵢᵢ (n × Q × Q),
    float64. MLP: Kᵢⱼ = Σₖ Pₖ(xᵢ)Pₖ(xⱼ)ᵀ (xᵢᵏ⁻¹·xⱼᵏ⁻¹ + [layer k has a bias]) — layer k's weight and bias
    blocks, Pₖ = ∂f/∂x̂ᵏ (``jacobians.chain_from_top``), xᵏ⁻¹ its input; other networks: the dense Jacobian of the
    outputs by ``torch.func.jacrev`` (n·Q·P numbers)."""
    import torch

    from ..alignment import is_mlp
    from ..jacobians import chain_from_top, mlp_parts, mlp_pass

    with torch.no_grad():
        if is_mlp(objective.model):
            params = {k: v.double() for k, v in objective.unflatten(theta.detach()).items()}
            p = mlp_pass(objective.model, objective.X.double(), params)
            bias = [float(lin.bias is not None) for lin in mlp_parts(objective.model)[0]]
            terms = zip(list(chain_from_top(p))[::-1], p.inputs, bias)
            if not full:
                return sum(P @ P.mT * ((x * x).sum(1) + c)[:, None, None] for P, x, c in terms)
            n, Q = p.inputs[0].shape[0], p.weights[-1].shape[0]
            return sum((P.reshape(n * Q, -1) @ P.reshape(n * Q, -1).T).reshape(n, Q, n, Q)
                       * (x @ x.T + c)[:, None, :, None] for P, x, c in terms)
    J = torch.func.jacrev(objective.outputs)(theta.detach()).double()  # n × Q × P
    return torch.einsum("iap,jbp->iajb", J, J) if full else J @ J.mT


# ---------------------------------------------------------------------------------------------- derived


def one_minus_alpha(row: Mapping, init: Mapping) -> float:
    return 1.0 - row["alpha_mean"]


def alpha_growth(row: Mapping, init: Mapping) -> float:
    """ᾱ at this point over ᾱ at θ₀."""
    a0 = init.get("alpha_mean", np.nan)
    return row["alpha_mean"] / a0 if a0 and np.isfinite(a0) else np.nan


# ---------------------------------------------------------------------------------------------- evaluation


def measure_point(objective, theta, names: Iterable[str], probe=None, seed: int = 0, init: Mapping | None = None,
                  cache: dict | None = None) -> dict[str, float]:
    """The measures ``names`` (and what they require) at θ. ``probe``/``seed``: the fixed probe subset for
    alignment measures (:func:`eoslib.alignment.probe_subset`), which also get the probe's labels (the task
    statistics), and for the curvature measures the catalog marks ``probe`` (they get the probe's objective,
    :func:`probe_objective`); ``init``: the measures at θ₀ (for derived ones; None means this point is θ₀);
    ``cache``: state carried between calls. Every curvature measure ``n``
    that leaves a certificate in ``cache["certificates"][n]`` gets the columns ``n_converged`` and
    ``n_residual`` (max relative residual) beside its value."""
    names = closure(names)
    cache = {} if cache is None else cache
    row: dict[str, float] = {}
    srcs = {source(n) for n in names}
    if "alignment" in srcs:
        from ..alignment import probe_subset

        X, y = probe_subset(objective.X, probe, seed), probe_subset(objective.y, probe, seed)
        stats = probe_stats(objective.to_model(theta), X, y, objective.criterion)
        row |= {n: MEASURES[n](stats) for n in names if source(n) == "alignment"}
    sub = None  # the probe's objective, built once for the measures evaluated on the probe
    for n in names:
        src = source(n)
        if src == "curvature":
            if on_probe(n) and sub is None:
                sub = probe_objective(objective, probe, seed)
            row[n] = MEASURES[n](sub if on_probe(n) else objective, theta, cache)
            cert = cache.get("certificates", {}).pop(n, None)
            if cert is not None:
                row |= {f"{n}_converged": cert["converged"], f"{n}_residual": cert["residual"]}
        elif src == "derived":
            row[n] = MEASURES[n](row, row if init is None else init)
    return row
