"""The power-law sweep (claim C4): settings × sizes N × seeds, each trained by the flow solver to two end points.

End points: ``threshold`` — the flow lands on the loss threshold (the last step retaken shorter, so
L = threshold within 1 %, see :class:`eoslib.training.Stop`); ``time`` — flow time ``sweep.time`` exactly;
``init`` — θ₀. Training stores θ at each end point in ``endpoints.pt``; the ``endpoints`` stage measures every
registered measure there (:mod:`eoslib.measures`), so a new measure needs no retraining.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..schema import Int, ListOf, Num, Opt, Text
from .base import SOLVER_SPEC, Experiment, Stage, base_config, build_objective, build_solver, solver_spec

class Sizes(ListOf):
    """Ascending sizes N ≥ 2, optionally ending with ``full``: each setting's whole training set (then the sizes
    above a setting's training set are skipped for it)."""

    def check(self, v, path):
        if isinstance(v, list) and v and v[-1] == "full":
            return ListOf(Int(minimum=2), ascending=True, nonempty=False).check(v[:-1], path) + ["full"]
        return ListOf(Int(minimum=2), ascending=True).check(v, path)


def full_size(setting: dict) -> int:
    """The number of training examples of a setting's dataset in its classes (the files' count when they can be
    read, else the dataset's standard training-set size)."""
    from ..data import DATASETS, available_size

    try:
        n = available_size(setting["dataset"], setting.get("classes"))
    except FileNotFoundError:
        n = None
    if n is None:
        meta = DATASETS.entry(setting["dataset"]).meta
        n = meta["train_size"] * (setting.get("classes") or meta["num_classes"]) // meta["num_classes"]
    return int(n)


SCHEMA = {
    "settings": ListOf(Text()),
    "sizes": Sizes(Int()),
    "seeds": ListOf(Int(minimum=0)),
    "time": Num(),
    "max_steps": Int(),
    "probe": Int(),
    "solver": Opt(SOLVER_SPEC),  # the flow solver of the sweep (default: the top-level `solver`)
    "largest_size_seeds": Opt(Int()),  # fewer seeds at the largest size when the budget forces it (the first ones)
}


def plan(p: dict) -> dict[str, Stage]:
    """One stage per setting (``sweep-<setting>``), its runs ``sweep/<setting>/n<N>/seed<s>``, largest N first."""
    from .base import setting_config

    sw = p["sweep"]
    out = {}
    for s in sw["settings"]:
        runs = {}
        sizes = list(sw["sizes"])
        if sizes[-1] == "full":  # the whole training set; larger sizes than it are skipped for this setting
            full = full_size(setting_config(p, s, "sweep.settings"))
            sizes = [n for n in sizes[:-1] if n < full] + [full]
        for n in sorted(set(sizes), reverse=True):
            seeds = sw["seeds"][: sw["largest_size_seeds"]] if n == max(sizes) and sw.get("largest_size_seeds") \
                else sw["seeds"]
            for seed in seeds:
                c = base_config(p, s, n, seed, "sweep.sizes")
                c |= {"kind": "sweep", "solver": solver_spec(p, sw.get("solver")), "time": sw["time"],
                      "max_steps": sw["max_steps"], "probe": sw["probe"]}
                runs[f"sweep/{s}/n{n}/seed{seed}"] = c
        out[f"sweep-{s}"] = Stage("sweep", f"runs/sweep/{s}", runs)
    return out


def run(config: dict, folder: Path, progress: bool) -> tuple[pd.DataFrame, dict]:
    """Two phases so both end points are exact: train to the first of (threshold, time), then on to the other."""
    import torch

    from ..io import atomic_save
    from ..training import Stop, train

    objective, _ = build_objective(config)
    thr, T, steps = config["loss_threshold"], config["time"], config["max_steps"]
    solver = build_solver(config["solver"])
    p1 = folder / "phase1.pt"
    if p1.exists():
        st = torch.load(p1, map_location=objective.device, weights_only=False)
        tab1, theta, stop1, sec1 = st["table"], st["theta"], st["stopped_by"], st["seconds"]
        solver.load_state_dict(st["solver"])
    else:
        r = train(solver, objective, until=Stop(loss=thr, time=T, steps=steps), checkpoint=folder / "checkpoint.pt",
                  checkpoint_every=50, progress=progress, desc=str(folder))
        tab1, theta, stop1, sec1 = r.table, r.theta, r.stopped_by, r.seconds
        atomic_save({"table": tab1, "theta": theta, "stopped_by": stop1, "seconds": sec1,
                     "solver": solver.state_dict()}, p1)
    t1 = float(tab1["t"].iloc[-1])
    thetas = {stop1: theta}
    if stop1 == "time":
        until2 = Stop(loss=thr, steps=steps)
    elif stop1 == "loss" and T - t1 > 1e-12 * T:
        until2 = Stop(time=T - t1, steps=steps)
    else:
        until2 = None  # step budget exhausted (or the threshold hit exactly at T): nothing more to reach
    stop2, sec2, tab = None, 0.0, tab1
    if until2 is not None:
        r2 = train(solver, objective, theta0=theta, until=until2, checkpoint=folder / "checkpoint.pt",
                   checkpoint_every=50, progress=progress, desc=str(folder))
        tab2 = r2.table.copy()
        tab2["step"] += int(tab1["step"].iloc[-1])
        tab2["t"] += t1
        # phase 1's final row is phase 2's first iterate: one row with both rows' information
        tab1 = tab1.copy()
        merged = tab1.iloc[-1].combine_first(tab2.iloc[0].drop(["step", "t"]))
        for k, v in merged.items():
            tab1.loc[tab1.index[-1], k] = v
        tab = pd.concat([tab1, tab2.iloc[1:]], ignore_index=True)
        thetas[r2.stopped_by] = r2.theta
        stop2, sec2, theta = r2.stopped_by, r2.seconds, r2.theta
    names = {"loss": "threshold", "time": "time"}  # how a phase stopped → the end point it reached
    idx = {"init": 0}
    if stop1 in names:
        idx[names[stop1]] = len(tab1) - 1
    if stop2 in names:
        idx[names[stop2]] = len(tab) - 1
    ends = {"init": objective.theta0, **{names[h]: th for h, th in thetas.items() if h in names}}
    rows = {ep: {k: tab[k].iloc[i] for k in ("step", "t", "loss")} for ep, i in idx.items()}
    atomic_save({ep: th.detach().cpu().clone() for ep, th in ends.items()}, folder / "endpoints.pt")
    info = {"stopped_by": [stop1, stop2], "seconds": sec1 + sec2, "endpoints": rows, "theta": theta}
    return tab, info


EXPERIMENT = Experiment("sweep", plan, run, "power-law sweep over N × seeds to two end points", schema=SCHEMA)
