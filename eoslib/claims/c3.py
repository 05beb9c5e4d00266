"""C3: the rise in sharpness is caused by the layerwise Jacobians becoming aligned.

v1 (as first registered) tests co-movement along the flow (``traj`` runs): Spearman ρ(ᾱ, λ_max) over a run and
ᾱ's growth ᾱ_end/ᾱ_init. v2 tests cause on the ``intervene`` runs: after the switch (ᾱ = α*, sharpness λ_s, loss
L_s) one arm holds ᾱ fixed, a placebo holds the layer norms Π‖Jᵏ‖ fixed, the free flow holds nothing; at the loss
level L_s·(L_thr/L_s)^level an arm keeps the share R = log(λ_arm/λ_s) / log(λ_free/λ_s) of the free sharpening.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..causal import compare_arms, decomposition, load_runs
from ..results import endpoint_table
from .framework import Claim, Criteria, NotMeasured, verdict_of
from .runs import per_traj_run
from .stats import comovement, spearman

CLAIM = Claim("C3", statement="The rise in sharpness is caused by the layerwise Jacobians becoming aligned (v1 tests "
                              "co-movement; v2 and later the cause, by holding ᾱ fixed).", notebook="05_alignment",
              # v1 judges the traj runs (its across-sweep ρ on the end points is reported, not judged); v2, v3 the
              # intervention runs
              reads={1: ("traj",), 2: ("intervene",), 3: ("intervene",)})


@dataclass(frozen=True)
class V1(Criteria):
    """As first registered: co-movement of ᾱ and λ_max along every measured flow run."""

    min_spearman: float = 0.8  # Spearman ρ(ᾱ, λ_max) over each measured run
    min_alpha_growth: float = 2.0  # ᾱ_end / ᾱ_init

    def criterion(self, params: Mapping) -> str:
        return (f"in every measured flow run, Spearman ρ(ᾱ, λ_max) over training ≥ {self.min_spearman} "
                f"and ᾱ grows ≥ {self.min_alpha_growth}× (partly: some runs)")


def across_sweep_spearman(root: str | Path) -> dict[str, float]:
    """Per setting, Spearman ρ(ᾱ, λ_max) across the sweep runs at the threshold end point (reported, not judged);
    empty without end-point tables."""
    across = {}
    try:
        thr = endpoint_table(root)
    except FileNotFoundError:
        return across
    thr = thr[thr.endpoint == "threshold"]
    for s, g in thr.groupby("setting"):
        if {"alpha_mean", "sharpness"} <= set(g):
            across[s] = spearman(g["alpha_mean"], g["sharpness"])
    return across


@CLAIM.version(1, V1())
def judge_v1(params: dict, root: Path, c: V1, fits: dict | None = None) -> dict:
    """Per measured trajectory run: ρ(ᾱ, λ_max) ≥ ``min_spearman`` and ᾱ_end/ᾱ_init ≥ ``min_alpha_growth``."""
    def judge(tab: pd.DataFrame) -> dict | None:
        if not {"alpha_mean", "hess_lam1"} <= set(tab):
            return None
        m, rho, growth = comovement(tab)
        if len(m) < 2:
            return None
        ok = bool(rho >= c.min_spearman and growth >= c.min_alpha_growth)
        return {"spearman_alpha_sharpness": rho, "alpha_init": m["alpha_mean"].iloc[0],
                "alpha_end": m["alpha_mean"].iloc[-1], "alpha_growth": growth, "ok": ok}

    per, oks = per_traj_run(root, judge)
    summary = "; ".join(f"{k}: ρ = {v['spearman_alpha_sharpness']:.2f}, ᾱ {v['alpha_init']:.2f} → {v['alpha_end']:.2f}"
                        for k, v in per.items())
    return {"verdict": verdict_of(oks),
            "measured": {"runs": per, "across_sweep_spearman_at_threshold": across_sweep_spearman(root)},
            "summary": summary}


@dataclass(frozen=True)
class V2(Criteria):
    """Causal: R = the share of the free flow's log-sharpening kept after ᾱ = α*."""

    max_alpha_hold_ratio: float = 0.5  # holding ᾱ removes at least half of the sharpening ...
    min_placebo_ratio: float = 0.5  # ... while holding the layer norms removes less than half
    level: float = 1.0  # compared at the free flow's final (threshold) loss

    def criterion(self, params: Mapping) -> str:
        return (f"from ᾱ = α* to the loss level L_s·(L_thr/L_s)^{self.level:g}, holding ᾱ keeps R = "
                f"log(λ/λ_s)/log(λ_free/λ_s) ≤ {self.max_alpha_hold_ratio} while holding Π‖Jᵏ‖ (placebo) keeps R ≥ "
                f"{self.min_placebo_ratio}, for every seed and α* (partly: some)")


def kept_ratio(x) -> float | None:
    """R = log(λ_arm/λ_s) / log(λ_free/λ_s) of one compared arm (a row of :func:`eoslib.causal.compare_arms`);
    None where the arm has no λ there."""
    if x.lam_arm is None or x.lam_free is None or not np.isfinite(x.lam_arm):
        return None
    return float(np.log(x.lam_arm / x.switch_lam) / np.log(x.lam_free / x.switch_lam))


def free_flow_decomposition(runs: Mapping) -> dict:
    """The chain-gain decomposition Δlog‖P₁‖ = Δlog ᾱ + ΔΣₖ log‖Jᵏ‖ at the end of each free flow, with the
    alignment share Δlog ᾱ / Δlog‖P₁‖ (reported, not judged)."""
    decomp = {}
    for name, (tab, summ) in runs.items():
        if summ.get("arm") == "free" and {"log_chain_mean", "log_alpha_mean", "log_norms_mean"} <= set(tab):
            d = decomposition(tab)
            if len(d):
                last = d.iloc[-1]
                decomp[name.split("/", 2)[2].rsplit("/", 1)[0]] = {
                    "chain": float(last.chain), "alignment": float(last.alignment), "norms": float(last.norms),
                    "alignment_share": float(last.alignment / last.chain) if last.chain else None}
    return decomp


def _v2_summary(per: dict, decomp: dict) -> str:
    fmt = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731

    def time_range(hold: str) -> str:
        r = [v[hold]["R_time"] for v in per.values() if (v.get(hold) or {}).get("R_time") is not None]
        return f"{min(r):.2f}–{max(r):.2f}" if r else "–"

    unreached = sum((v.get("norms") or {}).get("R") is None for v in per.values() if "norms" in v)
    return ("sharpening kept (R) with ᾱ held / with the norms held: " + "; ".join(
        f"{k}: {fmt((v.get('alpha') or {}).get('R'))} / {fmt((v.get('norms') or {}).get('R'))}" for k, v in per.items())
        + (f" (– : {unreached} placebo arms never reach the loss level)" if unreached else "")
        + f"; at equal flow time (the free flow's end) R = {time_range('alpha')} with ᾱ held, "
          f"{time_range('norms')} with the norms held (reported, not judged)"
        + ("; free flow: alignment share of Δlog‖P₁‖ " + ", ".join(
            f"{fmt(v['alignment_share'])}" for v in decomp.values()) if decomp else ""))


@CLAIM.version(2, V2())
def judge_v2(params: dict, root: Path, c: V2, fits: dict | None = None) -> dict:
    """C3 as a causal claim, judged on the intervention runs: from the switch (ᾱ = α*) to the loss level
    L_s·(L_thr/L_s)^``level``, the sharpening of an arm relative to the free flow's,
    R = log(λ_arm/λ_s) / log(λ_free/λ_s). Holding ᾱ must remove at least the share 1 − ``max_alpha_hold_ratio``
    of the sharpening (R_ᾱ ≤ max_alpha_hold_ratio), while the placebo — holding the layer norms Π‖Jᵏ‖ instead —
    must not (R_norms ≥ ``min_placebo_ratio``), for every seed and α*."""
    runs = load_runs(root)
    if not runs:
        raise NotMeasured("no intervention runs")
    cmp = compare_arms(runs, fractions=(c.level,))
    cmp = cmp[(cmp.basis == "loss")]
    if not len(cmp):
        raise NotMeasured("no intervention arm reached the comparison loss level")
    # reported beside the verdict, not judged: R at equal flow time (the free run's end time), defined also for an
    # arm that never reaches the loss level
    at_time = compare_arms(runs, fractions=(1.0,))
    at_time = at_time[at_time.basis == "time"].set_index(["seed", "alpha_star", "hold"])
    per, oks = {}, []
    for (seed, a), g in cmp.groupby(["seed", "alpha_star"]):
        row = {}
        for hold, h in g.groupby("hold"):
            x = h.iloc[0]
            xt = at_time.loc[(seed, a, hold)] if (seed, a, hold) in at_time.index else None
            r_time = None if xt is None else kept_ratio(xt)
            if kept_ratio(x) is None:
                row[hold] = {"R": None, "lam_arm": None, "lam_free": x.lam_free, "R_time": r_time}
                continue
            row[hold] = {"R": kept_ratio(x), "lam_arm": float(x.lam_arm), "lam_free": float(x.lam_free),
                         "lam_switch": float(x.switch_lam), "R_time": r_time}
        ra, rp = (row.get("alpha") or {}).get("R"), (row.get("norms") or {}).get("R")
        ok = bool(ra is not None and rp is not None and ra <= c.max_alpha_hold_ratio and rp >= c.min_placebo_ratio)
        per[f"seed{seed}/a{a:g}"] = row | {"ok": ok, "switch_t": float(g.switch_t.iloc[0]),
                                           "switched_at_init": bool(g.switch_t.iloc[0] == 0)}
        oks.append(ok)
    decomp = free_flow_decomposition(runs)
    return {"verdict": verdict_of(oks), "measured": {"arms": per, "decomposition": decomp},
            "summary": _v2_summary(per, decomp)}


@dataclass(frozen=True)
class V3(Criteria):
    """v2 with its denominator checked: R is judged only where the free flow sharpens measurably after the switch.

    Registered after v2's results on the committed intervention runs had been seen (there the free flow sharpens
    after every switch), because a constructed case showed the v2 rule passing the wrong way: the free flow loses
    sharpness after the switch (log(λ_free/λ_s) < 0), holding ᾱ raises it 50 %, and R = −3.85 ≤ 0.5 "holds"."""

    max_alpha_hold_ratio: float = 0.5
    min_placebo_ratio: float = 0.5
    level: float = 1.0
    #: the free flow's λ_max must rise by at least this fraction from the switch to the comparison point — 100× the
    #: eigen-solver's relative tolerance (10⁻³), so the denominator is a measured sharpening, not noise
    min_free_sharpening: float = 0.1

    def criterion(self, params: Mapping) -> str:
        return (f"where the free flow sharpens by ≥ {self.min_free_sharpening:.0%} from ᾱ = α* to the loss level "
                f"L_s·(L_thr/L_s)^{self.level:g} (otherwise the pair of arms is not measurable), holding ᾱ keeps "
                f"R = log(λ/λ_s)/log(λ_free/λ_s) ≤ {self.max_alpha_hold_ratio} (R < 0: the arm lost sharpness while "
                f"the free flow gained it) while holding Π‖Jᵏ‖ (placebo) keeps R ≥ {self.min_placebo_ratio}, for every "
                f"measurable seed and α* (partly: some)")


def free_log_sharpening(x) -> float | None:
    """The denominator of R, log(λ_free/λ_s), of one compared arm (a row of :func:`eoslib.causal.compare_arms`);
    None where the free flow has no λ there."""
    if x.lam_free is None or not np.isfinite(x.lam_free) or not x.switch_lam > 0:
        return None
    return float(np.log(x.lam_free / x.switch_lam))


@CLAIM.version(3, V3())
def judge_v3(params: dict, root: Path, c: V3, fits: dict | None = None) -> dict:
    """As v2, but a (seed, α*) pair of arms is judged only when the free flow's own sharpening from the switch to
    the comparison loss level, log(λ_free/λ_s), is at least log(1 + ``min_free_sharpening``) > 0 — so R's sign is
    the sign of the arm's own change and its size is not a ratio of noise. Pairs below that are reported as not
    measurable; when no pair is measurable the claim is not measured."""
    runs = load_runs(root)
    if not runs:
        raise NotMeasured("no intervention runs")
    cmp = compare_arms(runs, fractions=(c.level,))
    cmp = cmp[(cmp.basis == "loss")]
    if not len(cmp):
        raise NotMeasured("no intervention arm reached the comparison loss level")
    at_time = compare_arms(runs, fractions=(1.0,))
    at_time = at_time[at_time.basis == "time"].set_index(["seed", "alpha_star", "hold"])
    floor = float(np.log1p(c.min_free_sharpening))
    per, oks, unmeasurable = {}, [], []
    for (seed, a), g in cmp.groupby(["seed", "alpha_star"]):
        key = f"seed{seed}/a{a:g}"
        dens = [d for d in (free_log_sharpening(x) for x in g.itertuples()) if d is not None]
        den = dens[0] if dens else None
        row: dict = {"free_log_sharpening": den, "switch_t": float(g.switch_t.iloc[0]),
                     "switched_at_init": bool(g.switch_t.iloc[0] == 0)}
        for hold, h in g.groupby("hold"):
            x = h.iloc[0]
            xt = at_time.loc[(seed, a, hold)] if (seed, a, hold) in at_time.index else None
            r_time = None if xt is None or free_log_sharpening(xt) is None or free_log_sharpening(xt) < floor \
                else kept_ratio(xt)
            r = kept_ratio(x) if den is not None and den >= floor else None
            row[hold] = {"R": r, "lam_arm": None if x.lam_arm is None else float(x.lam_arm),
                         "lam_free": None if x.lam_free is None else float(x.lam_free),
                         "lam_switch": float(x.switch_lam), "R_time": r_time}
        if den is None or den < floor:
            per[key] = row | {"ok": None, "measurable": False}
            unmeasurable.append(key)
            continue
        ra, rp = (row.get("alpha") or {}).get("R"), (row.get("norms") or {}).get("R")
        ok = bool(ra is not None and rp is not None and ra <= c.max_alpha_hold_ratio and rp >= c.min_placebo_ratio)
        per[key] = row | {"ok": ok, "measurable": True}
        oks.append(ok)
    if not oks:
        raise NotMeasured(f"the free flow does not sharpen by ≥ {c.min_free_sharpening:.0%} after the switch in any "
                          f"pair of arms ({', '.join(unmeasurable)})")
    decomp = free_flow_decomposition(runs)
    measurable = {k: v for k, v in per.items() if v["measurable"]}
    summary = _v2_summary(measurable, decomp)
    if unmeasurable:
        summary += (f"; not measurable ({len(unmeasurable)} of {len(per)}: the free flow sharpens by less than "
                    f"{c.min_free_sharpening:.0%} after the switch): {', '.join(unmeasurable)}")
    return {"verdict": verdict_of(oks), "measured": {"arms": per, "decomposition": decomp,
                                                     "not_measurable": unmeasurable},
            "summary": summary}
