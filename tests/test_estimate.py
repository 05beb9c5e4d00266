"""The compute estimate (`python -m eoslib plan`): the cost model recovers known exponents, parameter counts
equal the built networks', and every planned run of a profile is counted."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from eoslib.config import plan, validate
from eoslib.estimate import estimate, fit, parameter_count

REPO = Path(__file__).resolve().parents[1]


def test_fit_recovers_a_power_law_in_n_and_p():
    rng = np.random.default_rng(0)
    rows = [{"kind": "sweep", "solver": "rkc", "n": n, "P": P, "cpu_seconds": 3e-6 * n**0.9 * P**0.7}
            for n in (64, 256, 1024, 4096) for P in (7e4, 1.8e5, 5e5)]
    m = fit(pd.DataFrame(rows))[("sweep", "rkc")]
    assert m["a"] == pytest.approx(0.9, abs=1e-9) and m["b"] == pytest.approx(0.7, abs=1e-9)
    assert np.exp(m["c"]) == pytest.approx(3e-6, rel=1e-9)
    one_p = [r | {"P": 1e5, "cpu_seconds": r["cpu_seconds"] * rng.uniform(0.99, 1.01)} for r in rows[::3]]
    m1 = fit(pd.DataFrame(one_p))[("sweep", "rkc")]
    assert m1["b"] == 1.0 and m1["a"] == pytest.approx(0.9, abs=0.02)  # P fixed: cost taken ∝ P


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_parameter_count_matches_the_built_network(kind):
    from eoslib.experiments.base import build_objective

    cfg = {"setting": {"name": "s", "dataset": "digits", "activation": "elu", "loss": "ce", "classes": 4}, "n": 8,
           "seed": 0, "model": {"kind": kind, "width": 16, "depth": 3, "init": "default", "dtype": "float32"},
           "threads": 1}
    assert parameter_count(cfg) == build_objective(cfg)[0].P


def test_estimate_counts_every_planned_run():
    p = validate(yaml.safe_load((REPO / "params.yaml").read_text()))
    model = {("sweep", "ee"): {"c": -10.0, "a": 1.0, "b": 1.0, "runs": 9, "n_range": [16, 512], "P_range": [1, 10**6]}}
    est = estimate(p, model)
    planned = plan(p)
    assert est.runs.sum() == sum(len(s["runs"]) for s in planned.values())
    sweep = est[est.stage.str.startswith("sweep")]
    assert (sweep.uncalibrated_runs == 0).all() and (sweep.cpu_hours > 0).all()
    assert (est[~est.stage.str.startswith("sweep")].cpu_hours == 0).all()  # no calibration for other kinds
