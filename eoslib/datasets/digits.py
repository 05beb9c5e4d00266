"""``digits``: scikit-learn's 8×8 handwritten digits (1,797 images, shipped with scikit-learn), pixel/16."""
from __future__ import annotations

from pathlib import Path

from ..data import Source, require_package


def load(root: Path, download: bool) -> Source:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Source(d.data, d.target, "8x8 scikit-learn digits (1,797 examples), pixel/16", 16.0)


def check(root: Path) -> None:
    require_package("digits", "sklearn", "scikit-learn")
