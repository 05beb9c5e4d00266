"""The claims ledger (CLAIMS.md, metrics/claims.json) and the power-law fits (metrics/powerlaw.json).

Everything here is computed from the run folders alone (no notebook has to execute); the notebooks plot the
same numbers. Each claim is ONE registered definition (:data:`CLAIMS`): its statement, its notebook, and one
*judge* per criteria version. Criteria live in ``params.yaml`` under ``criteria.<claim>.v<k>``, each version
committed before the runs it judges; every version is evaluated, the latest gives the verdict, and the earlier
ones stay visible beside it ("as first registered"). Verdicts are mechanical: *holds*, *partly*, *does not
hold at this scale*, or *not measured* when a claim's runs are absent from the profile.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .io import json_safe, read_json, write_json, write_text
from .registry import Registry
from .results import endpoint_table, load_run, run_names
from .schema import Interval, ListOf, MapOf, Num, Opt, Text

HOLDS, PARTLY, FAILS, NOT_MEASURED = "holds", "partly", "does not hold at this scale", "not measured"
VERDICTS = (HOLDS, PARTLY, FAILS, NOT_MEASURED)


class NotMeasured(LookupError):
    """A claim's inputs (runs, fits) are absent from this profile."""


@dataclass(frozen=True)
class Claim:
    """A claim of the ledger: ``statement``, ``notebook`` (its figure has the same name) and ``judges``:
    criteria version k → (schema of ``criteria.<claim>.v<k>``, ``judge(params, root, crit, fits) -> dict``
    returning ``verdict``, ``measured``, ``summary``, ``criterion``)."""

    statement: str
    notebook: str
    judges: dict[int, tuple[dict, Callable]] = field(default_factory=dict)


#: claim key → :class:`Claim`, in ledger order
CLAIMS: Registry[Claim] = Registry("claim")


def claim(key: str, version: int, criteria: dict, statement: str | None = None, notebook: str | None = None):
    """Decorator registering ``judge`` as version ``version`` of claim ``key`` (the first registration of a
    key gives its statement and notebook)."""

    def deco(judge):
        if key not in CLAIMS:
            CLAIMS.add(key, Claim(statement or "", notebook or ""))
        CLAIMS[key].judges[version] = (criteria, judge)
        return judge

    return deco


def criteria_schema() -> dict:
    """The schema of params.yaml's ``criteria``: per claim (optional: a profile judges the claims it lists),
    optional ``v<k>`` blocks."""
    return {key: Opt({f"v{v}": Opt(sch) for v, (sch, _) in c.judges.items()}, {}) for key, c in
            ((k, CLAIMS[k]) for k in CLAIMS)}


def registered_versions(params: dict, key: str) -> list[int]:
    """The criteria versions of claim ``key`` registered in the profile's params.yaml, ascending."""
    return sorted(int(v[1:]) for v, block in (params["criteria"].get(key) or {}).items() if block)


def criteria(params: dict, key: str, version: int | None = None) -> dict:
    """The criteria block of claim ``key`` in params.yaml: version ``version`` (default: the latest)."""
    crit = {k: v for k, v in (params["criteria"].get(key) or {}).items() if v is not None}
    if not crit:
        raise KeyError(f"no criteria registered for claim {key!r} in params.yaml")
    v = max(int(k[1:]) for k in crit) if version is None else version
    return crit[f"v{v}"]


def _verdict(oks: list[bool]) -> str:
    if not oks:
        return NOT_MEASURED
    if all(oks):
        return HOLDS
    return PARTLY if any(oks) else FAILS


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def _runs(kind: str, root) -> list[dict]:
    names = run_names(kind, root)
    if not names:
        raise NotMeasured(f"no finished {kind} runs")
    return [load_run(n, root) for n in names]


def _run_key(r: dict) -> str:
    """A trajectory run's key in the ledger: its name without the kind (``<setting>/seed<s>``)."""
    return r["name"].split("/", 1)[1]


# ---------------------------------------------------------------------------------------------- power law


def fit_all(params: dict, root: str | Path = ".") -> dict:
    """Fit value ≈ c·N^β for every setting × end point × pre-registered measure.

    Each entry holds the fit as first registered (:func:`eoslib.powerlaw.fit_power_law`: pooled OLS, R² over
    pooled runs, bootstrap over seeds) and under ``analysis`` the seed-aware statistics
    (:func:`eoslib.powerlaw.analyse_power_law`: per-seed slopes with a t-interval, R² on per-N means, a
    saturating alternative compared by AICc)."""
    from .powerlaw import analyse_power_law, fit_power_law

    pl = params["powerlaw"]
    ep = endpoint_table(root)
    if "kind" in ep:
        ep = ep[ep.kind == "sweep"]
    fits: dict = {}
    for setting in params["sweep"]["settings"]:
        for endpoint in pl["endpoints"]:
            sub = ep[(ep.setting == setting) & (ep.endpoint == endpoint)]
            for measure in pl["measures"]:
                key = fits.setdefault(setting, {}).setdefault(endpoint, {})
                vals = sub[measure].to_numpy(float) if measure in sub else np.array([])
                ok = np.isfinite(vals) & (vals > 0)
                entry = {"n_runs": int(len(sub)), "n_excluded": int((~ok).sum()),
                         "sizes": sorted(int(n) for n in sub.n.unique())}
                N, v, g = sub.n.to_numpy(float)[ok], vals[ok], sub.seed.to_numpy()[ok]
                try:
                    f = fit_power_law(N, v, groups=g, n_boot=pl["n_boot"], level=pl["level"], seed=0)
                    entry |= f.to_dict()
                    lo, hi = f.beta_interval
                    entry["beta_excludes_zero"] = bool(lo > 0 or hi < 0)
                    entry["analysis"] = analyse_power_law(
                        N, v, groups=g, level=pl["level"], n_boot=pl["n_boot"], seed=0,
                        min_groups_bootstrap=pl.get("min_groups_bootstrap", 10)).to_dict()
                except ValueError as e:
                    entry |= {"error": str(e)}
                key[measure] = entry
    prim = pl["primary"]
    r2 = {s: fits[s][prim["endpoint"]][prim["measure"]].get("r2") for s in fits}
    paper = {}
    try:
        paper = {"paper_r2": criteria(params, "C4")["paper_r2"]}
    except KeyError:
        pass
    return {"primary": prim, "primary_r2": r2, "fits": fits} | paper


def write_fits(params: dict, root: str | Path = ".") -> dict:
    out = json_safe(fit_all(params, root))
    write_json(out, Path(root) / "metrics" / "powerlaw.json")
    return out


# ---------------------------------------------------------------------------------------------- claims


def _sharpened(tab: pd.DataFrame, col: str, factor: float) -> pd.DataFrame:
    m = tab[tab[col].notna()]
    return m[m[col] >= factor * m[col].iloc[0]] if len(m) else m


def _eos_stats(tab: pd.DataFrame, lr: float, lo: float, hi: float) -> dict:
    """λ_max·η/2 along a GD run: once it first reaches ``lo`` (the edge), its median, the fraction of the run
    after that point, and the fraction of those steps inside [lo, hi]; the maximum; the loss increases."""
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


def _flows(root) -> dict:
    """The flow (trajectory) runs' sharpening, keyed by (setting, seed)."""
    out = {}
    for name in run_names("traj", root):
        r = load_run(name, root)
        sh = r["table"]["sharpness"].dropna()
        if len(sh):
            out[(r["config"]["setting"]["name"], r["config"]["seed"])] = {
                "run": _run_key(r), "sharpness_init": float(sh.iloc[0]), "sharpness_max": float(sh.max()),
                "factor": float(sh.max() / sh.iloc[0])}
    return out


def _gd_runs(root) -> list[dict]:
    return [r | {"lr": r["config"]["solver"]["lr"], "setting": r["config"]["setting"]["name"],
                 "seed": r["config"]["seed"], "control": bool(r["config"].get("control", False))}
            for r in _runs("gd", root)]


@claim("C1", 1, {"ratio_band": Interval(), "tail_fraction": Num(maximum=1), "min_sharpening": Num()},
       statement="Sharpness rises until GD trains at the edge of stability (λ_max ≈ 2/η), so GD leaves the "
                 "gradient flow.", notebook="01_edge_of_stability")
def claim_c1(params, root, c, fits=None) -> dict:
    """As first registered: the GD runs of the first setup (seed 0 then; every seed now), step sizes that are not
    negative controls; the flow of that setting must sharpen."""
    lo, hi = c["ratio_band"]
    setups = (params.get("gd") or {}).get("setups") or []
    first = setups[0]["setting"] if setups else None
    per, oks = {}, []
    for r in _gd_runs(root):
        if r["control"] or r["setting"] != first:
            continue
        st = _eos_stats(r["table"], r["lr"], lo, hi)
        st["ok"] = bool(st["eos_fraction"] and st["eos_fraction"] >= c["tail_fraction"]
                        and lo <= st["median_ratio_at_eos"] <= hi)
        per[_run_key(r)] = st
        oks.append(st["ok"])
    if not per:
        raise NotMeasured("no GD runs of the first gd setup")
    flows = {k: v for k, v in _flows(root).items() if k[0] == first}
    flow_ok = bool(flows) and all(v["factor"] >= c["min_sharpening"] for v in flows.values())
    verdict = _verdict(oks) if flow_ok else (PARTLY if any(oks) else FAILS)
    parts = [f"{k}: median λη/2 = {v['median_ratio_at_eos']:.2f} over {100 * v['eos_fraction']:.0f}% of steps, "
             f"{v['loss_increases']} loss increases" for k, v in per.items()]
    parts += [f"flow {v['run']} sharpens {v['factor']:.0f}×" for v in flows.values()] or [f"no measured flow of {first}"]
    crit = (f"for every η, once λ_max·η/2 first reaches {lo}, its median over the rest of the run lies in "
            f"[{lo}, {hi}] and that part is ≥ {c['tail_fraction']:.0%} of the run; and the flow's sharpness rises "
            f"≥ {c['min_sharpening']}× (partly: some η)")
    return {"verdict": verdict, "measured": {"gd": per, "flow": {v["run"]: v for v in flows.values()}},
            "summary": "; ".join(parts), "criterion": crit}


@claim("C1", 2, {"ratio_band": Interval(), "tail_fraction": Num(maximum=1), "min_in_band": Num(maximum=1),
                 "min_sharpening": Num(), "control_max_ratio": Num()})
def claim_c1_v2(params, root, c, fits=None) -> dict:
    """Every GD run of every setup and seed: a step size expected at the edge (2/η below the flow's sharpness)
    must, once λη/2 first reaches the band, keep its median in the band over ≥ ``tail_fraction`` of the run with
    ≥ ``min_in_band`` of those steps inside it; a negative control (2/η above the flow's maximal sharpness, so
    no edge is expected) must keep λη/2 < ``control_max_ratio`` throughout, and is invalid (not counted) when
    the flow actually sharpens past 2/η. The flow of each setting and seed must sharpen ≥ ``min_sharpening``×."""
    lo, hi = c["ratio_band"]
    flows = _flows(root)
    per, oks = {}, []
    for r in _gd_runs(root):
        st = _eos_stats(r["table"], r["lr"], lo, hi)
        fl = flows.get((r["setting"], r["seed"]))
        st |= {"control": r["control"], "setting": r["setting"], "seed": r["seed"], "lr": r["lr"],
               "flow_max_sharpness": None if fl is None else fl["sharpness_max"]}
        if r["control"]:
            valid = fl is not None and 2 / r["lr"] > fl["sharpness_max"]
            st["control_valid"] = valid
            st["ok"] = bool(st["max_ratio"] < c["control_max_ratio"]) if valid else None
        else:
            st["ok"] = bool(st["eos_fraction"] >= c["tail_fraction"] and lo <= st["median_ratio_at_eos"] <= hi
                            and st["in_band_fraction"] >= c["min_in_band"])  # NaN (never at the edge) fails
        per[_run_key(r)] = st
        if st["ok"] is not None:
            oks.append(st["ok"])
    used = {(v["setting"], v["seed"]) for v in per.values()}
    flow_used = {k: v for k, v in flows.items() if k in used}
    flow_ok = bool(flow_used) and all(v["factor"] >= c["min_sharpening"] for v in flow_used.values())
    verdict = _verdict(oks) if flow_ok else (PARTLY if any(oks) else FAILS)
    eos = [v for v in per.values() if not v["control"]]
    ctl = [v for v in per.values() if v["control"]]
    parts = []
    for setting in dict.fromkeys(v["setting"] for v in per.values()):
        e = [v for v in eos if v["setting"] == setting]
        k = [v for v in ctl if v["setting"] == setting]
        part = (f"{setting}: {sum(v['ok'] for v in e)}/{len(e)} runs at the edge (median λη/2 "
                f"{np.nanmin([v['median_ratio_at_eos'] for v in e]):.2f}–{np.nanmax([v['median_ratio_at_eos'] for v in e]):.2f}, "
                f"in band {np.nanmin([v['in_band_fraction'] for v in e]):.0%}–{np.nanmax([v['in_band_fraction'] for v in e]):.0%} of steps)"
                if e else f"{setting}: no edge runs")
        if k:
            part += (f", controls {sum(bool(v['ok']) for v in k)}/{sum(v['ok'] is not None for v in k)} stay below "
                     f"(max λη/2 ≤ {max(v['max_ratio'] for v in k):.2f})")
        fl = [v for (s, _), v in flow_used.items() if s == setting]
        if fl:
            part += f", flow sharpens {min(v['factor'] for v in fl):.0f}–{max(v['factor'] for v in fl):.0f}×"
        parts.append(part)
    crit = (f"every GD run (all setups and seeds): at-the-edge step sizes keep, once λ_max·η/2 reaches {lo}, a median in "
            f"[{lo}, {hi}] over ≥ {c['tail_fraction']:.0%} of the run with ≥ {c['min_in_band']:.0%} of those steps in the "
            f"band; negative controls (2/η above the flow's max sharpness) keep λ_max·η/2 < {c['control_max_ratio']}; "
            f"every flow sharpens ≥ {c['min_sharpening']}× (partly: some runs)")
    return {"verdict": verdict, "measured": {"gd": per, "flow": {v["run"]: v for v in flow_used.values()}},
            "summary": "; ".join(parts), "criterion": crit}


@claim("C2", 1, {"max_rel_distance": Num(), "min_advantage": Num()},
       statement="Exponential Euler trains without entering the edge of stability and follows the gradient flow.",
       notebook="02_flow_accuracy")
def claim_c2(params, root, c, fits=None) -> dict:
    if "compare" not in run_names("compare", root):
        raise NotMeasured("no finished compare run")
    summ = load_run("compare", root)["summary"]
    d = summ["distances"]
    ee = d.get("ee", {}).get("max_rel_distance")
    if ee is None:
        raise NotMeasured("the compare run has no flow-solver distances")
    gds = {k: v["max_rel_distance"] for k, v in d.items() if k != "ee"}
    ok_abs = ee <= c["max_rel_distance"]
    adv = {k: (v / ee if ee else float("inf")) for k, v in gds.items()}
    ok_adv = bool(adv) and all(a >= c["min_advantage"] for a in adv.values())
    verdict = HOLDS if ok_abs and ok_adv else (PARTLY if ok_abs or ok_adv else FAILS)
    summary = (f"max relative distance to the reference flow up to t={summ['t_end']:.3g}: exponential Euler "
               f"{ee:.2e}; " + (", ".join(f"GD {k.replace('gd_lr', 'η=')} {v:.2e} ({adv[k]:.0f}×)"
                                          for k, v in gds.items()) or "no GD run"))
    crit = (f"exponential Euler's max over t of ‖θ(t) − θ_ref(t)‖ / ‖θ_ref(t_end) − θ₀‖ ≤ {c['max_rel_distance']} and "
            f"every GD step size's is ≥ {c['min_advantage']}× larger (partly: one of the two)")
    return {"verdict": verdict, "measured": {"ee_max_rel_distance": ee, "gd_max_rel_distance": gds,
                                             "advantage": adv, "t_end": summ["t_end"],
                                             "reference": summ["reference"]},
            "summary": summary, "criterion": crit}


def _per_traj_run(root, judge) -> tuple[dict, list[bool]]:
    """``judge(table) -> dict`` (with an ``"ok"`` key) for every measured trajectory run that has the columns
    the judge needs (it returns None otherwise), keyed by ``<setting>/seed<s>``."""
    per = {}
    for r in _runs("traj", root):
        out = judge(r["table"])
        if out is not None:
            per[_run_key(r)] = out
    if not per:
        raise NotMeasured("no measured trajectory run has the columns this claim needs")
    oks = [v["ok"] for v in per.values() if v["ok"] is not None]  # None: the run never reached the judged part
    if not oks:
        raise NotMeasured("no measured run reached the part of training this claim judges")
    return per, oks


@claim("C2", 2, {"min_order": Num(), "max_rel_distance": Num(), "min_advantage": Num()})
def claim_c2_v2(params, root, c, fits=None) -> dict:
    """C2 on the error-versus-cost curves (``cost`` runs): exponential Euler converges to the flow (observed
    order ≥ ``min_order`` in Δt_max, error at its finest Δt_max ≤ ``max_rel_distance``) and, at equal work
    (gradients + HVPs), every GD step size at the edge of stability (2/η below the flow's λ_max) is ≥
    ``min_advantage``× further from the flow than exponential Euler's curve (log–log interpolation; beyond its
    range, its nearest point). GD step sizes below the edge are integrators of the flow themselves and are
    reported, not judged. Every seed. Work is what each integrator needs to advance: GD's is its gradients (the
    cost runs do not track GD's sharpness)."""
    names = run_names("cost", root)
    if not names:
        raise NotMeasured("no cost runs")
    per, oks = {}, []
    for name in names:
        r = load_run(name, root)
        v = r["summary"]["variants"]
        tab = r["table"]
        ee = sorted((x for x in v.values() if x["solver"] == "ee"), key=lambda x: x["step_size"])
        if len(ee) < 2:
            raise NotMeasured(f"{name}: exponential Euler needs ≥ 2 step sizes")
        finest = next(k for k, x in v.items() if x is ee[0])
        lam_flow = float(tab.loc[tab.variant == finest, "sharpness"].max())
        order = r["summary"]["orders"].get("ee")
        w_ee = np.log([x["work"] for x in ee])
        e_ee = np.log([x["max_rel_distance"] for x in ee])
        srt = np.argsort(w_ee)
        gd = {}
        for k, x in v.items():
            if x["solver"] != "gd":
                continue
            at_edge = 2 / x["step_size"] < lam_flow
            w = np.log(x["work"])
            inside = w_ee.min() <= w <= w_ee.max()
            e_eq = float(np.exp(np.interp(w, w_ee[srt], e_ee[srt])))
            gd[k] = {"eta": x["step_size"], "two_over_eta": 2 / x["step_size"], "at_edge": bool(at_edge),
                     "work": x["work"], "max_rel_distance": x["max_rel_distance"], "ee_at_equal_work": e_eq,
                     "advantage": x["max_rel_distance"] / e_eq, "interpolated": bool(inside)}
        ok_conv = order is not None and order >= c["min_order"] and ee[0]["max_rel_distance"] <= c["max_rel_distance"]
        judged = [g for g in gd.values() if g["at_edge"]]
        ok_adv = bool(judged) and all(g["advantage"] >= c["min_advantage"] for g in judged)
        rkc = {k: {"step_size": x["step_size"], "work": x["work"], "max_rel_distance": x["max_rel_distance"]}
               for k, x in v.items() if x["solver"] == "rkc"}
        per[name.split("/", 1)[1]] = {"ee_order": order, "ee_finest": ee[0]["max_rel_distance"],
                                      "ee_finest_dt": ee[0]["step_size"], "flow_lam_max": lam_flow, "gd": gd,
                                      "rkc": rkc, "rkc_order": r["summary"]["orders"].get("rkc"),
                                      "converges": bool(ok_conv), "beats_gd_at_edge": ok_adv,
                                      "gd_at_edge": len(judged)}
        oks += [bool(ok_conv), ok_adv]
    fmt = lambda x: "–" if x is None else f"{x:.2g}"  # noqa: E731
    summary = "; ".join(
        f"{k}: EE order {fmt(v['ee_order'])}, error {v['ee_finest']:.1e} at Δt_max {v['ee_finest_dt']:g}; GD at the "
        f"edge ({v['gd_at_edge']} η, 2/η < λ_max {v['flow_lam_max']:.3g}) " + (", ".join(
            f"η={g['eta']:g}: {g['advantage']:.1f}×" for g in v["gd"].values() if g["at_edge"]) or "none")
        + (f"; RKC order {fmt(v['rkc_order'])}" if v["rkc"] else "") for k, v in per.items())
    crit = (f"every seed: exponential Euler's observed order in Δt_max ≥ {c['min_order']} with max relative distance "
            f"≤ {c['max_rel_distance']} at its finest Δt_max, and at equal work (gradients + HVPs) every GD step size "
            f"at the edge (2/η < the flow's λ_max) ≥ {c['min_advantage']}× further from the flow (partly: some)")
    return {"verdict": _verdict(oks), "measured": per, "summary": summary, "criterion": crit}


def _comovement(tab: pd.DataFrame) -> tuple[pd.DataFrame, float, float]:
    """C3's co-movement over a measured run: (the rows measuring both ᾱ and λ_max, Spearman ρ(ᾱ, λ_max), ᾱ's
    growth ᾱ_end/ᾱ_init; NaN growth with fewer than two such rows)."""
    m = tab.dropna(subset=["alpha_mean", "hess_lam1"])
    growth = float(m["alpha_mean"].iloc[-1] / m["alpha_mean"].iloc[0]) if len(m) > 1 else float("nan")
    return m, _spearman(m["alpha_mean"], m["hess_lam1"]), growth


@claim("C3", 1, {"min_spearman": Num(positive=False, minimum=-1, maximum=1), "min_alpha_growth": Num()},
       statement="The rise in sharpness goes with the layerwise Jacobians becoming aligned (tested as "
                 "co-movement, not causation).", notebook="05_alignment")
def claim_c3(params, root, c, fits=None) -> dict:
    def judge(tab):
        if not {"alpha_mean", "hess_lam1"} <= set(tab):
            return None
        m, rho, growth = _comovement(tab)
        if len(m) < 2:
            return None
        ok = bool(rho >= c["min_spearman"] and growth >= c["min_alpha_growth"])
        return {"spearman_alpha_sharpness": rho, "alpha_init": m["alpha_mean"].iloc[0],
                "alpha_end": m["alpha_mean"].iloc[-1], "alpha_growth": growth, "ok": ok}

    per, oks = _per_traj_run(root, judge)
    across = {}
    try:
        thr = endpoint_table(root)
        thr = thr[thr.endpoint == "threshold"]
        for s, g in thr.groupby("setting"):
            if {"alpha_mean", "sharpness"} <= set(g):
                across[s] = _spearman(g["alpha_mean"], g["sharpness"])
    except FileNotFoundError:
        pass
    summary = "; ".join(f"{k}: ρ = {v['spearman_alpha_sharpness']:.2f}, ᾱ {v['alpha_init']:.2f} → {v['alpha_end']:.2f}"
                        for k, v in per.items())
    crit = (f"in every measured flow run, Spearman ρ(ᾱ, λ_max) over training ≥ {c['min_spearman']} "
            f"and ᾱ grows ≥ {c['min_alpha_growth']}× (partly: some runs)")
    return {"verdict": _verdict(oks), "measured": {"runs": per, "across_sweep_spearman_at_threshold": across},
            "summary": summary, "criterion": crit}


@claim("C3", 2, {"max_alpha_hold_ratio": Num(), "min_placebo_ratio": Num(), "level": Num(maximum=1)})
def claim_c3_v2(params, root, c, fits=None) -> dict:
    """C3 as a causal claim, judged on the intervention runs: from the switch (ᾱ = α*) to the loss level
    L_s·(L_thr/L_s)^``level``, the sharpening of an arm relative to the free flow's,
    R = log(λ_arm/λ_s) / log(λ_free/λ_s). Holding ᾱ must remove at least the share 1 − ``max_alpha_hold_ratio``
    of the sharpening (R_ᾱ ≤ max_alpha_hold_ratio), while the placebo — holding the layer norms Π‖Jᵏ‖ instead —
    must not (R_norms ≥ ``min_placebo_ratio``), for every seed and α*."""
    from .causal import compare_arms, decomposition, load_runs

    runs = load_runs(root)
    if not runs:
        raise NotMeasured("no intervention runs")
    cmp = compare_arms(runs, fractions=(c["level"],))
    cmp = cmp[(cmp.basis == "loss")]
    if not len(cmp):
        raise NotMeasured("no intervention arm reached the comparison loss level")
    # reported beside the verdict, not judged: R at equal flow time (the free run's end time), defined also for an
    # arm that never reaches the loss level
    at_time = compare_arms(runs, fractions=(1.0,))
    at_time = at_time[at_time.basis == "time"].set_index(["seed", "alpha_star", "hold"])

    def ratio(x) -> float | None:
        if x.lam_arm is None or x.lam_free is None or not np.isfinite(x.lam_arm):
            return None
        return float(np.log(x.lam_arm / x.switch_lam) / np.log(x.lam_free / x.switch_lam))

    per, oks = {}, []
    for (seed, a), g in cmp.groupby(["seed", "alpha_star"]):
        row = {}
        for hold, h in g.groupby("hold"):
            x = h.iloc[0]
            xt = at_time.loc[(seed, a, hold)] if (seed, a, hold) in at_time.index else None
            r_time = None if xt is None else ratio(xt)
            if ratio(x) is None:
                row[hold] = {"R": None, "lam_arm": None, "lam_free": x.lam_free, "R_time": r_time}
                continue
            row[hold] = {"R": ratio(x), "lam_arm": float(x.lam_arm), "lam_free": float(x.lam_free),
                         "lam_switch": float(x.switch_lam), "R_time": r_time}
        ra, rp = (row.get("alpha") or {}).get("R"), (row.get("norms") or {}).get("R")
        ok = bool(ra is not None and rp is not None and ra <= c["max_alpha_hold_ratio"] and rp >= c["min_placebo_ratio"])
        per[f"seed{seed}/a{a:g}"] = row | {"ok": ok, "switch_t": float(g.switch_t.iloc[0]),
                                           "switched_at_init": bool(g.switch_t.iloc[0] == 0)}
        oks.append(ok)
    decomp = {}
    for name, (tab, summ) in runs.items():
        if summ.get("arm") == "free" and {"log_chain_mean", "log_alpha_mean", "log_norms_mean"} <= set(tab):
            d = decomposition(tab)
            if len(d):
                last = d.iloc[-1]
                decomp[name.split("/", 2)[2].rsplit("/", 1)[0]] = {
                    "chain": float(last.chain), "alignment": float(last.alignment), "norms": float(last.norms),
                    "alignment_share": float(last.alignment / last.chain) if last.chain else None}
    fmt = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731

    def time_range(hold: str) -> str:
        r = [v[hold]["R_time"] for v in per.values() if (v.get(hold) or {}).get("R_time") is not None]
        return f"{min(r):.2f}–{max(r):.2f}" if r else "–"

    unreached = sum((v.get("norms") or {}).get("R") is None for v in per.values() if "norms" in v)
    summary = ("sharpening kept (R) with ᾱ held / with the norms held: " + "; ".join(
        f"{k}: {fmt((v.get('alpha') or {}).get('R'))} / {fmt((v.get('norms') or {}).get('R'))}" for k, v in per.items())
        + (f" (– : {unreached} placebo arms never reach the loss level)" if unreached else "")
        + f"; at equal flow time (the free flow's end) R = {time_range('alpha')} with ᾱ held, "
          f"{time_range('norms')} with the norms held (reported, not judged)"
        + ("; free flow: alignment share of Δlog‖P₁‖ " + ", ".join(
            f"{fmt(v['alignment_share'])}" for v in decomp.values()) if decomp else ""))
    crit = (f"from ᾱ = α* to the loss level L_s·(L_thr/L_s)^{c['level']:g}, holding ᾱ keeps R = log(λ/λ_s)/log(λ_free/λ_s) "
            f"≤ {c['max_alpha_hold_ratio']} while holding Π‖Jᵏ‖ (placebo) keeps R ≥ {c['min_placebo_ratio']}, for every "
            f"seed and α* (partly: some)")
    return {"verdict": _verdict(oks), "measured": {"arms": per, "decomposition": decomp}, "summary": summary,
            "criterion": crit}


@claim("C4", 1, {"paper_r2": Interval(), "min_r2": Num(maximum=1)},
       statement="Alignment at the end point scales with the dataset size N as a power law, R² in 0.74–0.98.",
       notebook="06_power_law")
def claim_c4(params, root, c, fits) -> dict:
    if not fits or not fits.get("fits"):
        raise NotMeasured("no power-law fits (no sweep runs)")
    prim = params["powerlaw"]["primary"]
    per, oks = {}, []
    for s, byep in fits["fits"].items():
        f = byep.get(prim["endpoint"], {}).get(prim["measure"], {})
        r2 = f.get("r2")
        ok = bool(r2 is not None and r2 >= c["min_r2"] and f.get("beta_excludes_zero", False))
        per[s] = {k: f.get(k) for k in ("beta", "beta_interval", "r2", "n_points")} | {"ok": ok}
        oks.append(ok)
    following = []
    for m in params["powerlaw"]["measures"]:
        for e in params["powerlaw"]["endpoints"]:
            r2s = [fits["fits"][s].get(e, {}).get(m, {}).get("r2") for s in fits["fits"]]
            if r2s and all(r is not None and r >= c["min_r2"] for r in r2s):
                following.append(f"{m}@{e}")
    r2v = [v["r2"] for v in per.values() if v["r2"] is not None]
    lo, hi = c["paper_r2"]

    def interval(v):
        iv = v.get("beta_interval") or [None, None]
        return "[no interval]" if iv[0] is None else f"[{iv[0]:.3f}, {iv[1]:.3f}]"

    summary = (f"{prim['measure']} at {prim['endpoint']}: " + "; ".join(
        f"{s}: β = {v['beta']:.3f} {interval(v)}, R² = {v['r2']:.2f}" for s, v in per.items() if v["r2"] is not None)
        + (f"; R² range {min(r2v):.2f}–{max(r2v):.2f} (paper {lo}–{hi})" if r2v else ""))
    crit = (f"pre-registered primary measure {prim['measure']} at end point {prim['endpoint']}: in every setting "
            f"R² ≥ {c['min_r2']} and the bootstrap interval of β excludes 0 (partly: some settings)")
    return {"verdict": _verdict(oks), "measured": {"settings": per, "measures_with_r2_above_min_everywhere": following},
            "summary": summary, "criterion": crit}


@claim("C4", 2, {"paper_r2": Interval(), "min_r2_means": Num(maximum=1), "aicc_threshold": Num()})
def claim_c4_v2(params, root, c, fits) -> dict:
    """C4 with seed-aware statistics: per setting, the primary measure's R² on per-N means (the power law is a
    claim about the mean trend, not the seed scatter) ≥ ``min_r2_means``, the t-interval of the per-seed slopes
    excludes 0, and the saturating alternative a − b·N^(−c) is not preferred by AICc (ΔAICc ≤ threshold)."""
    if not fits or not fits.get("fits"):
        raise NotMeasured("no power-law fits (no sweep runs)")
    prim = params["powerlaw"]["primary"]
    per, oks = {}, []

    def judge(f) -> dict:
        a = f.get("analysis") or {}
        lo, hi = a.get("beta_interval") or [None, None]
        excl = lo is not None and hi is not None and (lo > 0 or hi < 0)
        r2m, d = a.get("r2_means"), a.get("delta_aicc")
        not_sat = d is None or not d > c["aicc_threshold"]  # NaN (no saturating fit): not preferred
        ok = bool(r2m is not None and r2m >= c["min_r2_means"] and excl and not_sat)
        return {"beta": a.get("beta_t", f.get("beta")), "beta_interval": [lo, hi],
                "interval": a.get("interval_method"), "r2_means": r2m, "r2_pooled": a.get("r2_pooled"),
                "delta_aicc": d, "preferred": a.get("preferred"), "n_points": f.get("n_points"), "ok": ok}

    for s, byep in fits["fits"].items():
        per[s] = judge(byep.get(prim["endpoint"], {}).get(prim["measure"], {}))
        oks.append(per[s]["ok"])
    table = {f"{m}@{e}": {s: judge(fits["fits"][s].get(e, {}).get(m, {})) for s in fits["fits"]}
             for m in params["powerlaw"]["measures"] for e in params["powerlaw"]["endpoints"]}
    following = [k for k, by in table.items() if by and all(v["ok"] for v in by.values())]
    lo, hi = c["paper_r2"]
    fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    r2m = [v["r2_means"] for v in per.values() if v["r2_means"] is not None]
    summary = (f"{prim['measure']} at {prim['endpoint']}: " + "; ".join(
        f"{s}: β = {fmt(v['beta'])} [{fmt(v['beta_interval'][0])}, {fmt(v['beta_interval'][1])}], R² means "
        f"{fmt(v['r2_means'])} (pooled {fmt(v['r2_pooled'])}), ΔAICc {fmt(v['delta_aicc'])}" for s, v in per.items())
        + (f"; R² on means {min(r2m):.2f}–{max(r2m):.2f} (paper {lo}–{hi})" if r2m else ""))
    crit = (f"primary {prim['measure']} at {prim['endpoint']}: in every setting R² on per-N means ≥ "
            f"{c['min_r2_means']}, the t-interval of the per-seed slopes excludes 0, and AICc does not prefer the "
            f"saturating a − b·N^(−c) (ΔAICc ≤ {c['aicc_threshold']:g}) (partly: some settings)")
    return {"verdict": _verdict(oks), "measured": {"settings": per, "all_measures": table,
                                                   "measures_meeting_criterion_everywhere": following},
            "summary": summary, "criterion": crit}


@claim("split", 1, {"min_sharpening": Num(), "min_ggn_ratio": Num(maximum=1)},
       statement="The top of the Hessian spectrum comes from the Gauss–Newton term G, not the residual H.",
       notebook="03_hessian_split")
def claim_split(params, root, c, fits=None) -> dict:
    def judge(tab):
        if not {"hess_lam1", "ggn_lam1"} <= set(tab):
            return None
        m = _sharpened(tab.dropna(subset=["hess_lam1", "ggn_lam1"]), "hess_lam1", c["min_sharpening"])
        ratio = float((m["ggn_lam1"] / m["hess_lam1"]).median()) if len(m) else float("nan")
        res = float((m["res_lam1"] / m["hess_lam1"]).median()) if len(m) and "res_lam1" in m else float("nan")
        ok = bool(ratio >= c["min_ggn_ratio"]) if len(m) else None  # never sharpened that much: not judged
        return {"median_ggn_over_hess": ratio, "median_res_over_hess": res, "points": int(len(m)), "ok": ok}

    per, oks = _per_traj_run(root, judge)
    summary = "; ".join(f"{k}: λ(G)/λ(∇²L) = {v['median_ggn_over_hess']:.2f}, λ(H)/λ(∇²L) = "
                        f"{v['median_res_over_hess']:.2f}" for k, v in per.items())
    crit = (f"in every measured run, over the points where λ_max(∇²L) ≥ {c['min_sharpening']}× its initial value, "
            f"median λ_max(G)/λ_max(∇²L) ≥ {c['min_ggn_ratio']} (partly: some runs)")
    return {"verdict": _verdict(oks), "measured": per, "summary": summary, "criterion": crit}


def _layers_judge(c, col: str):
    """A per-run judge: the mean of the layer shares ``<col>_1…<col>_L`` over the points where λ_max has risen
    ≥ ``min_sharpening``× its initial value, the largest layer, and whether it is layer 1."""
    def judge(tab):
        cols = sorted((k for k in tab if k.startswith(f"{col}_")), key=lambda k: int(k.split("_")[1]))
        if not cols or "hess_lam1" not in tab:
            return None
        m = _sharpened(tab.dropna(subset=cols + ["hess_lam1"]), "hess_lam1", c["min_sharpening"])
        means = m[cols].mean() if len(m) else pd.Series(dtype=float)
        top = int(means.idxmax().split("_")[1]) if len(means) else None
        return {"mean_shares": [float(v) for v in means], "largest_layer": top,
                "share_1": float(means.iloc[0]) if len(means) else None, "ok": None if top is None else top == 1}
    return judge


@claim("layers", 1, {"min_sharpening": Num()},
       statement="Within G the first layer contributes the largest share of λ_max(G).", notebook="04_layer_shares")
def claim_layers(params, root, c, fits=None) -> dict:
    per, oks = _per_traj_run(root, _layers_judge(c, "share"))
    summary = "; ".join(f"{k}: largest share layer {v['largest_layer']} (layer 1: {v['share_1']:.2f})"
                        for k, v in per.items() if v["share_1"] is not None)
    crit = (f"in every measured run, averaged over the points where λ_max(∇²L) ≥ {c['min_sharpening']}× its "
            f"initial value, layer 1 has the largest share of λ_max(G) (partly: some runs)")
    return {"verdict": _verdict(oks), "measured": per, "summary": summary, "criterion": crit}


@claim("agreement", 1, {"endpoints": ListOf(Text()), "rel_tol": MapOf(Num(), what="relative tolerance")},
       statement="(A check, not a claim of the paper.) The sweep's flow solver and a second solver reach the same "
                 "end points: the measures agree within stated tolerances where both run.",
       notebook="06_power_law")
def claim_agreement(params, root, c, fits=None) -> dict:
    """For every (setting, N, seed) run by both the sweep's solver and the agreement solver: the relative
    difference |a − b|/|b| (b: the agreement solver) of each measure in ``rel_tol`` at each end point."""
    if not params.get("agreement"):
        raise NotMeasured("no agreement section in this profile")
    try:
        ep = endpoint_table(root)
    except FileNotFoundError as e:
        raise NotMeasured(str(e)) from None
    if "kind" not in ep or not (ep.kind == "agree").any():
        raise NotMeasured("no agreement runs measured")
    keys = ["setting", "n", "seed", "endpoint"]
    a = ep[(ep.kind == "sweep") & ep.endpoint.isin(c["endpoints"])].set_index(keys)
    b = ep[(ep.kind == "agree") & ep.endpoint.isin(c["endpoints"])].set_index(keys)
    both = a.index.intersection(b.index)
    if not len(both):
        raise NotMeasured("no (setting, N, seed, end point) reached by both solvers")
    per, oks = {}, []
    for m, tol in c["rel_tol"].items():
        d = ((a.loc[both, m] - b.loc[both, m]).abs() / b.loc[both, m].abs()).astype(float)
        worst = d.groupby(level="setting").max()
        for s, w in worst.items():
            per.setdefault(s, {})[m] = {"max_rel_diff": float(w), "median_rel_diff":
                                        float(d.xs(s, level="setting").median()), "tol": tol, "ok": bool(w <= tol)}
            oks.append(bool(w <= tol))
    sa, sb = params["sweep"].get("solver") or params["solver"], params["agreement"]["solver"]
    summary = (f"{sa['name']} vs {sb['name']} on {len(both)} end points: " + "; ".join(
        f"{s}: " + ", ".join(f"{m} ≤ {v['max_rel_diff']:.1%}" for m, v in ms.items()) for s, ms in per.items()))
    crit = ("at the end points " + ", ".join(c["endpoints"]) + ", max over runs of |a − b|/|b| ≤ " + ", ".join(
        f"{t:g} ({m})" for m, t in c["rel_tol"].items()) + " in every setting (partly: some measures/settings)")
    return {"verdict": _verdict(oks), "measured": {"settings": per, "pairs": int(len(both))}, "summary": summary,
            "criterion": crit}


@claim("layers", 2, {"min_sharpening": Num()})
def claim_layers_v2(params, root, c, fits=None) -> dict:
    """Layer 1 has the largest share of the top-q eigenspace of G (q = the loss's outlier count; robust where the
    top eigenvalues are nearly degenerate), averaged over the sharpened part, in every measured run: all
    settings (standardised inputs included), all seeds."""
    per, oks = _per_traj_run(root, _layers_judge(c, "shareq"))
    summary = "; ".join(f"{k}: largest layer {v['largest_layer']} (layer 1: {v['share_1']:.2f})"
                        for k, v in per.items() if v["share_1"] is not None)
    crit = (f"in every measured run, averaged over the points where λ_max(∇²L) ≥ {c['min_sharpening']}× its initial "
            f"value, layer 1 has the largest eigenvalue-weighted share of the top-q eigenspace of G (partly: some)")
    return {"verdict": _verdict(oks), "measured": per, "summary": summary, "criterion": crit}


@claim("sensitivity", 1, {"min_spearman": Num(positive=False, minimum=-1, maximum=1), "min_alpha_growth": Num(),
                          "min_sharpening": Num()},
       statement="(A check of C3 and the layer claim.) They hold when the initialisation, depth or width changes.",
       notebook="07_sensitivity")
def claim_sensitivity(params, root, c, fits=None) -> dict:
    """Per network variant (``sens`` runs) and seed: the co-movement criterion of C3 (Spearman ρ(ᾱ, λ_max) ≥
    ``min_spearman``, ᾱ growth ≥ ``min_alpha_growth``) and the layer claim (layer 1's top-q share largest)."""
    names = run_names("sens", root)
    if not names:
        raise NotMeasured("no sensitivity runs")
    lay = _layers_judge(c, "shareq")
    per, oks = {}, []
    for name in names:
        r = load_run(name, root)
        tab = r["table"]
        m, rho, growth = _comovement(tab)
        sharp = float(m["hess_lam1"].max() / m["hess_lam1"].iloc[0]) if len(m) > 1 else float("nan")
        ly = lay(tab) or {"largest_layer": None, "ok": None, "share_1": None, "mean_shares": []}
        ok3 = bool(rho >= c["min_spearman"] and growth >= c["min_alpha_growth"])
        per[name.split("/", 2)[2]] = {"variant": r["config"].get("variant"), "spearman": rho, "alpha_growth": growth,
                                      "sharpening": sharp, "c3_ok": ok3, "largest_layer": ly["largest_layer"],
                                      "share_1": ly["share_1"], "mean_shares": ly["mean_shares"],
                                      "layers_ok": ly["ok"]}
        oks += [ok3] + ([] if ly["ok"] is None else [bool(ly["ok"])])
    summary = "; ".join(f"{k}: ρ {v['spearman']:.2f}, ᾱ ×{v['alpha_growth']:.1f}, λ ×{v['sharpening']:.0f}, largest "
                        f"layer {v['largest_layer']}" for k, v in per.items())
    crit = (f"for every variant and seed: ρ(ᾱ, λ_max) ≥ {c['min_spearman']} and ᾱ grows ≥ {c['min_alpha_growth']}× (C3 as "
            f"first registered), and layer 1 has the largest top-q share once λ_max ≥ {c['min_sharpening']}× initial "
            "(partly: some)")
    return {"verdict": _verdict(oks), "measured": per, "summary": summary, "criterion": crit}


# ---------------------------------------------------------------------------------------------- the ledger


def judge_claim(key: str, params: dict, root: str | Path, fits: dict | None, version: int | None = None) -> dict:
    """One claim judged under criteria version ``version`` (default: the latest in params.yaml). A claim whose
    inputs are absent is *not measured* (never an error)."""
    c = CLAIMS[key]
    crit = params["criteria"].get(key) or {}
    versions = registered_versions(params, key)
    if not versions or (version is not None and version not in versions):
        what = "no criteria" if not versions else f"criteria v{version} not"
        return {"verdict": NOT_MEASURED, "measured": {}, "summary": f"{what} registered in this profile",
                "criterion": "", "criteria_version": version}
    v = versions[-1] if version is None else version
    schema, judge = c.judges[v]
    try:
        out = judge(params, Path(root), crit[f"v{v}"], fits)
    except (NotMeasured, FileNotFoundError) as e:
        out = {"verdict": NOT_MEASURED, "measured": {}, "summary": f"not measured: {e}", "criterion": ""}
    return out | {"criteria_version": v}


def build_claims(params: dict, root: str | Path = ".") -> dict:
    """Every registered claim judged under every registered criteria version; the latest gives the verdict."""
    root = Path(root)
    fits_file = root / "metrics" / "powerlaw.json"
    fits = read_json(fits_file) if fits_file.exists() else None
    rows = {}
    for key in CLAIMS:
        c = CLAIMS[key]
        versions = registered_versions(params, key)
        if not versions:  # not part of this profile's ledger
            continue
        row = judge_claim(key, params, root, fits)
        earlier = {f"v{v}": judge_claim(key, params, root, fits, v) for v in versions[:-1]}
        nb = c.notebook
        rows[key] = {"claim": key, "statement": c.statement} | row | {
            "earlier": {k: {f: e[f] for f in ("verdict", "summary", "criterion")} for k, e in earlier.items()},
            "figure": f"figures/{nb}.png", "figure_pdf": f"figures/{nb}.pdf", "notebook": f"notebooks/{nb}.ipynb"}
    return rows


def render_markdown(rows: dict, params: dict) -> str:
    lines = [
        "# Claims ledger",
        "",
        "Generated by `python -m eoslib ledger` (the `ledger` stage of `dvc.yaml`) from the run folders; do not "
        "edit by hand. Criteria are fixed in `params.yaml` (`criteria.<claim>.v<k>`, `powerlaw.primary`), each "
        "version committed before the runs it judges; earlier versions' verdicts are listed below the table. "
        f"Profile: `{params.get('profile', 'default')}`. Numbers in `metrics/claims.json`.",
        "",
        "| Claim | Verdict | Measured | Criterion | Figure | Notebook |",
        "|---|---|---|---|---|---|",
    ]
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    for key, r in rows.items():
        lines.append(f"| **{key}** {esc(r['statement'])} | **{r['verdict']}** (criteria v{r.get('criteria_version', '?')}) "
                     f"| {esc(r['summary'])} | {esc(r['criterion'])} | [{Path(r['figure']).name}]({r['figure']}) | "
                     f"[{Path(r['notebook']).name}]({r['notebook']}) |")
    earlier = [(k, v, e) for k, r in rows.items() for v, e in r.get("earlier", {}).items()]
    if earlier:
        lines += ["", "## Verdicts under earlier criteria (as first registered)", "",
                  "| Claim | Criteria | Verdict | Measured | Criterion |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v} | {e['verdict']} | {esc(e['summary'])} | {esc(e['criterion'])} |" for k, v, e in earlier]
    lines += ["", "Verdicts: *holds* — the criterion is met everywhere it was tested; *partly* — in some "
              "settings/step sizes or for one of two conditions; *does not hold at this scale* — nowhere, in "
              "these small CPU settings (it says nothing about the paper's scale); *not measured* — this profile "
              "has no runs for it.", ""]
    return "\n".join(lines)


def write_ledger(params: dict, root: str | Path = ".") -> dict:
    root = Path(root)
    rows = json_safe(build_claims(params, root))
    write_json(rows, root / "metrics" / "claims.json")
    write_text(render_markdown(rows, params), root / "CLAIMS.md")
    return rows


def claim_result(key: str, params: dict, root: str | Path = ".") -> dict:
    """The ledger row of one claim (as in CLAIMS.md), computed afresh — what the notebooks print."""
    fits_file = Path(root) / "metrics" / "powerlaw.json"
    return judge_claim(key, params, root, read_json(fits_file) if fits_file.exists() else None)


__all__ = ["CLAIMS", "claim", "criteria_schema", "fit_all", "write_fits", "build_claims", "judge_claim",
           "claim_result", "render_markdown", "write_ledger", "HOLDS", "PARTLY", "FAILS", "NOT_MEASURED", "VERDICTS"]


def main(argv: list[str] | None = None) -> int:
    """``python -m eoslib.ledger [--root R] fit|ledger`` (also ``eoslib fit`` / ``eoslib ledger``)."""
    import argparse

    from .io import read_params

    ap = argparse.ArgumentParser(prog="python -m eoslib.ledger", description="power-law fits or the claims ledger")
    ap.add_argument("--root", default=".", help="profile folder holding params.yaml")
    ap.add_argument("what", choices=("fit", "ledger"))
    a = ap.parse_args(argv)
    p = read_params(a.root)
    if a.what == "fit":
        out = write_fits(p, a.root)
        prim = out["primary"]
        for s, r2 in out["primary_r2"].items():
            f = out["fits"][s][prim["endpoint"]][prim["measure"]]
            print(f"{s}: {prim['measure']}@{prim['endpoint']} β = {f.get('beta')}, R² = {r2}")
    else:
        for k, r in write_ledger(p, a.root).items():
            print(f"{k}: {r['verdict']} — {r['summary']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

