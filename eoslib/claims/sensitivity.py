"""sensitivity (a check of C3 as first registered and of the layer claim): they hold when the initialisation,
depth or width of the network changes, one factor at a time (``sens`` runs, :mod:`eoslib.experiments.sensitivity`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..results import load_run, run_names
from .framework import Claim, Criteria, NotMeasured, verdict_of
from .layers import layer_shares
from .stats import comovement

CLAIM = Claim("sensitivity", statement="(A check of C3 and the layer claim.) They hold when the initialisation, "
                                       "depth or width changes.", notebook="07_sensitivity",
              reads=("sens",))


@dataclass(frozen=True)
class V1(Criteria):
    """C3's co-movement (as first registered) and the layer claim (top-q shares) per network variant."""

    min_spearman: float = 0.8  # Spearman ρ(ᾱ, λ_max) over each run
    min_alpha_growth: float = 2.0  # ᾱ_end / ᾱ_init
    min_sharpening: float = 2.0  # layer shares averaged where λ_max(∇²L) ≥ 2× its initial value

    def criterion(self, params: Mapping) -> str:
        return (f"for every variant and seed: ρ(ᾱ, λ_max) ≥ {self.min_spearman} and ᾱ grows ≥ "
                f"{self.min_alpha_growth}× (C3 as first registered), and layer 1 has the largest top-q share once "
                f"λ_max ≥ {self.min_sharpening}× initial (partly: some)")


@CLAIM.version(1, V1())
def judge_v1(params: dict, root: Path, c: V1, fits: dict | None = None) -> dict:
    """Per network variant (``sens`` runs) and seed: the co-movement criterion of C3 (Spearman ρ(ᾱ, λ_max) ≥
    ``min_spearman``, ᾱ growth ≥ ``min_alpha_growth``) and the layer claim (layer 1's top-q share largest)."""
    names = run_names("sens", root)
    if not names:
        raise NotMeasured("no sensitivity runs")
    lay = layer_shares(c.min_sharpening, "shareq")
    per, oks = {}, []
    for name in names:
        r = load_run(name, root)
        tab = r["table"]
        m, rho, growth = comovement(tab)
        sharp = float(m["hess_lam1"].max() / m["hess_lam1"].iloc[0]) if len(m) > 1 else float("nan")
        ly = lay(tab) or {"largest_layer": None, "ok": None, "share_1": None, "mean_shares": []}
        ok3 = bool(rho >= c.min_spearman and growth >= c.min_alpha_growth)
        per[name.split("/", 2)[2]] = {"variant": r["config"].get("variant"), "spearman": rho, "alpha_growth": growth,
                                      "sharpening": sharp, "c3_ok": ok3, "largest_layer": ly["largest_layer"],
                                      "share_1": ly["share_1"], "mean_shares": ly["mean_shares"],
                                      "layers_ok": ly["ok"]}
        oks += [ok3] + ([] if ly["ok"] is None else [bool(ly["ok"])])
    summary = "; ".join(f"{k}: ρ {v['spearman']:.2f}, ᾱ ×{v['alpha_growth']:.1f}, λ ×{v['sharpening']:.0f}, largest "
                        f"layer {v['largest_layer']}" for k, v in per.items())
    return {"verdict": verdict_of(oks), "measured": per, "summary": summary}
