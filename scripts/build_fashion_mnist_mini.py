"""Rebuild data/fashion-mnist-mini.npz byte-identically from the official Fashion-MNIST IDX files.

The subset is ``eoslib.data.balanced_subset(train_labels, 8192, numpy.random.default_rng(0))``: 819 or 820
train images per class, kept in their original order, stored as uint8 ``images`` (8192×28×28) and ``labels``.
The zip is written with fixed timestamps so the bytes (and the SHA-256 in data/fashion-mnist-mini.sha256)
are reproducible.

    python scripts/build_fashion_mnist_mini.py                  # rebuild into data/ and verify
    python scripts/build_fashion_mnist_mini.py --source DIR     # IDX .gz files from DIR
    python scripts/build_fashion_mnist_mini.py --check          # only verify data/ against the checksum
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from eoslib.data import DEBIAN_FASHION_MNIST, IDX_FILES, MINI_FILE, balanced_subset  # noqa: E402
from eoslib.datasets.idx import read_idx  # noqa: E402

N, SEED = 8192, 0
SHA_FILE = "fashion-mnist-mini.sha256"


def build(source: Path) -> bytes:
    """The .npz file's bytes, made from ``source``/train-{images-idx3,labels-idx1}-ubyte.gz."""
    images, labels = (read_idx(source / f"{f}.gz") for f in IDX_FILES)
    idx = balanced_subset(labels, N, np.random.default_rng(SEED))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for key, arr in (("images", images[idx]), ("labels", labels[idx])):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def expected_sha(out: Path) -> str:
    return (out / SHA_FILE).read_text().split()[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEBIAN_FASHION_MNIST, help="folder with the IDX .gz files")
    ap.add_argument("--out", type=Path, default=REPO / "data", help="folder to write (and holding the .sha256)")
    ap.add_argument("--check", action="store_true", help="only verify OUT/fashion-mnist-mini.npz")
    ap.add_argument("--write-sha", action="store_true", help="(re)write OUT/fashion-mnist-mini.sha256")
    args = ap.parse_args(argv)
    path = args.out / MINI_FILE
    if not args.check:
        data = build(args.source)
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if args.write_sha:
        (args.out / SHA_FILE).write_text(f"{digest}  {MINI_FILE}\n")
        print(f"wrote {args.out / SHA_FILE}")
    want = expected_sha(args.out if (args.out / SHA_FILE).exists() else REPO / "data")
    if digest != want:
        print(f"SHA-256 mismatch for {path}: got {digest}, expected {want}"
              " (if the arrays are equal, the local zlib compresses differently)", file=sys.stderr)
        return 1
    print(f"OK sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
