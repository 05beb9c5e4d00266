"""Loading finished runs back (for the fits, the ledger and the notebooks). Nothing here trains.

A *profile* is a folder holding a ``params.yaml`` and what its pipeline produced: ``runs/``, ``metrics/``,
``figures/``, ``CLAIMS.md``. The default profile is the repository root; others live in ``profiles/<name>/``.
Every loader takes ``root`` = the profile folder (default: found from the working directory).

A run folder ``runs/<name>/`` holds ``config.json`` (the resolved config, see :mod:`eoslib.config`),
``trajectory.csv`` (one row per iterate: the columns of :func:`eoslib.training.train` plus those of the
measurement hook where it fired; NaN where not measured), ``summary.json`` (how it stopped, its cost, and
kind-specific results) and ``final.pt``. A run is *finished* when ``summary.json`` exists.
Sweep runs also hold ``endpoints.pt`` (θ at each end point); the ``endpoints`` stage measures every
registered measure there into ``runs/endpoints/<setting>.csv`` (:func:`endpoint_table` reads them).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .io import read_json

# ---------------------------------------------------------------------------------------------- paths


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: the first folder at or above ``start`` (default: cwd) holding params.yaml and eoslib/."""
    p = Path(start or os.getcwd()).resolve()
    for d in (p, *p.parents):
        if (d / "params.yaml").exists() and (d / "eoslib").is_dir():
            return d
    raise FileNotFoundError(f"no repository root (params.yaml beside eoslib/) at or above {p}")


def profile_root(profile: str | os.PathLike | None = None, start: str | os.PathLike | None = None) -> Path:
    """The folder of a profile: the repository root for the default profile (``profile`` None or ""), else
    ``profile`` (absolute, or relative to the repository root, e.g. ``profiles/extended``)."""
    if profile in (None, "", "."):
        return find_root(start)
    p = Path(profile)
    p = p if p.is_absolute() else find_root(start) / p
    if not (p / "params.yaml").exists():
        raise FileNotFoundError(f"profile {profile!r}: no params.yaml in {p}")
    return p


def _root(root: str | os.PathLike | None) -> Path:
    if root is None:
        return find_root()
    return Path(root)


def runs_dir(root: str | os.PathLike | None = None) -> Path:
    return _root(root) / "runs"


# ---------------------------------------------------------------------------------------------- runs


def load_run(name: str, root: str | os.PathLike | None = None) -> dict:
    """One finished run: ``{"name", "config", "summary", "table"}`` (table = trajectory.csv as a DataFrame,
    plus ``distances`` for runs that wrote ``distances.csv``)."""
    folder = runs_dir(root) / name
    summ = folder / "summary.json"
    if not summ.exists():
        raise FileNotFoundError(f"run {name!r} is not finished ({summ} missing); run `dvc repro` first")
    out = {"name": name, "config": read_json(folder / "config.json"), "summary": read_json(summ),
           "table": pd.read_csv(folder / "trajectory.csv")}
    if (folder / "distances.csv").exists():
        out["distances"] = pd.read_csv(folder / "distances.csv")
    return out


def run_names(kind: str | None = None, root: str | os.PathLike | None = None) -> list[str]:
    """Names of the finished runs (optionally of one kind, the first path component), sorted."""
    base = runs_dir(root)
    names = []
    for f in base.rglob("summary.json"):
        name = f.parent.relative_to(base).as_posix()
        if kind is None or name.split("/")[0] == kind:
            names.append(name)
    return sorted(names)


def describe(name: str, cfg: dict) -> dict:
    """The identifying columns of a run: run, kind, setting, dataset, activation, loss_fn, n, seed, solver, lr."""
    s = cfg["setting"]
    return {"run": name, "kind": cfg["kind"], "setting": s["name"], "dataset": s["dataset"],
            "activation": s["activation"], "loss_fn": s["loss"], "n": cfg["n"], "seed": cfg["seed"],
            "solver": cfg["solver"]["name"], "lr": cfg["solver"].get("lr", np.nan)}


ID_COLUMNS = ("run", "kind", "setting", "dataset", "activation", "loss_fn", "n", "seed", "solver", "lr")


def load_runs(kind: str | None = None, root: str | os.PathLike | None = None, **where) -> pd.DataFrame:
    """All trajectory rows of the finished runs of ``kind``, stacked, with the identifying columns
    (:data:`ID_COLUMNS`) in front. ``where``: filters on those columns, e.g.
    ``load_runs("traj", setting="digits-elu-ce")``. Raises FileNotFoundError when nothing matches."""
    frames = []
    for name in run_names(kind, root):
        r = load_run(name, root)
        d = describe(name, r["config"])
        if any(d.get(k) != v for k, v in where.items()):
            continue
        frames.append(r["table"].assign(**d))
    if not frames:
        raise FileNotFoundError(f"no finished runs of kind {kind!r} matching {where} under {runs_dir(root)}")
    df = pd.concat(frames, ignore_index=True)
    return df[list(ID_COLUMNS) + [c for c in df.columns if c not in ID_COLUMNS]]


def summaries(kind: str | None = None, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per finished run: identifying columns plus the scalar fields of summary.json."""
    rows = []
    for name in run_names(kind, root):
        folder = runs_dir(root) / name
        summ = read_json(folder / "summary.json")
        rows.append(describe(name, read_json(folder / "config.json"))
                    | {k: v for k, v in summ.items() if not isinstance(v, (dict, list))})
    return pd.DataFrame(rows)


def endpoint_table(root: str | os.PathLike | None = None, setting: str | None = None) -> pd.DataFrame:
    """One row per (sweep run, end point ∈ init/threshold/time): identifying columns, ``endpoint`` and every
    registered measure (see :mod:`eoslib.measures`) plus t, step, loss. Read from ``runs/endpoints/*.csv``
    (written by the ``endpoints`` stage). End points a run did not reach are absent."""
    d = runs_dir(root) / "endpoints"
    files = sorted(d.glob("*.csv")) if setting is None else [d / f"{setting}.csv"]
    files = [f for f in files if f.exists()]
    if not files:
        raise FileNotFoundError(f"no end-point tables under {d}; run `dvc repro` (stage endpoints)")
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def load_distances(root: str | os.PathLike | None = None, run: str = "compare") -> pd.DataFrame:
    """A comparison run's distances to the reference flow at equal flow time (solver, lr, t, loss, dist,
    rel_dist = dist/‖θ_ref(t_end) − θ₀‖, rel_dist_local = dist/‖θ_ref(t) − θ₀‖, ref_travel = ‖θ_ref(t) − θ₀‖)."""
    return pd.read_csv(runs_dir(root) / run / "distances.csv")


# ---------------------------------------------------------------------------------------------- profile files


def load_metrics(name: str, root: str | os.PathLike | None = None) -> dict:
    """``metrics/<name>.json`` of the profile (e.g. ``powerlaw``, ``claims``)."""
    return json.loads((_root(root) / "metrics" / f"{name}.json").read_text())


def claim_row(key: str, root: str | os.PathLike | None = None, version: int | None = None) -> dict:
    """The ledger's row of claim ``key`` from the profile's ``metrics/claims.json`` (written by the ``ledger``
    stage, :mod:`eoslib.claims`): ``verdict``, ``summary``, ``criterion``, ``measured``, ``criteria_version`` and
    ``criteria_values`` (the thresholds judged), under the latest criteria version the profile registers or,
    with ``version``, under that one. A claim or version the profile does not register reads *not measured*,
    as :func:`eoslib.claims.judge_claim` says it (the notebooks read verdicts here, not from the claims' code)."""
    row = load_metrics("claims", root).get(key)
    if row is not None and version in (None, row["criteria_version"]):
        return row
    earlier = None if row is None else row.get("earlier", {}).get(f"v{version}")
    if earlier is not None:
        return earlier
    what = "no criteria" if row is None else f"criteria v{version} not"
    return {"verdict": "not measured", "measured": {}, "summary": f"{what} registered in this profile",
            "criterion": "", "criteria_version": version, "criteria_values": {}}


def c4_growth_table(row: Mapping) -> pd.DataFrame:
    """C4 v3's secondary table from the ledger's C4 row (``measured.secondary``) as one row per measure × end
    point × setting: ``label`` (*grows (power law)*, *grows, saturating*, …), ``beta`` (mean of the per-seed
    slopes over the common range) with ``beta_lo``/``beta_hi`` (its t-interval), ``fold_change``, ``p_holm`` (the
    Holm-adjusted one-sided p used). Empty when the row carries no v3 table."""
    sec = (row.get("measured") or {}).get("secondary") or {}
    out = []
    for key, by in sec.items():
        measure, endpoint = key.split("@")
        for s, v in by.items():
            lo, hi = v.get("beta_interval") or [None, None]
            out.append({"measure": measure, "endpoint": endpoint, "setting": s, "label": v.get("label"),
                        "beta": v.get("beta"), "beta_lo": lo, "beta_hi": hi, "fold_change": v.get("fold_change"),
                        "p_holm": v.get("p_used")})
    return pd.DataFrame(out)
