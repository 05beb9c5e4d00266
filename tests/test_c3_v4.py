"""C3 v4's judge on constructed intervention runs (exponential λ tables, one loss path): a positive control that
stops the sharpening, a vector arm that removes it and a placebo that keeps it → holds; a control that does not
stop it → test invalid; a placebo that also removes it → does not hold; R at equal loss and at the peak, the
removed fractions (time-weighted), the horse race and the mechanism control are reported."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eoslib.claims import ledger
from eoslib.claims.framework import HOLDS, PARTLY, FAILS, TEST_INVALID

N = 21
LOSS = np.geomspace(1.0, 0.1, N)
FREE = np.exp(np.linspace(0, np.log(16), N))  # λ: 1 → 16
SW = {"step": 5, "t": 5.0, "loss": float(LOSS[5]), "abar": 0.3, "sharpness": float(FREE[5])}


def run(root: Path, name: str, summ: dict, lam: np.ndarray, loss: np.ndarray = LOSS, **cols) -> None:
    d = root / "runs" / name
    d.mkdir(parents=True, exist_ok=True)
    n = len(lam)
    tab = pd.DataFrame({"step": np.arange(n), "t": np.arange(n, dtype=float), "loss": loss, "sharpness": lam,
                        "phase": ["free"] * 5 + ["hold"] * (n - 5)} | cols)
    tab.to_csv(d / "trajectory.csv", index=False)
    (d / "summary.json").write_text(json.dumps(summ))


def keep(share: float) -> np.ndarray:
    lam = FREE.copy()
    lam[5:] = FREE[5] * (FREE[5:] / FREE[5]) ** share
    return lam


def arms(root: Path, shares: dict, setting: str = "fmnist-elu-ce", seed: int = 0, removed: float = 0.2) -> None:
    base = f"intervene/{setting}/seed{seed}"
    run(root, f"{base}/free", {"arm": "free"}, FREE)
    for hold, share in shares.items():
        rem = np.r_[[np.nan] * 5, np.full(N - 5, removed)]
        run(root, f"{base}/a0.3-{hold}", {"arm": hold, "alpha_star": 0.3, "switched": True, "switch": SW},
            keep(share), removed=rem)


@pytest.fixture
def p():
    """The default profile's params (validated) registering C3 v1–v4."""
    import yaml

    from eoslib.config import validate

    q = validate(yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text()))
    q["criteria"]["C3"] = [1, 2, 3, 4]
    return q


def test_holds_with_control_treatment_and_placebo(tmp_path, p):
    arms(tmp_path, {"chain": 0.1, "vector": 0.3, "placebo": 0.9, "alpha": 0.95})
    r = ledger.judge_claim("C3", p, tmp_path, None)
    assert r["criteria_version"] == 4 and r["verdict"] == HOLDS
    u = r["measured"]["units"]["fmnist-elu-ce/seed0/a0.3"]
    assert u["arms"]["vector"]["R_loss"] == pytest.approx(0.3) and u["arms"]["vector"]["R_peak"] == pytest.approx(0.3)
    assert u["arms"]["placebo"]["R_peak"] == pytest.approx(0.9) and u["arms"]["alpha"]["R_loss"] == pytest.approx(0.95)
    assert u["arms"]["vector"]["removed_loss"] == pytest.approx(0.2)  # the time-weighted mean of a constant
    assert u["control_ok"] and u["status"] == "holds"


def test_a_control_that_does_not_stop_sharpening_invalidates(tmp_path, p):
    arms(tmp_path, {"chain": 0.6, "vector": 0.9, "placebo": 0.9})
    r = ledger.judge_claim("C3", p, tmp_path, None)
    assert r["verdict"] == TEST_INVALID and r["measured"]["test_invalid"] == ["fmnist-elu-ce/seed0/a0.3"]
    # with a second setting whose control works and whose treatment passes: partly, never holds
    arms(tmp_path, {"chain": 0.0, "vector": 0.2, "placebo": 1.0}, setting="digits-elu-ce")
    r = ledger.judge_claim("C3", p, tmp_path, None)
    assert r["verdict"] == PARTLY


def test_a_placebo_that_also_removes_sharpening_fails(tmp_path, p):
    arms(tmp_path, {"chain": 0.1, "vector": 0.3, "placebo": 0.5})
    r = ledger.judge_claim("C3", p, tmp_path, None)
    assert r["verdict"] == FAILS
    u = r["measured"]["units"]["fmnist-elu-ce/seed0/a0.3"]
    assert u["vector_ok"] and not u["placebo_ok"]


def test_the_peak_comparison_can_fail_alone(tmp_path, p):
    """A vector arm that ends low at equal loss but overshoots in between: R at the peak > 0.5 fails it."""
    arms(tmp_path, {"chain": 0.1, "placebo": 0.9})
    lam = keep(0.2)
    lam[12] = FREE[-1] * 0.9  # a transient spike close to the free flow's peak
    run(tmp_path, "intervene/fmnist-elu-ce/seed0/a0.3-vector", {"arm": "vector", "alpha_star": 0.3,
                                                                "switched": True, "switch": SW}, lam)
    r = ledger.judge_claim("C3", p, tmp_path, None)
    u = r["measured"]["units"]["fmnist-elu-ce/seed0/a0.3"]
    assert u["arms"]["vector"]["R_loss"] == pytest.approx(0.2) and u["arms"]["vector"]["R_peak"] > 0.9
    assert r["verdict"] == FAILS


def test_mechanism_and_horse_race_are_reported(tmp_path, p):
    arms(tmp_path, {"chain": 0.1, "vector": 0.3, "placebo": 0.9})
    t = np.arange(N, dtype=float)
    rng = np.random.default_rng(0)
    abar = np.exp(0.05 * t + rng.normal(0, 0.01, N))
    run(tmp_path, "intervene/fmnist-elu-ce/seed0/free", {"arm": "free"}, FREE, alpha_mean=abar,
        log_norms_mean=0.1 * t + rng.normal(0, 0.01, N), input_gain=np.exp(0.02 * t + rng.normal(0, 0.01, N)),
        output_weight_norm=np.exp(0.01 * t + rng.normal(0, 0.01, N)))
    run(tmp_path, "intervene/fmnist-elu-ce/seed0/taylor", {"arm": "taylor", "taylor": {
        "lam_start": 1.0, "lam_min": 1.0, "lam_peak": 3.0, "lam_end": 3.0, "sharpening": 3.0}}, FREE)
    r = ledger.judge_claim("C3", p, tmp_path, None)
    m = r["measured"]
    assert m["sharpening_without_layers"] and "sharpening occurs without layers" in r["summary"]
    assert set(m["horse_race"]["pooled"]) >= {"none", "norms", "time", "input_gain", "output_norm", "all"}
    assert 0 <= m["horse_race"]["pooled"]["norms"]["delta_r2"] <= 1


def test_held_jumps_lists_the_arm_runs_that_crossed_one():
    from eoslib.claims.c3 import held_jumps

    j = {"count": 2, "loss_rise": 1e-3, "halvings": 40}
    runs = {"a": (None, {"jumps": j}), "b": (None, {"jumps": {"count": 0, "loss_rise": 0.0, "halvings": 3}}),
            "c": (None, {})}
    assert held_jumps(runs) == {"a": j}


def test_jumps_are_reported_beside_the_verdict_not_judged(tmp_path):
    """The ledger row carries the jumps under ``reported`` and in its summary; a claim's report is outside every
    version's lock (claims-lock --check passes with it), and nothing is added when no arm crossed a jump."""
    import json

    from eoslib.claims.c3 import CLAIM, jumps_report
    from eoslib.claims.ledger import with_report

    assert jumps_report({}, tmp_path) == ({}, "")
    d = tmp_path / "runs" / "intervene" / "s" / "seed0" / "a0.2-vector"
    d.mkdir(parents=True)
    (d / "trajectory.csv").write_text("t,loss\n0,1\n")
    (d / "summary.json").write_text(json.dumps({"jumps": {"count": 3, "loss_rise": 2e-3, "halvings": 15}}))
    row = with_report({"verdict": "holds", "summary": "S"}, CLAIM, {}, tmp_path)
    assert row["reported"] == {"jumps": {"intervene/s/seed0/a0.2-vector": {"count": 3, "loss_rise": 2e-3,
                                                                           "halvings": 15}}}
    assert row["verdict"] == "holds" and row["summary"].startswith("S; the held constraint jumped")
    assert "3 times in 1 arm run," in row["summary"]


def test_the_free_flow_decomposition_keeps_every_setting_apart():
    """Regression: keyed by seed alone, the three settings of the causal profile overwrote one another."""
    import pandas as pd

    from eoslib.claims.c3 import free_flow_decomposition

    def free(a):  # Δ log‖P₁‖ = 3a, of which Δ log ᾱ = 2a
        return pd.DataFrame({"t": [0.0, 1.0], "loss": [1.0, 0.1], "log_chain_mean": [0.0, 3 * a],
                             "log_alpha_mean": [0.0, 2 * a], "log_norms_mean": [0.0, a]}), {"arm": "free"}

    runs = {"intervene/s1/seed0/free": free(1.0), "intervene/s2/seed0/free": free(2.0),
            "intervene/s1/seed0/a0.2-alpha": (None, {"arm": "alpha"})}
    d = free_flow_decomposition(runs)
    assert set(d) == {"s1/seed0", "s2/seed0"}
    assert d["s2/seed0"]["chain"] == 6.0 and abs(d["s1/seed0"]["alignment_share"] - 2 / 3) < 1e-12
