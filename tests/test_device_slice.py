"""scripts/device-slice.sh, the paper-scale slice run once on a lent GPU (profiles/device-slice), checked here as
its CPU dry run: the same script and pipeline steps (check-params, one training run per N, the stage, end points,
fits, ledger) at tiny sizes (DEVICE_SLICE_TINY=1: N = 64, 128, 256, width 16) on the real Fashion-MNIST files,
into a temporary folder — nothing is written into the repository. Also: the script refuses clearly without the
data and, at full size, without CUDA."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "device-slice.sh"
SLICE = REPO / "profiles" / "device-slice"
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def _data() -> Path | None:
    """Where the dry run finds the IDX files: the slice's prepared folder, else the Debian package's."""
    for d in (SLICE / "data" / "fashion-mnist", DEBIAN):
        if all((d / f).is_file() for f in TRAIN):
            return d
    return None


needs_data = pytest.mark.skipif(
    _data() is None, reason=f"the real Fashion-MNIST files are absent: no {' / '.join(TRAIN)} in {DEBIAN} (Debian "
                            "package dataset-fashion-mnist, installed by scripts/setup.sh) nor in profiles/device-slice/data")


def _slice(out: Path, timeout: int, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("DEVICE_SLICE_")}
    e |= {"PYTHON": sys.executable, "DEVICE_SLICE_OUT": str(out)} | env
    return subprocess.run(["bash", str(SCRIPT)], env=e, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _repo_slice_files() -> dict[str, int]:
    return {str(p.relative_to(SLICE)): p.stat().st_mtime_ns for p in SLICE.rglob("*") if p.is_file()}


@needs_data
def test_the_dry_run_fills_a_profile_with_its_ledger_and_wall_times(tmp_path, capsys):
    before = _repo_slice_files()
    out = tmp_path / "slice"
    t = time.perf_counter()
    r = _slice(out, timeout=600, DEVICE_SLICE_TINY="1")
    wall = time.perf_counter() - t
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for f in ("CLAIMS.md", "metrics/claims.json", "metrics/powerlaw.json", "metrics/wall_times.json"):
        assert (out / f).is_file(), f
    params = yaml.safe_load((out / "params.yaml").read_text())
    sizes = params["sweep"]["sizes"]
    assert sizes == [64, 128, 256] and params["model"]["width"] == 16
    # the rest is the committed slice's: the authors' MLP and init, RKC, the root profile's measures and end points
    committed = yaml.safe_load((SLICE / "params.yaml").read_text())
    for k in ("solver", "powerlaw", "criteria", "settings", "loss_threshold"):
        assert params[k] == committed[k], k
    assert {k: params["model"][k] for k in ("depth", "init")} == {"depth": 6, "init": "xavier"}

    wt = json.loads((out / "metrics" / "wall_times.json").read_text())
    assert wt["ok"] and wt["exit_status"] == 0 and wt["tiny"]
    assert [run["N"] for run in wt["runs"]] == sizes  # one entry per N
    for run in wt["runs"]:
        assert run["wall_seconds"] > 0 and run["steps"] > 0 and run["stopped_by"] and run["device"]
        assert run["reached_threshold"] == ("loss" in run["stopped_by"])
    assert [s["step"] for s in wt["steps"]][-3:] == ["endpoints-fmnist-mlp-elu-ce", "fit", "ledger"]

    fits = json.loads((out / "metrics" / "powerlaw.json").read_text())
    assert "fmnist-mlp-elu-ce" in json.dumps(fits)
    claims = json.loads((out / "metrics" / "claims.json").read_text())
    assert "C4" in json.dumps(claims)
    assert _repo_slice_files() == before  # nothing written into the repository's profile
    with capsys.disabled():  # shown without -s too
        print(f"\ndevice-slice dry run (DEVICE_SLICE_TINY=1, CPU): {wall:.1f} s wall "
              f"(the script's own clock: {wt['total_wall_seconds']:.1f} s)")


def test_it_refuses_without_the_data(tmp_path):
    (tmp_path / "empty").mkdir()
    r = _slice(tmp_path / "slice", timeout=120, DEVICE_SLICE_TINY="1", DEVICE_SLICE_DATA_SRC=str(tmp_path / "empty"))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Fashion-MNIST is missing" in r.stderr and "train-images-idx3-ubyte.gz" in r.stderr


@needs_data
def test_the_full_size_slice_refuses_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the full-size slice would run")
    out = tmp_path / "slice"
    r = _slice(out, timeout=120)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "no CUDA device" in r.stderr
    wt = json.loads((out / "metrics" / "wall_times.json").read_text())
    assert not wt["ok"] and wt["exit_status"] == 4 and wt["runs"] == []
    # the output folder got the committed params unchanged (the slice at full size) and a link to the data
    assert yaml.safe_load((out / "params.yaml").read_text()) == yaml.safe_load((SLICE / "params.yaml").read_text())
    assert (out / "data" / "fashion-mnist").resolve() == _data().resolve()
