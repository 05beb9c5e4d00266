"""Datasets for the reconstructions (paper-notes §5), as flattened float32 tensors.

``load_dataset(name, ...)`` returns a :class:`Dataset`. This module holds what every dataset shares — the types,
the errors, class selection, :func:`load_dataset`, :func:`check_available`, :func:`available_size`,
:func:`content_hash` — and the catalog :data:`DATASETS`: one line per dataset, with its figure label and meta.
Each dataset's loader is a module of :mod:`eoslib.datasets` (the table is there), imported only when the
dataset is looked up, so a training stage depends on the loaders of the datasets its runs use and on no other
(:mod:`eoslib.pipeline`). Offline sources: ``digits`` (scikit-learn), ``mnist1d`` and ``mnist1d-large``
(generated locally), ``fashion-mnist-mini`` (8,192 Fashion-MNIST train images embedded in ``data/``) and
``fashion-mnist`` from the Debian package ``dataset-fashion-mnist``. ``mnist`` and ``cifar10`` read the
standard files under ``root`` (or fetch them with torchvision when ``download=True``).

Missing files raise :class:`DataError`; files that exist but cannot be read (empty, truncated, corrupted)
raise its subclass :class:`CorruptDataError`. Both messages name the file(s) and how to get a good copy.
:func:`check_available` raises the same errors without loading the data.

Importing this module imports neither torch nor any dataset module (config validation reads the catalog);
``load_dataset`` does.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .registry import Entry, Registry

if TYPE_CHECKING:
    import torch

# ---------------------------------------------------------------- where the files are
# The dataset modules read these from here when they run, so a test or script can redirect them.

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
REPO_DATA = Path(__file__).resolve().parents[1] / "data"
MINI_FILE = "fashion-mnist-mini.npz"
MINI_SHA_FILE = "fashion-mnist-mini.sha256"
MINI_REBUILD = "python scripts/build_fashion_mnist_mini.py"
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: mnist1d-large: mnist1d's default generator args except num_samples (train split 0.8 → 10,000 examples)
MNIST1D_LARGE_SAMPLES = 12_500


# ---------------------------------------------------------------- types


class DataError(FileNotFoundError):
    """A dataset's files are missing or unreadable (the message says which, where, and how to get them)."""


class CorruptDataError(DataError, ValueError):
    """A dataset file exists but is empty, truncated, corrupted or not in the expected format.

    A :class:`DataError` (callers catch one type) and a ``ValueError`` (what malformed files raised before)."""


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


@dataclasses.dataclass(frozen=True)
class Source:
    """What a dataset's loader returns: raw inputs ``x`` (N × d, any numeric dtype; row i ↔ ``y[i]``), labels
    ``y`` (N ints in 0..num_classes-1), ``description`` (source and preprocessing) and ``scale`` (the returned
    inputs are ``x / scale`` in float32)."""

    x: np.ndarray
    y: np.ndarray
    description: str
    scale: float = 1.0


#: A dataset loader: ``(root, download) → Source``.
Loader = Callable[[Path, bool], Source]


# ---------------------------------------------------------------- errors (built by the dataset modules)


def missing(name: str, files: Sequence[str], places: Sequence[Path], *, before: Sequence[str] = (),
            after: Sequence[str] = (), extra: str = "") -> DataError:
    """Dataset ``name`` not found: the ``files`` expected, the ``places`` searched and how to get it (copying the
    files into ``places[0]``, after the ways in ``before`` and before those in ``after``)."""
    how = [*before, f"copy the files into {places[0]}", *after]
    return DataError(
        f"dataset {name!r} not found. Expected files: {', '.join(files)}."
        f" Looked in: {', '.join(str(p) for p in places)}. To get it: {'; '.join(how)}.{extra}"
    )


def error_text(e: BaseException) -> str:
    """``"Type: message"`` of an exception (the type alone if it has no message)."""
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def unreadable(path: Path, problem: str) -> CorruptDataError:
    """The file-level error (what a shared reader such as :func:`eoslib.datasets.idx.read_idx` knows)."""
    return CorruptDataError(f"{path} is unreadable ({problem})")


def with_fix(name: str, e: CorruptDataError, fix: str) -> CorruptDataError:
    """The dataset-level error: the file-level one plus the dataset and how to get a good copy."""
    return CorruptDataError(f"dataset {name!r}: {e}. To get a good copy: {fix}.")


def corrupt(name: str, path: Path, problem: str, fix: str) -> CorruptDataError:
    return with_fix(name, unreadable(path, problem), fix)


#: the way to get the files that every torchvision dataset offers (in :func:`missing`'s ``after``)
DOWNLOAD_HINT = "pass download=True (needs torchvision and internet access)"


def torchvision_download(name: str, cls: str, root: Path) -> None:
    """Fetch dataset ``name``'s train split with ``torchvision.datasets.<cls>`` into ``root``."""
    try:
        import torchvision.datasets as tvd
    except Exception as e:  # noqa: BLE001 — a broken torchvision install raises more than ImportError
        raise DataError(
            f"download=True for {name!r} needs torchvision, which cannot be imported here ({type(e).__name__}: {e})."
            " Install a torchvision matching this torch, or place the files under root yourself."
        ) from e
    getattr(tvd, cls)(root=str(root), train=True, download=True)


def require_package(name: str, module: str, package: str) -> None:
    """Check for a dataset made by a Python package: the package is installed (found without importing it)."""
    if importlib.util.find_spec(module) is None:
        raise DataError(f"dataset {name!r} needs the Python package {package!r}, which is not installed here:"
                        f" pip install {package} (version pinned in pyproject.toml)")


# ---------------------------------------------------------------- the catalog

#: name → loader, each ``"eoslib.datasets.<module>:load[_<variant>]"`` imported when looked up. Meta (plain data,
#: readable without importing the loader): ``train_size`` (examples the full training split has), ``size``
#: (training examples available, None if it depends on the files found at run time), ``num_classes``,
#: ``input_shape``, ``offline`` (works without files outside the repository), ``class_counts`` (examples per
#: class, None if read from the files) and ``repo_files`` (files inside the repository that the loader reads).
#: A dataset module may also define ``check[_<variant>](root)`` (raises the loader's DataError cheaply, without
#: loading) and ``class_counts[_<variant>](root)`` (per-class counts read cheaply from the files, or None).
DATASETS: Registry[Loader] = Registry("dataset")

DATASETS.lazy("digits", "eoslib.datasets.digits:load", label="Digits 8×8", train_size=1797, size=1797,
              num_classes=10, input_shape=(1, 8, 8), offline=True,
              class_counts=(178, 182, 177, 183, 181, 182, 181, 179, 174, 180))
DATASETS.lazy("mnist1d", "eoslib.datasets.mnist1d:load", label="MNIST-1D", train_size=4000, size=4000,
              num_classes=10, input_shape=(40,), offline=True,
              class_counts=(398, 396, 411, 394, 394, 402, 401, 404, 402, 398))
DATASETS.lazy("mnist1d-large", "eoslib.datasets.mnist1d:load_large", label="MNIST-1D (10k)", train_size=10000,
              size=10_000, num_classes=10, input_shape=(40,), offline=True,
              class_counts=(996, 994, 1018, 994, 989, 986, 1020, 1012, 990, 1001))
DATASETS.lazy("fashion-mnist-mini", "eoslib.datasets.fashion_mnist_mini:load", label="Fashion-MNIST-mini",
              train_size=8192, size=8192, num_classes=10, input_shape=(1, 28, 28), offline=True,
              class_counts=(819, 819, 819, 819, 820, 819, 820, 819, 819, 819), repo_files=(f"data/{MINI_FILE}",))
DATASETS.lazy("fashion-mnist", "eoslib.datasets.fashion_mnist:load", label="Fashion-MNIST", train_size=60000,
              size=None, num_classes=10, input_shape=(1, 28, 28), offline=False, class_counts=None)
DATASETS.lazy("mnist", "eoslib.datasets.mnist:load", label="MNIST", train_size=60000, size=None, num_classes=10,
              input_shape=(1, 28, 28), offline=False, class_counts=None)
DATASETS.lazy("cifar10", "eoslib.datasets.cifar10:load", label="CIFAR-10", train_size=50000, size=None,
              num_classes=10, input_shape=(3, 32, 32), offline=False, class_counts=None)


def _hook(entry: Entry[Loader], kind: str) -> Callable[[Path], Any] | None:
    """The dataset module's optional ``check`` / ``class_counts`` function of a catalog entry (``:load_large`` →
    ``check_large``), imported by name; None if the module has none or the entry was registered eagerly."""
    if entry.target is None:
        return None
    attr = entry.target.partition(":")[2]
    return getattr(importlib.import_module(entry.module), kind + attr.removeprefix("load"), None)


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


def _select_classes(total: int, classes: int | Sequence[int] | None) -> tuple[list[int], str]:
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


# ---------------------------------------------------------------- public entry points


def check_available(name: str, root: str | Path = "data") -> None:
    """Raise the :class:`DataError` (or :class:`CorruptDataError`) that ``load_dataset(name, root=root)`` would
    raise for missing, empty or truncated files — cheaply, without loading the data. Unknown names raise
    ``UnknownName`` (a ``ValueError``) listing the registered ones."""
    check = _hook(DATASETS.entry(name), "check")
    if check is not None:
        check(Path(root))


def available_size(name: str, classes: int | Sequence[int] | None = None, root: str | Path = "data") -> int | None:
    """Number of training examples of ``name`` in the class selection ``classes`` (as in :func:`load_dataset`),
    or None when that is not known cheaply (files not found, or labels stored inside the data files: cifar10).
    The catalog's per-class counts when it has them (the dataset module is not imported); otherwise the module's
    ``class_counts`` (``mnist``/``fashion-mnist`` read the small labels file)."""
    entry = DATASETS.entry(name)
    keep, _ = _select_classes(entry.meta["num_classes"], classes)
    counts = entry.meta.get("class_counts")
    if counts is None and (read := _hook(entry, "class_counts")) is not None:
        counts = read(Path(root))
    return None if counts is None else int(sum(counts[c] for c in keep))


def repo_files(name: str) -> list[str]:
    """Files inside the repository that dataset ``name``'s loader reads, relative to the repository root (the
    pipeline makes them dependencies of the stages whose runs use ``name``)."""
    return list(DATASETS.entry(name).meta.get("repo_files", ()))


_CONTENT_HASHES: dict[tuple[str, Path], str] = {}


def content_hash(name: str, root: str | Path = "data") -> str:
    """SHA-256 (hex) of dataset ``name``'s raw content as its loader returns it from ``root``: the
    :class:`Source`'s ``x`` and ``y`` (dtype, shape and bytes of each) and its ``scale`` — everything
    :func:`load_dataset` computes a selection from, and nothing else (not the description, which names folders).
    Part of every run's identity: a run is redone when its data change. Computed once per (name, resolved root)
    in a process; missing or damaged files raise the loader's :class:`DataError`."""
    key = (name, Path(root).resolve())
    if key not in _CONTENT_HASHES:
        src = DATASETS.entry(name).obj(Path(root), False)
        h = hashlib.sha256()
        for part, arr in (("x", src.x), ("y", src.y)):
            arr = np.ascontiguousarray(arr)
            h.update(f"{part} {arr.dtype.str} {arr.shape}\n".encode())
            h.update(arr.data)
        h.update(f"scale {float(src.scale)!r}\n".encode())
        _CONTENT_HASHES[key] = h.hexdigest()
    return _CONTENT_HASHES[key]


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
    import torch

    entry = DATASETS.entry(name)
    src = entry.obj(Path(root), download)
    x, y, total = src.x, src.y, entry.meta["num_classes"]

    keep, cls_desc = _select_classes(total, classes)
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
    if src.scale != 1.0:
        X /= np.float32(src.scale)
    desc = f"{name}: {src.description}, {cls_desc}, {sub_desc}"
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
                   num_classes=len(keep), name=name, description=desc, input_shape=entry.meta["input_shape"])
