"""split: the top of the Hessian spectrum comes from the Gauss–Newton term G, not the residual H (∇²L = G + H).

Judged on the measured trajectory runs (``hess_lam1`` = λ_max(∇²L), ``ggn_lam1`` = λ_max(G), ``res_lam1`` =
λ_max(H)) over their sharpened part: the points where λ_max(∇²L) has risen ≥ ``min_sharpening``× its first value.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .framework import Claim, Criteria, verdict_of
from .runs import per_traj_run
from .stats import sharpened

CLAIM = Claim("split", statement="The top of the Hessian spectrum comes from the Gauss–Newton term G, not the "
                                 "residual H.", notebook="03_hessian_split", reads=("traj",))


@dataclass(frozen=True)
class V1(Criteria):
    """As first registered: the median ratio λ_max(G)/λ_max(∇²L) over the sharpened part of every run."""

    min_sharpening: float = 2.0  # points where λ_max(∇²L) ≥ 2× its initial value
    min_ggn_ratio: float = 0.9  # median λ_max(G)/λ_max(∇²L) there

    def criterion(self, params: Mapping) -> str:
        return (f"in every measured run, over the points where λ_max(∇²L) ≥ {self.min_sharpening}× its initial "
                f"value, median λ_max(G)/λ_max(∇²L) ≥ {self.min_ggn_ratio} (partly: some runs)")


@CLAIM.version(1, V1())
def judge_v1(params: dict, root: Path, c: V1, fits: dict | None = None) -> dict:
    """Per run, over the sharpened part: median λ_max(G)/λ_max(∇²L) ≥ ``min_ggn_ratio`` (a run that never
    sharpens that much is reported, not judged); the median λ_max(H)/λ_max(∇²L) is reported."""
    def judge(tab: pd.DataFrame) -> dict | None:
        if not {"hess_lam1", "ggn_lam1"} <= set(tab):
            return None
        m = sharpened(tab.dropna(subset=["hess_lam1", "ggn_lam1"]), "hess_lam1", c.min_sharpening)
        ratio = float((m["ggn_lam1"] / m["hess_lam1"]).median()) if len(m) else float("nan")
        res = float((m["res_lam1"] / m["hess_lam1"]).median()) if len(m) and "res_lam1" in m else float("nan")
        ok = bool(ratio >= c.min_ggn_ratio) if len(m) else None  # never sharpened that much: not judged
        return {"median_ggn_over_hess": ratio, "median_res_over_hess": res, "points": int(len(m)), "ok": ok}

    per, oks = per_traj_run(root, judge)
    summary = "; ".join(f"{k}: λ(G)/λ(∇²L) = {v['median_ggn_over_hess']:.2f}, λ(H)/λ(∇²L) = "
                        f"{v['median_res_over_hess']:.2f}" for k, v in per.items())
    return {"verdict": verdict_of(oks), "measured": per, "summary": summary}
