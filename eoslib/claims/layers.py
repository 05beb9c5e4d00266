"""layers: within G the first layer contributes the largest share of λ_max(G).

With w the unit top eigenvector of G and w_k its block on layer k, layer k's share of λ_max(G) is ‖w_k‖²
(``share_<k>`` columns; the shares are ≥ 0 and sum to 1). v2 reads the eigenvalue-weighted shares of the top-q
eigenspace of G instead (``shareq_<k>``, q = the loss's outlier count), robust where λ₁ ≈ λ₂. Both average the
shares over a run's sharpened part (λ_max(∇²L) ≥ ``min_sharpening``× its first value).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .framework import Claim, Criteria, verdict_of
from .runs import per_traj_run
from .stats import sharpened

CLAIM = Claim("layers", statement="Within G the first layer contributes the largest share of λ_max(G).",
              notebook="04_layer_shares", reads=("traj",))


def layer_shares(min_sharpening: float, col: str) -> Callable[[pd.DataFrame], dict | None]:
    """A per-run judge: the mean of the layer shares ``<col>_1…<col>_L`` over the points where λ_max has risen
    ≥ ``min_sharpening``× its initial value, the largest layer, and whether it is layer 1 (None: the run never
    sharpened that much, or lacks the columns)."""
    def judge(tab: pd.DataFrame) -> dict | None:
        cols = sorted((k for k in tab if k.startswith(f"{col}_")), key=lambda k: int(k.split("_")[1]))
        if not cols or "hess_lam1" not in tab:
            return None
        m = sharpened(tab.dropna(subset=cols + ["hess_lam1"]), "hess_lam1", min_sharpening)
        means = m[cols].mean() if len(m) else pd.Series(dtype=float)
        top = int(means.idxmax().split("_")[1]) if len(means) else None
        return {"mean_shares": [float(v) for v in means], "largest_layer": top,
                "share_1": float(means.iloc[0]) if len(means) else None, "ok": None if top is None else top == 1}
    return judge


@dataclass(frozen=True)
class V1(Criteria):
    """As first registered: the shares of the top eigenvector of G."""

    min_sharpening: float = 2.0  # points where λ_max(∇²L) ≥ 2× its initial value: layer 1's share is largest

    def criterion(self, params: Mapping) -> str:
        return (f"in every measured run, averaged over the points where λ_max(∇²L) ≥ {self.min_sharpening}× its "
                f"initial value, layer 1 has the largest share of λ_max(G) (partly: some runs)")


@CLAIM.version(1, V1())
def judge_v1(params: dict, root: Path, c: V1, fits: dict | None = None) -> dict:
    """Per measured run: layer 1 has the largest mean share (``share_<k>``) over the sharpened part."""
    per, oks = per_traj_run(root, layer_shares(c.min_sharpening, "share"))
    summary = "; ".join(f"{k}: largest share layer {v['largest_layer']} (layer 1: {v['share_1']:.2f})"
                        for k, v in per.items() if v["share_1"] is not None)
    return {"verdict": verdict_of(oks), "measured": per, "summary": summary}


@dataclass(frozen=True)
class V2(Criteria):
    """The same on the top-q eigenspace shares (robust to near-degenerate λ₁ ≈ λ₂)."""

    min_sharpening: float = 2.0  # points where λ_max(∇²L) ≥ 2× its initial value

    def criterion(self, params: Mapping) -> str:
        return (f"in every measured run, averaged over the points where λ_max(∇²L) ≥ {self.min_sharpening}× its "
                f"initial value, layer 1 has the largest eigenvalue-weighted share of the top-q eigenspace of G "
                f"(partly: some)")


@CLAIM.version(2, V2())
def judge_v2(params: dict, root: Path, c: V2, fits: dict | None = None) -> dict:
    """Layer 1 has the largest share of the top-q eigenspace of G (q = the loss's outlier count; robust where the
    top eigenvalues are nearly degenerate), averaged over the sharpened part, in every measured run: all
    settings (standardised inputs included), all seeds."""
    per, oks = per_traj_run(root, layer_shares(c.min_sharpening, "shareq"))
    summary = "; ".join(f"{k}: largest layer {v['largest_layer']} (layer 1: {v['share_1']:.2f})"
                        for k, v in per.items() if v["share_1"] is not None)
    return {"verdict": verdict_of(oks), "measured": per, "summary": summary}
