"""Datasets for the reconstructions (paper-notes §5), as flattened float32 tensors.

``load_dataset(name, ...)`` returns a :class:`Dataset`. Every dataset is one loader function registered in
:data:`DATASETS` (with its figure label and meta: ``size``, ``num_classes``, ``input_shape``, ``class_counts``,
``check``). Offline sources: ``digits`` (scikit-learn), ``mnist1d`` and ``mnist1d-large`` (generated locally),
``fashion-mnist-mini`` (8,192 Fashion-MNIST train images embedded in ``data/``) and ``fashion-mnist`` from the
Debian package ``dataset-fashion-mnist``. ``mnist`` and ``cifar10`` read the standard files under ``root`` (or
fetch them with torchvision when ``download=True``).

Missing files raise :class:`DataError`; files that exist but cannot be read (empty, truncated, corrupted)
raise its subclass :class:`CorruptDataError`. Both messages name the file(s) and how to get a good copy.
:func:`check_available` raises the same errors without loading the data.

Importing this module does not import torch (config validation imports the registry); ``load_dataset`` does.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib.util
import pickle
import random
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

import numpy as np

from .registry import Registry

if TYPE_CHECKING:
    import torch

R = TypeVar("R")

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
_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}
_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


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
    """What a registered loader returns: raw inputs ``x`` (N × d, any numeric dtype; row i ↔ ``y[i]``), labels
    ``y`` (N ints in 0..num_classes-1), ``description`` (source and preprocessing) and ``scale`` (the returned
    inputs are ``x / scale`` in float32)."""

    x: np.ndarray
    y: np.ndarray
    description: str
    scale: float = 1.0


#: A dataset loader: ``(root, download) → Source``.
Loader = Callable[[Path, bool], Source]

#: name → loader. Meta of each entry: ``size`` (training examples available, None if it depends on the files
#: found at run time), ``num_classes``, ``input_shape``, ``class_counts`` (examples per class: a tuple, or a
#: function ``root → tuple | None`` read cheaply from the files), ``check`` (``root → None``: raises the
#: loader's DataError cheaply, without loading), ``offline`` (works without files outside the repository).
DATASETS: Registry[Loader] = Registry("dataset")


# ---------------------------------------------------------------- errors


def _missing(name: str, files: Sequence[str], places: Sequence[Path], extra: str = "") -> DataError:
    how = [f"copy the files into {places[0]}"]
    if name == "fashion-mnist":
        how.insert(0, f"install the Debian package: apt-get install dataset-fashion-mnist (→ {DEBIAN_FASHION_MNIST})")
    if name in _TORCHVISION:
        how.append("pass download=True (needs torchvision and internet access)")
    if name == "cifar10":
        how.append(f"or extract {CIFAR_URL} into {places[0].parent}")
    return DataError(
        f"dataset {name!r} not found. Expected files: {', '.join(files)}."
        f" Looked in: {', '.join(str(p) for p in places)}. To get it: {'; '.join(how)}.{extra}"
    )


def _problem(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _unreadable(path: Path, problem: str) -> CorruptDataError:
    """The file-level error (what a shared reader such as :func:`read_idx` knows)."""
    return CorruptDataError(f"{path} is unreadable ({problem})")


def _with_fix(name: str, e: CorruptDataError, fix: str) -> CorruptDataError:
    """The dataset-level error: the file-level one plus the dataset and how to get a good copy."""
    return CorruptDataError(f"dataset {name!r}: {e}. To get a good copy: {fix}.")


def _corrupt(name: str, path: Path, problem: str, fix: str) -> CorruptDataError:
    return _with_fix(name, _unreadable(path, problem), fix)


# ---------------------------------------------------------------- IDX files (mnist, fashion-mnist)


def _idx_shape(head: bytes, path: Path) -> tuple[int, ...]:
    """Shape from the IDX header ``00 00 08 ndim`` + ndim big-endian int32 sizes (unsigned-byte data only)."""
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] != 0x08:
        raise _unreadable(path, f"not an unsigned-byte IDX file: magic {head[:4].hex() or 'missing'}")
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        raise _unreadable(path, f"IDX header cut short at {len(head)} bytes")
    return tuple(int(s) for s in np.frombuffer(head, dtype=">i4", count=ndim, offset=4))


def _read_head(f: IO[bytes]) -> bytes:
    """The IDX header bytes: magic (4) + ndim sizes (4 each)."""
    head = f.read(4)
    return head + (f.read(4 * head[3]) if len(head) == 4 else b"")


@functools.lru_cache(maxsize=None)
def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (``.gz`` or raw) of unsigned bytes into a read-only uint8 array.

    Raises :class:`CorruptDataError` naming ``path`` if the file is empty, truncated, fails its gzip CRC or its
    header disagrees with its length."""
    raw = path.read_bytes()
    if not raw:
        raise _unreadable(path, "the file is empty, 0 bytes")
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; truncated → EOFError
            raise _unreadable(path, f"corrupted or truncated gzip: {_problem(e)}") from e
    shape = _idx_shape(raw, path)
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(shape))
    if arr.size != int(np.prod(shape)):
        raise _unreadable(path, f"truncated or padded: the header says shape {shape}, {int(np.prod(shape))} data"
                                f" bytes, the file holds {arr.size}")
    return arr.reshape(shape)


def _idx_header_checked(path: Path) -> tuple[int, ...]:
    """The shape in an IDX file's header, checked cheaply against the file size (raw) or the gzip trailer's
    uncompressed length (``.gz``, RFC 1952 ISIZE) without reading the data. Catches empty and truncated files;
    a flipped byte inside compressed data is caught only by the CRC when :func:`read_idx` reads the file."""
    size = path.stat().st_size
    if size == 0:
        raise _unreadable(path, "the file is empty, 0 bytes")
    if path.suffix != ".gz":
        with path.open("rb") as f:
            shape = _idx_shape(_read_head(f), path)
        if size != (want := 4 + 4 * len(shape) + int(np.prod(shape))):
            raise _unreadable(path, f"truncated or padded: the header says shape {shape}, {want} bytes, the file"
                                    f" has {size}")
        return shape
    try:
        with gzip.open(path, "rb") as f:
            head = _read_head(f)
    except (OSError, EOFError, zlib.error) as e:
        raise _unreadable(path, f"corrupted or truncated gzip: {_problem(e)}") from e
    shape = _idx_shape(head, path)
    want = 4 + 4 * len(shape) + int(np.prod(shape))
    with path.open("rb") as f:
        f.seek(max(size - 4, 0))
        isize = int.from_bytes(f.read(4), "little")  # uncompressed length mod 2**32
    if isize != want % 2**32:
        raise _unreadable(path, f"truncated or corrupted gzip: the header says shape {shape}, {want} bytes"
                                f" uncompressed, the gzip trailer says {isize}")
    return shape


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


def _locate_idx_or_fail(name: str, root: Path, download: bool) -> tuple[Path, Path]:
    paths = _locate_idx(name, root)
    if paths is None and download:
        _download(name, root)
        paths = _locate_idx(name, root)
    if paths is None:
        files = [f"{f}.gz (or uncompressed {f})" for f in IDX_FILES]
        raise _missing(name, files, _idx_dirs(name, root))
    return paths


def _idx_fix(name: str, path: Path) -> str:
    if name == "fashion-mnist" and path.parent == DEBIAN_FASHION_MNIST:
        return "reinstall the Debian package: sudo apt-get install --reinstall dataset-fashion-mnist"
    src = {"fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist",
           "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/"}[name]
    return (f"delete it, then pass download=True (torchvision fetches a fresh, MD5-checked copy) or copy"
            f" {path.name} from {src} into {path.parent}")


def _idx_read(name: str, path: Path, read: Callable[[Path], R]) -> R:
    """``read(path)`` (read_idx or the header check), a corrupt file raising the dataset-level error."""
    try:
        return read(path)
    except CorruptDataError as e:
        raise _with_fix(name, e, _idx_fix(name, path)) from e


def _idx_check_pair(name: str, paths: tuple[Path, Path], images: tuple[int, ...], labels: np.ndarray) -> None:
    if len(images) != 3 or images[1:] != (28, 28) or labels.shape != images[:1]:
        raise _corrupt(name, paths[0].parent, f"unexpected IDX shapes {images} (images) / {labels.shape} (labels),"
                       " want N×28×28 and N", _idx_fix(name, paths[0]))
    if labels.size and labels.max() > 9:
        raise _corrupt(name, paths[1], f"labels up to {labels.max()}, want 0..9", _idx_fix(name, paths[1]))


def _load_idx(name: str, root: Path, download: bool) -> Source:
    paths = _locate_idx_or_fail(name, root, download)
    x, y = _idx_read(name, paths[0], read_idx), _idx_read(name, paths[1], read_idx)
    _idx_check_pair(name, paths, x.shape, y)
    desc = f"{_TITLES[name]} train split (28x28 grayscale) from {paths[0].parent}, pixel/255"
    return Source(x.reshape(len(x), -1), y, desc, 255.0)


def _check_idx(name: str) -> Callable[[Path], None]:
    """Cheap check: the images file's header and length, and the (small) labels file read in full."""
    def check(root: Path) -> None:
        paths = _locate_idx_or_fail(name, root, False)
        shape = _idx_read(name, paths[0], _idx_header_checked)
        _idx_check_pair(name, paths, shape, _idx_read(name, paths[1], read_idx))

    return check


def _idx_counts(name: str) -> Callable[[Path], tuple[int, ...] | None]:
    """Examples per class from the labels file (60 kB), None if the files are not found."""
    def counts(root: Path) -> tuple[int, ...] | None:
        paths = _locate_idx(name, root)
        if paths is None:
            return None
        return tuple(np.bincount(_idx_read(name, paths[1], read_idx), minlength=10).tolist())

    return counts


def _download(name: str, root: Path) -> None:
    try:
        import torchvision.datasets as tvd
    except Exception as e:  # noqa: BLE001 — a broken torchvision install raises more than ImportError
        raise DataError(
            f"download=True for {name!r} needs torchvision, which cannot be imported here ({type(e).__name__}: {e})."
            " Install a torchvision matching this torch, or place the files under root yourself."
        ) from e
    getattr(tvd, _TORCHVISION[name])(root=str(root), train=True, download=True)


# ---------------------------------------------------------------- CIFAR-10 pickles


def _cifar_fix(folder: Path) -> str:
    return (f"delete {folder} and extract {CIFAR_URL} into {folder.parent} again, or pass download=True after"
            " deleting it (torchvision fetches and MD5-checks the archive)")


@functools.lru_cache(maxsize=None)
def _read_cifar(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 python pickles data_batch_1..5 → (N × 3072 uint8 in CHW order, N labels)."""
    xs, ys = [], []
    for f in CIFAR_FILES:
        path = folder / f
        if path.stat().st_size == 0:
            raise _corrupt("cifar10", path, "the file is empty, 0 bytes", _cifar_fix(folder))
        with open(path, "rb") as fh:  # errors opening the file (permissions) are not corruption
            try:
                batch = pickle.load(fh, encoding="bytes")
                x = np.asarray(batch[b"data"], dtype=np.uint8)
                y = np.asarray(batch[b"labels"], dtype=np.int64)
            # a damaged pickle raises many types (pickle docs: "including but not necessarily limited to
            # AttributeError, EOFError, ImportError, and IndexError"; also UnpicklingError, KeyError, TypeError)
            except Exception as e:  # noqa: BLE001
                raise _corrupt("cifar10", path, f"truncated or corrupted pickle: {_problem(e)}",
                               _cifar_fix(folder)) from e
        if x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),) or (y.size and not 0 <= y.min() <= y.max() <= 9):
            raise _corrupt("cifar10", path, f"unexpected contents: data {x.shape}, labels {y.shape},"
                           " want N×3072 and N labels in 0..9", _cifar_fix(folder))
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _cifar_folder(root: Path, download: bool) -> Path:
    folder = root / CIFAR_DIR
    if download and not all((folder / f).is_file() for f in CIFAR_FILES):
        _download("cifar10", root)
    if not all((folder / f).is_file() for f in CIFAR_FILES):
        raise _missing("cifar10", [f"{CIFAR_DIR}/{f}" for f in CIFAR_FILES], [folder])
    return folder


def _check_cifar(root: Path) -> None:
    """Cheap: the files exist, are non-empty and end with the pickle STOP opcode ``.`` (catches truncation;
    damage inside a pickle is only caught when it is read)."""
    folder = _cifar_folder(root, False)
    for f in CIFAR_FILES:
        path = folder / f
        if (size := path.stat().st_size) == 0:
            raise _corrupt("cifar10", path, "the file is empty, 0 bytes", _cifar_fix(folder))
        with path.open("rb") as fh:
            fh.seek(size - 1)
            if fh.read(1) != b".":
                raise _corrupt("cifar10", path, "truncated pickle: it does not end with the STOP opcode",
                               _cifar_fix(folder))


# ---------------------------------------------------------------- fashion-mnist-mini (.npz in the repository)


def _mini_places(root: Path) -> list[Path]:
    return [root, REPO_DATA] if root.resolve() != REPO_DATA else [root]


def _mini_path(root: Path) -> Path:
    places = _mini_places(root)
    for d in places:
        if (d / MINI_FILE).is_file():
            return d / MINI_FILE
    raise _missing("fashion-mnist-mini", [MINI_FILE], places,
                   f" It is part of the repository; rebuild it with {MINI_REBUILD}.")


def _mini_expected_sha() -> str | None:
    f = REPO_DATA / MINI_SHA_FILE
    return f.read_text().split()[0] if f.is_file() else None


def _mini_corrupt(path: Path, problem: str) -> CorruptDataError:
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    want = _mini_expected_sha() or f"(checksum file {REPO_DATA / MINI_SHA_FILE} is missing too)"
    fix = (f"restore data/{MINI_FILE} from git (git checkout -- data/{MINI_FILE}) or rebuild it with"
           f" `{MINI_REBUILD}` (reads the Debian package dataset-fashion-mnist; `--check` verifies the checksum)")
    if path.resolve().parent != REPO_DATA:
        fix += f"; or delete this copy, and the repository's {REPO_DATA / MINI_FILE} is used"
    return _corrupt("fashion-mnist-mini", path, f"{problem}; its SHA-256 is {got}, a good copy's is {want}"
                    f" ({REPO_DATA / MINI_SHA_FILE})", fix)


@functools.lru_cache(maxsize=None)
def _read_mini(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.stat().st_size == 0:
        raise _mini_corrupt(path, "the file is empty, 0 bytes")
    with path.open("rb") as fh:  # errors opening the file (permissions) are not corruption
        try:
            with np.load(fh, allow_pickle=False) as z:
                x, y = z["images"], z["labels"]
        # damaged bytes raise many types (measured by flipping bytes: BadZipFile, zlib.error, EOFError,
        # KeyError, ValueError, OSError, tokenize.TokenError)
        except Exception as e:  # noqa: BLE001
            raise _mini_corrupt(path, f"corrupted or truncated .npz: {_problem(e)}") from e
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),) or not len(y) \
            or y.max() > 9:
        raise _mini_corrupt(path, f"unexpected arrays: images {x.shape} {x.dtype}, labels {y.shape} {y.dtype}")
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _check_mini(root: Path) -> None:
    """Cheap: the SHA-256 of the file (5 ms) matches data/fashion-mnist-mini.sha256; otherwise read it (50 ms)."""
    path = _mini_path(root)
    if hashlib.sha256(path.read_bytes()).hexdigest() != _mini_expected_sha():
        _read_mini(path)


# ---------------------------------------------------------------- generated / packaged datasets


@functools.lru_cache(maxsize=None)
def _make_mnist1d(num_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train split of MNIST-1D from mnist1d's default generator args (``num_samples`` overridden if given),
    never downloaded; restores the global numpy/python RNGs that the generator reseeds."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    if num_samples is not None:
        args.num_samples = num_samples
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, y = np.asarray(d["x"], dtype=np.float32), np.asarray(d["y"], dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _needs_module(name: str, module: str, package: str) -> Callable[[Path], None]:
    """Check for a dataset made by a Python package: the package is installed (found without importing it)."""
    def check(root: Path) -> None:
        if importlib.util.find_spec(module) is None:
            raise DataError(f"dataset {name!r} needs the Python package {package!r}, which is not installed here:"
                            f" pip install {package} (version pinned in pyproject.toml)")

    return check


# ---------------------------------------------------------------- the registered datasets


@DATASETS.register("digits", train_size=1797, label="Digits 8×8", size=1797, num_classes=10, input_shape=(1, 8, 8), offline=True,
                   class_counts=(178, 182, 177, 183, 181, 182, 181, 179, 174, 180),
                   check=_needs_module("digits", "sklearn", "scikit-learn"))
def _digits(root: Path, download: bool) -> Source:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Source(d.data, d.target, "8x8 scikit-learn digits (1,797 examples), pixel/16", 16.0)


@DATASETS.register("mnist1d", train_size=4000, label="MNIST-1D", size=4000, num_classes=10, input_shape=(40,), offline=True,
                   class_counts=(398, 396, 411, 394, 394, 402, 401, 404, 402, 398),
                   check=_needs_module("mnist1d", "mnist1d", "mnist1d"))
def _mnist1d(root: Path, download: bool) -> Source:
    x, y = _make_mnist1d()
    return Source(x, y, "MNIST-1D generated locally with mnist1d's default args (seed 42), train split (4,000"
                  " examples), already standardised by the generator (global mean 0, std 1 over all 5,000"
                  " generated samples)")


@DATASETS.register("mnist1d-large", train_size=10000, label="MNIST-1D (10k)", size=10_000, num_classes=10, input_shape=(40,),
                   offline=True, class_counts=(996, 994, 1018, 994, 989, 986, 1020, 1012, 990, 1001),
                   check=_needs_module("mnist1d-large", "mnist1d", "mnist1d"))
def _mnist1d_large(root: Path, download: bool) -> Source:
    x, y = _make_mnist1d(MNIST1D_LARGE_SAMPLES)
    return Source(x, y, f"MNIST-1D generated locally with mnist1d's default args (seed 42) but num_samples="
                  f"{MNIST1D_LARGE_SAMPLES:,}, train split (10,000 examples), already standardised by the generator"
                  f" (global mean 0, std 1 over all {MNIST1D_LARGE_SAMPLES:,} generated samples)")


@DATASETS.register("fashion-mnist-mini", train_size=8192, label="Fashion-MNIST-mini", size=8192, num_classes=10,
                   input_shape=(1, 28, 28), offline=True,
                   class_counts=(819, 819, 819, 819, 820, 819, 820, 819, 819, 819), check=_check_mini)
def _fashion_mnist_mini(root: Path, download: bool) -> Source:
    path = _mini_path(root)
    x, y = _read_mini(path)
    return Source(x.reshape(len(x), -1), y, f"Fashion-MNIST-mini ({len(y)}-image class-balanced subset of the"
                  f" train split, {path}), pixel/255", 255.0)


@DATASETS.register("fashion-mnist", train_size=60000, label="Fashion-MNIST", size=None, num_classes=10, input_shape=(1, 28, 28),
                   offline=False, class_counts=_idx_counts("fashion-mnist"), check=_check_idx("fashion-mnist"))
def _fashion_mnist(root: Path, download: bool) -> Source:
    return _load_idx("fashion-mnist", root, download)


@DATASETS.register("mnist", train_size=60000, label="MNIST", size=None, num_classes=10, input_shape=(1, 28, 28), offline=False,
                   class_counts=_idx_counts("mnist"), check=_check_idx("mnist"))
def _mnist(root: Path, download: bool) -> Source:
    return _load_idx("mnist", root, download)


@DATASETS.register("cifar10", train_size=50000, label="CIFAR-10", size=None, num_classes=10, input_shape=(3, 32, 32), offline=False,
                   class_counts=None, check=_check_cifar)
def _cifar10(root: Path, download: bool) -> Source:
    folder = _cifar_folder(root, download)
    x, y = _read_cifar(folder)
    return Source(x, y, f"CIFAR-10 training batches 1-5 (3x32x32, CHW order) from {folder}, pixel/255", 255.0)


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
    check = DATASETS.entry(name).meta.get("check")
    if check is not None:
        check(Path(root))


def available_size(name: str, classes: int | Sequence[int] | None = None, root: str | Path = "data") -> int | None:
    """Number of training examples of ``name`` in the class selection ``classes`` (as in :func:`load_dataset`),
    or None when that is not known cheaply (files not found, or labels stored inside the data files: cifar10).
    For ``mnist``/``fashion-mnist`` it reads the small labels file."""
    entry = DATASETS.entry(name)
    keep, _ = _select_classes(entry.meta["num_classes"], classes)
    counts = entry.meta.get("class_counts")
    if callable(counts):
        counts = counts(Path(root))
    return None if counts is None else int(sum(counts[c] for c in keep))


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
