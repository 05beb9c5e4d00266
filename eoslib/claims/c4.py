"""C4: alignment at the end point scales with the dataset size N as a power law, R² between 0.74 and 0.98.

Judged on the fits of ``metrics/powerlaw.json`` (:mod:`eoslib.fits`): per setting, v ≈ c·N^β for the primary
measure at the primary end point pre-registered in ``params.yaml`` (``powerlaw.primary``); every other registered
measure × end point is reported. v1 (as first registered) uses the pooled fit (R² over all runs, bootstrap
interval of β); v2 the seed-aware analysis (R² on per-N means, t-interval of the per-seed slopes, and the
saturating alternative a − b·N^(−c) compared by ΔAICc = AICc_power_law − AICc_saturating).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .framework import Claim, Criteria, NotMeasured, verdict_of

CLAIM = Claim("C4", statement="Alignment at the end point scales with the dataset size N as a power law, R² in "
                              "0.74–0.98.", notebook="06_power_law",
              reads=("endpoints:sweep",))  # the fits (metrics/powerlaw.json) of the sweep's end-point rows


def primary(params: Mapping) -> dict:
    """The pre-registered primary measure and end point (``powerlaw.primary``)."""
    return params["powerlaw"]["primary"]


@dataclass(frozen=True)
class V1(Criteria):
    """As first registered: the pooled fit (R² over all runs), the bootstrap interval of β."""

    paper_r2: tuple[float, float] = (0.74, 0.98)  # the paper's R² range across its settings (reported beside ours)
    min_r2: float = 0.74  # primary measure's R² (pooled runs) in every setting, bootstrap β interval excludes 0

    def criterion(self, params: Mapping) -> str:
        prim = primary(params)
        return (f"pre-registered primary measure {prim['measure']} at end point {prim['endpoint']}: in every setting "
                f"R² ≥ {self.min_r2} and the bootstrap interval of β excludes 0 (partly: some settings)")


def _v1_summary(prim: dict, per: dict, paper_r2: tuple[float, float]) -> str:
    r2v = [v["r2"] for v in per.values() if v["r2"] is not None]
    lo, hi = paper_r2

    def interval(v):
        iv = v.get("beta_interval") or [None, None]
        return "[no interval]" if iv[0] is None else f"[{iv[0]:.3f}, {iv[1]:.3f}]"

    return (f"{prim['measure']} at {prim['endpoint']}: " + "; ".join(
        f"{s}: β = {v['beta']:.3f} {interval(v)}, R² = {v['r2']:.2f}" for s, v in per.items() if v["r2"] is not None)
        + (f"; R² range {min(r2v):.2f}–{max(r2v):.2f} (paper {lo}–{hi})" if r2v else ""))


@CLAIM.version(1, V1())
def judge_v1(params: dict, root: Path, c: V1, fits: dict | None) -> dict:
    """Per setting, the primary fit's pooled R² ≥ ``min_r2`` and its bootstrap interval of β excludes 0."""
    if not fits or not fits.get("fits"):
        raise NotMeasured("no power-law fits (no sweep runs)")
    prim = primary(params)
    per, oks = {}, []
    for s, byep in fits["fits"].items():
        f = byep.get(prim["endpoint"], {}).get(prim["measure"], {})
        r2 = f.get("r2")
        ok = bool(r2 is not None and r2 >= c.min_r2 and f.get("beta_excludes_zero", False))
        per[s] = {k: f.get(k) for k in ("beta", "beta_interval", "r2", "n_points")} | {"ok": ok}
        oks.append(ok)
    following = []
    for m in params["powerlaw"]["measures"]:
        for e in params["powerlaw"]["endpoints"]:
            r2s = [fits["fits"][s].get(e, {}).get(m, {}).get("r2") for s in fits["fits"]]
            if r2s and all(r is not None and r >= c.min_r2 for r in r2s):
                following.append(f"{m}@{e}")
    return {"verdict": verdict_of(oks),
            "measured": {"settings": per, "measures_with_r2_above_min_everywhere": following},
            "summary": _v1_summary(prim, per, c.paper_r2)}


@dataclass(frozen=True)
class V2(Criteria):
    """Seed-aware statistics, registered before the runs it judges (end points land on the loss threshold).

    β's t-interval over the per-seed slopes must exclude 0 as well (:func:`eoslib.powerlaw.analyse_power_law`).
    """

    paper_r2: tuple[float, float] = (0.74, 0.98)  # the paper's R² range across its settings (reported beside ours)
    min_r2_means: float = 0.74  # R² of the fit to the per-N means of log ᾱ (seed scatter is not the trend)
    aicc_threshold: float = 2.0  # the saturating a − b·N^(−c) is not preferred: ΔAICc = AICc_pow − AICc_sat ≤ this

    def criterion(self, params: Mapping) -> str:
        prim = primary(params)
        return (f"primary {prim['measure']} at {prim['endpoint']}: in every setting R² on per-N means ≥ "
                f"{self.min_r2_means}, the t-interval of the per-seed slopes excludes 0, and AICc does not prefer the "
                f"saturating a − b·N^(−c) (ΔAICc ≤ {self.aicc_threshold:g}) (partly: some settings)")


def _v2_summary(prim: dict, per: dict, paper_r2: tuple[float, float]) -> str:
    lo, hi = paper_r2
    fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    r2m = [v["r2_means"] for v in per.values() if v["r2_means"] is not None]
    return (f"{prim['measure']} at {prim['endpoint']}: " + "; ".join(
        f"{s}: β = {fmt(v['beta'])} [{fmt(v['beta_interval'][0])}, {fmt(v['beta_interval'][1])}], R² means "
        f"{fmt(v['r2_means'])} (pooled {fmt(v['r2_pooled'])}), ΔAICc {fmt(v['delta_aicc'])}" for s, v in per.items())
        + (f"; R² on means {min(r2m):.2f}–{max(r2m):.2f} (paper {lo}–{hi})" if r2m else ""))


@CLAIM.version(2, V2())
def judge_v2(params: dict, root: Path, c: V2, fits: dict | None) -> dict:
    """C4 with seed-aware statistics: per setting, the primary measure's R² on per-N means (the power law is a
    claim about the mean trend, not the seed scatter) ≥ ``min_r2_means``, the t-interval of the per-seed slopes
    excludes 0, and the saturating alternative a − b·N^(−c) is not preferred by AICc (ΔAICc ≤ threshold)."""
    if not fits or not fits.get("fits"):
        raise NotMeasured("no power-law fits (no sweep runs)")
    prim = primary(params)
    per, oks = {}, []

    def judge(f) -> dict:
        a = f.get("analysis") or {}
        lo, hi = a.get("beta_interval") or [None, None]
        excl = lo is not None and hi is not None and (lo > 0 or hi < 0)
        r2m, d = a.get("r2_means"), a.get("delta_aicc")
        not_sat = d is None or not d > c.aicc_threshold  # NaN (no saturating fit): not preferred
        ok = bool(r2m is not None and r2m >= c.min_r2_means and excl and not_sat)
        return {"beta": a.get("beta_t", f.get("beta")), "beta_interval": [lo, hi],
                "interval": a.get("interval_method"), "r2_means": r2m, "r2_pooled": a.get("r2_pooled"),
                "delta_aicc": d, "preferred": a.get("preferred"), "n_points": f.get("n_points"), "ok": ok}

    for s, byep in fits["fits"].items():
        per[s] = judge(byep.get(prim["endpoint"], {}).get(prim["measure"], {}))
        oks.append(per[s]["ok"])
    table = {f"{m}@{e}": {s: judge(fits["fits"][s].get(e, {}).get(m, {})) for s in fits["fits"]}
             for m in params["powerlaw"]["measures"] for e in params["powerlaw"]["endpoints"]}
    following = [k for k, by in table.items() if by and all(v["ok"] for v in by.values())]
    return {"verdict": verdict_of(oks), "measured": {"settings": per, "all_measures": table,
                                                     "measures_meeting_criterion_everywhere": following},
            "summary": _v2_summary(prim, per, c.paper_r2)}
