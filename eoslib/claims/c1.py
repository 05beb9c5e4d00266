"""C1: sharpness rises until full-batch GD trains at the edge of stability (λ_max ≈ 2/η), so GD leaves the flow.

Evidence: the ``gd`` runs (sharpness λ_max tracked along GD at several step sizes η, per setup and seed; negative
controls at an η whose 2/η lies above the flow's peak sharpness) and the ``traj`` runs of the same settings (the
flow's sharpening). Along a GD run r = λ_max·η/2 (r = 1: GD's stability limit); once r first reaches the lower
end of the band, the *edge part* of the run starts.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..results import load_run, run_names
from .framework import FAILS, PARTLY, Claim, Criteria, NotMeasured, verdict_of
from .runs import load_kind, run_key

CLAIM = Claim("C1", statement="Sharpness rises until GD trains at the edge of stability (λ_max ≈ 2/η), so GD leaves "
                              "the gradient flow.", notebook="01_edge_of_stability",
              reads=("gd", "traj"))  # GD's tracked sharpness; the flow's sharpening


def eos_stats(tab: pd.DataFrame, lr: float, lo: float, hi: float) -> dict:
    """r = λ_max·η/2 along a GD run: once r first reaches ``lo`` (the edge), its median, the fraction of the run
    after that point, and the fraction of those steps with lo ≤ r ≤ hi; max r; the number of loss increases."""
    s = tab[tab["sharpness"].notna()] if "sharpness" in tab else tab.iloc[0:0]
    ratio = (s["sharpness"] * lr / 2).to_numpy()
    hit = np.flatnonzero(ratio >= lo)
    eos = ratio[hit[0]:] if len(hit) else ratio[0:0]
    loss = tab["loss"].to_numpy()
    return {"two_over_eta": 2 / lr, "median_ratio_at_eos": float(np.median(eos)) if len(eos) else float("nan"),
            "eos_fraction": len(eos) / max(len(ratio), 1),
            "in_band_fraction": float(((eos >= lo) & (eos <= hi)).mean()) if len(eos) else float("nan"),
            "max_ratio": float(ratio.max()) if len(ratio) else float("nan"),
            "max_sharpness": float(s["sharpness"].max()) if len(s) else None,
            "loss_increases": int((np.diff(loss) > 0).sum()), "steps": int(len(tab) - 1)}


def flows(root: str | Path) -> dict:
    """The flow (trajectory) runs' sharpening λ_max,peak / λ_max,init, keyed by (setting, seed)."""
    out = {}
    for name in run_names("traj", root):
        r = load_run(name, root)
        sh = r["table"]["sharpness"].dropna()
        if len(sh):
            out[(r["config"]["setting"]["name"], r["config"]["seed"])] = {
                "run": run_key(r), "sharpness_init": float(sh.iloc[0]), "sharpness_max": float(sh.max()),
                "factor": float(sh.max() / sh.iloc[0])}
    return out


def gd_runs(root: str | Path) -> list[dict]:
    """The GD runs with their step size, setting, seed and whether they are negative controls."""
    return [r | {"lr": r["config"]["solver"]["lr"], "setting": r["config"]["setting"]["name"],
                 "seed": r["config"]["seed"], "control": bool(r["config"].get("control", False))}
            for r in load_kind("gd", root)]


@dataclass(frozen=True)
class V1(Criteria):
    """As first registered: the first GD setup, one seed, step sizes at the edge; the flow must sharpen."""

    ratio_band: tuple[float, float] = (0.8, 1.25)  # λ_max·η/2 after it first reaches 0.8: median within this band
    tail_fraction: float = 0.25  # ... over at least this fraction of the run
    min_sharpening: float = 5.0  # and the flow's sharpness rises at least this factor

    def criterion(self, params: Mapping) -> str:
        lo, hi = self.ratio_band
        return (f"for every η, once λ_max·η/2 first reaches {lo}, its median over the rest of the run lies in "
                f"[{lo}, {hi}] and that part is ≥ {self.tail_fraction:.0%} of the run; and the flow's sharpness rises "
                f"≥ {self.min_sharpening}× (partly: some η)")


@CLAIM.version(1, V1())
def judge_v1(params: dict, root: Path, c: V1, fits: dict | None = None) -> dict:
    """As first registered: the GD runs of the first setup with the first seed of ``gd.seeds`` (GD had one seed,
    0, when v1 was registered; the other seeds are judged by v2), step sizes that are not negative controls; the
    flow of that setting and seed must sharpen ≥ ``min_sharpening``×."""
    lo, hi = c.ratio_band
    gd = params.get("gd") or {}
    setups = gd.get("setups") or []
    first = setups[0]["setting"] if setups else None
    # frozen as first registered: one seed (the first of gd.seeds), not every seed of a later, larger profile
    seed = (gd.get("seeds") or [None])[0]
    per, oks = {}, []
    for r in gd_runs(root):
        if r["control"] or r["setting"] != first or r["seed"] != seed:
            continue
        st = eos_stats(r["table"], r["lr"], lo, hi)
        st["ok"] = bool(st["eos_fraction"] and st["eos_fraction"] >= c.tail_fraction
                        and lo <= st["median_ratio_at_eos"] <= hi)
        per[run_key(r)] = st
        oks.append(st["ok"])
    if not per:
        raise NotMeasured(f"no GD runs of the first gd setup with seed {seed}")
    fl = {k: v for k, v in flows(root).items() if k == (first, seed)}
    flow_ok = bool(fl) and all(v["factor"] >= c.min_sharpening for v in fl.values())
    verdict = verdict_of(oks) if flow_ok else (PARTLY if any(oks) else FAILS)
    parts = [f"{k}: median λη/2 = {v['median_ratio_at_eos']:.2f} over {100 * v['eos_fraction']:.0f}% of steps, "
             f"{v['loss_increases']} loss increases" for k, v in per.items()]
    parts += [f"flow {v['run']} sharpens {v['factor']:.0f}×" for v in fl.values()] or [f"no measured flow of {first}"]
    return {"verdict": verdict, "measured": {"gd": per, "flow": {v["run"]: v for v in fl.values()}},
            "summary": "; ".join(parts)}


@dataclass(frozen=True)
class V2(Criteria):
    """Every setup (MSE and CE) and seed, with negative controls."""

    ratio_band: tuple[float, float] = (0.8, 1.25)  # λ_max·η/2 after it first reaches 0.8: median within this band
    tail_fraction: float = 0.25  # ... over at least this fraction of the run
    min_in_band: float = 0.5  # at least half of the steps after the first crossing inside the band
    min_sharpening: float = 5.0  # the flow of each setting and seed
    control_max_ratio: float = 0.8  # a control (2/η above the flow's peak) never reaches the edge

    def criterion(self, params: Mapping) -> str:
        lo, hi = self.ratio_band
        return (f"every GD run (all setups and seeds): at-the-edge step sizes keep, once λ_max·η/2 reaches {lo}, a "
                f"median in [{lo}, {hi}] over ≥ {self.tail_fraction:.0%} of the run with ≥ {self.min_in_band:.0%} of "
                f"those steps in the band; negative controls (2/η above the flow's max sharpness) keep λ_max·η/2 < "
                f"{self.control_max_ratio}; every flow sharpens ≥ {self.min_sharpening}× (partly: some runs)")


def _v2_setting_summary(setting: str, per: dict, flow_used: dict) -> str:
    """One setting's part of the v2 summary: edge runs ok, band statistics, controls, the flows' sharpening."""
    e = [v for v in per.values() if v["setting"] == setting and not v["control"]]
    k = [v for v in per.values() if v["setting"] == setting and v["control"]]
    med, band = [v["median_ratio_at_eos"] for v in e], [v["in_band_fraction"] for v in e]
    part = (f"{setting}: {sum(v['ok'] for v in e)}/{len(e)} runs at the edge (median λη/2 "
            f"{np.nanmin(med):.2f}–{np.nanmax(med):.2f}, in band {np.nanmin(band):.0%}–{np.nanmax(band):.0%} of steps)"
            if e else f"{setting}: no edge runs")
    if k:
        part += (f", controls {sum(bool(v['ok']) for v in k)}/{sum(v['ok'] is not None for v in k)} stay below "
                 f"(max λη/2 ≤ {max(v['max_ratio'] for v in k):.2f})")
    fl = [v for (s, _), v in flow_used.items() if s == setting]
    if fl:
        part += f", flow sharpens {min(v['factor'] for v in fl):.0f}–{max(v['factor'] for v in fl):.0f}×"
    return part


@CLAIM.version(2, V2())
def judge_v2(params: dict, root: Path, c: V2, fits: dict | None = None) -> dict:
    """Every GD run of every setup and seed: a step size expected at the edge (2/η below the flow's sharpness)
    must, once λη/2 first reaches the band, keep its median in the band over ≥ ``tail_fraction`` of the run with
    ≥ ``min_in_band`` of those steps inside it; a negative control (2/η above the flow's maximal sharpness, so
    no edge is expected) must keep λη/2 < ``control_max_ratio`` throughout, and is invalid (not counted) when
    the flow actually sharpens past 2/η. The flow of each setting and seed must sharpen ≥ ``min_sharpening``×."""
    lo, hi = c.ratio_band
    fls = flows(root)
    per, oks = {}, []
    for r in gd_runs(root):
        st = eos_stats(r["table"], r["lr"], lo, hi)
        fl = fls.get((r["setting"], r["seed"]))
        st |= {"control": r["control"], "setting": r["setting"], "seed": r["seed"], "lr": r["lr"],
               "flow_max_sharpness": None if fl is None else fl["sharpness_max"]}
        if r["control"]:
            valid = fl is not None and 2 / r["lr"] > fl["sharpness_max"]
            st["control_valid"] = valid
            st["ok"] = bool(st["max_ratio"] < c.control_max_ratio) if valid else None
        else:
            st["ok"] = bool(st["eos_fraction"] >= c.tail_fraction and lo <= st["median_ratio_at_eos"] <= hi
                            and st["in_band_fraction"] >= c.min_in_band)  # NaN (never at the edge) fails
        per[run_key(r)] = st
        if st["ok"] is not None:
            oks.append(st["ok"])
    used = {(v["setting"], v["seed"]) for v in per.values()}
    flow_used = {k: v for k, v in fls.items() if k in used}
    flow_ok = bool(flow_used) and all(v["factor"] >= c.min_sharpening for v in flow_used.values())
    verdict = verdict_of(oks) if flow_ok else (PARTLY if any(oks) else FAILS)
    parts = [_v2_setting_summary(s, per, flow_used) for s in dict.fromkeys(v["setting"] for v in per.values())]
    return {"verdict": verdict, "measured": {"gd": per, "flow": {v["run"]: v for v in flow_used.values()}},
            "summary": "; ".join(parts)}
