"""Where the sharpness lives: the top of ∇²L, G and H, layer shares of λ_max(G), and the block bounds.

Notation (paper-notes §2): ∇²L = G + H; layer k's parameter block is (Aᵏ, bᵏ). With w the unit top
eigenvector of G and w_k its block on layer k, layer k's share of λ_max(G) is ‖w_k‖² (shares ≥ 0, Σ = 1);
equivalently u_ᵀ K_k u / λ for the Gram/NTK split K = Σ_k K_k. The diagonal blocks G_kk satisfy
max_k λ_max(G_kk) ≤ λ_max(G) ≤ Σ_k λ_max(G_kk), and for an MLP
λ_max(G_kk) ≤ (1/N) Σ_i ‖D_i‖ ‖P_k(x_i)‖² (‖x_i^{k−1}‖² + 1), with P_k = ∂f/∂x̂ᵏ = Jᴷ⁻¹⋯Jᵏ.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .eigen import EigenResult, top_eigenpairs
from .objective import Objective

OPERATORS = ("hessian", "ggn", "residual")


def layer_blocks(objective: Objective) -> dict[str, list[slice]]:
    """Slices of θ grouped by the module that owns them (one entry per Linear/Conv layer, in order)."""
    blocks: dict[str, list[slice]] = {}
    for name, sl in objective.param_slices().items():
        blocks.setdefault(name.rsplit(".", 1)[0], []).append(sl)
    return blocks


def top_curvature(
    objective: Objective,
    theta: Tensor,
    k: int = 1,
    which: tuple[str, ...] = OPERATORS,
    tol: float = 1e-4,
    v0: dict[str, Tensor] | None = None,
) -> dict[str, EigenResult]:
    """Top-k (largest algebraic) eigenpairs of ∇²L (``hessian``), G (``ggn``) and H (``residual``) at θ."""
    out = {}
    for name in which:
        if name not in OPERATORS:
            raise ValueError(f"unknown operator {name!r}; choose from {OPERATORS}")
        out[name] = top_eigenpairs(objective.hvp_operator(theta, name), objective.P, k, tol=tol,
                                   v0=None if v0 is None else v0.get(name), device=theta.device)
    return out


def shares_of(objective: Objective, w: Tensor) -> Tensor:
    """‖w_k‖² / ‖w‖² for each layer block k of a vector w (float64, sums to 1)."""
    w = w.reshape(-1).double()
    sq = torch.stack([sum(w[s].pow(2).sum() for s in sl) for sl in layer_blocks(objective).values()])
    return sq / sq.sum()


def layer_shares(objective: Objective, theta: Tensor, tol: float = 1e-6, v0: Tensor | None = None) -> Tensor:
    """Layer k's share of λ_max(G): ‖w_k‖² for the unit top eigenvector w of G. One value per layer, Σ = 1."""
    r = top_eigenpairs(objective.hvp_operator(theta, "ggn"), objective.P, 1, v0=v0, tol=tol, device=theta.device)
    return shares_of(objective, r.vectors[:, 0])


@dataclass(frozen=True)
class BlockBounds:
    """λ_max(G_kk) per layer with the bounds max_k λ_max(G_kk) ≤ λ_max(G) ≤ Σ_k λ_max(G_kk)."""

    block_lams: Tensor
    ggn_lam: float

    @property
    def lower(self) -> float:
        return float(self.block_lams.max())

    @property
    def upper(self) -> float:
        return float(self.block_lams.sum())


def block_bounds(objective: Objective, theta: Tensor, tol: float = 1e-6) -> BlockBounds:
    """λ_max of each diagonal block G_kk (G restricted to layer k's parameters) and λ_max(G)."""
    G = objective.hvp_operator(theta, "ggn")
    lams = []
    for slices in layer_blocks(objective).values():
        idx = torch.cat([torch.arange(s.start, s.stop) for s in slices]).to(theta.device)

        def Gkk(V: Tensor, idx: Tensor = idx) -> Tensor:
            full = torch.zeros(objective.P, V.shape[1], dtype=V.dtype, device=V.device)
            full[idx] = V
            return G(full)[idx]

        lams.append(top_eigenpairs(Gkk, len(idx), 1, tol=tol, device=theta.device).values[0])
    lam = top_eigenpairs(G, objective.P, 1, tol=tol, device=theta.device).values[0]
    return BlockBounds(torch.stack(lams), float(lam))


def _criterion_norms(objective: Objective, theta: Tensor) -> Tensor:
    """‖D_i‖₂ per example (float64), from the objective's loss (:meth:`eoslib.losses.Loss.hessian_norms`)."""
    with torch.no_grad():
        return objective.criterion.hessian_norms(objective.outputs(theta).double(), objective.y)


def per_example_bound(objective: Objective, theta: Tensor) -> Tensor:
    """For an MLP, the bound (1/N) Σ_i ‖D_i‖ ‖P_k(x_i)‖² (‖x_i^{k−1}‖² + 1) ≥ λ_max(G_kk), one per layer k = 1..K.

    In float64. P_k from ``jacobians.chain_from_top`` (Pᴷ = I, P_k = P_{k+1} Jᵏ) and x^{k−1} (the input of
    layer k) from the same forward pass ``jacobians.mlp_pass`` at the parameters ``objective.unflatten(θ)``."""
    from .jacobians import chain_from_top, mlp_pass

    params = {name: t.double() for name, t in objective.unflatten(theta).items()}
    with torch.no_grad():
        p = mlp_pass(objective.model, objective.X.double(), params)
        Dn = _criterion_norms(objective, theta)
        gains = [torch.linalg.matrix_norm(P, ord=2) for P in chain_from_top(p)][::-1]  # ‖P_1‖, …, ‖P_K‖ = 1
        return torch.stack([(Dn * g.pow(2) * (x.pow(2).sum(1) + 1)).mean() for g, x in zip(gains, p.inputs)])
