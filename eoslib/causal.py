"""Analysis of the causal intervention runs (claim C3): arms beside the free flow at equal loss and equal
flow time, and the decomposition of the chain-gain growth. Pure pandas — read by the ledger and notebook 05
without the training code (:mod:`eoslib.experiments.intervention` trains the runs)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .tables import CHAIN_COLUMNS, LOSS_RTOL, _float, lam_max, loss_levels, value_at  # noqa: F401  (shared with training)


def compare_arms(runs: Mapping[str, tuple[pd.DataFrame, Mapping]], fractions=(0.25, 0.5, 0.75, 1.0)
                 ) -> pd.DataFrame:
    """Every arm beside the free run of its seed. ``runs``: run name → (trajectory table, summary).

    Rows: setting, seed, alpha_star, hold, basis (``loss``: at L_s·(L_thr/L_s)^f; ``time``: at
    t_s + f·(t_free,end − t_s), t_s the switch time, L_thr the free run's final loss), f, level, lam_free,
    lam_arm (λ_max interpolated from each table; None where a run never reaches the level), ratio
    (lam_arm / lam_free), and switch (step, t, loss, ᾱ, λ_max); basis ``peak`` (f = level = None): the largest
    λ_max from the switch to the free run's end time. ``removed_mean``: the time-weighted mean fraction of ‖∇L‖²
    the arm's projection removed from the switch to the comparison point (:func:`removed_until`). Arms that never
    switched are left out."""
    free = {}
    for name, (tab, summ) in runs.items():
        if summ.get("arm") == "free":
            free[name.rsplit("/", 1)[0]] = tab
    rows = []
    for name, (tab, summ) in runs.items():
        if summ.get("arm") in (None, "free") or not summ.get("switched"):
            continue
        base = name.rsplit("/", 1)[0]
        if base not in free:
            continue
        ft, sw = free[base], summ["switch"]
        ft, tab = ft.assign(lam_max=lam_max(ft)), tab.assign(lam_max=lam_max(tab))
        after = tab[tab["step"] >= sw["step"]]
        f_after = ft[ft["t"] >= sw["t"] - 1e-12]
        t_end, l_end = float(ft["t"].iloc[-1]), float(ft["loss"].iloc[-1])
        setting, seed = base.split("/")[1], int(base.rsplit("seed", 1)[1])
        common = {"setting": setting, "seed": seed, "alpha_star": summ["alpha_star"], "hold": summ["arm"],
                  "switch_t": sw["t"], "switch_loss": sw["loss"], "switch_abar": sw["abar"],
                  "switch_lam": sw["sharpness"]}
        points = [(b, f) for f in fractions for b in ("loss", "time")] + [("peak", None)]
        for basis, f in points:
            if basis == "peak":
                level, t_cmp = None, t_end
                la = _float(after.loc[after["t"] <= t_end * (1 + 1e-9), "lam_max"].max())
                lf = _float(f_after.loc[:, "lam_max"].max())
            else:
                if basis == "loss":
                    level, x, lg, rt = sw["loss"] * (l_end / sw["loss"]) ** f, "loss", True, LOSS_RTOL
                else:
                    level, x, lg, rt = sw["t"] + f * (t_end - sw["t"]), "t", False, 1e-9
                la, lf = value_at(after, x, level, "lam_max", lg, rt), value_at(f_after, x, level, "lam_max", lg, rt)
                t_cmp = level if basis == "time" else value_at(after, "loss", level, "t", True, LOSS_RTOL)
            rows.append(common | {"basis": basis, "f": f, "level": level, "lam_free": lf, "lam_arm": la,
                                  "ratio": la / lf if la is not None and lf else None,
                                  "removed_mean": removed_until(after, t_cmp)})
    return pd.DataFrame(rows)


def removed_until(held: pd.DataFrame, t_end: float | None) -> float | None:
    """The time-weighted mean of the ``removed`` column (the fraction of ‖∇L‖² a step's projection removed, taken
    at the step's start) over the steps that start before ``t_end`` (the whole table when None): Σ ρᵢΔtᵢ / ΣΔtᵢ.
    None without the column or steps."""
    if "removed" not in held:
        return None
    t = held["t"].to_numpy(float)
    dt = np.diff(t, append=t[-1]) if len(t) else t
    ok = np.isfinite(held["removed"].to_numpy(float)) & (dt > 0)
    if t_end is not None:
        ok &= t < t_end * (1 + 1e-12)
    w = dt[ok]
    return float((held["removed"].to_numpy(float)[ok] * w).sum() / w.sum()) if w.sum() > 0 else None


def removed_over_time(runs: Mapping[str, tuple[pd.DataFrame, Mapping]]) -> pd.DataFrame:
    """Every arm's removed fraction along its held phase: setting, seed, alpha_star, hold, t − t_switch,
    removed (for the arms panel of notebook 05)."""
    out = []
    for name, (tab, summ) in runs.items():
        if not summ.get("switched") or "removed" not in tab:
            continue
        held = tab[tab["phase"] == "hold"]
        setting, seed = name.split("/")[1], int(name.split("/")[2].removeprefix("seed"))
        out.append(pd.DataFrame({"setting": setting, "seed": seed, "alpha_star": summ["alpha_star"],
                                 "hold": summ["arm"], "t_since_switch": held["t"] - summ["switch"]["t"],
                                 "removed": held["removed"]}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def horse_race_rows(runs: Mapping[str, tuple[pd.DataFrame, Mapping]]) -> pd.DataFrame:
    """The free flows' measured rows for the C3 v1 horse race (:mod:`eoslib.horse_race`): ``group`` (setting/
    seed), ``setting``, ``log_lam_max`` = log λ_max(∇²L), ``log_abar`` = log ᾱ (the probe's ``alpha_mean``),
    ``log_norms`` = mean Σₖ log‖Jᵏ‖, ``t``, ``log_input_gain`` = log mean ‖∂f/∂x‖₂, ``log_output_norm`` =
    log ‖Aᴷ‖_F — the rows where all are recorded (the measurement's rows)."""
    out = []
    for name, (tab, summ) in runs.items():
        need = {"alpha_mean", "log_norms_mean", "input_gain", "output_weight_norm"}
        if summ.get("arm") != "free" or not need <= set(tab):
            continue
        tab = tab.assign(lam_max=lam_max(tab))
        d = tab.dropna(subset=[*need, "lam_max"])
        d = d[(d["lam_max"] > 0) & (d["alpha_mean"] > 0)]
        setting = name.split("/")[1]
        out.append(pd.DataFrame({"group": f"{setting}/{name.split('/')[2]}", "setting": setting,
                                 "log_lam_max": np.log(d["lam_max"]), "log_abar": np.log(d["alpha_mean"]),
                                 "log_norms": d["log_norms_mean"], "t": d["t"],
                                 "log_input_gain": np.log(d["input_gain"]),
                                 "log_output_norm": np.log(d["output_weight_norm"])}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def mechanism(runs: Mapping[str, tuple[pd.DataFrame, Mapping]]) -> dict:
    """The Taylor-model flows (the mechanism control): run → λ_max at the start, its minimum, peak, end and the
    sharpening peak/min."""
    return {name.split("/", 1)[1].rsplit("/", 1)[0]: dict(summ["taylor"]) for name, (tab, summ) in runs.items()
            if summ.get("arm") == "taylor" and summ.get("taylor")}


def load_runs(root: str | Path, setting: str | None = None) -> dict[str, tuple[pd.DataFrame, dict]]:
    """Every finished ``intervene`` run under ``root/runs/intervene`` (optionally one setting): name → (table,
    summary), for :func:`compare_arms`."""
    from .io import read_json

    out = {}
    base = Path(root) / "runs"
    for s in sorted((base / "intervene").glob("*/seed*/*/summary.json")):
        name = str(s.parent.relative_to(base))
        if setting is None or name.split("/")[1] == setting:
            out[name] = (pd.read_csv(s.parent / "trajectory.csv"), read_json(s))
    return out


def decomposition(table: pd.DataFrame) -> pd.DataFrame:
    """The chain-gain growth split over time: t, loss, ``chain`` = Δ mean log‖P₁‖, ``alignment`` = Δ mean log α,
    ``norms`` = Δ mean Σₖ log‖Jᵏ‖ (Δ: change since θ₀), so chain = alignment + norms at every row."""
    d = table[["t", "loss", "log_chain_mean", "log_alpha_mean", "log_norms_mean"]].dropna()
    return pd.DataFrame({"t": d["t"], "loss": d["loss"],
                         "chain": d["log_chain_mean"] - d["log_chain_mean"].iloc[0],
                         "alignment": d["log_alpha_mean"] - d["log_alpha_mean"].iloc[0],
                         "norms": d["log_norms_mean"] - d["log_norms_mean"].iloc[0]}).reset_index(drop=True)
