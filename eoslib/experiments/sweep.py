"""The power-law sweep (claim C4): settings × sizes N × seeds, each trained by the flow solver to its end points.

End points: ``threshold`` — the flow lands on the loss threshold (the last step retaken shorter, so
L = threshold within 1 %, see :class:`eoslib.training.Stop`); ``time`` — flow time ``sweep.time`` exactly;
``init`` — θ₀. Read along the way, up to the threshold, on the solver's own grid (iterates, not landed):
``peak`` — the iterate with the largest λ_max (the solver's certified estimate at that iterate); ``edge`` — the
first iterate with λ_max ≥ 2/η₀ for ``sweep.edge_lr`` = η₀ (where GD at η₀ would enter the edge of stability;
absent when the flow never gets there); ``half_loss`` — the first iterate with L ≤ (L₀ + threshold)/2.
Training stores θ at each end point in ``endpoints.pt``; the ``endpoints`` stage measures every registered
measure there (:mod:`eoslib.measures`), so a new measure needs no retraining.
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
    "edge_lr": Opt(Num()),  # η₀ of the ``edge`` end point (λ_max ≥ 2/η₀); none: no such end point
}


def _lam(rec: dict) -> float | None:
    """λ_max at the iterate of a solver's record: RKC's ``lam_max``, else the largest tracked eigenvalue."""
    if "lam_max" in rec:
        return float(rec["lam_max"])
    return float(rec["eigs"][0]) if rec.get("eigs") else None


class Capture:
    """The flow solver, recording θ at the end points read along the way (``peak``, ``edge``, ``half_loss``).

    ``step`` delegates to the wrapped solver and reads its record at θ (``lam_max`` or ``sharpness``, ``loss``);
    every other attribute is the solver's. Its state (the captured θs, the running peak) travels in the
    solver's ``state_dict``, so a resumed run captures the same iterates. Iterates below the loss threshold are
    not seen (the training loop steps from one before it lands on the threshold); ``active`` False freezes it
    (phase 2 after the threshold)."""

    def __init__(self, solver, edge_lr: float | None, loss_half: float, threshold: float):
        self.solver, self.edge_lr, self.loss_half, self.threshold = solver, edge_lr, loss_half, threshold
        self.active = True
        self.thetas: dict = {}
        self.rows: dict = {}
        self.peak_lam = float("-inf")

    def __getattr__(self, name):
        return getattr(self.__dict__["solver"], name)

    def step(self, objective, theta, dt_cap=None):
        theta_next, rec = self.solver.step(objective, theta, dt_cap=dt_cap)
        if self.active:
            self._see(theta, rec)
        return theta_next, rec

    def _see(self, theta, rec: dict) -> None:
        if rec["loss"] < self.threshold:  # an iterate past the threshold (the loop then lands before it)
            return
        lam = _lam(rec)
        if lam is not None and lam > self.peak_lam:
            self.peak_lam = float(lam)
            self._keep("peak", theta, rec)
        if self.edge_lr and lam is not None and lam >= 2.0 / self.edge_lr and "edge" not in self.thetas:
            self._keep("edge", theta, rec)
        if rec["loss"] <= self.loss_half and "half_loss" not in self.thetas:
            self._keep("half_loss", theta, rec)

    def _keep(self, ep: str, theta, rec: dict) -> None:
        self.thetas[ep] = theta.detach().clone()
        self.rows[ep] = {"loss": float(rec["loss"]), "lam_max": _lam(rec)}

    def state_dict(self) -> dict:
        return self.solver.state_dict() | {"capture": {"thetas": self.thetas, "rows": self.rows,
                                                       "peak_lam": self.peak_lam, "active": self.active}}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        cap = state.pop("capture", None)
        self.solver.load_state_dict(state)
        if cap is not None:
            self.thetas, self.rows, self.peak_lam, self.active = (cap["thetas"], cap["rows"], cap["peak_lam"],
                                                                  cap["active"])


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
                if sw.get("edge_lr"):
                    c["edge_lr"] = sw["edge_lr"]
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
    loss0 = objective.loss(objective.theta0).item()
    solver = Capture(build_solver(config["solver"]), config.get("edge_lr"), (loss0 + thr) / 2, thr)
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
    solver.active = stop1 != "loss"  # the end points along the way are read up to the threshold
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
    for ep, th in solver.thetas.items():  # the iterate's row: its θ equals the one the solver stepped from
        i = _row_of(tab, solver.rows[ep])
        ends[ep], rows[ep] = th, {k: tab[k].iloc[i] for k in ("step", "t", "loss")}
    atomic_save({ep: th.detach().cpu().clone() for ep, th in ends.items()}, folder / "endpoints.pt")
    info = {"stopped_by": [stop1, stop2], "seconds": sec1 + sec2, "endpoints": rows, "theta": theta}
    return tab, info


def _row_of(tab: pd.DataFrame, rec: dict) -> int:
    """The trajectory row of a captured iterate: the first with its loss (a flow's loss falls strictly, and a step
    retaken from the same iterate when landing records the same loss, its λ_max re-solved)."""
    hit = (tab["loss"] == rec["loss"]).to_numpy().nonzero()[0]
    if hit.size == 0:
        raise RuntimeError(f"sweep: no trajectory row has the captured iterate's loss {rec['loss']}")
    return int(hit[0])


EXPERIMENT = Experiment("sweep", plan, run, "power-law sweep over N × seeds to its end points", schema=SCHEMA)
