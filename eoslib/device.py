"""Where tensors live: ``device: auto | cpu | cuda`` in params.yaml (auto = CUDA when available).

The device is a *runtime* choice, not part of a run's identity: a run's ``config.json`` leaves it out (so a run
finished on one device is not redone on another), and its ``summary.json`` records the device it ran on.
Every tensor of a run follows its model: data, parameters, the eigensolver's blocks, solver state; checkpoints
load onto the run's device whatever device wrote them.
"""
from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")
#: keys of a resolved run config that describe how, not what, is computed (left out of config.json)
RUNTIME_KEYS = ("device",)


def resolve(spec: str | None = "auto"):
    """The ``torch.device`` for ``spec``: ``auto`` → cuda when available, else cpu."""
    import torch

    spec = spec or "auto"
    if spec not in DEVICES and not str(spec).startswith("cuda:"):
        raise ValueError(f"device must be one of {DEVICES} (got {spec!r})")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(spec).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but torch sees no CUDA device; use device: auto or cpu")
    return torch.device(spec)


def to_device(module, device):
    """``module`` with its parameters on ``device`` (the one place a run's model is moved)."""
    return module.to(device)


def identity(config: dict) -> dict:
    """A run config without its runtime keys: what config.json holds and what decides 'finished'."""
    return {k: v for k, v in config.items() if k not in RUNTIME_KEYS}
