"""agreement (a check, not a claim of the paper): the sweep's flow solver and a second solver reach the same end
points — the measures agree within stated tolerances where both ran (``agree`` runs,
:mod:`eoslib.experiments.agreement`).

For a measure m at an end point of a run (setting, N, seed) reached by both: the relative difference
|a − b| / |b| with a = the sweep's solver, b = the agreement solver.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..results import endpoint_table
from .framework import Claim, Criteria, NotMeasured, verdict_of

CLAIM = Claim("agreement", statement="(A check, not a claim of the paper.) The sweep's flow solver and a second "
                                     "solver reach the same end points: the measures agree within stated tolerances "
                                     "where both run.", notebook="06_power_law",
              reads=("endpoints",))  # the sweep's and the agreement solver's end-point rows


@dataclass(frozen=True)
class V1(Criteria):
    """Per setting, the largest relative difference of each measure at each listed end point.

    RKC (rtol 1e-3) and exponential Euler (first order, Δt_max 0.5) each sit a few per cent from the reference flow
    (benchmarks: 1.8e-2 and 5e-2 relative distance at N = 512), so their end-point measures may differ by about
    that much; λ_max moves fastest near the threshold (EE arrives 2–4 % later in flow time).
    """

    endpoints: tuple[str, ...] = ("threshold", "time")  # the end points compared
    # measure → the largest relative difference |a − b|/|b| allowed (pairs: a frozen mapping)
    rel_tol: tuple[tuple[str, float], ...] = (("alpha_mean", 0.05), ("chain_gain", 0.10), ("sharpness", 0.15))

    def criterion(self, params: Mapping) -> str:
        return ("at the end points " + ", ".join(self.endpoints) + ", max over runs of |a − b|/|b| ≤ " + ", ".join(
            f"{t:g} ({m})" for m, t in self.rel_tol) + " in every setting (partly: some measures/settings)")


@CLAIM.version(1, V1())
def judge_v1(params: dict, root: Path, c: V1, fits: dict | None = None) -> dict:
    """For every (setting, N, seed) run by both the sweep's solver and the agreement solver: the relative
    difference |a − b|/|b| (b: the agreement solver) of each measure in ``rel_tol`` at each end point; per setting
    and measure, ok if its maximum over runs and end points is ≤ the tolerance."""
    if not params.get("agreement"):
        raise NotMeasured("no agreement section in this profile")
    try:
        ep = endpoint_table(root)
    except FileNotFoundError as e:
        raise NotMeasured(str(e)) from None
    if "kind" not in ep or not (ep.kind == "agree").any():
        raise NotMeasured("no agreement runs measured")
    keys = ["setting", "n", "seed", "endpoint"]
    a = ep[(ep.kind == "sweep") & ep.endpoint.isin(c.endpoints)].set_index(keys)
    b = ep[(ep.kind == "agree") & ep.endpoint.isin(c.endpoints)].set_index(keys)
    both = a.index.intersection(b.index)
    if not len(both):
        raise NotMeasured("no (setting, N, seed, end point) reached by both solvers")
    per, oks = {}, []
    for m, tol in c.rel_tol:
        d = ((a.loc[both, m] - b.loc[both, m]).abs() / b.loc[both, m].abs()).astype(float)
        worst = d.groupby(level="setting").max()
        for s, w in worst.items():
            per.setdefault(s, {})[m] = {"max_rel_diff": float(w), "median_rel_diff":
                                        float(d.xs(s, level="setting").median()), "tol": tol, "ok": bool(w <= tol)}
            oks.append(bool(w <= tol))
    sa, sb = params["sweep"].get("solver") or params["solver"], params["agreement"]["solver"]
    summary = (f"{sa['name']} vs {sb['name']} on {len(both)} end points: " + "; ".join(
        f"{s}: " + ", ".join(f"{m} ≤ {v['max_rel_diff']:.1%}" for m, v in ms.items()) for s, ms in per.items()))
    return {"verdict": verdict_of(oks), "measured": {"settings": per, "pairs": int(len(both))}, "summary": summary}
