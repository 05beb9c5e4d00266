"""Tests for eoslib.data: offline datasets, real file formats written into tmp_path, error messages."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eoslib import data as D
from eoslib.data import DATASETS, DataError, Dataset, load_dataset

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "data" / "fashion-mnist-mini.npz"
needs_debian = pytest.mark.skipif(
    not D.DEBIAN_FASHION_MNIST.is_dir(),
    reason=f"{D.DEBIAN_FASHION_MNIST} absent (apt-get install dataset-fashion-mnist)",
)


def _same(a: Dataset, b: Dataset) -> bool:
    return a.X.numpy().tobytes() == b.X.numpy().tobytes() and a.y.numpy().tobytes() == b.y.numpy().tobytes()


# ---------------------------------------------------------------- offline datasets


@pytest.mark.parametrize(
    "name, N, shape, lo, hi",
    [("digits", 1797, (1, 8, 8), 0.0, 1.0), ("mnist1d", 4000, (40,), None, None),
     ("fashion-mnist-mini", 8192, (1, 28, 28), 0.0, 1.0)],
)
def test_offline_shapes_and_ranges(name: str, N: int, shape: tuple[int, ...], lo: float | None, hi: float | None):
    d = load_dataset(name)
    assert isinstance(d, Dataset) and d.name == name and len(d) == N
    assert d.X.shape == (N, int(np.prod(shape))) and d.input_shape == shape
    assert d.X.dtype == torch.float32 and d.y.dtype == torch.int64
    assert d.num_classes == 10 and set(d.y.tolist()) == set(range(10))
    assert torch.isfinite(d.X).all()
    if lo is None:  # mnist1d: standardised by its generator
        assert abs(d.X.mean().item()) < 0.1 and 0.8 < d.X.std().item() < 1.2
        assert "standardised" in d.description
    else:
        assert d.X.min().item() == lo and d.X.max().item() == hi
    assert name in d.description


def test_digits_values_are_pixels_over_16():
    from sklearn.datasets import load_digits

    assert torch.equal(load_dataset("digits").X, torch.tensor(load_digits().data / 16, dtype=torch.float32))


@pytest.mark.parametrize("name", ["digits", "mnist1d", "fashion-mnist-mini"])
def test_subset_deterministic_and_balanced(name: str):
    a, b = load_dataset(name, n=203, seed=3), load_dataset(name, n=203, seed=3)
    assert _same(a, b) and len(a) == 203
    counts = torch.bincount(a.y, minlength=10)
    assert counts.min() == 20 and counts.max() == 21 and counts.sum() == 203
    assert not _same(a, load_dataset(name, n=203, seed=4))
    assert f"n=203 drawn class-balanced with seed 3" in a.description


def test_subset_rows_come_from_full_set():
    full, sub = load_dataset("digits"), load_dataset("digits", n=50, seed=1)
    rows = {r.tobytes(): int(c) for r, c in zip(full.X.numpy(), full.y)}
    assert all(rows[r.tobytes()] == int(c) for r, c in zip(sub.X.numpy(), sub.y))


def test_balanced_subset_spreads_shortfall():
    y = np.array([0] * 2 + [1] * 10 + [2] * 10)
    idx = D.balanced_subset(y, 14, np.random.default_rng(0))
    assert sorted(np.bincount(y[idx]).tolist()) == [2, 6, 6]
    assert np.all(np.diff(idx) > 0)


def test_classes_int_and_sequence():
    full = load_dataset("digits")
    first3 = load_dataset("digits", classes=3)
    assert first3.num_classes == 3 and torch.equal(first3.X, full.X[full.y < 3])
    assert torch.equal(first3.y, full.y[full.y < 3])
    pick = load_dataset("digits", classes=[7, 2])
    mask = (full.y == 7) | (full.y == 2)
    assert pick.num_classes == 2 and torch.equal(pick.X, full.X[mask])
    assert torch.equal(pick.y, (full.y[mask] == 2).long())  # 7 → 0, 2 → 1
    sub = load_dataset("fashion-mnist-mini", n=30, classes=[9, 0, 4], seed=1)
    assert torch.bincount(sub.y).tolist() == [10, 10, 10]
    for bad in (0, 11, [1, 1], [10], []):
        with pytest.raises(ValueError):
            load_dataset("digits", classes=bad)


def test_n_too_large_and_unknown_name():
    with pytest.raises(ValueError, match="1797"):
        load_dataset("digits", n=1798)
    with pytest.raises(ValueError, match="360|359"):
        load_dataset("digits", n=400, classes=2)
    with pytest.raises(ValueError) as e:
        load_dataset("imagenet")
    assert all(n in str(e.value) for n in DATASETS)


def test_standardize_stats_and_description():
    d = load_dataset("fashion-mnist-mini", n=500, standardize=True)
    raw = load_dataset("fashion-mnist-mini", n=500)
    assert d.X.mean(0).abs().max() < 1e-5
    assert abs(d.X.double().std(unbiased=False).item() - 1) < 1e-5
    std = (raw.X.double() - raw.X.double().mean(0)).std(unbiased=False).item()
    assert f"{std:.6g}" in d.description and "standardized" in d.description
    assert torch.equal(d.y, raw.y) and _same(d, load_dataset("fashion-mnist-mini", n=500, standardize=True))


def test_to_returns_converted_copy():
    d = load_dataset("digits", n=20)
    d64 = d.to(dtype=torch.float64)
    assert d64.X.dtype == torch.float64 and d.X.dtype == torch.float32 and d64.y.dtype == torch.int64
    assert d.to(device="cpu").description == d.description


def test_mnist1d_leaves_global_rng_alone(monkeypatch: pytest.MonkeyPatch):
    import mnist1d.data

    def fake_make_dataset(args):  # reseeds the global RNGs like the real generator, but fast
        mnist1d.data.set_seed(args.seed)
        return {"x": np.zeros((4, 40)), "y": np.zeros(4, dtype=np.int64)}

    monkeypatch.setattr(mnist1d.data, "make_dataset", fake_make_dataset)
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    D._make_mnist1d.__wrapped__()
    assert np.random.rand() == expected


# ---------------------------------------------------------------- fashion-mnist-mini file and real Fashion-MNIST


def test_mini_file_checksum_and_layout():
    want = (REPO / "data" / "fashion-mnist-mini.sha256").read_text().split()[0]
    assert hashlib.sha256(MINI.read_bytes()).hexdigest() == want
    assert MINI.stat().st_size <= 5 * 2**20
    with np.load(MINI) as z:
        assert z["images"].shape == (8192, 28, 28) and z["images"].dtype == np.uint8
        assert z["labels"].dtype == np.uint8
        assert sorted(np.bincount(z["labels"]).tolist()) == [819] * 8 + [820] * 2


def test_mini_found_from_other_root(tmp_path: Path):
    assert len(load_dataset("fashion-mnist-mini", root=tmp_path)) == 8192


@needs_debian
def test_fashion_mnist_debian_and_mini_is_subset():
    d = load_dataset("fashion-mnist", root="/nonexistent")
    assert d.X.shape == (60000, 784) and d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert str(D.DEBIAN_FASHION_MNIST) in d.description
    mini = load_dataset("fashion-mnist-mini")
    assert _same(mini, load_dataset("fashion-mnist", n=8192, seed=0))
    rows = {r.tobytes() for r in d.X.numpy()}
    assert all(r.tobytes() in rows for r in mini.X.numpy())


@needs_debian
def test_build_script_rebuilds_byte_identical(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("build_mini", REPO / "scripts" / "build_fashion_mnist_mini.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(tmp_path)]) == 0  # rebuilds, then checks against data/*.sha256
    assert (tmp_path / "fashion-mnist-mini.npz").read_bytes() == MINI.read_bytes()
    assert script.main(["--check"]) == 0


# ---------------------------------------------------------------- mnist / cifar10 in their real formats


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, dtype=">i4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def _fake_idx(folder: Path, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = np.arange(n, dtype=np.uint8) % 10
    _write_idx(folder / "train-images-idx3-ubyte.gz", x)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", y)
    return x, y


@pytest.mark.parametrize("sub", ["mnist", "mnist/raw", "MNIST/raw"])
def test_mnist_idx(tmp_path: Path, sub: str):
    x, y = _fake_idx(tmp_path / sub)
    raw = gzip.decompress((tmp_path / sub / "train-images-idx3-ubyte.gz").read_bytes())
    assert int.from_bytes(raw[:4], "big") == 2051
    d = load_dataset("mnist", root=tmp_path)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert torch.equal(d.X, torch.from_numpy(x.reshape(40, -1).astype(np.float32) / 255))
    assert torch.equal(d.y, torch.from_numpy(y.astype(np.int64)))
    s = load_dataset("mnist", root=tmp_path, n=6, classes=[5, 6])
    assert torch.bincount(s.y).tolist() == [3, 3]


def test_idx_rejects_bad_magic(tmp_path: Path):
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    _fake_idx(tmp_path / "mnist")
    bad.write_bytes(gzip.compress(b"\0\0\x0d\x03" + b"\0" * 12))
    with pytest.raises(ValueError, match="IDX"):
        load_dataset("mnist", root=tmp_path)


def test_cifar10_pickles(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, size=6)]
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"batch_label": b"x", b"data": x, b"labels": y, b"filenames": []}, f)
        xs.append(x), ys.extend(y)
    d = load_dataset("cifar10", root=tmp_path)
    assert d.input_shape == (3, 32, 32) and d.X.shape == (30, 3072)
    assert torch.equal(d.X, torch.from_numpy(np.concatenate(xs).astype(np.float32) / 255))
    assert d.y.tolist() == ys and d.X.max() <= 1


# ---------------------------------------------------------------- errors for missing data


def test_missing_mnist_error_names_files_and_places(tmp_path: Path):
    with pytest.raises(DataError) as e:
        load_dataset("mnist", root=tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert "train-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    for place in ("mnist", "mnist/raw", "MNIST", "MNIST/raw"):
        assert str(tmp_path / place) in msg
    assert "download=True" in msg


def test_missing_cifar_error(tmp_path: Path):
    with pytest.raises(DataError, match="data_batch_5") as e:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(e.value)


def test_missing_fashion_error_mentions_debian(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(D, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist", root=tmp_path)
    msg = str(e.value)
    assert "dataset-fashion-mnist" in msg and str(tmp_path / "FashionMNIST" / "raw") in msg
    assert str(tmp_path / "no-debian") in msg


def test_download_without_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(DataError, match="torchvision"):
        load_dataset("mnist", root=tmp_path, download=True)
