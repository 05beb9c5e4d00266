"""The full-batch training objective over a flat parameter vector θ ∈ R^P, with curvature products.

L(θ) = (1/N) Σ_i l(f(x_i, θ), y_i) with a per-example loss l from :mod:`eoslib.losses` (MSE ½‖z − onehot(y)‖²,
softmax cross-entropy CE, or any registered :class:`~eoslib.losses.Loss`).
∇²L = G + H, G = (1/N) Σ_i J_iᵀ D_i J_i (Gauss–Newton, D_i = ∇²_z l), H = ∇²L − G (residual).
All products act on a block V (P × m) of vectors and return P × m (a single vector P is accepted too).
The data stay in memory; with ``chunk_size`` they are processed in slices whose sums are identical in exact
arithmetic to one pass (so results agree to rounding).

Two kinds of methods:

* **Functional** — :meth:`Objective.loss` and :meth:`Objective.outputs` are pure, differentiable functions of θ:
  ``torch.func.grad(objective.loss)(θ)``, ``torch.func.hessian(objective.loss)(θ)``,
  ``torch.func.vmap(objective.loss)(Θ)``, ``torch.func.jacrev(objective.outputs)(θ)`` and plain autograd through
  them all give the true derivatives.
* **Numerical** — :meth:`~Objective.loss_and_grad`, :meth:`~Objective.grad`, :meth:`~Objective.hvp`,
  :meth:`~Objective.ggn_vp`, :meth:`~Objective.residual_vp` compute derivatives *internally* on a detached θ
  (that is what makes them fast: cached gradient graphs, double-backward). Their results are values, not
  functions of θ that can be differentiated again, so they refuse (:class:`NotDifferentiableError`) a θ that
  requires grad or is being transformed by ``torch.func`` instead of silently returning derivatives of zero.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from .losses import Loss, get_loss

HVP_METHODS = ("backward", "batched", "jvp")


class NotDifferentiableError(RuntimeError):
    """A numerical (detaching) method of :class:`Objective` was asked for a result to be differentiated."""


# torch.func has no public test for "this tensor is being transformed"; every torch ≥ 2.0 has this one. Without
# it, θ.requires_grad still catches the reverse-mode transforms (grad, jacrev, hessian), the silent-zero ones.
_is_functorch_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)


def _is_transformed(t: Tensor) -> bool:
    """θ requires grad (autograd) or is wrapped by a torch.func transform (grad/jacrev/jvp/jacfwd/vmap)."""
    return t.requires_grad or _is_functorch_wrapped(t)


class Objective:
    """Full-batch loss of ``model`` on (X, y) as a function of flat parameters θ.

    The model is never mutated: its parameters are copied into ``theta0`` and every evaluation uses
    ``torch.func.functional_call``. Models with buffers (e.g. BatchNorm statistics) are rejected.

    ``loss``: a name registered in :data:`eoslib.losses.LOSSES` (``"ce"``, ``"mse"``) or a
    :class:`~eoslib.losses.Loss` instance; the object is ``objective.criterion`` and its name
    ``objective.loss_name``. ``y`` holds integer labels in 0..Q−1.

    ``hvp_method``: ``"backward"`` (gradient graph built once per chunk, then one double-backward per column;
    measured fastest on CPU for the MLPs here, see ``benchmarks/``), ``"batched"`` (the same graph, all columns
    in one ``is_grads_batched`` double-backward) or ``"jvp"`` (forward-over-reverse under ``vmap``).

    ``cache_graph``: keep the gradient's autograd graph of the latest θ, so that repeated ``hvp(θ, ·)`` calls
    at the same θ (the block products of one eigen-solve) and ``loss_and_grad(θ, keep_graph=True)`` build it
    once. The cache is keyed on the identity and in-place version of the θ tensor, holds one θ at a time and
    is dropped by :meth:`release_graph`. ``None`` (default): on when the data form a single chunk (with
    ``chunk_size`` set, keeping every chunk's graph would defeat the point of chunking). Results are the same
    with or without it (the same operations on the same graph).
    """

    def __init__(
        self,
        model: nn.Module,
        X: Tensor,
        y: Tensor,
        loss: str | Loss = "ce",
        chunk_size: int | None = None,
        hvp_method: str = "backward",
        cache_graph: bool | None = None,
    ) -> None:
        criterion = get_loss(loss)
        if hvp_method not in HVP_METHODS:
            raise ValueError(f"unknown hvp_method {hvp_method!r}; choose one of {HVP_METHODS}")
        if any(True for _ in model.buffers()):
            raise ValueError("Objective needs a model without buffers (e.g. no BatchNorm running statistics)")
        if X.shape[0] != y.shape[0] or X.shape[0] == 0:
            raise ValueError(f"X and y must have the same, non-zero number of rows (got {X.shape[0]}, {y.shape[0]})")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None (got {chunk_size})")
        self.model = model
        named = [(n, p) for n, p in model.named_parameters()]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.theta0 = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        self.dtype, self.device = self.theta0.dtype, self.theta0.device
        self.X = X.to(self.device, self.dtype)
        self.y = y.to(self.device)
        self.N = X.shape[0]
        self.P = self.theta0.numel()
        self.criterion = criterion
        self.loss_name = criterion.name
        self.chunk_size = chunk_size or self.N
        self.hvp_method = hvp_method
        self.cache_graph = self.chunk_size >= self.N if cache_graph is None else bool(cache_graph)
        self._graph: tuple | None = None  # (weakref to θ, θ._version, [(th, g, loss_sum) per chunk])
        #: work done so far, in full-batch units: gradients, Hessian-vector and GGN-vector products (columns)
        self.counts = {"grad": 0, "hvp": 0, "ggn": 0}
        with torch.no_grad():
            self.Q = self._f(self.theta0, self.X[:1]).shape[1]
        if y.min() < 0 or y.max() >= self.Q:
            raise ValueError(f"labels must lie in 0..{self.Q - 1} for a network with {self.Q} outputs "
                             f"(got {int(y.min())}..{int(y.max())})")

    # ---------------------------------------------------------------- structure
    @property
    def stiff_dim(self) -> int:
        """Number of outlier eigenvalues expected at the top of the spectrum: Q (MSE) or Q − 1 (CE)."""
        return self.criterion.stiff_dim(self.Q)

    def param_slices(self) -> dict[str, slice]:
        """Slice of θ holding each named parameter."""
        out, start = {}, 0
        for name, n in zip(self.names, self.numels):
            out[name] = slice(start, start + n)
            start += n
        return out

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Views of θ shaped as the model's parameters."""
        return {n: t.view(s) for n, t, s in zip(self.names, theta.split(self.numels), self.shapes)}

    def to_model(self, theta: Tensor) -> nn.Module:
        """A deep copy of the model holding parameters θ (the original is untouched)."""
        import copy

        m = copy.deepcopy(self.model)
        with torch.no_grad():
            for p, t in zip(m.parameters(), theta.split(self.numels)):
                p.copy_(t.view(p.shape))
        return m

    # ---------------------------------------------------------------- evaluation
    def _f(self, theta: Tensor, x: Tensor) -> Tensor:
        return functional_call(self.model, self.unflatten(theta), (x,))

    def _chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        for s in range(0, self.N, self.chunk_size):
            sl = slice(s, s + self.chunk_size)
            yield self.X[sl], self.y[sl]

    def _chunk_loss(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Σ_i l(f(x_i, θ), y_i) over a chunk."""
        return self.criterion.value_sum(self._f(theta, x), y)

    def outputs(self, theta: Tensor, X: Tensor | None = None) -> Tensor:
        """Network outputs f(x_i, θ), N × Q (on the training set unless X is given).

        A pure, differentiable function of θ (torch.func transforms and autograd see through it); for a θ
        that does not require grad it records no graph, so evaluation costs nothing extra."""
        X = self.X if X is None else X.to(self.device, self.dtype)
        return torch.cat([self._f(theta, X[s : s + self.chunk_size]) for s in range(0, X.shape[0], self.chunk_size)])

    def loss(self, theta: Tensor) -> Tensor:
        """L(θ) = (1/N) Σ_i l(f(x_i, θ), y_i) (0-dim tensor).

        The functional form: a pure, differentiable function of flat θ, so ``torch.func.grad(objective.loss)``,
        ``torch.func.hessian(objective.loss)``, ``torch.func.vmap(objective.loss)`` and autograd give the true
        derivatives (equal to :meth:`grad` and :meth:`hvp` to rounding). For a θ that does not require grad it
        records no graph."""
        return sum(self._chunk_loss(theta, *c) for c in self._chunks()) / self.N

    def _numerical(self, theta: Tensor, method: str) -> None:
        """Refuse a θ whose result would be differentiated: the numerical methods detach θ."""
        if _is_transformed(theta):
            raise NotDifferentiableError(
                f"Objective.{method} computes derivatives internally on a detached θ, so its result cannot be "
                f"differentiated with respect to θ (it would silently be zero), and θ here requires grad or is "
                f"inside a torch.func transform. Differentiate the functional form instead, e.g. "
                f"torch.func.grad(objective.loss), torch.func.hessian(objective.loss), "
                f"torch.func.jacrev(objective.outputs); or pass theta.detach() if you only need the value.")

    def accuracy(self, theta: Tensor) -> float:
        """Fraction of training examples whose arg-max output equals the label."""
        return (self.outputs(theta).argmax(1) == self.y).to(torch.float64).mean().item()

    def loss_and_grad(self, theta: Tensor, keep_graph: bool = False) -> tuple[Tensor, Tensor]:
        """(L(θ), ∇L(θ)).

        ``keep_graph=True`` announces Hessian products at this θ to follow: with the graph cache on (and a
        double-backward ``hvp_method``) the gradient is taken from the cached graph, built once for both.
        Returns values (no graph to θ): see :meth:`loss` for the differentiable form."""
        self._numerical(theta, "loss_and_grad")
        self.counts["grad"] += 1
        if self._uses_graph() and self.cache_graph and (keep_graph or self._cached_graph(theta) is not None):
            total, g = 0.0, torch.zeros_like(theta)
            for _, gc, value in self._grad_graphs(theta):
                g += gc.detach()
                total = total + value
            return total / self.N, g / self.N
        total, g = 0.0, torch.zeros_like(theta)
        for c in self._chunks():
            th = theta.detach().requires_grad_(True)
            value = self._chunk_loss(th, *c)
            g += torch.autograd.grad(value, th)[0]
            total = total + value.detach()
        return total / self.N, g / self.N

    def grad(self, theta: Tensor) -> Tensor:
        """∇L(θ) (a value; ``torch.func.grad(objective.loss)`` is the differentiable form)."""
        self._numerical(theta, "grad")
        return self.loss_and_grad(theta)[1]  # counted there

    # ---------------------------------------------------------------- curvature products
    def hvp(self, theta: Tensor, V: Tensor) -> Tensor:
        """∇²L(θ)·V for V of shape P or P × m."""
        self._numerical(theta, "hvp")
        self.counts["hvp"] += 1 if V.ndim == 1 else V.shape[1]
        if self._uses_graph() and self.cache_graph:
            return self._blockwise(V, lambda W: self._hvp_cached(theta, W))
        return self._blockwise(V, lambda W: self._sum_chunks(W, self._hvp_chunk, theta))

    def _hvp_cached(self, theta: Tensor, V: Tensor) -> Tensor:
        V = V.to(self.dtype)
        out = None
        for th, g, _ in self._grad_graphs(theta):
            r = self._double_backward(th, g, V, keep=True)
            out = r if out is None else out.add_(r)
        return out.div_(self.N)

    def ggn_vp(self, theta: Tensor, V: Tensor) -> Tensor:
        """G·V = (1/N) Σ_i J_iᵀ D_i (J_i V): jvp → criterion Hessian D (``criterion.hessian_vp``) → vjp."""
        self._numerical(theta, "ggn_vp")
        self.counts["ggn"] += 1 if V.ndim == 1 else V.shape[1]
        return self._blockwise(V, lambda W: self._sum_chunks(W, self._ggn_chunk, theta))

    def residual_vp(self, theta: Tensor, V: Tensor) -> Tensor:
        """H·V = ∇²L·V − G·V (the part of the Hessian from the curvature of the network itself)."""
        return self.hvp(theta, V) - self.ggn_vp(theta, V)

    def hvp_operator(self, theta: Tensor, which: str = "hessian") -> Callable[[Tensor], Tensor]:
        """The block matvec V ↦ M·V for M ∈ {hessian: ∇²L, ggn: G, residual: H} at fixed θ."""
        fn = {"hessian": self.hvp, "ggn": self.ggn_vp, "residual": self.residual_vp}[which]
        return lambda V: fn(theta, V)

    @staticmethod
    def _blockwise(V: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        if V.ndim == 1:
            return fn(V[:, None])[:, 0]
        if V.shape[1] == 0:
            return torch.zeros_like(V)
        return fn(V)

    def _sum_chunks(self, V: Tensor, chunk_fn, theta: Tensor) -> Tensor:
        V = V.to(self.dtype)
        out = torch.zeros_like(V)
        for c in self._chunks():
            out += chunk_fn(theta, V, *c)
        return out / self.N

    # ---------------------------------------------------------------- gradient-graph cache
    def _uses_graph(self) -> bool:
        return self.hvp_method in ("backward", "batched")

    def _cached_graph(self, theta: Tensor) -> list | None:
        if self._graph is None:
            return None
        ref, version, graphs = self._graph
        if ref() is theta and version == theta._version:
            return graphs
        return None

    def release_graph(self) -> None:
        """Drop the cached gradient graph (frees its memory; the next product at any θ rebuilds it)."""
        self._graph = None

    def _grad_graphs(self, theta: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per chunk (th, g, loss sum) with g = ∇_th(chunk loss sum) carrying its graph for double-backward."""
        graphs = self._cached_graph(theta)
        if graphs is not None:
            return graphs
        self._graph = None  # free the previous θ's graph before building the next
        graphs = []
        for c in self._chunks():
            th = theta.detach().requires_grad_(True)
            value = self._chunk_loss(th, *c)
            (g,) = torch.autograd.grad(value, th, create_graph=True)
            graphs.append((th, g, value.detach()))
        if self.cache_graph:
            self._graph = (weakref.ref(theta), theta._version, graphs)
        return graphs

    def _double_backward(self, th: Tensor, g: Tensor, V: Tensor, keep: bool) -> Tensor:
        if self.hvp_method == "batched":
            return torch.autograd.grad(g, th, V.T, retain_graph=keep, is_grads_batched=True)[0].T
        cols = [torch.autograd.grad(g, th, v, retain_graph=keep or j < V.shape[1] - 1)[0] for j, v in enumerate(V.T)]
        return torch.stack(cols).T  # P × m, column-major (each column contiguous, as eigen keeps its blocks)

    def _hvp_jvp_chunk(self, theta, V, x, y) -> Tensor:
        g = grad(self._chunk_loss)

        def col(v):
            return jvp(lambda th: g(th, x, y), (theta,), (v,))[1]

        return vmap(col, in_dims=1, out_dims=1)(V)

    def _hvp_chunk(self, theta, V, x, y) -> Tensor:
        """One chunk's Σ_i ∇²l_i·V (without a cache; :meth:`hvp` uses the cached graphs when it can)."""
        if self.hvp_method == "jvp":
            return self._hvp_jvp_chunk(theta, V, x, y)
        th = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self._chunk_loss(th, x, y), th, create_graph=True)
        return self._double_backward(th, g, V, keep=False)

    def _ggn_chunk(self, theta, V, x, y) -> Tensor:
        f = lambda th: self._f(th, x)  # noqa: E731
        z, pullback = vjp(f, theta)
        JV = vmap(lambda v: jvp(f, (theta,), (v,))[1], in_dims=1, out_dims=0)(V)  # m × n × Q
        DJV = self.criterion.hessian_vp(z, y, JV)
        return vmap(lambda u: pullback(u)[0], in_dims=0, out_dims=1)(DJV)
