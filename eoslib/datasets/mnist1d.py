"""``mnist1d`` and ``mnist1d-large``: MNIST-1D generated locally by the ``mnist1d`` package, never downloaded.

``mnist1d`` is the train split of the generator's default args (4,000 examples); ``mnist1d-large`` the same
with ``num_samples`` = :data:`eoslib.data.MNIST1D_LARGE_SAMPLES` (train split 0.8 → 10,000 examples). The
generator standardises the data itself (global mean 0, std 1 over all generated samples)."""
from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np

from ..data import MNIST1D_LARGE_SAMPLES, Source, require_package


@functools.lru_cache(maxsize=None)
def _make(num_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
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


def load(root: Path, download: bool) -> Source:
    x, y = _make()
    return Source(x, y, "MNIST-1D generated locally with mnist1d's default args (seed 42), train split (4,000"
                  " examples), already standardised by the generator (global mean 0, std 1 over all 5,000"
                  " generated samples)")


def check(root: Path) -> None:
    require_package("mnist1d", "mnist1d", "mnist1d")


def load_large(root: Path, download: bool) -> Source:
    x, y = _make(MNIST1D_LARGE_SAMPLES)
    return Source(x, y, f"MNIST-1D generated locally with mnist1d's default args (seed 42) but num_samples="
                  f"{MNIST1D_LARGE_SAMPLES:,}, train split (10,000 examples), already standardised by the generator"
                  f" (global mean 0, std 1 over all {MNIST1D_LARGE_SAMPLES:,} generated samples)")


def check_large(root: Path) -> None:
    require_package("mnist1d-large", "mnist1d", "mnist1d")
