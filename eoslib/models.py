"""Networks used in the reconstructions: MLPs and a small CNN.

MLP notation (paper-notes §2): x⁰ = x; x̂ᵏ = Aᵏ xᵏ⁻¹ + bᵏ (k = 1..K); xᵏ = σ(x̂ᵏ) for k < K; f = x̂ᴷ.
`mlp` returns a plain ``nn.Sequential`` alternating ``nn.Linear`` and activation modules (the last module
is the K-th Linear layer), so layerwise Jacobians can be cut at every preactivation.
"""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
}
INITS = ("xavier", "default")


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def init_weights(model: nn.Module, init: str = "xavier", seed: int | None = 0) -> nn.Module:
    """Initialise ``model`` in place and return it.

    ``"xavier"``: Xavier-normal weights with gain √2 and zero biases (the authors' Stable-Solvers choice);
    ``"default"``: PyTorch's own ``reset_parameters``. With ``seed`` set, the weights depend on the seed alone.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d)):
                continue
            if init == "xavier":
                fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
                std = math.sqrt(2.0) * math.sqrt(2.0 / (fan_in + fan_out))
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
                if m.bias is not None:
                    m.bias.zero_()
            else:
                if gen is not None:
                    # reset_parameters draws from the global RNG: fork it so the caller's state is untouched
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
                        m.reset_parameters()
                else:
                    m.reset_parameters()
    return model


def mlp(
    in_dim: int,
    width: int,
    depth: int,
    out_dim: int,
    activation: str = "elu",
    init: str = "xavier",
    seed: int | None = 0,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A fully connected network with ``depth`` Linear layers (K = depth ≥ 1) and ``depth − 1`` activations.

    Layer widths: in_dim → width × (depth − 1) → out_dim.
    """
    if depth < 1 or width < 1 or in_dim < 1 or out_dim < 1:
        raise ValueError(f"mlp needs depth, width, in_dim, out_dim ≥ 1 (got {depth}, {width}, {in_dim}, {out_dim})")
    dims = [in_dim] + [width] * (depth - 1) + [out_dim]
    layers: list[nn.Module] = []
    for k in range(depth):
        layers.append(nn.Linear(dims[k], dims[k + 1], dtype=dtype))
        if k < depth - 1:
            layers.append(_activation(activation))
    return init_weights(nn.Sequential(*layers), init, seed)


def cnn(
    in_shape: tuple[int, int, int],
    channels: int = 16,
    depth: int = 2,
    out_dim: int = 10,
    activation: str = "elu",
    init: str = "xavier",
    seed: int | None = 0,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A small CNN on flattened inputs: Unflatten → ``depth`` × (3×3 conv, stride 2, activation) → Flatten → Linear.

    ``in_shape`` = (C, H, W); the input is the flattened (N × C·H·W) tensor the data loaders return.
    Every preactivation (conv or linear output) can be cut out for the matrix-free layerwise Jacobians.
    """
    c, h, w = in_shape
    layers: list[nn.Module] = [nn.Unflatten(1, (c, h, w))]
    for _ in range(depth):
        layers += [nn.Conv2d(c, channels, 3, stride=2, padding=1, dtype=dtype), _activation(activation)]
        c, h, w = channels, (h + 1) // 2, (w + 1) // 2
    layers += [nn.Flatten(), nn.Linear(c * h * w, out_dim, dtype=dtype)]
    return init_weights(nn.Sequential(*layers), init, seed)


#: network families of a profile's ``model.kind``
MODEL_KINDS = ("mlp", "cnn")


def network(kind: str, in_shape: tuple[int, ...], width: int, depth: int, out_dim: int, activation: str = "elu",
            init: str = "xavier", seed: int | None = 0, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """The network of a profile's ``model`` section: ``mlp`` on the flattened input (width = hidden units,
    depth = Linear layers) or the small ``cnn`` on the image shape (width = channels, depth = conv layers)."""
    if kind == "cnn":
        return cnn(tuple(in_shape), channels=width, depth=depth, out_dim=out_dim, activation=activation, init=init,
                   seed=seed, dtype=dtype)
    if kind != "mlp":
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
    return mlp(math.prod(in_shape), width, depth, out_dim, activation=activation, init=init, seed=seed, dtype=dtype)
