"""Layerwise Jacobians of networks cut at their preactivations (paper-notes §2).

MLP notation: x⁰ = x; x̂ᵏ = Aᵏ xᵏ⁻¹ + bᵏ (k = 1..K); xᵏ = σ(x̂ᵏ) for k < K; f = x̂ᴷ.
Layerwise Jacobian Jᵏ = ∂x̂ᵏ⁺¹/∂x̂ᵏ = Aᵏ⁺¹ diag(σ′(x̂ᵏ)), k = 1..K−1.
Chain to the output Pₖ = ∂f/∂x̂ᵏ = Jᴷ⁻¹ ⋯ Jᵏ (Pᴷ = I).

Two paths:

* **closed form** (MLPs only: ``Sequential(Linear, σ, …, Linear)`` with elementwise σ): per-example
  matrices built from one forward pass batched over the examples (``mlp_pass``: weights, layer inputs and
  σ′ by forward-mode AD), and the chain Pₖ by ``chain_from_top`` — the single implementation of the
  recursion, used by ``alignment`` and ``curvature`` as well;
* **matrix-free** (any ``nn.Sequential`` cut at the outputs of its Linear/Conv modules, e.g. ``models.cnn``,
  whose "preactivations" are the conv/linear outputs): per-example JVP/VJP with ``torch.func`` under
  ``vmap`` over examples, and spectral norms by batched power iteration on JᵀJ — no per-example matrix is
  ever formed.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import jvp, vjp, vmap

ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ELU, nn.Tanh, nn.ReLU, nn.GELU, nn.Softplus, nn.Sigmoid, nn.LeakyReLU, nn.SiLU, nn.CELU, nn.SELU,
    nn.Softsign, nn.Mish, nn.Identity,
)
CUT_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

PerExample = Callable[[Tensor], Tensor]


# ----------------------------------------------------------------------------------------------------------
# structure
# ----------------------------------------------------------------------------------------------------------
def mlp_parts(model: nn.Module) -> tuple[list[nn.Linear], list[nn.Module]]:
    """Split ``Sequential(Linear, σ, Linear, σ, …, Linear)`` into ([A¹..Aᴷ] modules, [K−1 activations]).

    Raises a ValueError/TypeError naming the offending module when the model is not such an MLP.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"closed-form Jacobians need an nn.Sequential MLP, got {type(model).__name__}")
    mods = list(model)
    if len(mods) % 2 == 0:
        raise ValueError(
            f"closed-form Jacobians need Sequential(Linear, activation, …, Linear) of odd length; got {len(mods)} "
            "modules (use the matrix-free functions for other networks)"
        )
    for i, m in enumerate(mods):
        want, ok = ("nn.Linear", isinstance(m, nn.Linear)) if i % 2 == 0 else (
            "an elementwise activation", isinstance(m, ELEMENTWISE))
        if not ok:
            raise ValueError(
                f"module {i} is {type(m).__name__}, expected {want}: closed-form Jacobians need "
                "Sequential(Linear, activation, …, Linear) (use the matrix-free functions for other networks)"
            )
    return mods[0::2], mods[1::2]


def cut_indices(model: nn.Module) -> list[int]:
    """Indices of the modules whose outputs are the preactivations x̂¹..x̂ᴷ (the Linear/Conv modules).

    Modules before the first cut are input preprocessing (e.g. ``Unflatten``); modules between cuts must
    be parameter-free (activation, Flatten, …); the last module must be a cut so that f = x̂ᴷ.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"layerwise Jacobians need an nn.Sequential, got {type(model).__name__}")
    mods = list(model)
    idx = [i for i, m in enumerate(mods) if isinstance(m, CUT_MODULES)]
    if not idx:
        raise ValueError("model has no Linear/Conv module to cut at")
    if idx[-1] != len(mods) - 1:
        raise ValueError(
            f"last module is {type(mods[-1]).__name__}; it must be Linear/Conv so that the output f is the "
            "last preactivation x̂ᴷ"
        )
    for i in range(idx[0] + 1, len(mods)):
        if i not in idx and any(True for _ in mods[i].parameters()):
            raise ValueError(
                f"module {i} ({type(mods[i]).__name__}) between cuts has parameters; only Linear/Conv modules "
                "may carry parameters"
            )
    return idx


def preactivations(model: nn.Sequential, X: Tensor) -> list[Tensor]:
    """[x̂¹, …, x̂ᴷ]: the outputs of the Linear/Conv modules in one forward pass (batched, N × …)."""
    cuts = set(cut_indices(model))
    out, h = [], X
    for i, m in enumerate(model):
        h = m(h)
        if i in cuts:
            out.append(h)
    return out


# ----------------------------------------------------------------------------------------------------------
# closed form (MLPs)
# ----------------------------------------------------------------------------------------------------------
def activation_derivative(act: nn.Module, z: Tensor) -> Tensor:
    """σ′(z) for an elementwise σ, same shape as z, in one forward-mode pass: the JVP of σ at z along 1.

    For elementwise σ the Jacobian is diag(σ′(z)), so J·1 = σ′(z). The derivative is PyTorch's own, with
    its branch conventions at kinks and thresholds (ReLU′(0) = 0, ELU′(0) = α, LeakyReLU′(0) = slope,
    Softplus′ = 1 above the threshold) — the same values as autograd's backward, and differentiable again
    (σ″) by autograd and ``torch.func``. Works under ``no_grad``. Cost: the first forward-mode call in a
    process loads PyTorch's JVP decompositions once (≈ 0.2–0.4 s, shared with every other ``torch.func.jvp``).
    """
    return _value_and_slope(act, z)[1]


def _value_and_slope(act: nn.Module, z: Tensor) -> tuple[Tensor, Tensor]:
    """(σ(z), σ′(z)) for an elementwise σ from the same forward-mode pass (see ``activation_derivative``)."""
    return jvp(act, (z,), (torch.ones_like(z),))


class MLPPass(NamedTuple):
    """One forward pass of an MLP, batched over examples: what the closed-form Jacobians are made of."""

    weights: list[Tensor]  # [A¹, …, Aᴷ], Aᵏ of shape outᵏ × inᵏ
    inputs: list[Tensor]  # [x⁰, …, xᴷ⁻¹]: the input of each Linear layer, N × inᵏ (x⁰ = X)
    slopes: list[Tensor]  # [σ′(x̂¹), …, σ′(x̂ᴷ⁻¹)], N × outᵏ


def mlp_pass(model: nn.Sequential, X: Tensor, params: Mapping[str, Tensor] | None = None) -> MLPPass:
    """Weights, layer inputs and activation slopes of an MLP ``Sequential(Linear, σ, …, Linear)`` at X.

    x̂ᵏ = Aᵏ xᵏ⁻¹ + bᵏ, xᵏ = σ(x̂ᵏ) for k < K (the last layer's output f = x̂ᴷ is not needed and not formed).
    ``params`` (name → tensor, names as in ``model.named_parameters()``, e.g. from ``Objective.unflatten(θ)``)
    replaces the model's own parameters, which makes the pass a differentiable function of them.
    """
    lins, acts = mlp_parts(model)
    names = [n for n, _ in model.named_children()][0::2]

    def get(name: str, own: Tensor | None) -> Tensor | None:
        if params is None or own is None:
            return own
        if name not in params:
            raise KeyError(f"params has no {name!r}: pass every parameter of the model (e.g. objective.unflatten(θ))")
        return params[name]

    weights = [get(f"{n}.weight", lin.weight) for n, lin in zip(names, lins)]
    biases = [get(f"{n}.bias", lin.bias) for n, lin in zip(names, lins)]
    inputs, slopes, h = [X], [], X
    for W, b, act in zip(weights, biases, acts):
        h, d = _value_and_slope(act, F.linear(h, W, b))
        inputs.append(h)
        slopes.append(d)
    return MLPPass(weights, inputs, slopes)


def chain_from_top(p: MLPPass) -> Iterator[Tensor]:
    """Pᴷ = I, Pᴷ⁻¹, …, P₁ (each N × Q × outᵏ), one at a time from the output, by the recursion
    Pₖ = Pₖ₊₁ Jᵏ = (Pₖ₊₁ Aᵏ⁺¹) diag(σ′(x̂ᵏ)).

    The one implementation of the chain (``chain_jacobians``, ``alignment``, ``curvature`` use it). A
    generator: a caller that keeps only what it needs of each Pₖ (its norm, or just P₁) holds one Pₖ at a
    time. Pᴷ is an expanded view of I (no memory).
    """
    W = p.weights[-1]
    n, q = p.inputs[0].shape[0], W.shape[0]
    yield torch.eye(q, dtype=W.dtype, device=W.device).expand(n, q, q)
    P = None
    for A, d in zip(reversed(p.weights[1:]), reversed(p.slopes)):
        P = (A if P is None else P @ A) * d[:, None, :]
        yield P


def layerwise_jacobians(model: nn.Sequential, X: Tensor) -> list[Tensor]:
    """[J¹, …, Jᴷ⁻¹] with Jᵏ = Aᵏ⁺¹ diag(σ′(x̂ᵏ(xᵢ))), each N × outᵏ⁺¹ × outᵏ, for an MLP.

    Built from one batched forward pass: Jᵏ[i] = Aᵏ⁺¹ * σ′(x̂ᵏᵢ) broadcast over columns.
    """
    p = mlp_pass(model, X)
    return [A * d[:, None, :] for A, d in zip(p.weights[1:], p.slopes)]


def chain_jacobians(model: nn.Sequential, X: Tensor) -> list[Tensor]:
    """[P₁, …, Pᴷ] with Pₖ = ∂f/∂x̂ᵏ = Jᴷ⁻¹ ⋯ Jᵏ (N × Q × outᵏ; Pᴷ = I), for an MLP (``chain_from_top``)."""
    return list(chain_from_top(mlp_pass(model, X)))[::-1]


def chain_jacobian(model: nn.Sequential, X: Tensor, k: int = 1) -> Tensor:
    """Pₖ = ∂f/∂x̂ᵏ = Jᴷ⁻¹ ⋯ Jᵏ (N × Q × outᵏ); by default P₁ = Jᴷ⁻¹ ⋯ J¹."""
    Ps = chain_jacobians(model, X)
    if not 1 <= k <= len(Ps):
        raise ValueError(f"k must be in 1..K={len(Ps)}, got {k}")
    return Ps[k - 1]


# ----------------------------------------------------------------------------------------------------------
# matrix-free (any cut nn.Sequential)
# ----------------------------------------------------------------------------------------------------------
def _per_example(seq: nn.Module) -> PerExample:
    """Apply a batched module to one example (adds and removes the batch dimension, so Flatten etc. work)."""
    return lambda z: seq(z.unsqueeze(0)).squeeze(0)


def layer_map(model: nn.Sequential, k: int) -> PerExample:
    """The per-example map x̂ᵏ ↦ x̂ᵏ⁺¹ (k = 1..K−1): activation (+ Flatten etc.) and the next Linear/Conv."""
    idx = cut_indices(model)
    if not 1 <= k <= len(idx) - 1:
        raise ValueError(f"layer k must be in 1..K−1={len(idx) - 1}, got {k}")
    return _per_example(model[idx[k - 1] + 1: idx[k] + 1])


def chain_map(model: nn.Sequential, k: int = 1) -> PerExample:
    """The per-example map x̂ᵏ ↦ f (k = 1..K; identity for k = K), whose Jacobian is Pₖ.

    k = 0 is the whole network x ↦ f (from the input, x̂⁰ := x), whose Jacobian is ∂f/∂x = P₁ · ∂x̂¹/∂x.
    """
    idx = cut_indices(model)
    if not 0 <= k <= len(idx):
        raise ValueError(f"k must be in 0..K={len(idx)}, got {k}")
    return _per_example(model if k == 0 else model[idx[k - 1] + 1:])


def input_map(model: nn.Sequential) -> PerExample:
    """The per-example map x ↦ x̂¹ (input preprocessing such as ``Unflatten``, then the first Linear/Conv),
    whose Jacobian ∂x̂¹/∂x is the first layer's linear map A¹ (as an operator on the flattened input)."""
    return _per_example(model[: cut_indices(model)[0] + 1])


def per_example_jvp(fn: PerExample, Z: Tensor, V: Tensor) -> Tensor:
    """Rows J(zᵢ) vᵢ with J = ∂fn/∂z: ``vmap`` over examples of ``torch.func.jvp``."""
    return vmap(lambda z, v: jvp(fn, (z,), (v,))[1])(Z, V)


def per_example_vjp(fn: PerExample, Z: Tensor, W: Tensor) -> Tensor:
    """Rows J(zᵢ)ᵀ wᵢ (i.e. wᵢᵀ J(zᵢ)) with J = ∂fn/∂z: ``vmap`` over examples of ``torch.func.vjp``."""
    return vmap(lambda z, w: vjp(fn, z)[1](w)[0])(Z, W)


def _row_norms(T: Tensor) -> Tensor:
    """Euclidean norm of each example (row) of an N × … tensor, shaped N × 1 × … 1 for broadcasting."""
    return T.flatten(1).norm(dim=1).reshape((-1,) + (1,) * (T.dim() - 1))


class PowerResult(NamedTuple):
    """Per-example result of power iteration on M = JᵀJ."""

    norm: Tensor  # (N,) σ₁ estimate √θ, θ = ‖Jv‖² (Rayleigh quotient, so σ₁ estimate ≤ ‖J‖₂)
    right: Tensor  # (N, *in) unit top right singular vector estimate v
    left: Tensor  # (N, *out) unit top left singular vector estimate Jv/‖Jv‖
    residual: Tensor  # (N,) relative residual ‖Mv − θv‖/θ
    iterations: int


@torch.no_grad()
def spectral_norm_matfree(
    fn: PerExample, Z: Tensor, tol: float | None = None, max_iter: int = 1000, seed: int = 0,
    criterion: str = "residual",
) -> PowerResult:
    """Per-example ‖J(zᵢ)‖₂, J = ∂fn/∂z, by batched power iteration on M = JᵀJ (seeded Gaussian start).

    Each step: w = Jv (JVP), m = Jᵀw (VJP), θ = ‖w‖² (Rayleigh quotient of unit v), r = ‖m − θv‖/θ,
    v ← m/‖m‖; ``tol`` defaults to √eps of the dtype (1.5e-8 in float64, 3.5e-4 in float32).
    ``criterion="residual"`` stops once every example has r ≤ tol. Since M is symmetric PSD, θ ≤ λ_max(M)
    and some eigenvalue lies within r·θ of θ; once the iteration has reached the top eigenvalue (almost
    sure from a random start) √θ is a lower bound on ‖J‖₂ with relative error ≤ r/2 + O(r²).
    ``criterion="change"`` stops once |σₜ − σₜ₋₁| ≤ tol·σₜ for every example: fewer steps (σ converges
    twice as fast as v) but no error bound — slow convergence can pass for convergence.
    Warns if ``max_iter`` steps do not suffice. Runs under ``no_grad``: results carry no autograd graph.
    """
    if criterion not in ("residual", "change"):
        raise ValueError(f"criterion must be 'residual' or 'change', got {criterion!r}")
    tol = math.sqrt(torch.finfo(Z.dtype).eps) if tol is None else tol
    tiny = torch.finfo(Z.dtype).tiny
    gen = torch.Generator(device=Z.device).manual_seed(seed)
    V = torch.randn(Z.shape, generator=gen, dtype=Z.dtype, device=Z.device)
    V = V / _row_norms(V)
    prev = torch.full(Z.shape[:1], math.inf, dtype=Z.dtype, device=Z.device)
    for it in range(1, max_iter + 1):
        W = per_example_jvp(fn, Z, V)
        M = per_example_vjp(fn, Z, W)
        theta = W.flatten(1).pow(2).sum(1)
        sigma = theta.sqrt()
        res = _row_norms(M - theta.reshape(_row_norms(V).shape) * V).flatten() / theta.clamp_min(tiny)
        done = res <= tol if criterion == "residual" else (sigma - prev).abs() <= tol * sigma
        if bool(done.all()) or it == max_iter:
            break
        prev, V = sigma, M / _row_norms(M).clamp_min(tiny)
    if not bool(done.all()):
        warnings.warn(
            f"power iteration: {int((~done).sum())} of {len(done)} examples not converged ({criterion} ≤ "
            f"{tol:g}) after {max_iter} steps (max residual {float(res.max()):.3g})", RuntimeWarning, stacklevel=2,
        )
    return PowerResult(sigma, V, W / _row_norms(W).clamp_min(tiny), res, it)


def layer_norms_matfree(model: nn.Sequential, X: Tensor, **power) -> Tensor:
    """N × (K−1) matrix of ‖Jᵏ(xᵢ)‖₂ (column k−1 = layer k) for any cut Sequential, matrix-free.

    ``power``: tol, max_iter, seed, criterion of ``spectral_norm_matfree``.
    """
    with torch.no_grad():
        zs = preactivations(model, X)
    cols = [spectral_norm_matfree(layer_map(model, k), zs[k - 1], **power).norm for k in range(1, len(zs))]
    return torch.stack(cols, dim=1) if cols else X.new_zeros(X.shape[0], 0)


def chain_norm_matfree(model: nn.Sequential, X: Tensor, k: int = 1, **power) -> Tensor:
    """(N,) vector of ‖Pₖ(xᵢ)‖₂ = ‖∂f/∂x̂ᵏ‖₂ (default P₁; k = 0: the input gain ‖∂f/∂x‖₂) for any cut
    Sequential, matrix-free.

    ``power``: tol, max_iter, seed, criterion of ``spectral_norm_matfree``.
    """
    fn = chain_map(model, k)
    with torch.no_grad():
        z = X if k == 0 else preactivations(model, X)[k - 1]
    return spectral_norm_matfree(fn, z, **power).norm


#: modules that may precede the first cut without making x ↦ x̂¹ non-affine (pure reshapes)
RESHAPES: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Unflatten, nn.Identity)


def input_layer_norm_matfree(model: nn.Sequential, X: Tensor, **power) -> Tensor:
    """(N,) vector of ‖∂x̂¹/∂x (xᵢ)‖₂, the norm of the first Linear/Conv map on the (flattened) input.

    When only reshapes (``RESHAPES``) precede the first cut the map is affine, so its Jacobian A¹ is the
    same for every input of X's shape: one power iteration on the first example, repeated N times.
    Otherwise (nonlinear preprocessing) a power iteration per example. ``power`` as in
    ``spectral_norm_matfree``.
    """
    idx = cut_indices(model)
    affine = all(isinstance(m, RESHAPES) for m in list(model)[: idx[0]])
    Z = X[:1] if affine else X
    norm = spectral_norm_matfree(input_map(model), Z, **power).norm
    return norm.expand(X.shape[0]) if affine else norm


def layerwise_jacobians_dense(model: nn.Sequential, X: Tensor) -> list[Tensor]:
    """[J¹..Jᴷ⁻¹] for any cut Sequential as dense N × numel(x̂ᵏ⁺¹) × numel(x̂ᵏ) matrices (``vmap(jacrev)``).

    An oracle for small networks; memory N·numel², so do not use it on real widths.
    """
    from torch.func import jacrev

    with torch.no_grad():
        zs = preactivations(model, X)
    out = []
    for k in range(1, len(zs)):
        J = vmap(jacrev(layer_map(model, k)))(zs[k - 1])
        out.append(J.reshape(X.shape[0], zs[k][0].numel(), zs[k - 1][0].numel()))
    return out
