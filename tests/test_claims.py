"""The claims ledger and the power-law fits on constructed run folders with known answers.

Each test writes a small profile by hand (config.json, summary.json, trajectory.csv, end-point tables) whose
verdicts follow from the criteria by arithmetic, so a wrong verdict, a crash on missing runs or a fit that
misses a known exponent fails here without any training. Criteria are frozen dataclasses (eoslib/claims/<claim>.py);
a test that needs other thresholds judges a modified copy (``dataclasses.replace``) registered as a test-only
version."""
from __future__ import annotations

import ast
import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from eoslib import claims, results
from eoslib.claims import CLAIM_MODULES, CLAIMS, FAILS, HOLDS, NOT_MEASURED, PARTLY, ledger
from eoslib.claims.framework import Version
from eoslib.claims.render import render_markdown
from eoslib.fits import fit_all
from eoslib.io import json_safe, write_json

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def params():
    """The default profile's params.yaml, validated (as every stage reads it: eoslib.io.read_params)."""
    from eoslib.config import validate

    return validate(yaml.safe_load((REPO / "params.yaml").read_text()))


def criteria(key: str, version: int):
    """The registered criteria of claim ``key``, version ``version``."""
    return CLAIMS[key].versions[version].criteria


@pytest.fixture
def register(monkeypatch):
    """``register(key, number, **changes)``: a test-only version ``number`` of claim ``key``: the latest version's
    judge with its criteria changed by ``dataclasses.replace`` (removed again after the test)."""
    def reg(key: str, number: int, base: int | None = None, **changes) -> None:
        v = CLAIMS[key].versions[base or max(CLAIMS[key].versions)]
        monkeypatch.setitem(CLAIMS[key].versions, number,
                            Version(number, dataclasses.replace(v.criteria, **changes), v.judge))
    return reg


def write_run(root: Path, name: str, config: dict, summary: dict, table: pd.DataFrame) -> None:
    d = root / "runs" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config))
    (d / "summary.json").write_text(json.dumps(summary))
    table.to_csv(d / "trajectory.csv", index=False)


def cfg(kind: str, setting: str = "digits-elu-mse", n: int = 64, seed: int = 0, solver=None) -> dict:
    return {"kind": kind, "setting": {"name": setting, "dataset": "digits", "activation": "elu", "loss": "mse"},
            "n": n, "seed": seed, "solver": solver or {"name": "ee", "dt_max": 0.5}}


def gd_run(root: Path, lr: float, ratios: np.ndarray, setting: str = "digits-elu-mse", seed: int = 0,
           control: bool = False) -> None:
    """A GD run whose sharpness·η/2 follows ``ratios`` step by step."""
    tab = pd.DataFrame({"step": np.arange(len(ratios)), "t": lr * np.arange(len(ratios)),
                        "loss": np.linspace(1, 0.1, len(ratios)), "sharpness": 2 * ratios / lr})
    write_run(root, f"gd/{setting}/lr{lr}/seed{seed}",
              cfg("gd", setting, seed=seed, solver={"name": "gd", "lr": lr}) | {"control": control}, {}, tab)


def traj_run(root: Path, setting: str, seed: int, lam: np.ndarray, alpha: np.ndarray, ggn_frac: float = 0.95,
             shares=(0.6, 0.2, 0.2)) -> None:
    n = len(lam)
    tab = pd.DataFrame({"step": np.arange(n), "t": np.arange(n, dtype=float), "loss": np.linspace(1, 0.1, n),
                        "sharpness": lam, "hess_lam1": lam, "ggn_lam1": ggn_frac * lam, "res_lam1": 0.05 * lam,
                        "alpha_mean": alpha} | {f"share_{k + 1}": np.full(n, s) for k, s in enumerate(shares)})
    write_run(root, f"traj/{setting}/seed{seed}", cfg("traj", setting, seed=seed), {}, tab)


# ---------------------------------------------------------------------------------------------- the package


def test_package_init_is_light_and_imports_no_claim_code():
    """``import eoslib.claims`` (what the params validation reads) loads no other eoslib module and nothing heavy,
    and its source has no import statement of eoslib code (the pipeline's dependency closure reads them)."""
    code = "import sys, eoslib.claims as c; c.CLAIM_MODULES; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=REPO).stdout.split())
    assert {m for m in loaded if m.startswith("eoslib")} == {"eoslib", "eoslib.claims"}
    assert not loaded & {"numpy", "pandas", "torch", "scipy", "yaml"}
    tree = ast.parse((REPO / "eoslib" / "claims" / "__init__.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("eoslib"), ast.unparse(node)
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("eoslib") for a in node.names), ast.unparse(node)


def test_claim_modules_are_the_ledger_and_all_statically_imported():
    """CLAIMS follows CLAIM_MODULES (keys, order, each module's CLAIM), the public API is served lazily, and the
    ledger imports every claim module by name (so the ledger stage depends on every claim's code)."""
    assert list(CLAIMS) == list(CLAIM_MODULES) == ["C1", "C2", "C3", "C4", "split", "layers", "agreement",
                                                   "sensitivity"]
    for key, mod in CLAIM_MODULES.items():
        assert sys.modules[mod].CLAIM is CLAIMS[key] and CLAIMS[key].key == key and CLAIMS[key].versions
    assert set(claims.__all__) >= {"judge_claim", "build_claims", "write_ledger", "claim_result", "CLAIMS",
                                   "registered_versions", "HOLDS", "PARTLY", "FAILS", "NOT_MEASURED", "UNCERTIFIED",
                                   "VERDICTS"}
    assert claims.judge_claim is ledger.judge_claim
    assert claims.VERDICTS == (HOLDS, PARTLY, FAILS, NOT_MEASURED, claims.UNCERTIFIED, claims.TEST_INVALID)
    with pytest.raises(AttributeError):
        claims.no_such_name  # noqa: B018
    tree = ast.parse((REPO / "eoslib" / "claims" / "ledger.py").read_text())
    imported = {f"eoslib.claims.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.level == 1 and node.module is None for a in node.names}
    assert set(CLAIM_MODULES.values()) <= imported


def test_criteria_are_frozen_and_their_text_comes_from_the_fields(params):
    c = criteria("C1", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.tail_fraction = 0.5
    assert c.values() == {"ratio_band": [0.8, 1.25], "tail_fraction": 0.25, "min_sharpening": 5.0}
    text = c.criterion(params)
    assert "[0.8, 1.25]" in text and "≥ 25% of the run" in text and "≥ 5.0×" in text
    changed = dataclasses.replace(c, tail_fraction=0.5, ratio_band=(0.7, 1.3)).criterion(params)
    assert "≥ 50% of the run" in changed and "[0.7, 1.3]" in changed
    assert json.loads(json.dumps(criteria("agreement", 1).values()))["rel_tol"][0] == ["alpha_mean", 0.05]
    for key, claim in CLAIMS.items():  # every version writes its criterion from its own fields
        for v in claim.versions.values():
            assert v.criteria.criterion(params), (key, v.number)


def test_registered_versions_are_validated(params):
    assert ledger.registered_versions(params, "C1") == [1, 2]
    assert ledger.registered_versions(params, "agreement") == []  # not in the default profile
    bad = [({"C9": [1]}, "C9", "unknown claim"), ({"C1": [1, 7]}, "C1", "no criteria version 7"),
           ({"C1": [2, 1]}, "C1", "ascending"), ({"C1": {"v1": {"tail_fraction": 0.25}}}, "C1", "list")]
    for crit, key, what in bad:
        p = copy.deepcopy(params) | {"criteria": crit}
        with pytest.raises(ValueError, match=rf"criteria\.{key}.*{what}"):
            ledger.registered_versions(p, key)
        with pytest.raises(ValueError, match=rf"criteria\.{key}"):
            ledger.build_claims(p, REPO / "no-such-profile")


# ---------------------------------------------------------------------------------------------- claims


def test_c1_verdicts_follow_the_band(tmp_path, params):
    c = criteria("C1", 1)
    lo, hi = c.ratio_band
    steps = 100
    at_edge = np.concatenate([np.linspace(0.2, lo, 40), np.full(steps - 40, (lo + hi) / 2)])  # 60 % inside the band
    gd_run(tmp_path, 0.2, at_edge)
    traj_run(tmp_path, params["gd"]["setups"][0]["setting"], 0, np.geomspace(1, 2 * c.min_sharpening, 10),
             np.linspace(0.1, 0.8, 10))
    r = ledger.judge_claim("C1", params, tmp_path, None, version=1)
    key = "digits-elu-mse/lr0.2/seed0"
    assert r["verdict"] == HOLDS, r
    assert r["criterion"] == c.criterion(params) and r["criteria_version"] == 1
    assert r["measured"]["gd"][key]["eos_fraction"] == pytest.approx(61 / 100)
    assert r["measured"]["gd"][key]["median_ratio_at_eos"] == pytest.approx((lo + hi) / 2)
    above = np.concatenate([np.linspace(0.2, lo, 40), np.full(steps - 40, 2 * hi)])  # past the band: not at the edge
    gd_run(tmp_path, 0.3, above)
    assert ledger.judge_claim("C1", params, tmp_path, None, version=1)["verdict"] == PARTLY
    # the flow must sharpen: with a flat flow the claim cannot hold even where GD sits in the band
    traj_run(tmp_path, params["gd"]["setups"][0]["setting"], 0, np.full(10, 3.0), np.linspace(0.1, 0.8, 10))
    assert ledger.judge_claim("C1", params, tmp_path, None, version=1)["verdict"] == PARTLY


def test_c1_v1_judges_the_first_seed_as_first_registered(tmp_path, params):
    """Regression (an issue): v1 was registered when GD had one seed; it had silently grown to judge every seed.
    v1 judges the first setup's runs with the first seed of ``gd.seeds`` only (and that seed's flow); v2 every
    run."""
    s, (s0, s1) = params["gd"]["setups"][0]["setting"], params["gd"]["seeds"][:2]
    in_band = np.concatenate([np.linspace(0.2, 0.8, 40), np.full(60, 1.0)])
    gd_run(tmp_path, 0.2, in_band, s, seed=s0)
    gd_run(tmp_path, 0.2, np.full(100, 3.0), s, seed=s1)  # far past the band: not at the edge
    traj_run(tmp_path, s, s0, np.geomspace(1, 20, 10), np.linspace(0.1, 0.8, 10))
    traj_run(tmp_path, s, s1, np.full(10, 3.0), np.linspace(0.1, 0.8, 10))  # a flow that does not sharpen
    v1 = ledger.judge_claim("C1", params, tmp_path, None, version=1)
    assert set(v1["measured"]["gd"]) == {f"{s}/lr0.2/seed{s0}"} and set(v1["measured"]["flow"]) == {f"{s}/seed{s0}"}
    assert v1["verdict"] == HOLDS
    v2 = ledger.judge_claim("C1", params, tmp_path, None, version=2)
    assert set(v2["measured"]["gd"]) == {f"{s}/lr0.2/seed{s0}", f"{s}/lr0.2/seed{s1}"} and v2["verdict"] == PARTLY
    p = copy.deepcopy(params)
    p["gd"]["seeds"] = [s1, s0]  # the first seed of the profile's list is the one judged
    assert ledger.judge_claim("C1", p, tmp_path, None, version=1)["verdict"] == FAILS


def test_missing_runs_are_not_measured_not_failed(tmp_path, params):
    """Regression: the ledger crashed (C2 formatted None, C3 indexed an empty frame) or said 'does not hold'
    when a stage's runs were absent; an absent input is 'not measured'."""
    rows = ledger.build_claims(params, tmp_path)
    assert set(rows) == {k for k in CLAIMS if params["criteria"].get(k)}  # the claims this profile judges
    assert {"C1", "C2", "C3", "C4", "split", "layers"} <= set(rows)
    for key, row in rows.items():
        assert row["verdict"] == NOT_MEASURED, (key, row)
    md = render_markdown(rows, params)
    assert md.count("not measured") >= len(rows)
    assert "`eoslib/claims/<claim>.py`" in md and "`claims.lock`" in md


def test_an_unregistered_criteria_version_is_not_measured(tmp_path, params):
    """Regression: asking for a version a profile does not register (the paper profile has C4 v2 only; its notebook
    asks for v1 as first registered) raised a TypeError inside the judge."""
    p = copy.deepcopy(params)
    p["criteria"]["C4"] = [2]
    r = ledger.judge_claim("C4", p, tmp_path, None, version=1)
    assert r["verdict"] == NOT_MEASURED and "v1 not registered" in r["summary"] and r["criteria_version"] == 1
    assert ledger.judge_claim("C4", p, tmp_path, None)["criteria_version"] == 2  # the latest registered one
    assert set(r) == {"verdict", "measured", "summary", "criterion", "criteria_version"}


def test_c3_split_layers_on_constructed_trajectories(tmp_path, params):
    lam = np.geomspace(1, 20, 12)
    traj_run(tmp_path, "digits-elu-ce", 0, lam, np.linspace(0.05, 0.8, 12))  # co-moving, 16× growth
    traj_run(tmp_path, "digits-elu-ce", 1, lam, np.linspace(0.8, 0.05, 12), ggn_frac=0.5, shares=(0.1, 0.6, 0.3))
    c3 = ledger.judge_claim("C3", params, tmp_path, None, version=1)  # co-movement, as first registered
    assert c3["verdict"] == PARTLY
    runs = c3["measured"]["runs"]
    assert runs["digits-elu-ce/seed0"]["spearman_alpha_sharpness"] == pytest.approx(1.0)
    assert runs["digits-elu-ce/seed1"]["spearman_alpha_sharpness"] == pytest.approx(-1.0)
    split = ledger.judge_claim("split", params, tmp_path, None)
    assert split["measured"]["digits-elu-ce/seed0"]["median_ggn_over_hess"] == pytest.approx(0.95)
    assert split["verdict"] == PARTLY
    lay = ledger.judge_claim("layers", params, tmp_path, None, version=1)
    assert lay["measured"]["digits-elu-ce/seed0"]["largest_layer"] == 1
    assert lay["measured"]["digits-elu-ce/seed1"]["largest_layer"] == 2 and lay["verdict"] == PARTLY


def test_c2_advantage_arithmetic(tmp_path, params):
    c = criteria("C2", 1)
    summ = {"t_end": 5.0, "reference": {}, "distances": {
        "ee": {"max_rel_distance": 0.5 * c.max_rel_distance},
        "gd_lr0.2": {"max_rel_distance": 2 * c.min_advantage * 0.5 * c.max_rel_distance}}}
    write_run(tmp_path, "compare", cfg("compare"), summ, pd.DataFrame({"step": [0], "t": [0.0], "loss": [1.0]}))
    r = ledger.judge_claim("C2", params, tmp_path, None, version=1)
    assert r["verdict"] == HOLDS and r["measured"]["advantage"]["gd_lr0.2"] == pytest.approx(2 * c.min_advantage)
    summ["distances"]["gd_lr0.2"]["max_rel_distance"] = 0.5 * c.min_advantage * 0.5 * c.max_rel_distance
    write_run(tmp_path, "compare", cfg("compare"), summ, pd.DataFrame({"step": [0], "t": [0.0], "loss": [1.0]}))
    assert ledger.judge_claim("C2", params, tmp_path, None, version=1)["verdict"] == PARTLY


def endpoint_rows(setting: str, beta: float, c: float, sizes, seeds, noise: float = 0.0, rng=None) -> list[dict]:
    rows = []
    for n in sizes:
        for s in seeds:
            eps = 0.0 if rng is None else noise * rng.standard_normal()
            v = c * n**beta * np.exp(eps)
            for ep in ("init", "threshold", "time"):
                rows.append({"run": f"sweep/{setting}/n{n}/seed{s}", "setting": setting, "n": n, "seed": s,
                             "endpoint": ep, "alpha_mean": v, "alpha_median": v, "alpha_gmean": v,
                             "one_minus_alpha": 1 - v, "chain_gain": 3 * v, "alpha_growth": 2.0 * n**0.0,
                             "sharpness": 10 * n**0.5, "log_norm_product": 1.0})
    return rows


def test_fit_all_recovers_known_exponents_and_c4_verdict(tmp_path, params):
    p = copy.deepcopy(params)
    sizes, seeds = [16, 32, 64, 128, 256, 512], [0, 1, 2]
    rows = []
    settings = p["sweep"]["settings"][:2]
    p["sweep"]["settings"] = settings
    rows += endpoint_rows(settings[0], 0.2, 0.05, sizes, seeds)  # an exact power law
    rows += endpoint_rows(settings[1], 0.0, 0.5, sizes, seeds, noise=0.1, rng=np.random.default_rng(0))  # flat
    d = tmp_path / "runs" / "endpoints"
    d.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(d / "all.csv", index=False)
    fits = fit_all(p, tmp_path)
    f0 = fits["fits"][settings[0]]["threshold"]["alpha_mean"]
    assert f0["beta"] == pytest.approx(0.2, abs=1e-12) and f0["r2"] == pytest.approx(1.0, abs=1e-12)
    assert f0["prefactor"] == pytest.approx(0.05, rel=1e-12)
    assert fits["fits"][settings[0]]["threshold"]["sharpness"]["beta"] == pytest.approx(0.5, abs=1e-12)
    f1 = fits["fits"][settings[1]]["threshold"]["alpha_mean"]
    assert f1["r2"] < 0.3  # pure noise around a constant: little of the variance is explained by log N
    assert fits["paper_r2"] == [0.74, 0.98]  # beside the fits of a profile that judges C4, as before
    assert "paper_r2" not in fit_all(p | {"criteria": {"C2": [2]}}, tmp_path)
    c4 = ledger.judge_claim("C4", p, tmp_path, fits, version=1)  # as first registered: pooled R², bootstrap
    assert c4["measured"]["settings"][settings[0]]["ok"] and not c4["measured"]["settings"][settings[1]]["ok"]
    assert c4["verdict"] == PARTLY


def test_fits_module_does_not_depend_on_the_claims():
    tree = ast.parse((REPO / "eoslib" / "fits.py").read_text())
    mods = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any("claims" in m for m in mods), mods


def test_earlier_criteria_versions_stay_visible(tmp_path, params, register):
    p = copy.deepcopy(params)
    gd_run(tmp_path, 0.2, np.full(50, 1.0))
    traj_run(tmp_path, p["gd"]["setups"][0]["setting"], 0, np.geomspace(1, 50, 10), np.linspace(0.1, 0.8, 10))
    register("C1", 99, base=1, ratio_band=(1.1, 1.2))  # a later version with a stricter band
    p["criteria"]["C1"] = [1, 99]
    rows = ledger.build_claims(p, tmp_path)
    assert rows["C1"]["criteria_version"] == 99 and rows["C1"]["verdict"] == FAILS
    assert rows["C1"]["criteria_values"]["ratio_band"] == [1.1, 1.2] and "[1.1, 1.2]" in rows["C1"]["criterion"]
    first = rows["C1"]["earlier"]["v1"]
    assert first["verdict"] == HOLDS and first["criteria_version"] == 1
    assert first["criteria_values"] == criteria("C1", 1).values() and first["measured"]["gd"]
    assert "as first registered" in render_markdown(rows, p)


def test_c4_v2_tells_a_power_law_from_saturation(tmp_path, params):
    """Seed-aware C4 (criteria v2): noisy power-law data pass; data from a saturating a − b·N^(−c) with strong
    curvature are rejected by AICc although a pooled log–log fit of them has a high R²."""
    p = copy.deepcopy(params)
    s_pow, s_sat = p["sweep"]["settings"][:2]
    p["sweep"]["settings"] = [s_pow, s_sat]
    rng = np.random.default_rng(1)
    sizes, seeds = [16, 32, 64, 128, 256, 512, 1024, 2048], [0, 1, 2, 3, 4]
    rows = endpoint_rows(s_pow, 0.3, 0.02, sizes, seeds, noise=0.05, rng=rng)
    sat = endpoint_rows(s_sat, 0.0, 1.0, sizes, seeds)
    for r in sat:  # ᾱ = 0.9 − 0.85·(N/16)^(−1): rises fast, then flat
        r["alpha_mean"] = (0.9 - 0.85 * (r["n"] / 16) ** -1.0) * np.exp(0.01 * rng.standard_normal())
    d = tmp_path / "runs" / "endpoints"
    d.mkdir(parents=True)
    pd.DataFrame(rows + sat).to_csv(d / "all.csv", index=False)
    fits = fit_all(p, tmp_path)
    r = ledger.judge_claim("C4", p, tmp_path, fits)  # the latest version: v2
    assert r["criteria_version"] == 2
    pw, st = r["measured"]["settings"][s_pow], r["measured"]["settings"][s_sat]
    assert pw["ok"] and pw["beta_interval"][0] < 0.3 < pw["beta_interval"][1] and pw["preferred"] == "power_law"
    assert not st["ok"] and st["preferred"] == "saturating"
    assert r["verdict"] == PARTLY


def test_agreement_check(tmp_path, params, register):
    p = copy.deepcopy(params)
    s = p["sweep"]["settings"][0]
    p["sweep"]["settings"] = [s]
    p["agreement"] = {"solver": {"name": "ee", "dt_max": 0.5}, "sizes": [16, 32], "seeds": [0]}
    register("agreement", 99, endpoints=("threshold",), rel_tol=(("alpha_mean", 0.05), ("sharpness", 0.1)))
    p["criteria"]["agreement"] = [99]
    rows = [r | {"kind": "sweep"} for r in endpoint_rows(s, 0.2, 0.1, [16, 32, 64], [0])]
    agree = [r | {"kind": "agree", "alpha_mean": r["alpha_mean"] * 1.02, "sharpness": r["sharpness"] * 0.8}
             for r in endpoint_rows(s, 0.2, 0.1, [16, 32], [0])]
    d = tmp_path / "runs" / "endpoints"
    d.mkdir(parents=True)
    pd.DataFrame(rows + agree).to_csv(d / "all.csv", index=False)
    r = ledger.judge_claim("agreement", p, tmp_path, None)
    m = r["measured"]["settings"][s]
    assert r["measured"]["pairs"] == 2  # N = 16, 32 at the threshold end point
    assert m["alpha_mean"]["max_rel_diff"] == pytest.approx(1 - 1 / 1.02) and m["alpha_mean"]["ok"]
    assert m["sharpness"]["max_rel_diff"] == pytest.approx(0.25) and not m["sharpness"]["ok"]
    assert set(m) == {"alpha_mean", "sharpness"} and "0.05 (alpha_mean), 0.1 (sharpness)" in r["criterion"]
    assert r["verdict"] == PARTLY
    assert "agreement" not in ledger.build_claims(params, tmp_path)  # not in a profile without its criteria
    p["criteria"]["agreement"] = [1]  # as registered: both end points, three measures
    r = ledger.judge_claim("agreement", p, tmp_path, None)
    assert r["measured"]["pairs"] == 4 and set(r["measured"]["settings"][s]) == {"alpha_mean", "chain_gain",
                                                                                    "sharpness"}


def test_c1_v2_controls_and_band_fraction(tmp_path, params):
    p = copy.deepcopy(params)
    s = "digits-elu-mse"
    traj_run(tmp_path, s, 0, np.geomspace(1, 20, 10), np.linspace(0.1, 0.8, 10))  # flow: λ 1 → 20
    steps = 100
    ok_edge = np.concatenate([np.linspace(0.2, 0.8, 40), np.where(np.arange(60) % 3, 1.0, 1.6)])  # 2/3 in band
    gd_run(tmp_path, 0.2, ok_edge, s)
    gd_run(tmp_path, 0.05, np.linspace(0.05, 0.5, steps), s, control=True)  # 2/η = 40 > 20: stays below
    r = ledger.judge_claim("C1", p, tmp_path, None)
    g = r["measured"]["gd"]
    assert r["criteria_version"] == 2 and r["verdict"] == HOLDS, r["summary"]
    assert g[f"{s}/lr0.2/seed0"]["in_band_fraction"] == pytest.approx(41 / 61)
    assert g[f"{s}/lr0.05/seed0"]["control_valid"] and g[f"{s}/lr0.05/seed0"]["ok"]
    # a control that reaches the edge fails; a median in the band with too few steps inside it fails
    gd_run(tmp_path, 0.05, np.linspace(0.05, 1.0, steps), s, control=True)
    gd_run(tmp_path, 0.3, np.concatenate([np.full(40, 0.2), np.where(np.arange(60) % 2, 0.85, 1.24) * 0 +
                                          np.where(np.arange(60) % 4 == 0, 1.0, 1.5)]), s)
    r = ledger.judge_claim("C1", p, tmp_path, None)
    assert not r["measured"]["gd"][f"{s}/lr0.05/seed0"]["ok"] and not r["measured"]["gd"][f"{s}/lr0.3/seed0"]["ok"]
    assert r["verdict"] == PARTLY
    # a "control" whose 2/η is below the flow's peak is not a control: it is not counted
    gd_run(tmp_path, 0.2, ok_edge, s, control=True)
    r = ledger.judge_claim("C1", p, tmp_path, None)
    assert r["measured"]["gd"][f"{s}/lr0.2/seed0"]["control_valid"] is False


def intervention_run(root: Path, name: str, summ: dict, lam: np.ndarray, loss: np.ndarray) -> None:
    d = root / "runs" / name
    d.mkdir(parents=True, exist_ok=True)
    n = len(lam)
    pd.DataFrame({"step": np.arange(n), "t": np.arange(n, dtype=float), "loss": loss, "sharpness": lam}).to_csv(
        d / "trajectory.csv", index=False)
    (d / "summary.json").write_text(json.dumps(summ))


def test_c3_v2_causal_ratios(tmp_path, params, register):
    """R = log(λ_arm/λ_s)/log(λ_free/λ_s) at the threshold loss, computed by hand on exponential tables."""
    p = copy.deepcopy(params)
    p["criteria"]["C3"] = [1, 2]  # v2 as registered (v3 adds the denominator check: test below)
    n = 21
    loss = np.geomspace(1.0, 0.1, n)  # the same loss path in every run (equal loss = equal row)
    free = np.exp(np.linspace(0, np.log(16), n))  # λ: 1 → 16
    sw = {"step": 5, "t": 5.0, "loss": float(loss[5]), "abar": 0.3, "sharpness": float(free[5])}
    base = "intervene/digits-elu-ce/seed0"
    intervention_run(tmp_path, f"{base}/free", {"arm": "free"}, free, loss)
    for hold, keep in (("alpha", 0.25), ("norms", 0.8)):  # keep this share of log-sharpening after the switch
        lam = free.copy()
        lam[5:] = free[5] * (free[5:] / free[5]) ** keep
        intervention_run(tmp_path, f"{base}/a0.3-{hold}", {"arm": hold, "alpha_star": 0.3, "switched": True,
                                                           "switch": sw}, lam, loss)
    r = ledger.judge_claim("C3", p, tmp_path, None)
    assert r["criteria_version"] == 2
    arm = r["measured"]["arms"]["seed0/a0.3"]
    assert arm["alpha"]["R"] == pytest.approx(0.25, abs=1e-9) and arm["norms"]["R"] == pytest.approx(0.8, abs=1e-9)
    assert arm["ok"] and r["verdict"] == HOLDS
    # equal loss is equal t here, so R at the free flow's end time is the same number (reported, not judged)
    assert arm["alpha"]["R_time"] == pytest.approx(0.25, abs=1e-9) and arm["norms"]["R_time"] == pytest.approx(0.8)
    register("C3", 99, base=2, min_placebo_ratio=0.9)  # the placebo removed too much: not specific to ᾱ
    assert ledger.judge_claim("C3", p | {"criteria": {"C3": [2, 99]}}, tmp_path, None)["verdict"] == FAILS
    # a placebo whose loss stalls above the threshold: no R at equal loss (not ok), but R at equal time is reported
    lam = free.copy()
    lam[5:] = free[5] * (free[5:] / free[5]) ** 0.5
    intervention_run(tmp_path, f"{base}/a0.3-norms", {"arm": "norms", "alpha_star": 0.3, "switched": True,
                                                      "switch": sw}, lam, np.maximum(loss, 0.3))
    r = ledger.judge_claim("C3", p, tmp_path, None)
    arm = r["measured"]["arms"]["seed0/a0.3"]
    assert arm["norms"]["R"] is None and arm["norms"]["R_time"] == pytest.approx(0.5, abs=1e-9)
    assert not arm["ok"] and r["verdict"] == FAILS and "never reach the loss level" in r["summary"]


def test_c3_v3_needs_a_free_flow_that_sharpens(tmp_path, params):
    """The case v2 passes the wrong way: after the switch the free flow loses sharpness (λ 4 → 3) while holding ᾱ
    raises it 50 % (λ 4 → 6): R = log 1.5 / log 0.75 = −1.41 ≤ 0.5, so v2 says "holds". v3 calls that pair not
    measurable; a second α*, whose free flow sharpens (4 → 16) and whose ᾱ arm keeps all of it, is judged alone."""
    p = copy.deepcopy(params) | {"criteria": {"C3": [2, 3]}}
    n = 21
    loss = np.geomspace(1.0, 0.1, n)
    base = "intervene/digits-elu-ce/seed0"
    down = np.concatenate([np.linspace(1, 4, 6), np.linspace(4, 3, n - 5)[1:]])  # de-sharpens after step 5
    sw = {"step": 5, "t": 5.0, "loss": float(loss[5]), "abar": 0.3, "sharpness": 4.0}
    intervention_run(tmp_path, f"{base}/free", {"arm": "free"}, down, loss)
    up_alpha = np.concatenate([down[:6], np.linspace(4, 6, n - 5)[1:]])
    intervention_run(tmp_path, f"{base}/a0.3-alpha", {"arm": "alpha", "alpha_star": 0.3, "switched": True,
                                                      "switch": sw}, up_alpha, loss)
    intervention_run(tmp_path, f"{base}/a0.3-norms", {"arm": "norms", "alpha_star": 0.3, "switched": True,
                                                      "switch": sw}, down, loss)
    v2 = ledger.judge_claim("C3", p, tmp_path, None, version=2)
    assert v2["measured"]["arms"]["seed0/a0.3"]["alpha"]["R"] == pytest.approx(np.log(1.5) / np.log(0.75))
    assert v2["verdict"] == HOLDS  # the wrong way round: the rule v3 replaces
    r = ledger.judge_claim("C3", p, tmp_path, None, version=3)
    assert r["verdict"] == NOT_MEASURED and "does not sharpen by ≥ 10%" in r["summary"]
    # a free flow that sharpens 4 → 16 after the switch of another seed; holding ᾱ keeps it all: fails, judged alone
    base1 = "intervene/digits-elu-ce/seed1"
    up = np.concatenate([np.linspace(1, 4, 6), np.geomspace(4, 16, n - 5)[1:]])
    intervention_run(tmp_path, f"{base1}/free", {"arm": "free"}, up, loss)
    for hold in ("alpha", "norms"):
        intervention_run(tmp_path, f"{base1}/a0.3-{hold}", {"arm": hold, "alpha_star": 0.3, "switched": True,
                                                            "switch": sw}, up, loss)
    r = ledger.judge_claim("C3", p, tmp_path, None, version=3)
    arms = r["measured"]["arms"]
    assert arms["seed0/a0.3"]["measurable"] is False and arms["seed0/a0.3"]["ok"] is None
    assert arms["seed0/a0.3"]["free_log_sharpening"] == pytest.approx(np.log(0.75))
    assert arms["seed1/a0.3"]["alpha"]["R"] == pytest.approx(1.0) and arms["seed1/a0.3"]["ok"] is False
    assert r["verdict"] == FAILS and r["measured"]["not_measurable"] == ["seed0/a0.3"]
    assert "not measurable (1 of 2" in r["summary"]


def test_c2_v2_error_versus_cost(tmp_path, params):
    """EE's curve e = 0.2·Δt at work 100/Δt (work 400 ↔ Δt 0.25, e 0.05); GD at the edge (2/η < λ_flow = 20) must be
    ≥ 3× worse than EE at equal work, interpolated on EE's curve."""
    p = copy.deepcopy(params)
    variants, rows = {}, []
    for dt in (0.5, 0.25, 0.125, 0.0625):
        k = f"ee dt_max={dt:g}"
        variants[k] = {"solver": "ee", "step_size": dt, "work": 100 / dt, "max_rel_distance": 0.1 * dt / 0.5}
        rows.append({"step": 0, "t": 0.0, "loss": 1.0, "variant": k, "sharpness": 20.0 if dt == 0.0625 else 5.0})
    variants["gd lr=0.2"] = {"solver": "gd", "step_size": 0.2, "work": 400, "max_rel_distance": 0.3}  # at the edge
    variants["gd lr=0.05"] = {"solver": "gd", "step_size": 0.05, "work": 1600, "max_rel_distance": 0.001}  # below
    d = tmp_path / "runs" / "cost" / "s" / "seed0"
    d.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(d / "trajectory.csv", index=False)
    (d / "config.json").write_text(json.dumps(cfg("cost")))
    (d / "summary.json").write_text(json.dumps({"variants": variants, "orders": {"ee": 1.0, "gd": 1.0}}))
    r = ledger.judge_claim("C2", p, tmp_path, None)
    assert r["criteria_version"] == 2
    m = r["measured"]["s/seed0"]
    g = m["gd"]["gd lr=0.2"]
    assert g["at_edge"] and g["ee_at_equal_work"] == pytest.approx(0.05) and g["advantage"] == pytest.approx(6.0)
    assert not m["gd"]["gd lr=0.05"]["at_edge"]  # 2/η = 40 > 20: GD there is itself a flow integrator
    assert m["converges"] and m["beats_gd_at_edge"] and r["verdict"] == HOLDS


# ---------------------------------------------------------------------------------------------- outputs


def test_ledger_command_writes_rows_the_notebooks_read(tmp_path, params):
    """``python -m eoslib ledger`` writes CLAIMS.md and metrics/claims.json; ``results.claim_row`` gives the
    notebooks the same row as ``claim_result`` (and the earlier versions, and 'not measured' for unregistered ones),
    with the criteria values."""
    from eoslib.__main__ import main

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    write_json(params, tmp_path / "runs" / "_plan" / "params.json")  # what check-params writes
    s = params["gd"]["setups"][0]["setting"]
    gd_run(tmp_path, 0.2, np.concatenate([np.linspace(0.2, 0.8, 40), np.full(60, 1.0)]), s)
    traj_run(tmp_path, s, 0, np.geomspace(1, 20, 10), np.linspace(0.1, 0.8, 10))
    assert main(["ledger", "--root", str(tmp_path)]) == 0
    md = (tmp_path / "CLAIMS.md").read_text()
    assert md.count("\n| **") == len(json.loads((tmp_path / "metrics" / "claims.json").read_text()))
    row = results.claim_row("C1", tmp_path)
    fresh = json_safe(ledger.claim_result("C1", params, tmp_path))
    assert {k: row[k] for k in fresh} == fresh
    assert row["criteria_values"] == criteria("C1", 2).values() and row["statement"] == CLAIMS["C1"].statement
    first = results.claim_row("C1", tmp_path, version=1)
    assert first["criteria_version"] == 1 and first["verdict"] == HOLDS
    assert first["criteria_values"] == criteria("C1", 1).values()
    assert results.claim_row("C1", tmp_path, version=3)["summary"] == "criteria v3 not registered in this profile"
    none = results.claim_row("agreement", tmp_path, version=1)
    assert none["verdict"] == NOT_MEASURED and none["summary"] == "no criteria registered in this profile"


def test_notebooks_read_the_ledger_not_the_claims_code():
    """The notebooks take verdicts and thresholds from metrics/claims.json: editing a claim's code or wording
    re-runs the ledger stage, not the notebooks."""
    for f in sorted((REPO / "notebooks" / "src").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(f.read_text())["cells"] if c["cell_type"] == "code")
        assert "claims" not in {a.strip() for line in code.splitlines() if line.startswith("from eoslib import")
                                for a in line.split("import", 1)[1].split(",")}, f.name
        assert "eoslib.claims" not in code and "eoslib.ledger" not in code and "ledger." not in code, f.name
