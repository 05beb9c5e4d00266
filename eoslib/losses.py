"""Per-example losses l(z, y) of a network output z ∈ R^Q and an integer label y, one registered class each.

The training loss is L(θ) = (1/N) Σ_i l(f(x_i, θ), y_i) (see :mod:`eoslib.objective`). Its Gauss–Newton part
G = (1/N) Σ_i J_iᵀ D_i J_i needs the *criterion Hessian* D_i = ∇²_z l(z_i, y_i) (Q × Q, positive semi-definite
for the losses here), and the exponential Euler step needs the number of outlier eigenvalues of ∇²L, which is
rank(D_i) (paper-notes §2). A :class:`Loss` supplies exactly these pieces:

========================  ======================================================================
``name``, ``label``       registry name (``params.yaml``) and short label for figures ("CE")
``convention``            the formula, for figure footnotes next to a sharpness value
``value_sum(z, y)``       Σ_i l(z_i, y_i) over the rows of z (n × Q)
``hessian_vp(z, y, U)``   rows D_i U_i; U is n × Q or carries a leading block dimension (m × n × Q)
``hessian_norms(z, y)``   ‖D_i‖₂ per row (float64)
``stiff_dim(Q)``          rank(D_i) = number of outlier Hessian eigenvalues (Q for MSE, Q − 1 for CE)
========================  ======================================================================

Every method is a pure tensor function (differentiable, usable under ``torch.func`` transforms, on any device).
A new loss is one subclass of :class:`Loss` decorated with :func:`register_loss`; ``Objective(..., loss=name)``
and the ``loss:`` key of ``params.yaml`` then find it by name in :data:`LOSSES`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, TypeVar

import torch
from torch import Tensor

from .registry import Registry

#: name → loss class; ``LOSSES[name]()`` builds the loss, ``LOSSES.label(name)`` is its figure label and
#: ``LOSSES.entry(name).meta["convention"]`` its footnote text
LOSSES: Registry[type] = Registry("loss")

L = TypeVar("L", bound=type)


class Loss(ABC):
    """A per-example loss l(z, y), z ∈ R^Q (one row of the network output), y ∈ {0, …, Q − 1}."""

    name: ClassVar[str]
    label: ClassVar[str]
    convention: ClassVar[str]

    @abstractmethod
    def value_sum(self, z: Tensor, y: Tensor) -> Tensor:
        """Σ_i l(z_i, y_i) over the rows of z (n × Q) with labels y (n), as a 0-dim tensor."""

    @abstractmethod
    def hessian_vp(self, z: Tensor, y: Tensor, U: Tensor) -> Tensor:
        """D_i U_i for every row i, D_i = ∇²_z l(z_i, y_i); U is n × Q or m × n × Q (a block of m), same shape out."""

    @abstractmethod
    def hessian_norms(self, z: Tensor, y: Tensor) -> Tensor:
        """‖D_i‖₂ = λ_max(D_i) per row (D_i is PSD), float64, length n."""

    @abstractmethod
    def stiff_dim(self, Q: int) -> int:
        """rank(D_i) for Q outputs: the number of outlier eigenvalues at the top of the Hessian spectrum."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def register_loss(cls: L | None = None, *, registry: Registry = LOSSES) -> L | Callable[[L], L]:
    """Class decorator: register a :class:`Loss` subclass under its ``name`` (label and convention from the class).

    ``@register_loss`` adds to :data:`LOSSES`; ``@register_loss(registry=other)`` to another registry."""

    def deco(c: L) -> L:
        if not (isinstance(c, type) and issubclass(c, Loss)):
            raise TypeError(f"register_loss takes a subclass of eoslib.losses.Loss (got {c!r})")
        registry.add(c.name, c, label=c.label, convention=c.convention)
        return c

    return deco if cls is None else deco(cls)


def get_loss(spec: str | Loss, registry: Registry = LOSSES) -> Loss:
    """The loss object for a registered name (``"ce"``, ``"mse"``, …) or a :class:`Loss` instance (returned as is)."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str):
        return registry[spec]()  # an unknown name raises UnknownName listing the registered ones
    raise TypeError(f"loss must be a registered name {registry.names()} or an eoslib.losses.Loss instance "
                    f"(got {type(spec).__name__})")


def _onehot(y: Tensor, Q: int, dtype: torch.dtype) -> Tensor:
    """e_{y_i} as rows (n × Q), by comparison (no data-dependent checks: works on any device and under vmap)."""
    return (torch.arange(Q, device=y.device) == y[:, None]).to(dtype)


@register_loss
class CrossEntropy(Loss):
    """Softmax cross-entropy l(z, y) = log Σ_q e^{z_q} − z_y.

    With p = softmax(z): ∇_z l = p − e_y and D = ∇²_z l = diag(p) − p pᵀ, PSD with D·1 = 0, so rank D = Q − 1
    (all p_q > 0) and λ_max(D) ≤ ½."""

    name = "ce"
    label = "CE"
    convention = "CE: softmax cross-entropy, l(z, y) = log Σ_q exp(z_q) − z_y"

    def value_sum(self, z: Tensor, y: Tensor) -> Tensor:
        return torch.nn.functional.cross_entropy(z, y, reduction="sum")

    def hessian_vp(self, z: Tensor, y: Tensor, U: Tensor) -> Tensor:
        """(diag(p) − ppᵀ) u = p ⊙ u − p (pᵀu), row by row (broadcast over a leading block dimension)."""
        p = torch.softmax(z, dim=-1)
        return p * U - p * (p * U).sum(-1, keepdim=True)

    def hessian_norms(self, z: Tensor, y: Tensor) -> Tensor:
        p = torch.softmax(z.double(), dim=-1)
        return torch.linalg.eigvalsh(torch.diag_embed(p) - p[:, :, None] * p[:, None, :])[:, -1]

    def stiff_dim(self, Q: int) -> int:
        return Q - 1


@register_loss
class MeanSquaredError(Loss):
    """Squared error l(z, y) = ½‖z − e_y‖² (Cohen et al. 2021's convention: no 1/Q, a factor ½).

    ∇_z l = z − e_y and D = I, so rank D = Q and ‖D‖₂ = 1."""

    name = "mse"
    label = "MSE"
    convention = "MSE: l(z, y) = ½‖z − onehot(y)‖² (Cohen et al. 2021)"

    def value_sum(self, z: Tensor, y: Tensor) -> Tensor:
        return 0.5 * (z - _onehot(y, z.shape[-1], z.dtype)).pow(2).sum()

    def hessian_vp(self, z: Tensor, y: Tensor, U: Tensor) -> Tensor:
        """D = I: returns U itself (not a copy)."""
        return U

    def hessian_norms(self, z: Tensor, y: Tensor) -> Tensor:
        return torch.ones(z.shape[0], dtype=torch.float64, device=z.device)

    def stiff_dim(self, Q: int) -> int:
        return Q
