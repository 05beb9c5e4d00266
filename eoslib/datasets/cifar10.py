"""``cifar10``: the CIFAR-10 training batches 1-5 (python pickles under ``root/cifar-10-batches-py``, or fetched
by torchvision), 3×32×32 flattened in the pickles' CHW order, pixel/255."""
from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np

from ..data import (CIFAR_DIR, CIFAR_FILES, CIFAR_URL, DOWNLOAD_HINT, Source, corrupt, error_text, missing,
                    torchvision_download)


def _fix(folder: Path) -> str:
    return (f"delete {folder} and extract {CIFAR_URL} into {folder.parent} again, or pass download=True after"
            " deleting it (torchvision fetches and MD5-checks the archive)")


@functools.lru_cache(maxsize=None)
def _read(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 python pickles data_batch_1..5 → (N × 3072 uint8 in CHW order, N labels)."""
    xs, ys = [], []
    for f in CIFAR_FILES:
        path = folder / f
        if path.stat().st_size == 0:
            raise corrupt("cifar10", path, "the file is empty, 0 bytes", _fix(folder))
        with open(path, "rb") as fh:  # errors opening the file (permissions) are not corruption
            try:
                batch = pickle.load(fh, encoding="bytes")
                x = np.asarray(batch[b"data"], dtype=np.uint8)
                y = np.asarray(batch[b"labels"], dtype=np.int64)
            # a damaged pickle raises many types (pickle docs: "including but not necessarily limited to
            # AttributeError, EOFError, ImportError, and IndexError"; also UnpicklingError, KeyError, TypeError)
            except Exception as e:  # noqa: BLE001
                raise corrupt("cifar10", path, f"truncated or corrupted pickle: {error_text(e)}", _fix(folder)) from e
        if x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),) or (y.size and not 0 <= y.min() <= y.max() <= 9):
            raise corrupt("cifar10", path, f"unexpected contents: data {x.shape}, labels {y.shape},"
                          " want N×3072 and N labels in 0..9", _fix(folder))
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _folder(root: Path, download: bool) -> Path:
    folder = root / CIFAR_DIR
    if download and not all((folder / f).is_file() for f in CIFAR_FILES):
        torchvision_download("cifar10", "CIFAR10", root)
    if not all((folder / f).is_file() for f in CIFAR_FILES):
        raise missing("cifar10", [f"{CIFAR_DIR}/{f}" for f in CIFAR_FILES], [folder],
                      after=[DOWNLOAD_HINT, f"or extract {CIFAR_URL} into {folder.parent}"])
    return folder


def load(root: Path, download: bool) -> Source:
    folder = _folder(root, download)
    x, y = _read(folder)
    return Source(x, y, f"CIFAR-10 training batches 1-5 (3x32x32, CHW order) from {folder}, pixel/255", 255.0)


def check(root: Path) -> None:
    """Cheap: the files exist, are non-empty and end with the pickle STOP opcode ``.`` (catches truncation;
    damage inside a pickle is only caught when it is read)."""
    folder = _folder(root, False)
    for f in CIFAR_FILES:
        path = folder / f
        if (size := path.stat().st_size) == 0:
            raise corrupt("cifar10", path, "the file is empty, 0 bytes", _fix(folder))
        with path.open("rb") as fh:
            fh.seek(size - 1)
            if fh.read(1) != b".":
                raise corrupt("cifar10", path, "truncated pickle: it does not end with the STOP opcode", _fix(folder))
