"""C2: exponential Euler trains without entering the edge of stability and follows the gradient flow.

Distances to a high-accuracy reference flow θ_ref at equal flow time t, relative to the flow's whole displacement:
d(t) = ‖θ(t) − θ_ref(t)‖ / ‖θ_ref(T) − θ₀‖ (GD: t = kη). v1 reads the ``compare`` run (one seed); v2 the
error-versus-cost ``cost`` runs (every seed, each solver over a grid of step sizes, work = gradients + HVPs).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..results import load_run, run_names
from .framework import FAILS, HOLDS, PARTLY, Claim, Criteria, NotMeasured, verdict_of

CLAIM = Claim("C2", statement="Exponential Euler trains without entering the edge of stability and follows the "
                              "gradient flow.", notebook="02_flow_accuracy",
              reads={1: ("compare",), 2: ("cost",)})  # v1: the compare run; v2: the cost runs (λ_max of the flow)


@dataclass(frozen=True)
class V1(Criteria):
    """As first registered: the compare run, exponential Euler against GD at a few step sizes."""

    max_rel_distance: float = 0.05  # exponential Euler's max relative distance to the reference flow
    min_advantage: float = 3.0  # every GD step size's distance is at least this factor larger

    def criterion(self, params: Mapping) -> str:
        return (f"exponential Euler's max over t of ‖θ(t) − θ_ref(t)‖ / ‖θ_ref(t_end) − θ₀‖ ≤ {self.max_rel_distance} "
                f"and every GD step size's is ≥ {self.min_advantage}× larger (partly: one of the two)")


@CLAIM.version(1, V1())
def judge_v1(params: dict, root: Path, c: V1, fits: dict | None = None) -> dict:
    """max_t d(t) of exponential Euler ≤ ``max_rel_distance``, and every GD step size's max_t d(t) ≥
    ``min_advantage`` × exponential Euler's; holds if both, partly if one."""
    if "compare" not in run_names("compare", root):
        raise NotMeasured("no finished compare run")
    summ = load_run("compare", root)["summary"]
    d = summ["distances"]
    ee = d.get("ee", {}).get("max_rel_distance")
    if ee is None:
        raise NotMeasured("the compare run has no flow-solver distances")
    gds = {k: v["max_rel_distance"] for k, v in d.items() if k != "ee"}
    ok_abs = ee <= c.max_rel_distance
    adv = {k: (v / ee if ee else float("inf")) for k, v in gds.items()}
    ok_adv = bool(adv) and all(a >= c.min_advantage for a in adv.values())
    verdict = HOLDS if ok_abs and ok_adv else (PARTLY if ok_abs or ok_adv else FAILS)
    summary = (f"max relative distance to the reference flow up to t={summ['t_end']:.3g}: exponential Euler "
               f"{ee:.2e}; " + (", ".join(f"GD {k.replace('gd_lr', 'η=')} {v:.2e} ({adv[k]:.0f}×)"
                                          for k, v in gds.items()) or "no GD run"))
    return {"verdict": verdict, "measured": {"ee_max_rel_distance": ee, "gd_max_rel_distance": gds,
                                             "advantage": adv, "t_end": summ["t_end"],
                                             "reference": summ["reference"]},
            "summary": summary}


@dataclass(frozen=True)
class V2(Criteria):
    """On the error-versus-cost curves (cost runs), every seed."""

    min_order: float = 0.8  # exponential Euler converges (first order: 1) ...
    max_rel_distance: float = 0.05  # ... to within this at its finest Δt_max
    min_advantage: float = 3.0  # GD at the edge (2/η < the flow's λ_max) ≥ 3× further at equal work

    def criterion(self, params: Mapping) -> str:
        return (f"every seed: exponential Euler's observed order in Δt_max ≥ {self.min_order} with max relative "
                f"distance ≤ {self.max_rel_distance} at its finest Δt_max, and at equal work (gradients + HVPs) every "
                f"GD step size at the edge (2/η < the flow's λ_max) ≥ {self.min_advantage}× further from the flow "
                f"(partly: some)")


def _v2_summary(per: dict) -> str:
    fmt = lambda x: "–" if x is None else f"{x:.2g}"  # noqa: E731
    return "; ".join(
        f"{k}: EE order {fmt(v['ee_order'])}, error {v['ee_finest']:.1e} at Δt_max {v['ee_finest_dt']:g}; GD at the "
        f"edge ({v['gd_at_edge']} η, 2/η < λ_max {v['flow_lam_max']:.3g}) " + (", ".join(
            f"η={g['eta']:g}: {g['advantage']:.1f}×" for g in v["gd"].values() if g["at_edge"]) or "none")
        + (f"; RKC order {fmt(v['rkc_order'])}" if v["rkc"] else "") for k, v in per.items())


@CLAIM.version(2, V2())
def judge_v2(params: dict, root: Path, c: V2, fits: dict | None = None) -> dict:
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
        ok_conv = order is not None and order >= c.min_order and ee[0]["max_rel_distance"] <= c.max_rel_distance
        judged = [g for g in gd.values() if g["at_edge"]]
        ok_adv = bool(judged) and all(g["advantage"] >= c.min_advantage for g in judged)
        rkc = {k: {"step_size": x["step_size"], "work": x["work"], "max_rel_distance": x["max_rel_distance"]}
               for k, x in v.items() if x["solver"] == "rkc"}
        per[name.split("/", 1)[1]] = {"ee_order": order, "ee_finest": ee[0]["max_rel_distance"],
                                      "ee_finest_dt": ee[0]["step_size"], "flow_lam_max": lam_flow, "gd": gd,
                                      "rkc": rkc, "rkc_order": r["summary"]["orders"].get("rkc"),
                                      "converges": bool(ok_conv), "beats_gd_at_edge": ok_adv,
                                      "gd_at_edge": len(judged)}
        oks += [bool(ok_conv), ok_adv]
    return {"verdict": verdict_of(oks), "measured": per, "summary": _v2_summary(per)}
