"""Sensitivity of the trajectory claims (C3, layer shares) to the network: one factor at a time around the
profile's model — initialisation, depth, width — each a fully measured flow trajectory (as the ``traj`` kind).

Section ``sensitivity`` of params.yaml: ``{setting, n, seeds, variants: {init: [...], depth: [...], width:
[...]}, measure_every, max_steps}``. Runs ``sens/<setting>/<factor>-<value>/seed<s>`` (the base model itself is
``sens/<setting>/base/seed<s>``); the ledger judges C3 and the layer-share claim on each variant.
"""
from __future__ import annotations

from ..schema import Choice, Int, ListOf, Opt, Text
from .base import Experiment, Stage, base_config, solver_spec
from .trajectory import run as traj_run

FACTORS = ("init", "depth", "width")
SCHEMA = {
    "setting": Text(),
    "n": Int(minimum=2),
    "seeds": ListOf(Int(minimum=0)),
    "variants": {"init": Opt(ListOf(Choice(("xavier", "default"), "init")), []),
                 "depth": Opt(ListOf(Int(minimum=2)), []), "width": Opt(ListOf(Int()), [])},
    "measure_every": Int(),
    "max_steps": Int(),
}


def variants(p: dict) -> dict[str, dict]:
    """Variant name → model overrides: ``base`` (none) and ``<factor>-<value>`` for every listed value that
    differs from the profile's model."""
    out = {"base": {}}
    for f in FACTORS:
        for v in p["sensitivity"]["variants"].get(f) or []:
            if v != p["model"][f]:
                out[f"{f}-{v}"] = {f: v}
    return out


def plan(p: dict) -> dict[str, Stage]:
    se, tr = p["sensitivity"], p.get("trajectories") or {}
    runs = {}
    for name, model in variants(p).items():
        for seed in se["seeds"]:
            c = base_config(p, se["setting"], se["n"], seed, "sensitivity.setting", model=model)
            c |= {"kind": "sens", "variant": name, "solver": solver_spec(p), "measure_every": se["measure_every"],
                  "probe": tr.get("probe", 256), "max_steps": se["max_steps"],
                  "checkpoint_every": tr.get("checkpoint_every", 20)}
            runs[f"sens/{se['setting']}/{name}/seed{seed}"] = c
    return {"sens": Stage("sens", "runs/sens", runs)}


# each variant runs as a measured flow trajectory (the traj kind's run)
EXPERIMENT = Experiment("sensitivity", plan, traj_run, "trajectory claims under init/depth/width variants", schema=SCHEMA)
