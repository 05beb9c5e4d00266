"""Fully measured flow trajectories (notebooks 3–5): curvature of ∇²L, G, H, layer shares and alignment
every ``measure_every`` steps of the flow solver, from θ₀ to the loss threshold."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..schema import Int, ListOf, MapOf, Opt, Text
from .base import SOLVER_SPEC, Experiment, Stage, base_config, build_objective, build_solver, solver_spec

OVERRIDE = {"n": Opt(Int(minimum=2)), "measure_every": Opt(Int()), "max_steps": Opt(Int())}
SCHEMA = {
    "settings": ListOf(Text()),
    "n": Int(minimum=2),
    "seeds": ListOf(Int(minimum=0)),
    "measure_every": Int(),
    "overrides": Opt(MapOf(OVERRIDE, nonempty=False, what="{n, measure_every, max_steps}"), {}),
    "probe": Int(),
    "max_steps": Int(),
    "checkpoint_every": Int(),
    "solver": Opt(SOLVER_SPEC),
}


def plan(p: dict) -> dict[str, Stage]:
    """One stage ``traj``: runs ``traj/<setting>/seed<s>``."""
    tr = p["trajectories"]
    runs = {}
    for name in tr["overrides"]:
        if name not in tr["settings"]:
            from ..schema import fail

            fail(f"trajectories.overrides.{name}", f"{name!r} is not in trajectories.settings")
    for s in tr["settings"]:
        o = tr["overrides"].get(s) or {}
        for seed in tr["seeds"]:
            n = o.get("n") or tr["n"]
            c = base_config(p, s, n, seed, f"trajectories.overrides.{s}.n" if o.get("n") else "trajectories.n")
            c |= {"kind": "traj", "solver": solver_spec(p, tr.get("solver")),
                  "measure_every": o.get("measure_every") or tr["measure_every"], "probe": tr["probe"],
                  "max_steps": o.get("max_steps") or tr["max_steps"], "checkpoint_every": tr["checkpoint_every"]}
            runs[f"traj/{s}/seed{seed}"] = c
    return {"traj": Stage("traj", "runs/traj", runs)}


def run_measured(config: dict, folder: Path, progress: bool, until) -> tuple[pd.DataFrame, dict]:
    """Train with the measurement hook every ``measure_every`` steps (shared by the traj and gd kinds)."""
    from ..measurement import Measurement
    from ..training import train

    objective, _ = build_objective(config)
    solver = build_solver(config["solver"])
    hook = Measurement(every=config["measure_every"], probe=config["probe"], seed=config["seed"])
    r = train(solver, objective, until=until, hooks=[hook], checkpoint=folder / "checkpoint.pt",
              checkpoint_every=config["checkpoint_every"], progress=progress, desc=str(folder))
    return r.table, {"stopped_by": r.stopped_by, "seconds": r.seconds, "theta": r.theta}


def run(config: dict, folder: Path, progress: bool) -> tuple[pd.DataFrame, dict]:
    from ..training import Stop

    return run_measured(config, folder, progress, Stop(loss=config["loss_threshold"], steps=config["max_steps"]))


EXPERIMENT = Experiment("trajectories", plan, run, "measured flow trajectories", schema=SCHEMA)
