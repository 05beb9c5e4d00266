"""``fashion-mnist``: the Fashion-MNIST train split from its IDX files under ``root``, else from the Debian
package ``dataset-fashion-mnist`` (:data:`eoslib.data.DEBIAN_FASHION_MNIST`), or fetched by torchvision;
pixel/255."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .. import data
from ..data import Source
from .idx import IdxDataset


class _FashionMnist(IdxDataset):
    """Also looks in the Debian package's folder (read when called: tests redirect it)."""

    def dirs(self, root: Path) -> list[Path]:
        return super().dirs(root) + [data.DEBIAN_FASHION_MNIST]

    def hints(self) -> Sequence[str]:
        return [f"install the Debian package: apt-get install dataset-fashion-mnist (→ {data.DEBIAN_FASHION_MNIST})"]

    def fix(self, path: Path) -> str:
        if path.parent == data.DEBIAN_FASHION_MNIST:
            return "reinstall the Debian package: sudo apt-get install --reinstall dataset-fashion-mnist"
        return super().fix(path)


FASHION_MNIST = _FashionMnist("fashion-mnist", torchvision="FashionMNIST", title="Fashion-MNIST",
                              source="https://github.com/zalandoresearch/fashion-mnist")


def load(root: Path, download: bool) -> Source:
    return FASHION_MNIST.load(root, download)


def check(root: Path) -> None:
    FASHION_MNIST.check(root)


def class_counts(root: Path) -> tuple[int, ...] | None:
    return FASHION_MNIST.class_counts(root)
