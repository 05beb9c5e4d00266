"""Certified numbers: the ledger says *uncertified* (with the count) instead of a verdict when a number it rests on
came from a solve that did not converge (issue 17, item 2).

Constructed profiles as in tests/test_claims.py: trajectory tables with the certificate columns every solve stores
beside its number (``X_converged``, ``X_residual``; ``eig_corrected``: warm solves redone cold), an unconverged
cell in one of them, or none at all (outputs written before certificates were stored)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_claims import cfg, endpoint_rows, gd_run, traj_run, write_run

from eoslib import results
from eoslib.claims import CLAIMS, HOLDS, NOT_MEASURED, UNCERTIFIED, VERDICTS, certificates, ledger
from eoslib.claims.framework import JUDGED, Claim
from eoslib.claims.render import render_markdown
from eoslib.experiments import KINDS

REPO = Path(__file__).resolve().parents[1]
RUN = "digits-elu-ce/seed0"


@pytest.fixture
def params():
    from eoslib.config import validate

    return validate(yaml.safe_load((REPO / "params.yaml").read_text()))


def certify_table(root: Path, name: str, unconverged_rows=(), corrected=None, measured_every: int = 1) -> pd.DataFrame:
    """Add certificate columns to the trajectory of run ``name``: ``eig_converged`` on every row, false on
    ``unconverged_rows``; ``hess_converged`` where ``hess_lam1`` is measured (every ``measured_every``-th row, NaN
    elsewhere); ``eig_corrected`` = ``corrected`` (per row) if given. Returns the table written."""
    f = root / "runs" / name / "trajectory.csv"
    tab = pd.read_csv(f)
    n = len(tab)
    tab["eig_converged"] = [i not in unconverged_rows for i in range(n)]
    tab["eig_residual"] = np.where(tab["eig_converged"], 1e-6, 1e-1)
    tab["hess_converged"] = pd.Series([True if i % measured_every == 0 else None for i in range(n)], dtype=object)
    tab["hess_residual"] = np.where(tab["hess_converged"].notna(), 1e-7, np.nan)
    if corrected is not None:
        tab["eig_corrected"] = corrected
    tab.to_csv(f, index=False)
    return tab


def split_profile(root: Path, n: int = 12) -> None:
    """One measured flow run on which the split claim holds (λ(G)/λ(∇²L) = 0.95 everywhere)."""
    traj_run(root, "digits-elu-ce", 0, np.geomspace(1, 20, n), np.linspace(0.05, 0.8, n))


# ---------------------------------------------------------------------------------------------- the module


def test_failures_counts_per_kind_and_column(tmp_path):
    split_profile(tmp_path)
    certify_table(tmp_path, f"traj/{RUN}", unconverged_rows=(3, 7), corrected=[1] + [0] * 11, measured_every=3)
    gd_run(tmp_path, 0.2, np.full(20, 1.0))  # an old table: no certificate column
    f = certificates.failures(tmp_path, ("traj",))
    assert f["by_column"] == {"traj": {"eig_converged": {"checked": 12, "unconverged": 2},
                                       "hess_converged": {"checked": 4, "unconverged": 0}}}
    assert (f["checked"], f["unconverged"], f["corrections"], f["tables"]) == (16, 2, 1, 1)
    assert f["without_certificate"] == 0 and certificates.note(f) is None
    assert certificates.where(f) == "traj: eig_converged 2"
    assert certificates.describe(f) == "uncertified: 2 of 16 certified solves unconverged (traj: eig_converged 2)"
    g = certificates.failures(tmp_path, ("gd",))
    assert (g["checked"], g["tables"], g["without_certificate"]) == (0, 1, 1)
    assert certificates.note(g) == "no certificate stored"
    every = certificates.failures(tmp_path)  # every kind under the root (and the end-point tables)
    assert set(certificates.all_kinds(tmp_path)) == {"gd", "traj", "endpoints"}
    assert every["tables"] == 2 and every["unconverged"] == 2
    assert certificates.note(every) == "no certificate stored in 1 of 2 tables"
    assert certificates.failures(tmp_path, ())["tables"] == 0  # a claim that reads nothing checks nothing
    assert certificates.note(certificates.failures(tmp_path, ("cost",))) == "no stored table found"


def test_end_point_rows_of_one_kind(tmp_path):
    """``endpoints:sweep`` counts the sweep's rows of the end-point tables only (what the power-law fits read)."""
    rows = [r | {"kind": "sweep", "sharpness_converged": True} for r in endpoint_rows("s", 0.2, 0.1, [16, 32], [0])]
    rows += [r | {"kind": "agree", "sharpness_converged": False} for r in endpoint_rows("s", 0.2, 0.1, [16], [0])]
    d = tmp_path / "runs" / "endpoints"
    d.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(d / "s.csv", index=False)
    sweep = certificates.failures(tmp_path, ("endpoints:sweep",))
    assert (sweep["checked"], sweep["unconverged"]) == (6, 0)  # 2 runs × 3 end points
    both = certificates.failures(tmp_path, ("endpoints",))
    assert (both["checked"], both["unconverged"]) == (9, 3)
    assert certificates.where(both) == "endpoints: sharpness_converged 3"


def test_certificates_survive_text_values(tmp_path):
    """A CSV round trip may leave the booleans as text ("False") or numbers (0.0): both count as unconverged."""
    split_profile(tmp_path, n=4)
    f = tmp_path / "runs" / "traj" / RUN / "trajectory.csv"
    tab = pd.read_csv(f)
    tab["eig_converged"] = ["True", "False", "false", None]
    tab["ggn_converged"] = [1.0, 0.0, np.nan, 1.0]
    tab["eig_corrected"] = ["True", "False", None, "True"]  # a flag rather than a count: true counts 1
    tab["chain_corrected"] = [0, 3, 0, 0]
    tab.to_csv(f, index=False)
    out = certificates.failures(tmp_path, ("traj",))
    assert (out["checked"], out["unconverged"], out["corrections"]) == (6, 3, 5)


# ---------------------------------------------------------------------------------------------- the ledger


def test_verdicts_include_uncertified():
    assert UNCERTIFIED == "uncertified" and UNCERTIFIED in VERDICTS and UNCERTIFIED not in JUDGED
    assert set(VERDICTS) == set(JUDGED) | {NOT_MEASURED, UNCERTIFIED} and "test invalid" in JUDGED


def test_every_claim_names_the_tables_it_reads():
    """Every criteria version of every claim reads at least one stored table, of a known kind."""
    known = set(KINDS.names()) | {certificates.ENDPOINTS}
    for key, claim in CLAIMS.items():
        for v in claim.versions:
            kinds = claim.reads_of(v)
            assert kinds, (key, v)
            assert {k.split(":")[0] for k in kinds} <= known, (key, v, kinds)
            assert {k.split(":", 1)[1] for k in kinds if ":" in k} <= set(KINDS.names()), (key, v, kinds)
    assert CLAIMS["C2"].reads_of(1) == ("compare",) and CLAIMS["C2"].reads_of(2) == ("cost",)
    assert Claim("x", "s", "nb", reads={1: ("traj",)}).reads_of(2) == ()


def test_an_unconverged_number_makes_the_verdict_uncertified(tmp_path, params):
    split_profile(tmp_path)
    certify_table(tmp_path, f"traj/{RUN}", unconverged_rows=(5,))
    r = ledger.judge_claim("split", params, tmp_path, None)
    assert r["verdict"] == UNCERTIFIED and r["verdict_if_certified"] == HOLDS
    assert r["certificates"] == {"checked": 24, "unconverged": 1, "corrections": 0, "tables": 1,
                                 "unconverged_in": {"traj": {"eig_converged": 1}}}
    assert r["summary"].startswith("uncertified: 1 of 24 certified solves unconverged (traj: eig_converged 1); "
                                   "would be holds: ")
    assert r["measured"][RUN]["median_ggn_over_hess"] == pytest.approx(0.95)  # the numbers stay reported
    # a claim that reads other tables is not affected: C2 v1 reads the compare run, whose table is certified
    summ = {"t_end": 5.0, "reference": {}, "distances": {"ee": {"max_rel_distance": 0.01},
                                                           "gd_lr0.2": {"max_rel_distance": 0.1}}}
    write_run(tmp_path, "compare", cfg("compare"), summ,
              pd.DataFrame({"step": [0, 1], "t": [0.0, 1.0], "loss": [1.0, 0.5], "eig_converged": [True, True]}))
    c2 = ledger.judge_claim("C2", params, tmp_path, None, version=1)
    assert c2["verdict"] == HOLDS and c2["certificates"]["checked"] == 2 and "verdict_if_certified" not in c2


def test_the_ledger_files_say_uncertified_with_the_count(tmp_path, params):
    """CLAIMS.md and metrics/claims.json (what the notebooks read back) carry the count and the would-be verdict;
    the existing fields keep their shape."""
    split_profile(tmp_path)
    certify_table(tmp_path, f"traj/{RUN}", unconverged_rows=(2, 9))
    rows = ledger.write_ledger(params, tmp_path)
    row = json.loads((tmp_path / "metrics" / "claims.json").read_text())["split"]
    assert row == rows["split"] and row["verdict"] == UNCERTIFIED and row["verdict_if_certified"] == HOLDS
    assert row["certificates"]["unconverged"] == 2 and isinstance(row["measured"][RUN], dict)
    assert results.claim_row("split", tmp_path)["verdict"] == UNCERTIFIED
    md = (tmp_path / "CLAIMS.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| **split**"))
    assert "**uncertified (2 unconverged)** (criteria v1; would be *holds*)" in line
    assert "uncertified: 2 of 24 certified solves unconverged (traj: eig_converged 2)" in line
    lay = rows["layers"]["earlier"]["v1"]  # reads the same table (v2 reads columns this table lacks)
    assert lay["verdict"] == UNCERTIFIED and lay["verdict_if_certified"] == HOLDS
    assert rows["layers"]["verdict"] == NOT_MEASURED and "certificates" not in rows["layers"]
    assert "*uncertified (n unconverged)*" in md  # the legend says what it means


def test_earlier_versions_are_certified_too(tmp_path, params):
    """C1 under v1 and v2: both rest on the GD run's tracked sharpness, so both are uncertified."""
    p = copy.deepcopy(params)
    s = p["gd"]["setups"][0]["setting"]
    gd_run(tmp_path, 0.2, np.concatenate([np.linspace(0.2, 0.8, 40), np.full(60, 1.0)]), s)
    traj_run(tmp_path, s, 0, np.geomspace(1, 20, 10), np.linspace(0.1, 0.8, 10))
    certify_table(tmp_path, f"gd/{s}/lr0.2/seed0", unconverged_rows=(50,))
    rows = ledger.build_claims(p, tmp_path)
    first = rows["C1"]["earlier"]["v1"]
    assert rows["C1"]["verdict"] == first["verdict"] == UNCERTIFIED
    assert rows["C1"]["verdict_if_certified"] == first["verdict_if_certified"] == HOLDS
    assert first["certificates"]["unconverged_in"] == {"gd": {"eig_converged": 1}}
    md = render_markdown(rows, p)
    assert "| C1 | v1 | uncertified (1 unconverged) (would be *holds*) |" in md


def test_all_converged_gives_the_verdict_with_the_count_checked(tmp_path, params):
    split_profile(tmp_path)
    certify_table(tmp_path, f"traj/{RUN}", corrected=[0, 2] + [0] * 10, measured_every=2)
    r = ledger.judge_claim("split", params, tmp_path, None)
    assert r["verdict"] == HOLDS and "verdict_if_certified" not in r
    assert r["certificates"] == {"checked": 18, "unconverged": 0, "corrections": 2, "tables": 1}
    assert not r["summary"].startswith("uncertified")
    rows = ledger.build_claims(params, tmp_path)
    md = render_markdown(rows, params)
    assert "**holds** (criteria v1; 18 solves certified, 2 redone cold)" in md


def test_tables_without_certificates_are_judged_and_say_so(tmp_path, params):
    """Outputs written before certificates were stored are not refused: the verdict stands, marked."""
    split_profile(tmp_path)
    r = ledger.judge_claim("split", params, tmp_path, None)
    assert r["verdict"] == HOLDS and "verdict_if_certified" not in r
    assert r["certificates"] == {"checked": 0, "unconverged": 0, "corrections": 0, "tables": 1,
                                 "note": "no certificate stored"}
    md = render_markdown(ledger.build_claims(params, tmp_path), params)
    assert "**holds** (criteria v1; no certificate stored)" in md
