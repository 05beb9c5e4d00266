"""IDX files (the MNIST format), shared by ``mnist`` and ``fashion-mnist``: :func:`read_idx` reads one file, an
:class:`IdxDataset` finds, checks and loads a dataset's pair of train files (:data:`eoslib.data.IDX_FILES`)."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TypeVar

import numpy as np

from ..data import (DOWNLOAD_HINT, IDX_FILES, CorruptDataError, Source, corrupt, error_text, missing,
                    torchvision_download, unreadable, with_fix)

R = TypeVar("R")


def _shape(head: bytes, path: Path) -> tuple[int, ...]:
    """Shape from the IDX header ``00 00 08 ndim`` + ndim big-endian int32 sizes (unsigned-byte data only)."""
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] != 0x08:
        raise unreadable(path, f"not an unsigned-byte IDX file: magic {head[:4].hex() or 'missing'}")
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        raise unreadable(path, f"IDX header cut short at {len(head)} bytes")
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
        raise unreadable(path, "the file is empty, 0 bytes")
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; truncated → EOFError
            raise unreadable(path, f"corrupted or truncated gzip: {error_text(e)}") from e
    shape = _shape(raw, path)
    arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(shape))
    if arr.size != int(np.prod(shape)):
        raise unreadable(path, f"truncated or padded: the header says shape {shape}, {int(np.prod(shape))} data"
                               f" bytes, the file holds {arr.size}")
    return arr.reshape(shape)


def _header_checked(path: Path) -> tuple[int, ...]:
    """The shape in an IDX file's header, checked cheaply against the file size (raw) or the gzip trailer's
    uncompressed length (``.gz``, RFC 1952 ISIZE) without reading the data. Catches empty and truncated files;
    a flipped byte inside compressed data is caught only by the CRC when :func:`read_idx` reads the file."""
    size = path.stat().st_size
    if size == 0:
        raise unreadable(path, "the file is empty, 0 bytes")
    if path.suffix != ".gz":
        with path.open("rb") as f:
            shape = _shape(_read_head(f), path)
        if size != (want := 4 + 4 * len(shape) + int(np.prod(shape))):
            raise unreadable(path, f"truncated or padded: the header says shape {shape}, {want} bytes, the file"
                                   f" has {size}")
        return shape
    try:
        with gzip.open(path, "rb") as f:
            head = _read_head(f)
    except (OSError, EOFError, zlib.error) as e:
        raise unreadable(path, f"corrupted or truncated gzip: {error_text(e)}") from e
    shape = _shape(head, path)
    want = 4 + 4 * len(shape) + int(np.prod(shape))
    with path.open("rb") as f:
        f.seek(max(size - 4, 0))
        isize = int.from_bytes(f.read(4), "little")  # uncompressed length mod 2**32
    if isize != want % 2**32:
        raise unreadable(path, f"truncated or corrupted gzip: the header says shape {shape}, {want} bytes"
                               f" uncompressed, the gzip trailer says {isize}")
    return shape


def _find(path: Path) -> Path | None:
    """``path.gz`` if it exists, else ``path`` if it exists."""
    gz = path.with_name(path.name + ".gz")
    return gz if gz.is_file() else path if path.is_file() else None


@dataclasses.dataclass(frozen=True)
class IdxDataset:
    """A dataset stored as the IDX pair :data:`~eoslib.data.IDX_FILES` (N×28×28 images, N labels in 0..9),
    found under ``root`` in its own or torchvision's layout, fetched by torchvision with ``download=True``.
    A subclass adds places to look and ways to get the files (``fashion-mnist``: the Debian package)."""

    name: str  #: catalog name, also a folder under root
    torchvision: str  #: the ``torchvision.datasets`` class, also a folder under root (torchvision's layout)
    title: str  #: in the description
    source: str  #: where to copy good files from (in a damaged file's fix)

    def dirs(self, root: Path) -> list[Path]:
        """The folders searched, in order."""
        return [root / self.name, root / self.name / "raw", root / self.torchvision, root / self.torchvision / "raw"]

    def hints(self) -> Sequence[str]:
        """Ways to get the files, listed before copying them into ``root``."""
        return ()

    def fix(self, path: Path) -> str:
        """How to replace the damaged file ``path``."""
        return (f"delete it, then pass download=True (torchvision fetches a fresh, MD5-checked copy) or copy"
                f" {path.name} from {self.source} into {path.parent}")

    def locate(self, root: Path) -> tuple[Path, Path] | None:
        for d in self.dirs(root):
            found = [_find(d / f) for f in IDX_FILES]
            if all(found):
                return found[0], found[1]  # type: ignore[return-value]
        return None

    def _locate_or_fail(self, root: Path, download: bool) -> tuple[Path, Path]:
        paths = self.locate(root)
        if paths is None and download:
            torchvision_download(self.name, self.torchvision, root)
            paths = self.locate(root)
        if paths is None:
            files = [f"{f}.gz (or uncompressed {f})" for f in IDX_FILES]
            raise missing(self.name, files, self.dirs(root), before=self.hints(), after=[DOWNLOAD_HINT])
        return paths

    def _read(self, path: Path, read: Callable[[Path], R]) -> R:
        """``read(path)`` (read_idx or the header check), a corrupt file raising the dataset-level error."""
        try:
            return read(path)
        except CorruptDataError as e:
            raise with_fix(self.name, e, self.fix(path)) from e

    def _check_pair(self, paths: tuple[Path, Path], images: tuple[int, ...], labels: np.ndarray) -> None:
        if len(images) != 3 or images[1:] != (28, 28) or labels.shape != images[:1]:
            raise corrupt(self.name, paths[0].parent, f"unexpected IDX shapes {images} (images) / {labels.shape}"
                          " (labels), want N×28×28 and N", self.fix(paths[0]))
        if labels.size and labels.max() > 9:
            raise corrupt(self.name, paths[1], f"labels up to {labels.max()}, want 0..9", self.fix(paths[1]))

    def load(self, root: Path, download: bool) -> Source:
        paths = self._locate_or_fail(root, download)
        x, y = self._read(paths[0], read_idx), self._read(paths[1], read_idx)
        self._check_pair(paths, x.shape, y)
        desc = f"{self.title} train split (28x28 grayscale) from {paths[0].parent}, pixel/255"
        return Source(x.reshape(len(x), -1), y, desc, 255.0)

    def check(self, root: Path) -> None:
        """Cheap: the images file's header and length, and the (small) labels file read in full."""
        paths = self._locate_or_fail(root, False)
        shape = self._read(paths[0], _header_checked)
        self._check_pair(paths, shape, self._read(paths[1], read_idx))

    def class_counts(self, root: Path) -> tuple[int, ...] | None:
        """Examples per class from the labels file (60 kB), None if the files are not found."""
        paths = self.locate(root)
        if paths is None:
            return None
        return tuple(np.bincount(self._read(paths[1], read_idx), minlength=10).tolist())
