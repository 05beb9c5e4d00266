"""claims.lock: every registered criteria version, frozen.

One entry per claim and version (``claims.<key>.v<k>`` in ``eoslib/claims/claims.lock``, sorted JSON):

- ``criteria_sha256`` = sha256 of the canonical JSON (sorted keys, no spaces) of
  ``{"class": <the criteria dataclass's name>, "values": <its fields and values>}``; the values are also stored
  in plain text (``values``) so that a change can be named field by field;
- ``source_sha256`` = sha256 of the source (:func:`inspect.getsource`) of the judge function, then of the criteria
  class, each dedented with blank lines, comment-only lines and trailing whitespace removed (so re-spacing a
  function or commenting it does not count as a change; any other edit, docstrings included, does).

``write`` adds the versions that are not in the lock yet and refuses to change an entry that is (a registered
version is frozen: add a new version instead); ``check`` lists every mismatch. ``python -m eoslib claims-lock``
writes, ``--check`` checks (CI: tests/test_claims_lock.py).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..io import write_text
from .framework import Claim, Version

#: the lock of the repository (beside eoslib/)
LOCK_FILE = Path(__file__).resolve().parent / "claims.lock"

ABOUT = ("Frozen criteria versions of the claims ledger (eoslib/claims/<claim>.py): per claim and version, sha256 of "
         "the criteria dataclass (class name, fields, values) and of the judge's and the class's source. Written by "
         "`python -m eoslib claims-lock`, which only adds new versions; checked by `python -m eoslib claims-lock "
         "--check` and tests/test_claims_lock.py. A registered version is never changed: add a new version instead.")


class LockError(ValueError):
    """A registered criteria version differs from claims.lock (the message names claim and version)."""


@dataclass(frozen=True)
class Mismatch:
    """One difference between the code and the lock: ``kind`` ∈ unlocked (a version not in the lock yet),
    criteria (its values changed), source (its judge or criteria class changed), removed (locked, not defined)."""

    claim: str
    version: str
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.claim} {self.version}: {self.message}"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def normalised_source(obj: object) -> str:
    """``inspect.getsource(obj)`` dedented, without blank lines, comment-only lines and trailing whitespace."""
    lines = textwrap.dedent(inspect.getsource(obj)).splitlines()
    return "\n".join(s.rstrip() for s in lines if s.strip() and not s.lstrip().startswith("#"))


def entry(version: Version) -> dict:
    """The lock entry of one criteria version."""
    crit = version.criteria
    criteria = {"class": type(crit).__name__, "values": crit.values()}
    source = normalised_source(version.judge) + "\n" + normalised_source(type(crit))
    return criteria | {"criteria_sha256": _sha256(_canonical(criteria)), "source_sha256": _sha256(source)}


def current(claims: dict[str, Claim] | None = None) -> dict[str, dict[str, dict]]:
    """The lock entries the code gives: claim key → ``v<k>`` → :func:`entry`."""
    if claims is None:
        from .ledger import CLAIMS as claims
    return {key: {f"v{n}": entry(v) for n, v in sorted(c.versions.items())} for key, c in claims.items()}


def read(path: str | Path = LOCK_FILE) -> dict[str, dict[str, dict]]:
    """The locked entries (claim key → ``v<k>`` → entry); empty if there is no lock file."""
    path = Path(path)
    return json.loads(path.read_text())["claims"] if path.exists() else {}


def _changed_fields(old: dict, new: dict) -> str:
    keys = list(dict.fromkeys([*old, *new]))
    return ", ".join(f"{k}: {old.get(k, '(none)')!r} → {new.get(k, '(none)')!r}" for k in keys
                     if old.get(k) != new.get(k))


def mismatches(locked: dict, cur: dict) -> list[Mismatch]:
    """Every difference between the locked entries and the code's, in claim and version order."""
    out = []
    frozen = "a registered version is frozen: add a new version instead"
    for key in dict.fromkeys([*cur, *locked]):
        have, want = cur.get(key, {}), locked.get(key, {})
        for v in sorted(set(have) | set(want), key=lambda s: int(s[1:])):
            new, old = have.get(v), want.get(v)
            if old is None:
                out.append(Mismatch(key, v, "unlocked", "not in claims.lock (run `python -m eoslib claims-lock`)"))
            elif new is None:
                out.append(Mismatch(key, v, "removed", f"in claims.lock but no longer defined; {frozen}"))
            elif new["criteria_sha256"] != old["criteria_sha256"]:
                what = (_changed_fields(old["values"], new["values"]) if old.get("class") == new["class"]
                        else f"class {old.get('class')} → {new['class']}") or "values"
                out.append(Mismatch(key, v, "criteria", f"criteria changed ({what}); {frozen}"))
            elif new["source_sha256"] != old["source_sha256"]:
                out.append(Mismatch(key, v, "source", f"the source of its judge or criteria class changed; {frozen}"))
    return out


def check(path: str | Path = LOCK_FILE, claims: dict[str, Claim] | None = None) -> list[Mismatch]:
    """Every mismatch between the code and the lock at ``path`` (empty: the lock is the code's)."""
    return mismatches(read(path), current(claims))


def write(path: str | Path = LOCK_FILE, claims: dict[str, Claim] | None = None) -> list[str]:
    """Add the versions not yet in the lock at ``path``; return them (``"<claim> v<k>"``). Raises
    :class:`LockError` (naming every claim and version) if a locked version changed or disappeared."""
    locked, cur = read(path), current(claims)
    found = mismatches(locked, cur)
    bad = [m for m in found if m.kind != "unlocked"]
    if bad:
        raise LockError("claims.lock not written:\n" + "\n".join(f"  {m}" for m in bad))
    added = [m for m in found if m.kind == "unlocked"]
    merged = {key: dict(locked.get(key, {})) for key in dict.fromkeys([*locked, *cur])}
    for m in added:
        merged[m.claim][m.version] = cur[m.claim][m.version]
    text = json.dumps({"about": ABOUT, "claims": merged}, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if not Path(path).exists() or Path(path).read_text() != text:
        write_text(text, path)
    return [f"{m.claim} {m.version}" for m in added]
