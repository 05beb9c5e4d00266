"""Datasets for the reconstructions (paper-notes §5), as flattened float32 tensors.

``load_dataset(name, ...)`` returns a :class:`Dataset`. Offline sources: ``digits`` (scikit-learn),
``mnist1d`` (generated locally), ``fashion-mnist-mini`` (8,192 Fashion-MNIST train images embedded in
``data/``) and ``fashion-mnist`` from the Debian package ``dataset-fashion-mnist``. ``mnist`` and ``cifar10``
read the standard files under ``root`` (or fetch them with torchvision when ``download=True``).
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import pickle
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

DATASETS: tuple[str, ...] = ("digits", "mnist1d", "fashion-mnist-mini", "fashion-mnist", "mnist", "cifar10")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
REPO_DATA = Path(__file__).resolve().parents[1] / "data"
MINI_FILE = "fashion-mnist-mini.npz"
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}
_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


class DataError(FileNotFoundError):
    """A dataset's files are missing (the message says what was expected, where, and how to get it)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Flattened inputs ``X`` (N × d, float32), labels ``y`` (N, int64, in 0..num_classes-1)."""

    X: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str
    description: str
    input_shape: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.y)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Dataset:
        """Copy with ``X`` converted to ``dtype`` and both tensors moved to ``device``."""
        return dataclasses.replace(self, X=self.X.to(device=device, dtype=dtype), y=self.y.to(device=device))


# ---------------------------------------------------------------- file formats


@functools.lru_cache(maxsize=None)
def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (``.gz`` or raw) of unsigned bytes into a read-only uint8 array."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {arr.size} bytes")
    return arr.reshape(shape)


@functools.lru_cache(maxsize=None)
def _read_cifar(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 python pickles data_batch_1..5 → (N × 3072 uint8 in CHW order, N labels)."""
    xs, ys = [], []
    for f in CIFAR_FILES:
        with open(folder / f, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8))
        ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    x.flags.writeable = y.flags.writeable = False
    return x, y


@functools.lru_cache(maxsize=None)
def _read_mini(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        x, y = z["images"], z["labels"]
    x.flags.writeable = y.flags.writeable = False
    return x, y


@functools.lru_cache(maxsize=None)
def _make_mnist1d() -> tuple[np.ndarray, np.ndarray]:
    """Train split of MNIST-1D from the default generator args (restores the global RNGs it reseeds)."""
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, y = np.asarray(d["x"], dtype=np.float32), np.asarray(d["y"], dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


# ---------------------------------------------------------------- locating files


def _find(path: Path) -> Path | None:
    """``path.gz`` if it exists, else ``path`` if it exists."""
    gz = path.with_name(path.name + ".gz")
    return gz if gz.is_file() else path if path.is_file() else None


def _idx_dirs(name: str, root: Path) -> list[Path]:
    tv = _TORCHVISION[name]
    dirs = [root / name, root / name / "raw", root / tv, root / tv / "raw"]
    return dirs + ([DEBIAN_FASHION_MNIST] if name == "fashion-mnist" else [])


def _locate_idx(name: str, root: Path) -> tuple[Path, Path] | None:
    for d in _idx_dirs(name, root):
        found = [_find(d / f) for f in IDX_FILES]
        if all(found):
            return found[0], found[1]  # type: ignore[return-value]
    return None


def _missing(name: str, files: Sequence[str], places: Sequence[Path], extra: str = "") -> DataError:
    how = [f"copy the files into {places[0]}"]
    if name == "fashion-mnist":
        how.insert(0, f"install the Debian package: apt-get install dataset-fashion-mnist (→ {DEBIAN_FASHION_MNIST})")
    if name in _TORCHVISION:
        how.append("pass download=True (needs torchvision and internet access)")
    if name == "cifar10":
        how.append(f"or extract https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into {places[0].parent}")
    return DataError(
        f"dataset {name!r} not found. Expected files: {', '.join(files)}."
        f" Looked in: {', '.join(str(p) for p in places)}. To get it: {'; '.join(how)}.{extra}"
    )


def _download(name: str, root: Path) -> None:
    try:
        import torchvision.datasets as tvd
    except Exception as e:  # noqa: BLE001 — a broken torchvision install raises more than ImportError
        raise DataError(
            f"download=True for {name!r} needs torchvision, which cannot be imported here ({type(e).__name__}: {e})."
            " Install a torchvision matching this torch, or place the files under root yourself."
        ) from e
    getattr(tvd, _TORCHVISION[name])(root=str(root), train=True, download=True)


def _load_idx(name: str, root: Path, download: bool) -> tuple[np.ndarray, np.ndarray, str]:
    paths = _locate_idx(name, root)
    if paths is None and download:
        _download(name, root)
        paths = _locate_idx(name, root)
    if paths is None:
        files = [f"{f}.gz (or uncompressed {f})" for f in IDX_FILES]
        raise _missing(name, files, _idx_dirs(name, root))
    x, y = read_idx(paths[0]), read_idx(paths[1])
    if x.shape[0] != y.shape[0] or x.shape[1:] != (28, 28):
        raise ValueError(f"{name}: unexpected IDX shapes {x.shape} / {y.shape} in {paths[0].parent}")
    return x.reshape(len(x), -1), y, f"{_TITLES[name]} train split (28x28 grayscale) from {paths[0].parent}"


def _load_cifar(root: Path, download: bool) -> tuple[np.ndarray, np.ndarray, str]:
    folder = root / CIFAR_DIR
    if download and not all((folder / f).is_file() for f in CIFAR_FILES):
        _download("cifar10", root)
    if not all((folder / f).is_file() for f in CIFAR_FILES):
        raise _missing("cifar10", [f"{CIFAR_DIR}/{f}" for f in CIFAR_FILES], [folder])
    x, y = _read_cifar(folder)
    return x, y, f"CIFAR-10 training batches 1-5 (3x32x32, CHW order) from {folder}"


def _mini_path(root: Path) -> Path:
    places = [root, REPO_DATA] if root.resolve() != REPO_DATA else [root]
    for d in places:
        if (d / MINI_FILE).is_file():
            return d / MINI_FILE
    raise _missing("fashion-mnist-mini", [MINI_FILE], places,
                   " It is part of the repository; rebuild it with scripts/build_fashion_mnist_mini.py.")


# ---------------------------------------------------------------- selection


def balanced_subset(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (ascending) of a class-balanced random subset of size ``n``.

    Each class gets ⌊n/C⌋ or ⌈n/C⌉ examples (which classes get the extra one is drawn with ``rng``);
    a class with too few examples gives all it has and the shortfall is spread over the others the same way.
    """
    classes, counts = np.unique(y, return_counts=True)
    if n > counts.sum():
        raise ValueError(f"n={n} is larger than the {counts.sum()} examples available")
    take, open_, left = np.zeros(len(classes), dtype=np.int64), np.arange(len(classes)), n
    while len(open_) and len(small := open_[counts[open_] <= left // len(open_)]):
        take[small] = counts[small]  # classes too small for their share give everything
        left -= int(counts[small].sum())
        open_ = np.setdiff1d(open_, small)
    if len(open_):
        take[open_] = left // len(open_)
        take[open_[rng.permutation(len(open_))[: left % len(open_)]]] += 1
    picks = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picks))


def _select_classes(y: np.ndarray, total: int, classes: int | Sequence[int] | None) -> tuple[list[int], str]:
    if classes is None:
        return list(range(total)), f"all {total} classes"
    if isinstance(classes, (int, np.integer)):
        if not 1 <= classes <= total:
            raise ValueError(f"classes={classes}: must be between 1 and {total}")
        return list(range(int(classes))), f"first {classes} classes"
    keep = [int(c) for c in classes]
    if not keep or len(set(keep)) != len(keep) or not all(0 <= c < total for c in keep):
        raise ValueError(f"classes={classes!r}: need distinct labels in 0..{total - 1}")
    return keep, f"classes {keep} relabelled 0..{len(keep) - 1}"


# ---------------------------------------------------------------- public entry point


def load_dataset(
    name: str,
    n: int | None = None,
    seed: int = 0,
    classes: int | Sequence[int] | None = None,
    root: str | Path = "data",
    download: bool = False,
    standardize: bool = False,
) -> Dataset:
    """Load ``name`` (one of ``DATASETS``) as a flattened float32 :class:`Dataset`.

    ``classes``: None (all), int C (the first C classes) or a sequence (those classes, relabelled in the given
    order). ``n``: None (all examples) or a class-balanced subset drawn with ``numpy.random.default_rng(seed)``,
    in ascending index order. ``standardize``: subtract the per-feature mean and divide by the global std of the
    returned subset. Same arguments → byte-identical tensors.
    """
    root = Path(root)
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y, scale, shape, total = d.data, d.target, 16.0, (1, 8, 8), 10
        src = "8x8 scikit-learn digits (1,797 examples), pixel/16"
    elif name == "mnist1d":
        x, y = _make_mnist1d()
        scale, shape, total = 1.0, (40,), 10
        src = ("MNIST-1D generated locally with mnist1d's default args (seed 42), train split (4,000 examples),"
               " already standardised by the generator (global mean 0, std 1 over all 5,000 generated samples)")
    elif name == "fashion-mnist-mini":
        path = _mini_path(root)
        x, y = _read_mini(path)
        x = x.reshape(len(x), -1)
        scale, shape, total = 255.0, (1, 28, 28), 10
        src = f"Fashion-MNIST-mini ({len(y)}-image class-balanced subset of the train split, {path}), pixel/255"
    elif name in ("fashion-mnist", "mnist"):
        x, y, src = _load_idx(name, root, download)
        scale, shape, total, src = 255.0, (1, 28, 28), 10, src + ", pixel/255"
    elif name == "cifar10":
        x, y, src = _load_cifar(root, download)
        scale, shape, total, src = 255.0, (3, 32, 32), 10, src + ", pixel/255"
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")

    keep, cls_desc = _select_classes(y, total, classes)
    remap = np.full(total, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    idx = np.flatnonzero(remap[np.asarray(y, dtype=np.int64)] >= 0)
    if n is None:
        sub_desc = f"all {len(idx)} examples"
    else:
        if n < 1:
            raise ValueError(f"n={n}: must be positive")
        if n > len(idx):
            raise ValueError(f"n={n} is larger than the {len(idx)} examples available in {name!r} ({cls_desc})")
        idx = idx[balanced_subset(np.asarray(y)[idx], n, np.random.default_rng(seed))]
        sub_desc = f"n={n} drawn class-balanced with seed {seed}"

    X = np.asarray(x[idx], dtype=np.float32)
    if scale != 1.0:
        X /= np.float32(scale)
    desc = f"{name}: {src}, {cls_desc}, {sub_desc}"
    if standardize:
        X64 = X.astype(np.float64)
        mean = X64.mean(axis=0)
        std = float((X64 - mean).std())
        if std == 0:
            raise ValueError(f"{name}: cannot standardize, the selected data is constant")
        X = ((X64 - mean) / std).astype(np.float32)
        desc += (f"; standardized on these {len(idx)} examples: per-feature mean subtracted (means range"
                 f" {mean.min():.4g}..{mean.max():.4g}), divided by the global std {std:.6g}")
    y_out = remap[np.asarray(y, dtype=np.int64)[idx]]
    return Dataset(X=torch.from_numpy(np.ascontiguousarray(X)), y=torch.from_numpy(y_out),
                   num_classes=len(keep), name=name, description=desc, input_shape=shape)
