"""Full-batch gradient descent at several step sizes η with the sharpness tracked (notebook 1, claim C1)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..schema import Int, ListOf, Num, Text
from .base import KINDS, Experiment, Stage, base_config
from .trajectory import run_measured

SCHEMA = {
    "setting": Text(),
    "n": Int(minimum=2),
    "seed": Int(minimum=0),
    "lrs": ListOf(Num()),
    "time": Num(),
    "max_steps": Int(),
    "track_every": Int(),
    "measure_every": Int(),
}


def plan(p: dict) -> dict[str, Stage]:
    """One stage ``gd``: runs ``gd/lr<η>`` (smallest η — the most steps — first)."""
    gd = p["gd"]
    runs = {}
    for lr in sorted(gd["lrs"]):
        c = base_config(p, gd["setting"], gd["n"], gd["seed"], "gd.setting")
        c |= {"kind": "gd", "solver": {"name": "gd", "lr": lr, "track_every": gd["track_every"]},
              "time": gd["time"], "max_steps": gd["max_steps"], "measure_every": gd["measure_every"],
              "probe": p["trajectories"]["probe"], "checkpoint_every": p["trajectories"]["checkpoint_every"]}
        runs[f"gd/lr{lr}"] = c
    return {"gd": Stage("gd", "runs/gd", runs)}


def run(config: dict, folder: Path, progress: bool) -> tuple[pd.DataFrame, dict]:
    from ..training import Stop

    until = Stop(loss=config["loss_threshold"], time=config["time"], steps=config["max_steps"])
    return run_measured(config, folder, progress, until)


KINDS.add("gd", Experiment("gd", plan, run, "gradient descent at several step sizes"),
          label="gradient descent", schema=SCHEMA)
