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


@dataclass(frozen=True)
class V3(Criteria):
    """Growth as a power law over a common range, with the sign, an effect size, a saturation test and a gate.

    Registered (issue 19) after v1's and v2's results had been seen in the default and extended profiles (ᾱ at
    the threshold: β 0.008–0.04, flat within noise), before the runs it judges (the re-run sweeps with ≥ 5 seeds,
    the authors'-regime, MSE and long-range profiles). Statistics: :func:`eoslib.powerlaw.growth_tests`.
    Disclosure: before this commit the judge was run once on the committed extended profile's fits, to test the
    code; that run found a bug (a falling β was read as flat), fixed here; no threshold changed after it.

    Per setting the primary measure at the primary end point *grows as a power law* when, over the sizes every
    seed reached (the common range; sizes with fewer seeds are named and left out): at least ``min_seeds`` seeds
    and ``min_sizes`` sizes; the one-sided t-test of the per-seed slopes gives p(β ≤ 0) ≤ ``alpha`` (the sign is
    part of "grows"); R² on per-N means ≥ ``min_r2_means`` (the paper's lower R²); and it is still growing in
    the upper half of the range — that slope's p ≤ ``alpha`` and upper β / β ≥ ``min_slope_ratio`` (a power law
    keeps its slope; flat or saturating curves do not). The fold change over the range is the effect size
    (reported, not judged). The **gate**: where the sweep reaches N ≥ ``gate_min_n``, every such run's λ_max
    along the flow must rise ≥ ``gate_min_sharpening``× above its minimum (large inits often dip first), else the
    setting is not judged and the ledger says there is no progressive sharpening there, with λ_max at init, its
    minimum, maximum and the ratio. A reading of a null result: when β's 95 % interval lies inside
    ±``flat_beta_bound``, the measure is called flat over the range's fold in N, else the null is range-limited.
    Secondary (every other measure × end point): the same tests with p Holm-adjusted over the setting's family
    of measures × end points; each cell says *grows (power law)*, *grows, saturating*, *falls* (two-sided
    Holm p ≤ ``alpha``, β < 0) or *no trend*.
    """

    paper_r2: tuple[float, float] = (0.74, 0.98)  # reported beside ours
    min_seeds: int = 5  # seeds over the common range (3 seeds give 4 degrees of freedom less than 5)
    min_sizes: int = 3  # distinct N in the common range (the upper-half slope needs ≥ 2 of them)
    alpha: float = 0.05  # one-sided level of "grows"; family-wise (Holm) for the secondary table
    min_r2_means: float = 0.74  # the paper's lowest R²
    min_slope_ratio: float = 0.5  # upper-half slope / full-range slope
    gate_min_n: int = 1024
    gate_min_sharpening: float = 5.0  # λ_max max / min along the flow
    flat_beta_bound: float = 0.02  # β's upper bound below this: flat over the range

    def criterion(self, params: Mapping) -> str:
        prim = primary(params)
        return (f"primary {prim['measure']} at {prim['endpoint']}, over the sizes every seed reached (≥ "
                f"{self.min_seeds} seeds, ≥ {self.min_sizes} sizes): one-sided p(β ≤ 0) ≤ {self.alpha:g}, R² on "
                f"per-N means ≥ {self.min_r2_means}, upper-half slope p ≤ {self.alpha:g} and ≥ "
                f"{self.min_slope_ratio:g}× β; gate: runs at N ≥ {self.gate_min_n} sharpen ≥ "
                f"{self.gate_min_sharpening:g}× above their minimum λ_max (partly: some settings)")


def _gate(c: V3, sharp: Mapping) -> dict:
    """The gate of one setting from ``fits['sharpening']``: applicable when some N ≥ gate_min_n was run."""
    big = {n: v for n, v in sharp.items() if int(n) >= c.gate_min_n}
    if not big:
        return {"applicable": False, "passed": True}
    ok = all(v["min_sharpening"] >= c.gate_min_sharpening for v in big.values())
    return {"applicable": True, "passed": ok, "by_size": big}


def _growth_verdict(c: V3, f: Mapping, p: float | None = None) -> dict:
    """One measure × end point × setting: the v3 tests (``p``: the p-value to use, e.g. Holm-adjusted)."""
    gt, a = f.get("growth") or {}, f.get("analysis") or {}
    if not gt:
        return {"ok": False, "measurable": False, "why": f.get("error", "no growth tests in the fits")}
    p = gt.get("p_grows") if p is None else p
    measurable = gt["reason"] is None and gt["n_groups"] >= c.min_seeds and len(gt["common_sizes"]) >= c.min_sizes
    r2m = a.get("r2_means")
    grows = measurable and p is not None and p <= c.alpha
    upper = bool(measurable and gt["p_upper_grows"] <= c.alpha and (gt["slope_ratio"] or 0) >= c.min_slope_ratio)
    ok = bool(grows and r2m is not None and r2m >= c.min_r2_means and upper)
    out = {k: gt.get(k) for k in ("beta", "beta_interval", "p_grows", "upper_beta", "upper_interval",
                                  "p_upper_grows", "slope_ratio", "fold_change", "fold_change_interval",
                                  "common_sizes", "n_groups", "min_seeds_per_size")}
    lo, hi = gt.get("beta_interval") or [None, None]
    out |= {"p_used": p, "r2_means": r2m, "grows": bool(grows), "still_growing_at_top": upper, "ok": ok,
            "measurable": bool(measurable),
            "flat": bool(measurable and lo is not None and -c.flat_beta_bound < lo and hi < c.flat_beta_bound)}
    if not measurable:
        out["why"] = gt["reason"] or f"{gt['n_groups']} seeds over {len(gt['common_sizes'])} common sizes"
    return out


def _label(v: dict, p_two: float | None, c: V3) -> str:
    if not v.get("measurable"):
        return "not measurable"
    if v["ok"]:
        return "grows (power law)"
    if v["grows"]:
        return "grows, saturating" if not v["still_growing_at_top"] else "grows, not straight (R² on means)"
    if v["beta"] is not None and v["beta"] < 0 and p_two is not None and p_two <= c.alpha:
        return "falls"
    return "no trend"


@CLAIM.version(3, V3())
def judge_v3(params: dict, root: Path, c: V3, fits: dict | None) -> dict:
    """C4 v3 (see :class:`V3`): the gate, then the primary's growth tests per setting; every other measure × end
    point in a secondary table with Holm-adjusted p-values."""
    if not fits or not fits.get("fits"):
        raise NotMeasured("no power-law fits (no sweep runs)")
    from ..powerlaw import holm

    prim = primary(params)
    per, oks, table = {}, [], {}
    for s, byep in fits["fits"].items():
        gate = _gate(c, (fits.get("sharpening") or {}).get(s, {}))
        cells = {f"{m}@{e}": byep.get(e, {}).get(m, {}) for e in byep for m in byep[e]}
        adj = holm({k: (f.get("growth") or {}).get("p_grows", float("nan")) for k, f in cells.items()})
        adj2 = holm({k: (f.get("growth") or {}).get("p_two_sided", float("nan")) for k, f in cells.items()})
        for k, f in cells.items():
            v = _growth_verdict(c, f, adj[k])
            table.setdefault(k, {})[s] = v | {"holm_p_two_sided": adj2[k], "label": _label(v, adj2[k], c)}
        v = _growth_verdict(c, byep.get(prim["endpoint"], {}).get(prim["measure"], {}))
        per[s] = v | {"gate": gate, "label": _label(v, None, c)}
        if not gate["passed"]:
            per[s]["label"] = "no progressive sharpening here (gate failed)"
        elif v["measurable"]:
            oks.append(v["ok"])
    verdict = verdict_of(oks)
    return {"verdict": verdict, "measured": {"settings": per, "secondary": table},
            "summary": _v3_summary(prim, per, c)}


def _v3_summary(prim: dict, per: dict, c: V3) -> str:
    fmt = lambda x: "–" if x is None else f"{x:.3g}"  # noqa: E731
    parts = []
    for s, v in per.items():
        if v["label"].startswith("no progressive"):
            big = v["gate"]["by_size"]
            parts.append(f"{s}: gate failed (" + ", ".join(
                f"N={n}: λ init {fmt(b['lam_init'])}, min {fmt(b['lam_min'])}, max {fmt(b['lam_max'])}, "
                f"×{fmt(b['min_sharpening'])}" for n, b in big.items()) + ")")
        elif not v["measurable"]:
            parts.append(f"{s}: not measurable ({v.get('why')})")
        else:
            iv = v["beta_interval"]
            reading = "flat" if v["flat"] else v["label"]
            parts.append(f"{s}: β = {fmt(v['beta'])} [{fmt(iv[0])}, {fmt(iv[1])}], p = {fmt(v['p_grows'])}, R² means "
                         f"{fmt(v['r2_means'])}, upper/full slope {fmt(v['slope_ratio'])}, fold ×"
                         f"{fmt(v['fold_change'])} over N {v['common_sizes'][0]}…{v['common_sizes'][-1]}: {reading}")
    return f"{prim['measure']} at {prim['endpoint']}: " + "; ".join(parts)


@dataclass(frozen=True)
class V4(V3):
    """v3 with the long-range reading of issue 19 (4c), for a sweep over ≥ ``min_fold``× in N with ≥ 3 seeds.

    Registered before the long-range profile's runs (``profiles/long-range``: fmnist-elu-ce, N = 64…16384, seeds
    0–2); none of its runs at N = 8192 or 16384 had been made. Seen before: v1–v3 on the extended profile over
    64…4096 (ᾱ at the threshold, β = 0.014, flat within noise, 3 seeds at N = 4096).

    The tests are v3's with ``min_seeds`` = 3 (the issue asks for ≥ 3 seeds at the two new sizes; the verdict is
    v3's: *holds* where ᾱ grows as a power law). The **reading** of each setting's primary: when the common range
    spans ≥ ``min_fold``× in N and the upper 95 % bound on β is below ``flat_beta_bound``, ᾱ is called *flat over
    the fold* (and *does not grow* if the lower bound is also below −``flat_beta_bound``: it may fall); otherwise
    the null result is *range-limited* (a slope ≥ ``flat_beta_bound`` is not excluded over this range).
    """

    min_seeds: int = 3
    min_fold: float = 256.0  # 64…16384


def long_range_reading(c: V4, v: Mapping) -> str:
    """The pre-registered reading of one setting's primary (a v3 verdict dict ``v``; see :class:`V4`)."""
    sizes, iv = v.get("common_sizes") or [], v.get("beta_interval") or [None, None]
    if not v.get("measurable") or not sizes or iv[1] is None:
        return "no reading (not measurable)"
    fold = sizes[-1] / sizes[0]
    if fold < c.min_fold:
        return f"no reading (range {fold:.0f}× < {c.min_fold:.0f}×)"
    if iv[1] < c.flat_beta_bound:
        kind = "flat" if iv[0] > -c.flat_beta_bound else "does not grow"
        return f"{kind} over {fold:.0f}× (β ≤ {iv[1]:.3g} < {c.flat_beta_bound:g} at 95 %)"
    return f"range-limited null (upper β {iv[1]:.3g} ≥ {c.flat_beta_bound:g} over {fold:.0f}×)"


@CLAIM.version(4, V4())
def judge_v4(params: dict, root: Path, c: V4, fits: dict | None) -> dict:
    """C4 v4 (see :class:`V4`): v3's judgement with ≥ 3 seeds, and the long-range reading per setting."""
    out = judge_v3(params, root, c, fits)
    per = out["measured"]["settings"]
    for v in per.values():
        v["long_range_reading"] = long_range_reading(c, v)
    out["summary"] += "; long-range reading: " + "; ".join(f"{s}: {v['long_range_reading']}" for s, v in per.items())
    return out
