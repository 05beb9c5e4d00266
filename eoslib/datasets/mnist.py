"""``mnist``: the MNIST train split from its IDX files under ``root`` (or fetched by torchvision), pixel/255."""
from __future__ import annotations

from pathlib import Path

from ..data import Source
from .idx import IdxDataset

MNIST = IdxDataset("mnist", torchvision="MNIST", title="MNIST", source="https://ossci-datasets.s3.amazonaws.com/mnist/")


def load(root: Path, download: bool) -> Source:
    return MNIST.load(root, download)


def check(root: Path) -> None:
    MNIST.check(root)


def class_counts(root: Path) -> tuple[int, ...] | None:
    return MNIST.class_counts(root)
