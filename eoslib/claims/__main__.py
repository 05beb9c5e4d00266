"""``python -m eoslib.claims [--root R]``: the claims ledger → CLAIMS.md, metrics/claims.json (``eoslib ledger``).
``python -m eoslib.claims lock [--check]``: write (add new versions) or check claims.lock (``eoslib claims-lock``).
"""
from __future__ import annotations

import argparse
import sys


def _ledger(root: str) -> int:
    from ..io import read_params
    from . import lock
    from .ledger import write_ledger

    found = lock.check()  # a registered version edited after registration (or never locked) is not judged
    if found:
        for m in found:
            print(f"error: {m}", file=sys.stderr)
        print("error: the claims' criteria differ from eoslib/claims/claims.lock; a registered version is frozen "
              "(add a new version and lock it with `python -m eoslib claims-lock`)", file=sys.stderr)
        return 1

    for k, r in write_ledger(read_params(root), root).items():
        print(f"{k}: {r['verdict']} — {r['summary']}")
    return 0


def _lock(check_only: bool, path: str | None) -> int:
    from . import lock

    path = path or lock.LOCK_FILE
    if check_only:
        found = lock.check(path)
        for m in found:
            print(m, file=sys.stderr)
        print(f"{path}: {'ok' if not found else f'{len(found)} mismatch(es)'}")
        return 1 if found else 0
    try:
        added = lock.write(path)
    except lock.LockError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{path}: " + (f"added {', '.join(added)}" if added else "up to date"))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eoslib.claims", description="the claims ledger, or its lock")
    ap.add_argument("what", nargs="?", choices=("ledger", "lock"), default="ledger",
                    help="ledger (default): CLAIMS.md and metrics/claims.json; lock: claims.lock")
    ap.add_argument("--root", default=".", help="profile folder holding params.yaml (ledger)")
    ap.add_argument("--check", action="store_true", help="lock: check claims.lock against the code, write nothing")
    ap.add_argument("--lock-file", default=None, help="lock: the lock file (default: claims.lock of the repository)")
    a = ap.parse_args(argv)
    if a.what == "lock":
        return _lock(a.check, a.lock_file)
    if a.check or a.lock_file:
        ap.error("--check and --lock-file go with `lock`")
    return _ledger(a.root)


if __name__ == "__main__":
    raise SystemExit(main())
