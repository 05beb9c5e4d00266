"""Run folders: executing the runs of a pipeline stage, and loading them back (for notebooks and the ledger).

A run folder ``runs/<name>/`` holds

* ``config.json`` — the resolved config (from ``runs/_plan/<stage>.json``, see :mod:`eoslib.config`);
* ``trajectory.csv`` — one row per iterate (columns of :func:`eoslib.training.train` plus those of
  :class:`eoslib.measure.Measurement` where it fired): ``step, t, loss, dt, grad_norm, sharpness, lam1..,
  accuracy, hess_lam1, ggn_lam1, res_lam1, share_k, alpha_mean, alpha_median, alpha_gmean, chain_gain,
  jnorm_k, afac_k, measure_seconds`` (NaN where not measured);
* ``summary.json`` — how it stopped, its cost, and for sweep runs the measures at each end point;
* ``final.pt`` — ``{"theta": θ_final, "config": config}``;
* ``checkpoint.pt`` / ``phase1.pt`` — only while the run is unfinished: a killed run resumes from them.

A run is *finished* when ``summary.json`` exists and ``config.json`` equals the planned config; a finished
run is never redone, an unfinished one resumes, a run whose config changed is wiped and redone.

Kinds: ``sweep`` (exponential Euler, alignment and λ_max at init, at the fixed flow time ``time`` and at the
first iterate with loss < threshold), ``traj`` (exponential Euler with full measurements every
``measure_every`` steps), ``gd`` (gradient descent at one step size with sharpness tracking), ``compare``
(exponential Euler and GD at equal flow times against a high-accuracy reference flow; ``distances.csv``:
``dist`` = ‖θ(t) − θ_ref(t)‖, ``rel_dist`` = dist / ‖θ_ref(t_end) − θ₀‖ (relative to the flow's whole
displacement), ``rel_dist_local`` = dist / ‖θ_ref(t) − θ₀‖).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

#: columns every trajectory table has (others depend on the solver and the measurements)
BASE_COLUMNS = ("step", "t", "loss")


# ---------------------------------------------------------------------------------------------- paths


def find_root(start: str | Path | None = None) -> Path:
    """The repository root: the first folder at or above ``start`` (default: cwd) holding params.yaml."""
    p = Path(start or os.getcwd()).resolve()
    for d in (p, *p.parents):
        if (d / "params.yaml").exists() and (d / "eoslib").is_dir():
            return d
    for d in (p, *p.parents):
        if (d / "params.yaml").exists():
            return d
    raise FileNotFoundError(f"no params.yaml at or above {p}")


def runs_dir(root: str | Path | None = None) -> Path:
    return find_root(root) / "runs"


def _json_dump(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def _clean(x):
    """Floats → JSON-safe (NaN/inf → None), recursively."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


# ---------------------------------------------------------------------------------------------- building


def _setup(config: dict):
    """(objective, dataset) for a resolved config."""
    import torch

    from .data import load_dataset
    from .models import mlp
    from .objective import Objective

    torch.set_num_threads(int(config.get("threads", 1)))
    s = config["setting"]
    ds = load_dataset(s["dataset"], n=config["n"], seed=config["seed"], classes=s.get("classes"),
                      standardize=s.get("standardize", False))
    m = config["model"]
    dtype = getattr(torch, m["dtype"])
    model = mlp(ds.X.shape[1], m["width"], m["depth"], ds.num_classes, activation=s["activation"],
                init=m["init"], seed=config["seed"], dtype=dtype)
    return Objective(model, ds.X.to(dtype), ds.y, loss=s["loss"]), ds


def _solver(spec: dict):
    from .solvers import ExponentialEuler, GradientDescent

    if spec["name"] == "ee":
        return ExponentialEuler(dt_max=spec["dt_max"], tol=spec.get("tol", 1e-3))
    if spec["name"] == "gd":
        return GradientDescent(lr=spec["lr"], track_every=spec.get("track_every"))
    raise ValueError(f"unknown solver {spec['name']!r}")


class _SkipFirst:
    """Wrap a hook so it does not fire at step 0 (phase 2 starts where phase 1's final row was measured)."""

    def __init__(self, hook):
        self.hook = hook

    def __call__(self, objective, theta, step, t, final):
        return None if step == 0 and not final else self.hook(objective, theta, step=step, t=t, final=final)


def _sharpness_at(objective, theta, solver, tol: float) -> float:
    """λ_max(∇²L) at θ (warm-started from the solver's tracked eigenvectors where it has them)."""
    from .eigen import top_eigenpairs

    v0 = None
    tr = getattr(solver, "tracker", None)
    if tr is not None and tr.vectors is not None:
        v0 = tr.vectors[:, :1]
    r = top_eigenpairs(objective.hvp_operator(theta), objective.P, 1, v0=v0, tol=tol, device=theta.device)
    return float(r.values[0])


def _endpoint(row: pd.Series, config: dict, init: pd.Series) -> dict:
    a0 = init.get("alpha_mean", np.nan)
    out = {"t": row["t"], "step": int(row["step"]), "loss": row["loss"], "sharpness": row.get("sharpness", np.nan)}
    for k in ("accuracy", "alpha_mean", "alpha_median", "alpha_gmean", "chain_gain"):
        out[k] = row.get(k, np.nan)
    out["one_minus_alpha"] = 1 - out["alpha_mean"]
    out["alpha_growth"] = out["alpha_mean"] / a0 if a0 and np.isfinite(a0) else np.nan
    return out


def _train_sweep(config: dict, folder: Path, objective, progress: bool) -> tuple[pd.DataFrame, dict]:
    """Two phases so both end points are exact: run to min(threshold, T), then on to the other one."""
    import torch

    from .measure import Measurement
    from .training import Stop, atomic_save, train

    thr, T, steps = config["loss_threshold"], config["time"], config["max_steps"]
    solver = _solver(config["solver"])
    meas = lambda: Measurement(every=10**9, operators=(), shares=False, probe=config["probe"],  # noqa: E731
                               seed=config["seed"])
    p1 = folder / "phase1.pt"
    if p1.exists():
        st = torch.load(p1, weights_only=False)
        tab1, theta, stop1, sec1 = st["table"], st["theta"], st["stopped_by"], st["seconds"]
        solver.load_state_dict(st["solver"])
    else:
        r = train(solver, objective, until=Stop(loss=thr, time=T, steps=steps), hooks=[meas()],
                  checkpoint=folder / "checkpoint.pt", checkpoint_every=50, progress=progress, desc=str(folder))
        tab1, theta, stop1, sec1 = r.table, r.theta, r.stopped_by, r.seconds
        atomic_save({"table": tab1, "theta": theta, "stopped_by": stop1, "seconds": sec1,
                     "solver": solver.state_dict()}, p1)
    t1 = float(tab1["t"].iloc[-1])
    if stop1 == "time":
        until2 = Stop(loss=thr, steps=steps)
    elif stop1 == "loss":
        until2 = Stop(time=T - t1, steps=steps) if T - t1 > 1e-12 * T else None
    else:
        until2 = None  # step budget exhausted: the missing end point stays undefined
    if until2 is not None:
        r2 = train(solver, objective, theta0=theta, until=until2, hooks=[_SkipFirst(meas())],
                   checkpoint=folder / "checkpoint.pt", checkpoint_every=50, progress=progress, desc=str(folder))
        tab2 = r2.table.copy()
        tab2["step"] += int(tab1["step"].iloc[-1])
        tab2["t"] += t1
        first = tab2.iloc[0]
        # phase 1's final row is phase 2's first iterate: keep one row with both rows' information
        merged = tab1.iloc[-1].combine_first(first.drop(["step", "t"]))
        tab1 = tab1.copy()
        for k, v in merged.items():
            tab1.loc[tab1.index[-1], k] = v
        tab = pd.concat([tab1, tab2.iloc[1:]], ignore_index=True)
        theta_final, stop2, sec2 = r2.theta, r2.stopped_by, r2.seconds
    else:
        tab, theta_final, stop2, sec2 = tab1, theta, None, 0.0
    if "sharpness" not in tab or not np.isfinite(tab["sharpness"].iloc[-1]):
        tab.loc[tab.index[-1], "sharpness"] = _sharpness_at(objective, theta_final, solver, config["solver"]["tol"])
    tab = tab.reset_index(drop=True)
    init = tab.iloc[0]
    ends: dict = {"init": _endpoint(init, config, init)}
    hit_thr = np.flatnonzero(tab["loss"].to_numpy() < thr)
    ends["threshold"] = _endpoint(tab.iloc[hit_thr[0]], config, init) if len(hit_thr) else None
    at_T = np.flatnonzero(np.isclose(tab["t"].to_numpy(), T, rtol=1e-9, atol=0))
    ends["time"] = _endpoint(tab.iloc[at_T[0]], config, init) if len(at_T) else None
    info = {"stopped_by": [stop1, stop2], "seconds": sec1 + sec2, "endpoints": ends,
            "theta": theta_final}
    return tab, info


def _train_plain(config: dict, folder: Path, objective, progress: bool) -> tuple[pd.DataFrame, dict]:
    from .measure import Measurement
    from .training import Stop, train

    solver = _solver(config["solver"])
    hook = Measurement(every=config["measure_every"], probe=config["probe"], seed=config["seed"])
    if config["kind"] == "gd":
        until = Stop(loss=config["loss_threshold"], time=config["time"], steps=config["max_steps"])
    else:
        until = Stop(loss=config["loss_threshold"], steps=config["max_steps"])
    r = train(solver, objective, until=until, hooks=[hook], checkpoint=folder / "checkpoint.pt",
              checkpoint_every=config["checkpoint_every"], progress=progress, desc=str(folder))
    return r.table, {"stopped_by": r.stopped_by, "seconds": r.seconds, "theta": r.theta}


def _train_compare(config: dict, folder: Path, objective, progress: bool) -> tuple[pd.DataFrame, dict]:
    """EE to the loss threshold, GD at each step size to the same flow time, the reference flow at the union
    of their times; distances at equal flow time go to ``distances.csv``."""
    import torch

    from .solvers import GradientDescent, ReferenceFlow
    from .training import Stop, train

    every = config["snapshot_every"]
    snaps: dict[str, list] = {}

    def snapshot(key):
        def hook(objective, theta, step, t, final):
            if final or step % every == 0:
                snaps.setdefault(key, []).append((t, theta.detach().clone()))
            return None
        return hook

    start = time.perf_counter()
    ee = _solver(config["solver"])
    r = train(ee, objective, until=Stop(loss=config["loss_threshold"], steps=config["max_steps"]),
              hooks=[snapshot("ee")], progress=progress, desc="compare/ee")
    tables = {"ee": r.table.assign(solver="ee", lr=np.nan)}
    t_end = float(r.table["t"].iloc[-1])
    for lr in config["gd_lrs"]:
        key = f"gd{lr:g}"
        steps = int(round(t_end / lr))
        rg = train(GradientDescent(lr, track_every=1), objective, until=Stop(steps=min(steps, config["max_steps"])),
                   hooks=[snapshot(key)], progress=progress, desc=f"compare/{key}")
        tables[key] = rg.table.assign(solver="gd", lr=lr)
    times = sorted({round(t, 12) for v in snaps.values() for t, _ in v})
    ref = ReferenceFlow(rtol=config["rtol"], atol=config["atol"])
    ref_start = time.perf_counter()
    thetas = ref.integrate(objective, objective.theta0, times)
    ref_seconds = time.perf_counter() - ref_start
    ref_at = {t: th for t, th in zip(times, thetas)}
    theta0 = objective.theta0
    scale = (thetas[-1] - theta0).norm().item()  # the reference flow's whole displacement ‖θ_ref(t_end) − θ₀‖
    rows = []
    for t, th in zip(times, thetas):
        rows.append({"solver": "reference", "lr": np.nan, "t": t, "loss": objective.loss(th).item(),
                     "dist": 0.0, "rel_dist": 0.0, "rel_dist_local": 0.0, "ref_travel": (th - theta0).norm().item()})
    for key, lst in snaps.items():
        lr = np.nan if key == "ee" else float(key[2:])
        for t, th in lst:
            tr = ref_at[round(t, 12)]
            d = (th - tr).norm().item()
            travel = (tr - theta0).norm().item()
            rows.append({"solver": "ee" if key == "ee" else "gd", "lr": lr, "t": t, "loss": objective.loss(th).item(),
                         "dist": d, "rel_dist": d / scale, "rel_dist_local": d / travel if travel > 0 else np.nan,
                         "ref_travel": travel})
    dist = pd.DataFrame(rows)
    dist.to_csv(folder / "distances.csv", index=False)
    tab = pd.concat(tables.values(), ignore_index=True)
    summ = {}
    for (solver, lr), g in dist[dist.solver != "reference"].groupby(["solver", "lr"], dropna=False):
        key = "ee" if solver == "ee" else f"gd_lr{lr:g}"
        g = g[g.t > 0]
        summ[key] = {"max_rel_distance": g.rel_dist.max(), "final_rel_distance": g.rel_dist.iloc[-1],
                     "t_end": g.t.iloc[-1], "lr": lr}
    info = {"stopped_by": r.stopped_by, "seconds": time.perf_counter() - start, "theta": r.theta,
            "t_end": t_end, "distances": summ, "reference": {"nfev": ref.nfev, "seconds": ref_seconds,
                                                            "rtol": config["rtol"], "atol": config["atol"]}}
    return tab, info


def execute_run(name: str, config: dict, root: str | Path = ".", progress: bool = False) -> dict:
    """Train one run into ``runs/<name>/`` (skip when finished, resume when interrupted). Returns the summary."""
    import torch

    from .training import atomic_save

    folder = Path(root) / "runs" / name
    cfg_file, summ_file = folder / "config.json", folder / "summary.json"
    if cfg_file.exists():
        old = json.loads(cfg_file.read_text())
        if old != config:
            shutil.rmtree(folder)
        elif summ_file.exists():
            return json.loads(summ_file.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    _json_dump(config, cfg_file)
    clock = time.perf_counter()
    objective, ds = _setup(config)
    kind = config["kind"]
    fn = {"sweep": _train_sweep, "traj": _train_plain, "gd": _train_plain, "compare": _train_compare}[kind]
    table, info = fn(config, folder, objective, progress)
    theta = info.pop("theta")
    table.to_csv(folder / "trajectory.csv", index=False)
    atomic_save({"theta": theta, "config": config}, folder / "final.pt")
    sharp = table["sharpness"] if "sharpness" in table else pd.Series(dtype=float)
    summary = {
        "name": name, "kind": kind, "dataset": ds.description, "P": objective.P, "N": objective.N,
        "steps": int(table["step"].max()), "t_end": float(table["t"].iloc[-1]),
        "loss_end": float(table["loss"].iloc[-1]),
        "sharpness_init": float(sharp.dropna().iloc[0]) if sharp.notna().any() else None,
        "sharpness_max": float(sharp.max()) if sharp.notna().any() else None,
        "wall_seconds": time.perf_counter() - clock, "torch_threads": torch.get_num_threads(),
    } | info
    _json_dump(_clean(summary), summ_file)
    for f in ("phase1.pt", "checkpoint.pt"):
        (folder / f).unlink(missing_ok=True)
    return summary


def _execute_one(args) -> tuple[str, float]:
    name, config, root = args
    t = time.perf_counter()
    execute_run(name, config, root)
    return name, time.perf_counter() - t


def execute_stage(stage: str, root: str | Path = ".", workers: int = 1, progress: bool = False) -> None:
    """Run every run of ``runs/_plan/<stage>.json`` (``workers`` processes when > 1) and remove run folders
    in the stage's directory that the plan no longer has."""
    root = Path(root)
    st = json.loads((root / "runs" / "_plan" / f"{stage}.json").read_text())
    # most expensive first (largest N; for GD the smallest step size), so parallel workers finish together
    items = sorted(((name, cfg, str(root)) for name, cfg in st["runs"].items()),
                   key=lambda it: (-it[1]["n"], it[1]["solver"].get("lr", 0.0), it[0]))
    stage_dir = root / st["dir"]
    stage_dir.mkdir(parents=True, exist_ok=True)
    wanted = {(root / "runs" / n).resolve() for n, _, _ in items}
    keep = wanted | {a for w in wanted for a in w.parents}

    def prune(d: Path) -> None:  # remove run folders the plan no longer has (e.g. a dropped size or seed)
        for sub in d.iterdir():
            if sub.is_dir():
                r = sub.resolve()
                if r in wanted:
                    continue
                if r in keep:
                    prune(sub)
                else:
                    shutil.rmtree(sub)

    prune(stage_dir)
    workers = max(1, min(workers, len(items)))
    if workers == 1:
        for it in items:
            name, sec = _execute_one(it)
            print(f"{name}: {sec:.1f} s", flush=True)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            for name, sec in pool.map(_execute_one, items):
                print(f"{name}: {sec:.1f} s", flush=True)


# ---------------------------------------------------------------------------------------------- loading


def load_run(name: str, root: str | Path | None = None) -> dict:
    """One finished run: ``{"name", "config", "summary", "table"}`` (table = trajectory.csv as a DataFrame)."""
    folder = runs_dir(root) / name
    summ = folder / "summary.json"
    if not summ.exists():
        raise FileNotFoundError(f"run {name!r} is not finished ({summ} missing); run `dvc repro` first")
    out = {"name": name, "config": json.loads((folder / "config.json").read_text()),
           "summary": json.loads(summ.read_text()), "table": pd.read_csv(folder / "trajectory.csv")}
    if (folder / "distances.csv").exists():
        out["distances"] = pd.read_csv(folder / "distances.csv")
    return out


def run_names(kind: str | None = None, root: str | Path | None = None) -> list[str]:
    """Names of finished runs (optionally of one kind: sweep, traj, gd, compare), sorted."""
    base = runs_dir(root)
    names = []
    for f in base.rglob("summary.json"):
        name = f.parent.relative_to(base).as_posix()
        if kind is None or name.split("/")[0] == kind:
            names.append(name)
    return sorted(names)


def _describe(name: str, cfg: dict, summ: dict) -> dict:
    s = cfg["setting"]
    d = {"run": name, "kind": cfg["kind"], "setting": s["name"], "dataset": s["dataset"],
         "activation": s["activation"], "loss_fn": s["loss"], "n": cfg["n"], "seed": cfg["seed"],
         "solver": cfg["solver"]["name"], "lr": cfg["solver"].get("lr", np.nan)}
    return d


def load_runs(kind: str | None = None, root: str | Path | None = None, **where) -> pd.DataFrame:
    """All trajectory rows of the finished runs of ``kind``, stacked, with identifying columns (run, kind,
    setting, dataset, activation, loss_fn, n, seed, solver, lr) in front. ``where``: filters on those
    columns, e.g. ``load_runs("traj", setting="digits-elu-ce")``."""
    frames = []
    for name in run_names(kind, root):
        r = load_run(name, root)
        d = _describe(name, r["config"], r["summary"])
        if any(d.get(k) != v for k, v in where.items()):
            continue
        frames.append(r["table"].assign(**d))
    if not frames:
        raise FileNotFoundError(f"no finished runs of kind {kind!r} matching {where} under {runs_dir(root)}")
    df = pd.concat(frames, ignore_index=True)
    front = list(_describe("", {"kind": "", "setting": {"name": "", "dataset": "", "activation": "", "loss": ""},
                                "n": 0, "seed": 0, "solver": {"name": ""}}, {}))
    return df[front + [c for c in df.columns if c not in front]]


def endpoint_table(root: str | Path | None = None) -> pd.DataFrame:
    """One row per (sweep run, end point ∈ init/threshold/time): setting, n, seed, endpoint and the candidate
    measures (alpha_mean, alpha_median, alpha_gmean, one_minus_alpha, chain_gain, alpha_growth, sharpness),
    plus t, step, loss, accuracy. End points a run did not reach are left out (see ``summary.json``)."""
    rows = []
    for name in run_names("sweep", root):
        folder = runs_dir(root) / name
        cfg = json.loads((folder / "config.json").read_text())
        summ = json.loads((folder / "summary.json").read_text())
        d = _describe(name, cfg, summ)
        for ep, vals in summ["endpoints"].items():
            if vals is not None:
                rows.append(d | {"endpoint": ep} | {k: (np.nan if v is None else v) for k, v in vals.items()})
    if not rows:
        raise FileNotFoundError(f"no finished sweep runs under {runs_dir(root)}")
    return pd.DataFrame(rows)


def load_distances(root: str | Path | None = None) -> pd.DataFrame:
    """The compare run's distances to the reference flow at equal flow time (solver, lr, t, loss, dist,
    rel_dist = dist/‖θ_ref(t_end) − θ₀‖, rel_dist_local = dist/‖θ_ref(t) − θ₀‖, ref_travel = ‖θ_ref(t) − θ₀‖)."""
    return pd.read_csv(runs_dir(root) / "compare" / "distances.csv")


def load_params(root: str | Path | None = None) -> dict:
    """params.yaml of the repository (validated)."""
    from .config import load_params as _lp

    return _lp(find_root(root) / "params.yaml")


def load_metrics(name: str, root: str | Path | None = None) -> dict:
    """``metrics/<name>.json`` (e.g. ``powerlaw``, ``claims``)."""
    return json.loads((find_root(root) / "metrics" / f"{name}.json").read_text())


def summaries(kind: str | None = None, root: str | Path | None = None) -> pd.DataFrame:
    """One row per finished run: identifying columns plus the scalar fields of summary.json."""
    rows = []
    for name in run_names(kind, root):
        folder = runs_dir(root) / name
        cfg = json.loads((folder / "config.json").read_text())
        summ = json.loads((folder / "summary.json").read_text())
        rows.append(_describe(name, cfg, summ) | {k: v for k, v in summ.items() if not isinstance(v, (dict, list))})
    return pd.DataFrame(rows)


__all__: Iterable[str] = ["find_root", "execute_run", "execute_stage", "load_run", "load_runs", "run_names",
                          "endpoint_table", "load_distances", "load_params", "load_metrics", "summaries"]
