"""Full-batch gradient descent at several step sizes η with the sharpness tracked (notebook 1, claim C1).

Section ``gd`` of params.yaml: ``setups`` — each {setting, n, lrs (step sizes expected to reach the edge of
stability, 2/η below the flow's sharpness), control_lrs (negative controls: 2/η above the flow's maximal
sharpness, so no edge of stability is expected)} — run for every seed in ``seeds`` up to the flow time
``time`` (or the loss threshold). Runs ``gd/<setting>/lr<η>/seed<s>``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..schema import Int, ListOf, Num, Opt, Text
from .base import Experiment, Stage, base_config
from .trajectory import run_measured

SETUP = {"setting": Text(), "n": Int(minimum=2), "lrs": ListOf(Num()), "control_lrs": Opt(ListOf(Num(), nonempty=False), [])}
SCHEMA = {
    "setups": ListOf(SETUP),
    "seeds": ListOf(Int(minimum=0)),
    "time": Num(),
    "max_steps": Int(),
    "track_every": Int(),
    "measure_every": Int(),
}


def plan(p: dict) -> dict[str, Stage]:
    """One stage ``gd``: runs ``gd/<setting>/lr<η>/seed<s>`` (smallest η — the most steps — first)."""
    gd, tr = p["gd"], p.get("trajectories") or {}
    runs = {}
    for i, su in enumerate(gd["setups"]):
        for lr, control in sorted([(x, False) for x in su["lrs"]] + [(x, True) for x in su["control_lrs"]]):
            for seed in gd["seeds"]:
                c = base_config(p, su["setting"], su["n"], seed, f"gd.setups[{i}].setting")
                c |= {"kind": "gd", "control": control,
                      "solver": {"name": "gd", "lr": lr, "track_every": gd["track_every"]},
                      "time": gd["time"], "max_steps": gd["max_steps"], "measure_every": gd["measure_every"],
                      "probe": tr.get("probe", 256), "checkpoint_every": tr.get("checkpoint_every", 20)}
                runs[f"gd/{su['setting']}/lr{lr}/seed{seed}"] = c
    return {"gd": Stage("gd", "runs/gd", runs)}


def run(config: dict, folder: Path, progress: bool) -> tuple[pd.DataFrame, dict]:
    from ..training import Stop

    until = Stop(loss=config["loss_threshold"], time=config["time"], steps=config["max_steps"], land=False)
    return run_measured(config, folder, progress, until)


EXPERIMENT = Experiment("gd", plan, run, "gradient descent at several step sizes, with negative controls", schema=SCHEMA)
