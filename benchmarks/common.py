"""Shared pieces of the benchmark suite: settings, timing, the steady state."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from eoslib.data import load_dataset
from eoslib.models import mlp
from eoslib.objective import Objective
from eoslib.solvers import ExponentialEuler


@dataclass(frozen=True)
class Setting:
    """A network, its data and how the steady state is reached: ``gd_steps`` GD steps at ``gd_lr`` (cheap,
    lets the outlier eigenvalues emerge), then ``ee_steps`` exponential Euler steps, the first ``loose_steps``
    of them with eigen tolerance 1e-2 (a cheaper cold start), the rest at ``tol``."""

    name: str
    dataset: str
    n: int
    width: int
    depth: int
    k: int = 9
    init: str = "default"
    activation: str = "elu"
    seed: int = 0
    dt_max: float = 0.5
    tol: float = 1e-3
    gd_steps: int = 0
    gd_lr: float = 0.3
    ee_steps: int = 20
    loose_steps: int = 0

    def describe(self) -> dict:
        return asdict(self)


DIGITS = Setting("digits", "digits", 512, 128, 4, ee_steps=20)
WIDE = Setting("wide", "mnist1d", 256, 512, 6, gd_steps=60, ee_steps=5, loose_steps=3)


def build(s: Setting, device: str = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None,
          width: int | None = None, **objective_kw) -> Objective:
    """The CE objective of setting ``s`` (optionally with another N or width) on ``device`` in ``dtype``."""
    ds = load_dataset(s.dataset, n=n or s.n, seed=s.seed)
    model = mlp(ds.X.shape[1], width or s.width, s.depth, ds.num_classes, activation=s.activation, init=s.init,
                seed=s.seed, dtype=dtype).to(device)
    return Objective(model, ds.X.to(device), ds.y.to(device), loss="ce", **objective_kw)


def steady_state(obj: Objective, s: Setting, gd_steps: int | None = None, ee_steps: int | None = None,
                 loose_steps: int | None = None) -> tuple[torch.Tensor, ExponentialEuler, list[dict]]:
    """θ after the setting's warm-up, and the exponential Euler solver whose tracker is warm there."""
    gd_steps = s.gd_steps if gd_steps is None else gd_steps
    ee_steps = s.ee_steps if ee_steps is None else ee_steps
    loose_steps = s.loose_steps if loose_steps is None else loose_steps
    theta = obj.theta0.clone()
    for _ in range(gd_steps):
        theta = theta - s.gd_lr * obj.loss_and_grad(theta)[1]
    solver = ExponentialEuler(dt_max=s.dt_max, stiff_dim=s.k, tol=s.tol)
    recs = []
    for i in range(ee_steps):
        solver.tracker.tol = 1e-2 if i < loose_steps else s.tol
        theta, rec = solver.step(obj, theta)
        recs.append(rec)
    solver.tracker.tol = s.tol
    return theta, solver, recs


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall times of each function, run round-robin ``repeats`` times (after ``warmup`` untimed rounds), so
    that drifts in machine load hit every alternative alike."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    return times


def med(ts: list[float]) -> float:
    return statistics.median(ts)


def spread(ts: list[float]) -> list[float]:
    """[25th, 75th] percentiles."""
    return [float(np.percentile(ts, 25)), float(np.percentile(ts, 75))]


def fit_exponent(x: list[float], y: list[float]) -> dict:
    """Least-squares slope of log y against log x (y ∝ x^slope) and its R²."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    slope, icpt = np.polyfit(lx, ly, 1)
    pred = slope * lx + icpt
    ss = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float(((ly - pred) ** 2).sum()) / ss if ss > 0 else float("nan")
    return {"exponent": float(slope), "r2": r2}
