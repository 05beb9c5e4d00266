"""The measure registry: every registered alignment measure equals the independent summary of
eoslib.alignment, derived measures follow their definitions, and a new measure is one definition that
params.yaml and the end-point measurement accept without any other change."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eoslib.alignment import alignment_summary
from eoslib.config import validate
from eoslib.measures import MEASURES, add, closure, measure_point, probe_stats, source
from eoslib.models import mlp
from eoslib.objective import Objective

REPO = Path(__file__).resolve().parents[1]
#: registered measure → its key in alignment.alignment_summary (a separate implementation)
SUMMARY_KEYS = {"alpha_mean": "alpha_mean", "alpha_median": "alpha_median", "alpha_gmean": "alpha_gmean",
                "chain_gain": "chain_gain_mean", "alpha_in_mean": "alpha_in_mean"}


@pytest.fixture
def objective():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 10, generator=g, dtype=torch.float64)
    return Objective(mlp(10, 16, 4, 3, init="default", seed=1, dtype=torch.float64), X,
                     torch.randint(0, 3, (40,), generator=g))


def test_alignment_measures_equal_the_summary(objective):
    s = alignment_summary(objective.model, objective.X)
    st = probe_stats(objective.model, objective.X)
    for name, key in SUMMARY_KEYS.items():
        assert MEASURES[name](st) == pytest.approx(s[key], rel=1e-12), name
    assert MEASURES["log_norm_product"](st) == pytest.approx(sum(s["log_norm_mean"]), rel=1e-12)
    # log‖P₁‖ = log α + Σ log‖Jᵏ‖ per example, so the means add up
    assert np.log(st.chain).mean() == pytest.approx(st.log_alpha.mean() + MEASURES["log_norm_product"](st))


def test_measure_point_derived_and_curvature(objective):
    theta = objective.theta0 + 0.3 * torch.randn(objective.P, dtype=torch.float64,
                                                 generator=torch.Generator().manual_seed(2))
    init = measure_point(objective, objective.theta0, ["alpha_growth", "sharpness"])
    row = measure_point(objective, theta, ["alpha_growth", "one_minus_alpha", "sharpness"], init=init)
    assert init["alpha_growth"] == pytest.approx(1.0)
    assert row["alpha_growth"] == pytest.approx(row["alpha_mean"] / init["alpha_mean"])
    assert row["one_minus_alpha"] == pytest.approx(1 - row["alpha_mean"])
    H = objective.hvp(theta, torch.eye(objective.P, dtype=torch.float64))
    lam1 = torch.linalg.eigvalsh((H + H.T) / 2)[-1].item()
    assert row["sharpness"] == pytest.approx(lam1, rel=1e-5)  # LOBPCG residual 1e-3·λ₁ → value error ~1e-6·λ₁
    assert closure(["alpha_growth"]) == ["alpha_mean", "alpha_growth"]


def test_a_new_measure_is_one_definition(objective):
    """Registering a measure is all it takes: params.yaml may list it, and measuring a point computes it."""
    name = "test_alpha_max"
    add(name, lambda s: float(s.alpha.max()), label="max alignment", source="alignment")
    try:
        p = yaml.safe_load((REPO / "params.yaml").read_text())
        p = copy.deepcopy(p)
        p["powerlaw"]["measures"].append(name)
        validate(p)  # accepted by the schema without editing config.py
        row = measure_point(objective, objective.theta0, [name])
        assert row[name] == pytest.approx(float(probe_stats(objective.model, objective.X).alpha.max()))
        from eoslib import plotting

        assert plotting.label(name) == "max alignment"
    finally:
        MEASURES._entries.pop(name)


def test_the_catalog_imports_no_measure_code():
    """Every catalogued measure resolves to a function of its module; importing the catalog (and reading a
    label, a source) loads neither torch nor the measure definitions — which is what lets plotting use labels."""
    import subprocess
    import sys

    for name in MEASURES:
        fn = MEASURES[name]
        assert callable(fn) and fn.__module__ == MEASURES.module(name) == "eoslib.measures.library", name
        assert source(name) in ("alignment", "curvature", "derived")
    code = ("import sys; from eoslib.measures import MEASURES, source; "
            "MEASURES.label('alpha_mean'); source('sharpness'); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('eoslib.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "torch" not in out and "eoslib.measures.library" not in out, out
