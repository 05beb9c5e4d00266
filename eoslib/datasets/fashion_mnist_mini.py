"""``fashion-mnist-mini``: 8,192 Fashion-MNIST train images (819 or 820 per class) stored in the repository as
``data/fashion-mnist-mini.npz`` (checksum in ``data/fashion-mnist-mini.sha256``; rebuilt byte-identically by
``scripts/build_fashion_mnist_mini.py``), pixel/255. A copy under ``root`` is used first."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from .. import data
from ..data import MINI_FILE, MINI_REBUILD, MINI_SHA_FILE, CorruptDataError, Source, corrupt, error_text, missing


def _places(root: Path) -> list[Path]:
    return [root, data.REPO_DATA] if root.resolve() != data.REPO_DATA else [root]


def _path(root: Path) -> Path:
    places = _places(root)
    for d in places:
        if (d / MINI_FILE).is_file():
            return d / MINI_FILE
    raise missing("fashion-mnist-mini", [MINI_FILE], places,
                  extra=f" It is part of the repository; rebuild it with {MINI_REBUILD}.")


def _expected_sha() -> str | None:
    f = data.REPO_DATA / MINI_SHA_FILE
    return f.read_text().split()[0] if f.is_file() else None


def _corrupt(path: Path, problem: str) -> CorruptDataError:
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    want = _expected_sha() or f"(checksum file {data.REPO_DATA / MINI_SHA_FILE} is missing too)"
    fix = (f"restore data/{MINI_FILE} from git (git checkout -- data/{MINI_FILE}) or rebuild it with"
           f" `{MINI_REBUILD}` (reads the Debian package dataset-fashion-mnist; `--check` verifies the checksum)")
    if path.resolve().parent != data.REPO_DATA:
        fix += f"; or delete this copy, and the repository's {data.REPO_DATA / MINI_FILE} is used"
    return corrupt("fashion-mnist-mini", path, f"{problem}; its SHA-256 is {got}, a good copy's is {want}"
                   f" ({data.REPO_DATA / MINI_SHA_FILE})", fix)


@functools.lru_cache(maxsize=None)
def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.stat().st_size == 0:
        raise _corrupt(path, "the file is empty, 0 bytes")
    with path.open("rb") as fh:  # errors opening the file (permissions) are not corruption
        try:
            with np.load(fh, allow_pickle=False) as z:
                x, y = z["images"], z["labels"]
        # damaged bytes raise many types (measured by flipping bytes: BadZipFile, zlib.error, EOFError,
        # KeyError, ValueError, OSError, tokenize.TokenError)
        except Exception as e:  # noqa: BLE001
            raise _corrupt(path, f"corrupted or truncated .npz: {error_text(e)}") from e
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),) or not len(y) \
            or y.max() > 9:
        raise _corrupt(path, f"unexpected arrays: images {x.shape} {x.dtype}, labels {y.shape} {y.dtype}")
    x.flags.writeable = y.flags.writeable = False
    return x, y


def load(root: Path, download: bool) -> Source:
    path = _path(root)
    x, y = _read(path)
    return Source(x.reshape(len(x), -1), y, f"Fashion-MNIST-mini ({len(y)}-image class-balanced subset of the"
                  f" train split, {path}), pixel/255", 255.0)


def check(root: Path) -> None:
    """Cheap: the SHA-256 of the file (5 ms) matches data/fashion-mnist-mini.sha256; otherwise read it (50 ms)."""
    path = _path(root)
    if hashlib.sha256(path.read_bytes()).hexdigest() != _expected_sha():
        _read(path)
