"""What every experiment kind shares: the registry, the resolved run config, and building its objective.

An *experiment kind* (sweep, trajectory, gd, compare, …) is one module of this package defining
``EXPERIMENT``, an :class:`Experiment` — ``plan(params)`` (stage id → the resolved configs of its runs),
``run(config, folder, progress)`` (train one run into its folder) and the schema of its ``params.yaml``
section — listed in the catalog :data:`eoslib.experiments.KINDS`. Config validation, planning, execution and
the pipeline read the catalog, so a new experiment is one file, one catalog line and its ``params.yaml`` section.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..schema import ParamsError, Tagged, fail
from ..solvers import SOLVERS


@dataclass(frozen=True)
class Stage:
    """A planned pipeline stage: its runs (name below ``runs/`` → resolved config) and output folder."""

    kind: str
    dir: str
    runs: dict[str, dict]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "dir": self.dir, "runs": self.runs}


@dataclass(frozen=True)
class Experiment:
    """One experiment kind. ``section``: its key in params.yaml; ``schema``: that section's schema;
    ``plan(params) -> {stage id: Stage}``; ``run(config, folder, progress) -> (table, info)`` where ``info``
    goes into summary.json (``theta``, the final parameters, is popped into final.pt)."""

    section: str
    plan: Callable[[dict], dict[str, Stage]]
    run: Callable[[dict, Path, bool], tuple[Any, dict]]
    describe: str = ""
    schema: Mapping[str, Any] = field(default_factory=dict)

#: a solver spec in params.yaml: ``{name: <registered solver>, **its keywords}``
SOLVER_SPEC = Tagged(SOLVERS)


# ---------------------------------------------------------------------------------------------- configs


def setting_config(params: Mapping, name: str, where: str) -> dict:
    """The resolved setting ``name`` (dataset, activation, loss, classes, standardize); ``where`` names the
    params key that referred to it, for the error message."""
    settings = params["settings"]
    if name not in settings:
        fail(where, f"unknown setting {name!r}; define it under settings (have {list(settings)})")
    s = settings[name]
    return {"name": name, "dataset": s["dataset"], "activation": s["activation"], "loss": s["loss"],
            "classes": s.get("classes"), "standardize": bool(s.get("standardize", False))}


def check_size(setting: dict, n: int, where: str) -> None:
    """``n`` must not exceed the examples the setting's dataset has in its classes (when known offline)."""
    from ..data import available_size

    try:
        avail = available_size(setting["dataset"], setting.get("classes"))
    except FileNotFoundError:  # files missing: reported by check-params' data check, with how to get them
        return
    if avail is not None and n > avail:
        fail(where, f"n={n} exceeds the {avail} examples of {setting['dataset']!r} in "
                    f"{setting.get('classes') or 'all'} classes (setting {setting['name']!r})")


def base_config(params: Mapping, setting: str, n: int, seed: int, where: str, *, model: Mapping | None = None,
                dtype: str | None = None) -> dict:
    """The part of a resolved run config every kind shares: setting, n, seed, model, threads, loss threshold.
    ``model`` overrides keys of ``params["model"]`` (e.g. a sensitivity run's depth)."""
    s = setting_config(params, setting, where)
    check_size(s, n, where)
    over = {k: v for k, v in (params["settings"][setting].get("model") or {}).items() if v is not None}
    m = {"kind": "mlp"} | dict(params["model"]) | over | dict(model or {})
    if dtype is not None:
        m["dtype"] = dtype
    return {"setting": s, "n": int(n), "seed": int(seed),
            "model": {k: m[k] for k in ("kind", "width", "depth", "init", "dtype")}, "threads": params["threads"],
            "loss_threshold": params["loss_threshold"][s["loss"]], "device": params.get("device", "auto")}


def solver_spec(params: Mapping, override: Mapping | None = None) -> dict:
    """The flow solver of a run: ``params["solver"]`` unless a kind's section overrides it (a full spec)."""
    return dict(override) if override else dict(params["solver"])


# ---------------------------------------------------------------------------------------------- building


def build_objective(config: Mapping):
    """(objective, dataset) for a resolved config: the dataset subset, the network (``model.kind``: an MLP, or
    the small CNN on the images' shape), the loss — on the config's
    runtime ``device`` (default cpu; see :mod:`eoslib.device`)."""
    import torch

    from ..data import load_dataset
    from .. import device as dev
    from ..models import network
    from ..objective import Objective

    torch.set_num_threads(int(config.get("threads", 1)))
    s = config["setting"]
    ds = load_dataset(s["dataset"], n=config["n"], seed=config["seed"], classes=s.get("classes"),
                      standardize=s.get("standardize", False))
    m = config["model"]
    dtype = getattr(torch, m["dtype"])
    model = network(m.get("kind", "mlp"), ds.input_shape, m["width"], m["depth"], ds.num_classes,
                    activation=s["activation"], init=m["init"], seed=config["seed"], dtype=dtype)
    model = dev.to_device(model, dev.resolve(config.get("device", "cpu")))
    return Objective(model, ds.X.to(dtype), ds.y, loss=s["loss"]), ds


def build_solver(spec: Mapping):
    """The solver of a resolved spec ``{"name": ..., **kwargs}``."""
    from ..solvers import build_solver as _build

    return _build(spec)


__all__ = ["SOLVER_SPEC", "Experiment", "Stage", "ParamsError", "setting_config", "check_size", "base_config",
           "solver_spec", "build_objective", "build_solver"]
