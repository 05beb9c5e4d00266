"""Error versus cost of the flow solvers (claim C2): each solver at several step sizes against one
high-accuracy reference flow, up to a fixed flow time.

Section ``cost`` of params.yaml: ``{setting, n, seeds, dtype, time, rtol, atol, solvers}`` where ``solvers`` is
a list of solver specs, each with exactly one list-valued key — the step-size grid — e.g.
``{name: ee, dt_max: [0.5, 0.25, 0.125, 0.0625]}``, ``{name: gd, lr: [0.2, 0.1, 0.05]}``. One run per seed
(``cost/<setting>/seed<s>``) trains every variant to the flow time ``time``, snapshots θ after every step and
integrates the reference flow once at the union of the snapshot times. ``distances.csv``: per snapshot the
distance to the reference at the same t, relative to the flow's whole displacement ‖θ_ref(T) − θ₀‖, and the
work spent so far (gradients + Hessian-vector products, from the objective's counters). The summary holds, per
variant, the maximal relative distance and the total work, and per solver the observed order of convergence
(least-squares slope of log max-distance against log step size).
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import Any_, Choice, Int, ListOf, Num, Text, Where, fail
from .base import Experiment, Stage, base_config, build_objective, build_solver
from .compare import distances


def _grid_key(spec: Mapping, path: str) -> None:
    lists = [k for k, v in spec.items() if isinstance(v, list)]
    if "name" not in spec or len(lists) != 1:
        fail(path, f"each solver needs a name and exactly one list-valued key (its step-size grid), got {dict(spec)}")


SCHEMA = {
    "setting": Text(),
    "n": Int(minimum=2),
    "seeds": ListOf(Int(minimum=0)),
    "dtype": Choice(("float32", "float64")),
    "time": Num(),
    "rtol": Num(),
    "atol": Num(),
    "max_steps": Int(),
    "solvers": ListOf(Where(Any_(), _grid_key)),
}


def variants(solvers: list[Mapping]) -> list[tuple[str, str, float, dict]]:
    """(label, solver name, step size, spec) for every grid point, e.g. ("ee dt_max=0.25", "ee", 0.25, {...})."""
    from ..solvers import SOLVERS

    out = []
    for spec in solvers:
        key = next(k for k, v in spec.items() if isinstance(v, list))
        for v in spec[key]:
            s = {k: x for k, x in spec.items() if k != key} | {key: v}
            SOLVERS.entry(s["name"])  # an unknown name fails here, while planning
            out.append((f"{s['name']} {key}={v:g}", s["name"], float(v), s))
    return out


def plan(p: dict) -> dict[str, Stage]:
    cs = p["cost"]
    variants(cs["solvers"])
    runs = {}
    for seed in cs["seeds"]:
        c = base_config(p, cs["setting"], cs["n"], seed, "cost.setting", dtype=cs["dtype"])
        c["device"] = "cpu"  # the reference flow integrates on the CPU in float64 (scipy)
        c |= {"kind": "cost", "time": cs["time"], "rtol": cs["rtol"], "atol": cs["atol"],
              "max_steps": cs["max_steps"], "solvers": cs["solvers"]}
        runs[f"cost/{cs['setting']}/seed{seed}"] = c
    return {"cost": Stage("cost", "runs/cost", runs)}


def order(steps, errors) -> float:
    """Observed convergence order: the least-squares slope of log error against log step size (NaN with < 2)."""
    h, e = np.asarray(steps, float), np.asarray(errors, float)
    ok = np.isfinite(e) & (e > 0) & (h > 0)
    if ok.sum() < 2 or np.unique(h[ok]).size < 2:
        return float("nan")
    return float(np.polyfit(np.log(h[ok]), np.log(e[ok]), 1)[0])


def run(config: dict, folder: Path, progress: bool) -> tuple[pd.DataFrame, dict]:
    from ..solvers.reference import ReferenceFlow
    from ..training import Stop, train

    objective, _ = build_objective(config)
    T = config["time"]
    snaps, work, tables, info_v = {}, {}, [], {}
    start = time.perf_counter()
    for label, name, h, spec in variants(config["solvers"]):
        lst = []

        def hook(objective, theta, step, t, final, lst=lst):
            lst.append((t, theta.detach().clone()))

        objective.counts.update(grad=0, hvp=0, ggn=0)
        clock = time.perf_counter()
        r = train(build_solver(spec), objective, until=Stop(time=T, steps=config["max_steps"]), hooks=[hook],
                  progress=progress, desc=f"{folder.name}/{label}")
        step_work = (r.table["cost_grad"].fillna(0) + r.table["cost_hvp"].fillna(0)).to_numpy()
        w = np.concatenate([[0.0], np.cumsum(step_work)[:-1]])  # the work that reached each iterate
        snaps[label], work[label] = lst, w
        tables.append(r.table.assign(variant=label, solver=name, step_size=h))
        info_v[label] = {"solver": name, "step_size": h, "steps": int(len(r.table) - 1), "stopped_by": r.stopped_by,
                         "work": int(w[-1]), "grads": int(objective.counts["grad"]), "hvps": int(objective.counts["hvp"]),
                         "seconds": time.perf_counter() - clock, "t_end": float(r.table["t"].iloc[-1])}
    ref = ReferenceFlow(rtol=config["rtol"], atol=config["atol"])
    ref_start = time.perf_counter()
    dist = distances(snaps, lambda ts: list(ref.integrate(objective, objective.theta0, ts)), objective.theta0, T,
                     lambda th: objective.loss(th).item())
    ref_seconds = time.perf_counter() - ref_start
    dist = dist.rename(columns={"solver": "variant"})
    dist["work"] = np.nan
    for label, w in work.items():
        rows = dist.index[dist.variant == label]
        dist.loc[rows, "work"] = w[: len(rows)]
    dist.to_csv(folder / "distances.csv", index=False)
    for label, v in info_v.items():
        d = dist[(dist.variant == label) & (dist.t > 0)]
        v["max_rel_distance"] = float(d.rel_dist.max()) if len(d) else float("nan")
        v["final_rel_distance"] = float(d.rel_dist.iloc[-1]) if len(d) else float("nan")
    orders = {}
    for name in dict.fromkeys(v["solver"] for v in info_v.values()):
        vs = [v for v in info_v.values() if v["solver"] == name]
        orders[name] = order([v["step_size"] for v in vs], [v["max_rel_distance"] for v in vs])
    info = {"stopped_by": "time", "seconds": time.perf_counter() - start, "theta": objective.theta0,
            "variants": info_v, "orders": orders, "t_end": T,
            "reference": {"nfev": ref.nfev, "seconds": ref_seconds, "rtol": config["rtol"], "atol": config["atol"]}}
    return pd.concat(tables, ignore_index=True), info


EXPERIMENT = Experiment("cost", plan, run, "error versus cost of the flow solvers against a reference", schema=SCHEMA)
