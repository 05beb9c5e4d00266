"""The README's summary figure and C4 table are drawn from the committed metrics alone."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_summary_figure_draws_from_committed_metrics(tmp_path):
    out = tmp_path / "summary.png"
    assert _script("summary_figure").main(["--out", str(out)]) == 0
    assert out.stat().st_size > 10_000


def test_c4_table_labels_its_columns(capsys):
    assert _script("c4_table").main(["default"]) == 0
    text = capsys.readouterr().out
    assert "ΔAICc (pow − sat" in text and "mean of per-seed slopes" in text and "| default (v2) | " in text


def test_ledger_table_marks_every_version(capsys):
    assert _script("ledger_table").main(["default", "extended"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| C")]
    assert rows and all("(v" in r for r in rows if "not in profile" not in r.split("|")[2])
