"""The flow solver and GD against a high-accuracy reference flow at equal flow times (notebook 2, claim C2).

``distances.csv``: for every snapshot θ(t) of every solver, ``dist`` = ‖θ(t) − θ_ref(t)‖,
``rel_dist`` = dist / ‖θ_ref(t_end) − θ₀‖ (relative to the flow's whole displacement up to the flow solver's
end time t_end), ``rel_dist_local`` = dist / ‖θ_ref(t) − θ₀‖.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import Choice, Int, ListOf, Num, Text
from .base import Experiment, Stage, base_config, build_objective, build_solver, solver_spec

SCHEMA = {
    "setting": Text(),
    "n": Int(minimum=2),
    "seed": Int(minimum=0),
    "dtype": Choice(("float32", "float64")),
    "rtol": Num(),
    "atol": Num(),
    "gd_lrs": ListOf(Num()),
    "max_steps": Int(),
    "snapshot_every": Int(),
}


def plan(p: dict) -> dict[str, Stage]:
    """One stage ``compare`` with one run ``compare``."""
    ref = p["reference"]
    c = base_config(p, ref["setting"], ref["n"], ref["seed"], "reference.setting", dtype=ref["dtype"])
    c["device"] = "cpu"  # the reference flow integrates in float64 on the CPU (scipy), and the solvers with it
    c |= {"kind": "compare", "solver": solver_spec(p), "gd_lrs": ref["gd_lrs"], "rtol": ref["rtol"],
          "atol": ref["atol"], "max_steps": ref["max_steps"], "snapshot_every": ref["snapshot_every"]}
    return {"compare": Stage("compare", "runs/compare", {"compare": c})}


def distances(snapshots: Mapping[str, Sequence[tuple[float, "Tensor"]]], reference: Callable[[list], list],
              theta0, t_end: float, loss: Callable) -> pd.DataFrame:
    """Distance of every snapshot to the reference flow at the same t.

    ``snapshots``: solver key ("ee", "gd0.2", …) → [(t, θ)]; ``reference(times) -> [θ_ref(t)]`` at the sorted
    union of the snapshot times and ``t_end``; ``loss(θ) -> float``. Rows: solver, lr, t, loss, dist, rel_dist
    (÷ ‖θ_ref(t_end) − θ₀‖), rel_dist_local (÷ ‖θ_ref(t) − θ₀‖), ref_travel (‖θ_ref(t) − θ₀‖); the reference's own
    rows have distance 0."""
    key = lambda t: round(float(t), 12)  # noqa: E731
    times = sorted({key(t) for v in snapshots.values() for t, _ in v} | {key(t_end)})
    ref_at = dict(zip(times, reference(times)))
    scale = float((ref_at[key(t_end)] - theta0).norm())
    rows = []
    for t, th in ref_at.items():
        rows.append({"solver": "reference", "lr": np.nan, "t": t, "loss": loss(th), "dist": 0.0, "rel_dist": 0.0,
                     "rel_dist_local": 0.0, "ref_travel": float((th - theta0).norm())})
    for k, lst in snapshots.items():
        m = re.fullmatch(r"gd(\d[\d.e+-]*)", k)  # "gd0.2": GD at η = 0.2; any other key is its own label
        solver, lr = ("gd", float(m.group(1))) if m else (k, np.nan)
        for t, th in lst:
            tr = ref_at[key(t)]
            d, travel = float((th - tr).norm()), float((tr - theta0).norm())
            rows.append({"solver": solver, "lr": lr, "t": t, "loss": loss(th), "dist": d,
                         "rel_dist": d / scale, "rel_dist_local": d / travel if travel > 0 else np.nan,
                         "ref_travel": travel})
    return pd.DataFrame(rows)


def run(config: dict, folder: Path, progress: bool) -> tuple[pd.DataFrame, dict]:
    """The flow solver to the loss threshold, GD at each η to the same flow time, the reference at all their
    snapshot times."""
    from ..solvers.gd import GradientDescent
    from ..solvers.reference import ReferenceFlow
    from ..training import Stop, train

    objective, _ = build_objective(config)
    every = config["snapshot_every"]
    snaps: dict[str, list] = {}

    def snapshot(key):
        def hook(objective, theta, step, t, final):
            if final or step % every == 0:
                snaps.setdefault(key, []).append((t, theta.detach().clone()))
        return hook

    start = time.perf_counter()
    r = train(build_solver(config["solver"]), objective,
              until=Stop(loss=config["loss_threshold"], steps=config["max_steps"]), hooks=[snapshot("ee")],
              progress=progress, desc="compare/ee")
    tables = {"ee": r.table.assign(solver="ee", lr=np.nan)}
    t_end = float(r.table["t"].iloc[-1])
    for lr in config["gd_lrs"]:
        key = f"gd{lr:g}"
        steps = min(int(round(t_end / lr)), config["max_steps"])
        rg = train(GradientDescent(lr, track_every=1), objective, until=Stop(steps=steps), hooks=[snapshot(key)],
                   progress=progress, desc=f"compare/{key}")
        tables[key] = rg.table.assign(solver="gd", lr=lr)
    ref = ReferenceFlow(rtol=config["rtol"], atol=config["atol"])
    ref_start = time.perf_counter()
    dist = distances(snaps, lambda ts: list(ref.integrate(objective, objective.theta0, ts)), objective.theta0, t_end,
                     lambda th: objective.loss(th).item())
    ref_seconds = time.perf_counter() - ref_start
    dist.to_csv(folder / "distances.csv", index=False)
    summ = {}
    for (solver, lr), g in dist[dist.solver != "reference"].groupby(["solver", "lr"], dropna=False):
        g = g[(g.t > 0) & (g.t <= t_end * (1 + 1e-12))]
        summ["ee" if solver == "ee" else f"gd_lr{lr:g}"] = {
            "max_rel_distance": g.rel_dist.max(), "final_rel_distance": g.rel_dist.iloc[-1], "t_end": g.t.iloc[-1],
            "lr": lr}
    info = {"stopped_by": r.stopped_by, "seconds": time.perf_counter() - start, "theta": r.theta, "t_end": t_end,
            "distances": summ, "reference": {"nfev": ref.nfev, "seconds": ref_seconds, "rtol": config["rtol"],
                                             "atol": config["atol"]}}
    return pd.concat(tables.values(), ignore_index=True), info


EXPERIMENT = Experiment("reference", plan, run, "solvers against a high-accuracy reference flow", schema=SCHEMA)
