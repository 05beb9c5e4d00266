"""scripts/headline.py: the before/after table of the committed profiles' headline numbers."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILES = (".", "profiles/c2-edge", "profiles/extended")


def _load():
    spec = importlib.util.spec_from_file_location("headline", REPO / "scripts" / "headline.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


hl = _load()


def _git_ok() -> bool:
    r = subprocess.run(["git", "cat-file", "-e", "HEAD:metrics/claims.json"], cwd=REPO, capture_output=True)
    return r.returncode == 0


needs_git = pytest.mark.skipif(not _git_ok(), reason="not a git checkout with committed metrics")


def _rows(capsys, *args) -> list[list[str]]:
    assert hl.main(list(args)) == 0
    out = capsys.readouterr().out
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| quantity")]


@needs_git
def test_same_revision_changes_nothing(capsys):
    """HEAD against HEAD (git on both sides): every headline of every committed profile, all unchanged."""
    rows = _rows(capsys, "--root", *PROFILES, "--before-rev", "HEAD", "--after-rev", "HEAD", "--markdown")
    labels = [r[0] for r in rows]
    for want in ("C1 verdict", "C2 EE order", "C3 R, vector", "C4 fmnist-elu-ce: β", "split runs passing",
                 "layers runs with layer 1 largest", "certificates: warm→cold corrections, Σ over claims"):
        assert want in labels
    assert all(r[3] in ("0%", "=") for r in rows), [r for r in rows if r[3] not in ("0%", "=")]
    assert all(r[1] == r[2] for r in rows)


@needs_git
def test_changes_against_another_checkout(capsys, tmp_path):
    """--after-dir: a perturbed number gives its relative change, a new verdict an arrow, a claim gone '–'."""
    prof = "profiles/extended"
    d = json.loads(subprocess.run(["git", "show", f"HEAD:{prof}/metrics/claims.json"], cwd=REPO,
                                  capture_output=True, text=True, check=True).stdout)
    run = next(iter(d["C1"]["measured"]["gd"]))
    old = d["C1"]["measured"]["gd"][run]["max_ratio"]
    d["C1"]["measured"]["gd"][run]["max_ratio"] = old * 1.1
    d["split"] |= {"verdict": "uncertified", "verdict_if_certified": d["split"]["verdict"],
                   "certificates": {"checked": 10, "unconverged": 1, "corrections": 4, "tables": 2}}
    d.pop("layers")
    (tmp_path / prof / "metrics").mkdir(parents=True)
    (tmp_path / prof / "metrics" / "claims.json").write_text(json.dumps(d))
    rows = {r[0]: r[1:] for r in _rows(capsys, "--root", str(REPO / prof), "--before-rev", "HEAD",
                                       "--after-dir", str(tmp_path), "--markdown")}
    setting, rest = run.split("/", 1)
    assert rows[f"C1 {setting}: peak λη/2 [{rest}]"][2] == "+10%"
    assert rows["split verdict"][1].startswith("uncertified (would be") and rows["split verdict"][2] == "→"
    assert rows["layers verdict"][1:] == ["–", "→"]
    before_same = {r[0]: r[1] for r in _rows(capsys, "--root", str(REPO / prof), "--before-rev", "HEAD",
                                             "--after-rev", "HEAD", "--markdown")}
    key = "certificates: warm→cold corrections, Σ over claims"
    assert rows[key][:2] == [before_same[key], "4"]  # the before side is HEAD's own, whatever it records
    assert rows["certificates: unconverged solves, Σ over claims"][1] == "1"


def test_formatting():
    assert hl.fmt(2.2) == "2.20" and hl.fmt(591.78) == "592" and hl.fmt(-1.2e-5) == "−1.20e−05"
    assert hl.fmt(None) == "–" and hl.fmt(3) == "3" and hl.fmt(hl.Range(0.5, 1.25, 3)) == "0.500 … 1.25 (3)"
    assert hl.change(1.0, 1.0) == "0%" and hl.change(2.0, 1.0) == "−50%" and hl.change(None, 1.0) == "–"
    assert hl.change("holds", "holds") == "=" and hl.change("holds", "partly") == "→"
    assert hl.change(hl.Range(1, 2, 3), hl.Range(1, 3, 4)) == "0% / +50% (n 3 → 4)"
    assert hl.spread("x", {"a": 1.0, "b": None}) == [("x [a]", 1.0), ("x [b]", None)]
    assert hl.spread("x", {"a": 1.0, "b": 3.0, "c": None}) == [("x", hl.Range(1.0, 3.0, 3))]
