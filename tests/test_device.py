"""Device plumbing of a whole pipeline run: a sweep run (two solver phases, landing on the loss threshold,
checkpoints, end points) executed on a second device — conftest.StubDevice, the ``meta`` device holding real
data, which raises where a CPU tensor meets device tensors — gives the CPU's results bit for bit, and the only
copies to the CPU are the deliberate ones when results are saved."""
from __future__ import annotations

import torch

import eoslib.device as dev
from conftest import StubDevice
from eoslib.execute import execute_run
from test_experiments import tiny_sweep_config


def test_a_sweep_run_stays_on_its_device(tmp_path, monkeypatch):
    cfg = tiny_sweep_config()
    cpu = execute_run("sweep/d/n24/seed0", cfg | {"device": "cpu"}, tmp_path / "cpu")
    with StubDevice() as stub:
        monkeypatch.setattr(dev, "resolve", lambda spec="auto": stub.device)
        monkeypatch.setattr(dev, "to_device", lambda m, d: stub.module(m))
        got = execute_run("sweep/d/n24/seed0", cfg | {"device": "cuda"}, tmp_path / "stub")
        transfers = list(stub.transfers)
    assert got["device"] == "meta" and cpu["device"] == "cpu"
    a = torch.load(tmp_path / "cpu" / "runs/sweep/d/n24/seed0/endpoints.pt", weights_only=False)
    b = torch.load(tmp_path / "stub" / "runs/sweep/d/n24/seed0/endpoints.pt", weights_only=False)
    for ep in a:
        assert torch.equal(StubDevice.data(b[ep]) if not isinstance(b[ep], torch.Tensor) or b[ep].device.type == "meta"
                           else b[ep], a[ep]), ep
    assert got["endpoints"] == cpu["endpoints"] and got["steps"] == cpu["steps"]
    # the end points, the final θ and nothing else were copied to the CPU (when saved)
    assert 0 < len(transfers) <= len(a) + 2, transfers
