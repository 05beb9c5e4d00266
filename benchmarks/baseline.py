"""Baselines the eoslib hot path is measured against.

``AuthorsStyleEE``: exponential Euler written the way the authors' later library does it (our reading, not
their code): the data go through a ``DataLoader`` that collates examples one at a time, the gradient and each
Hessian-vector product re-run the network through ``nn.Module`` parameters (one double-backward graph built per
product), and the stiff eigenpairs come from block power iteration — two block products per step, no
Rayleigh–Ritz, eigenvalues read from the diagonal of the QR factor.

``power_iteration``: the same plain block power iteration on any block operator, run until the eoslib residual
criterion holds (to count the products it needs for equal accuracy).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from eoslib.solvers import phi1


class _Examples(Dataset):
    def __init__(self, X: Tensor, y: Tensor) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.X[i], self.y[i]


def _qr_power_step(AV: Tensor, V: Tensor) -> tuple[Tensor, Tensor]:
    """Q of AV with its column signs aligned to V, and the QR diagonal as eigenvalue estimates."""
    Q, R = torch.linalg.qr(AV)
    s = torch.sign((Q * V).sum(0))
    s[s == 0] = 1
    return Q * s, R.diagonal() * s


class AuthorsStyleEE:
    """Authors'-style exponential Euler step (see the module docstring). ``power_steps`` block products per
    step (2, as in their library); ``batch_size`` of the loader (default: the whole training set)."""

    def __init__(self, model: nn.Module, X: Tensor, y: Tensor, k: int, dt_max: float, power_steps: int = 2,
                 batch_size: int | None = None) -> None:
        self.model = copy.deepcopy(model)
        self.params = [p for p in self.model.parameters()]
        self.device = self.params[0].device
        self.loader = DataLoader(_Examples(X.cpu(), y.cpu()), batch_size=batch_size or len(y), shuffle=False)
        self.N, self.k, self.dt_max, self.power_steps = len(y), k, dt_max, power_steps
        self.V: Tensor | None = None
        self.products = 0

    def set_theta(self, theta: Tensor) -> None:
        nn.utils.vector_to_parameters(theta.detach(), self.params)

    def _batches(self):
        for xb, yb in self.loader:
            yield xb.to(self.device, self.params[0].dtype), yb.to(self.device)

    def loss_and_grad(self) -> tuple[float, Tensor]:
        total, g = 0.0, None
        for xb, yb in self._batches():
            loss = nn.functional.cross_entropy(self.model(xb), yb, reduction="sum") / self.N
            grads = torch.autograd.grad(loss, self.params)
            flat = torch.cat([t.reshape(-1) for t in grads])
            g = flat if g is None else g + flat
            total += loss.item()
        return total, g

    def hvp(self, v: Tensor) -> Tensor:
        """One Hessian-vector product by double backward (the gradient graph rebuilt for it)."""
        out = None
        for xb, yb in self._batches():
            loss = nn.functional.cross_entropy(self.model(xb), yb, reduction="sum") / self.N
            grads = torch.autograd.grad(loss, self.params, create_graph=True)
            flat = torch.cat([t.reshape(-1) for t in grads])
            hv = torch.autograd.grad(flat @ v, self.params)
            hv = torch.cat([t.reshape(-1) for t in hv])
            out = hv if out is None else out + hv
        self.products += 1
        return out

    def block(self, V: Tensor) -> Tensor:
        return torch.stack([self.hvp(v) for v in V.T], 1)

    def step(self, theta: Tensor) -> tuple[Tensor, dict]:
        self.set_theta(theta)
        loss, g = self.loss_and_grad()
        if self.V is None:
            gen = torch.Generator().manual_seed(0)
            self.V = torch.linalg.qr(torch.randn(theta.numel(), self.k + 1, generator=gen)).Q.to(theta)
        V = self.V
        for _ in range(self.power_steps):
            V, lam = _qr_power_step(self.block(V), V)
        self.V = V
        k = self.k
        lam_bulk = abs(lam[k].item())
        dt = self.dt_max if lam_bulk == 0 else min(self.dt_max, 1.0 / lam_bulk)
        Vk, lk = V[:, :k], lam[:k]
        c = Vk.T @ g
        stiff = Vk @ (c * torch.minimum(phi1(lk, dt), torch.full_like(lk, dt)))
        theta_next = theta - stiff - dt * (g - Vk @ c)
        return theta_next, {"dt": dt, "loss": loss, "eigs": lam.tolist(), "vectors": V}


def power_iteration(matvec, V: Tensor, tol: float, max_matvecs: int) -> dict:
    """Plain block power iteration V ← qr(AV) from V until every column's residual ‖Av − ρv‖ (ρ = vᵀAv, read
    from the same product) is ≤ tol·|ρ₁|, or ``max_matvecs`` single products. No Rayleigh–Ritz step."""
    V = torch.linalg.qr(V).Q
    matvecs = 0
    while True:
        AV = matvec(V)
        matvecs += V.shape[1]
        rho = (V * AV).sum(0)
        res = (AV - V * rho).norm(dim=0)
        scale = rho.abs().max()
        ok = bool((res <= tol * scale).all())
        if ok or matvecs + V.shape[1] > max_matvecs:
            return {"matvecs": matvecs, "converged": ok, "max_residual_rel": float(res.max() / scale),
                    "values": rho.tolist(), "iterations": matvecs // V.shape[1]}
        V, _ = _qr_power_step(AV, V)
