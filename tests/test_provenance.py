"""Run identity (eoslib.provenance, eoslib.run): a finished run is reused only under the same id, an interrupted
one resumed only under the same id; the id changes with the code a run executes, its data and its config, and
not with code it does not execute."""
from __future__ import annotations


import pytest

from eoslib import provenance, run
from eoslib.io import read_json, write_json
from eoslib.run import execute_run, run_finished
from test_experiments import tiny_sweep_config

NAME = "sweep/d/n24/seed0"


def test_the_id_covers_config_code_data_and_torch():
    cfg = tiny_sweep_config()
    p = provenance.run_provenance(cfg)
    assert set(p) == {"run_id", "config_sha256", "code", "data", "torch"}
    assert "eoslib/experiments/sweep.py" in p["code"] and "eoslib/solvers/exponential_euler.py" in p["code"]
    assert "eoslib/datasets/digits.py" in p["code"] and "eoslib/datasets/mnist.py" not in p["code"]
    assert "eoslib/solvers/rkc.py" not in p["code"] and "eoslib/slurm.py" not in p["code"]  # not executed
    assert list(p["data"]) == [cfg["setting"]["dataset"]]
    assert provenance.run_id(cfg) == p["run_id"]  # deterministic
    assert provenance.run_id(cfg | {"seed": cfg["seed"] + 1}) != p["run_id"]
    assert provenance.run_id(cfg | {"device": "cuda"}) == p["run_id"]  # a run-time key is not identity


def test_the_id_changes_with_a_file_the_run_executes(monkeypatch):
    cfg = tiny_sweep_config()
    before = provenance.run_id(cfg)
    real = provenance.file_sha
    monkeypatch.setattr(provenance, "file_sha", lambda f: "edited" if f.endswith("exponential_euler.py") else real(f))
    assert provenance.run_id(cfg) != before
    monkeypatch.setattr(provenance, "file_sha", lambda f: "edited" if f.endswith("rkc.py") else real(f))
    assert provenance.run_id(cfg) == before  # a solver this run does not use


def test_a_finished_run_is_reused_only_under_its_id(tmp_path, monkeypatch):
    cfg = tiny_sweep_config()
    first = execute_run(NAME, cfg, tmp_path)
    folder = tmp_path / "runs" / NAME
    assert first["run_id"] == read_json(folder / "provenance.json")["run_id"] == provenance.run_id(cfg)
    assert run_finished(NAME, cfg, tmp_path)
    stamp = (folder / "summary.json").stat().st_mtime_ns
    assert execute_run(NAME, cfg, tmp_path) == first  # reused
    assert (folder / "summary.json").stat().st_mtime_ns == stamp
    real = run.run_provenance
    monkeypatch.setattr(run, "run_provenance", lambda c: real(c) | {"run_id": "new-code"})
    assert not run_finished(NAME, cfg, tmp_path)  # same config, other code: not finished
    again = execute_run(NAME, cfg, tmp_path)
    assert again["run_id"] == "new-code" and (folder / "summary.json").stat().st_mtime_ns != stamp


def test_an_interrupted_run_resumes_only_under_its_id(tmp_path, monkeypatch):
    cfg = tiny_sweep_config()
    folder = tmp_path / "runs" / NAME
    folder.mkdir(parents=True)
    write_json({k: v for k, v in cfg.items() if k != "device"}, folder / "config.json")
    write_json(provenance.run_provenance(cfg) | {"run_id": "old-code"}, folder / "provenance.json")
    (folder / "checkpoint.pt").write_bytes(b"written by other code")  # would crash if it were loaded
    s = execute_run(NAME, cfg, tmp_path)  # another id: the folder is wiped, the run starts afresh
    assert s["run_id"] == provenance.run_id(cfg) and not (folder / "checkpoint.pt").exists()
    # same id, no summary: the checkpoint is the run's own and is resumed (a corrupt one then fails loudly)
    (folder / "summary.json").unlink()
    (folder / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):
        execute_run(NAME, cfg, tmp_path)
