"""The certificates of the stored numbers a claim reads: how many solves behind them did not converge.

Every eigen- and singular-solve of the library stores a certificate beside the number it produces: in any stored
table, a certified quantity ``X`` has a boolean column ``X_converged`` (the solve met its tolerance) and a float
column ``X_residual`` (its relative residual) — ``eig_converged`` for a solver's eigen-solve in a trajectory,
``hess_converged`` for a measured operator, ``sharpness_converged`` at an end point, ``chain_converged`` for an
alignment term — and an integer ``X_corrected`` (``eig_corrected``) counts the warm solves that stopped unconverged
and were redone cold (those numbers did converge; the count says how often the fallback was needed).

What counts: one *check* per non-empty ``*_converged`` cell of a table (a row that measured three operators holds
three checks; a row where the solve did not run holds none), *unconverged* when that cell is false. A verdict that
rests on an unconverged number is not a verdict: the ledger calls it *uncertified* (:mod:`.ledger`). A table
without any ``*_converged`` column was written before certificates were stored: it is read (not refused) and
counted under ``without_certificate``.

The tables are the ones the claims' judges load (:mod:`eoslib.results`): per result kind ``<kind>`` (a run kind,
the first component of a run's name) the ``trajectory.csv`` and, where present, ``distances.csv`` of every finished
run of that kind; ``endpoints`` the end-point tables ``runs/endpoints/*.csv`` (:func:`eoslib.results.endpoint_table`),
``endpoints:<kind>`` their rows of one run kind (e.g. ``endpoints:sweep``: what the power-law fits read).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..results import run_names, runs_dir

CONVERGED, CORRECTED = "_converged", "_corrected"
#: the result kind of the end-point tables (``runs/endpoints/*.csv``)
ENDPOINTS = "endpoints"
#: the tables of a run folder that hold rows (``config.json`` and ``summary.json`` are not tables)
RUN_TABLES = ("trajectory.csv", "distances.csv")
_FALSE = frozenset({"false", "0", "0.0"})


def _wanted(col: str) -> bool:
    return col.endswith((CONVERGED, CORRECTED)) or col == "kind"


@functools.lru_cache(maxsize=4096)
def _certificate_columns(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    """The certificate columns (and ``kind``) of one stored table, cached while the file is unchanged."""
    return pd.read_csv(path, usecols=_wanted)


def _read(path: Path) -> pd.DataFrame:
    st = path.stat()
    return _certificate_columns(str(path), st.st_mtime_ns, st.st_size)


def tables(root: str | os.PathLike, kind: str) -> list[tuple[Path, str | None]]:
    """The stored tables of result kind ``kind`` under the profile ``root``: (file, run kind whose rows count —
    None for all rows)."""
    base, _, rows_of = kind.partition(":")
    if base == ENDPOINTS:
        return [(f, rows_of or None) for f in sorted((runs_dir(root) / ENDPOINTS).glob("*.csv"))]
    folders = [runs_dir(root) / name for name in run_names(base, root)]
    return [(d / t, None) for d in folders for t in RUN_TABLES if (d / t).exists()]


def all_kinds(root: str | os.PathLike) -> tuple[str, ...]:
    """Every result kind stored under ``root``: the run kinds with a finished run, and ``endpoints``."""
    return (*sorted({n.split("/", 1)[0] for n in run_names(None, root)}), ENDPOINTS)


def _corrections(col: pd.Series) -> int:
    """The sum of a ``*_corrected`` column (counts, or booleans — also as text — counting 1 when true)."""
    text = col.map(lambda x: {"true": 1, "false": 0}.get(str(x).strip().lower(), x))
    return int(pd.to_numeric(text, errors="coerce").fillna(0).sum())


def _unconverged(col: pd.Series) -> tuple[int, int]:
    """(checks, false ones) of a ``*_converged`` column (bools, or their text after a CSV round trip)."""
    v = col.dropna()
    return len(v), int(v.map(lambda x: str(x).strip().lower() in _FALSE).sum())


def _count_table(tab: pd.DataFrame, rows_of: str | None) -> tuple[dict[str, dict[str, int]], int]:
    """Per ``*_converged`` column of one table: checks and unconverged; and the summed corrections."""
    if rows_of is not None and "kind" in tab:
        tab = tab[tab["kind"] == rows_of]
    cols = {}
    for c in (c for c in tab if c.endswith(CONVERGED)):
        n, bad = _unconverged(tab[c])
        cols[c] = {"checked": n, "unconverged": bad}
    return cols, sum(_corrections(tab[c]) for c in tab if c.endswith(CORRECTED))


def empty() -> dict:
    """:func:`failures` of no table."""
    return {"checked": 0, "unconverged": 0, "corrections": 0, "tables": 0, "without_certificate": 0,
            "by_column": {}}


def failures(root: str | os.PathLike, kinds: Iterable[str] | None = None) -> dict:
    """The certificates of every stored table of the result ``kinds`` (default: every kind under ``root``):
    ``checked`` (``*_converged`` cells), ``unconverged`` (those that are false), ``corrections`` (the sum of the
    ``*_corrected`` columns), ``tables`` (read), ``without_certificate`` (tables with no ``*_converged`` column)
    and ``by_column``: kind → column → ``{"checked", "unconverged"}``. A table that cannot be found is skipped."""
    out = empty()
    for kind in all_kinds(root) if kinds is None else kinds:
        for path, rows_of in tables(root, kind):
            try:
                tab = _read(path)
            except (FileNotFoundError, pd.errors.EmptyDataError):
                continue
            cols, fixes = _count_table(tab, rows_of)
            out["tables"] += 1
            out["without_certificate"] += not cols
            out["corrections"] += fixes
            for c, n in cols.items():
                acc = out["by_column"].setdefault(kind, {}).setdefault(c, {"checked": 0, "unconverged": 0})
                for k in ("checked", "unconverged"):
                    acc[k] += n[k]
                    out[k] += n[k]
    return out


def where(f: dict) -> str:
    """Where the unconverged numbers of :func:`failures` ``f`` are: ``traj: eig_converged 3, hess_converged 1; …``."""
    return "; ".join(f"{kind}: " + ", ".join(f"{c} {n['unconverged']}" for c, n in cols.items() if n["unconverged"])
                     for kind, cols in f["by_column"].items() if any(n["unconverged"] for n in cols.values()))


def note(f: dict) -> str | None:
    """What :func:`failures` ``f`` could not check: no table at all, or tables written without certificates."""
    if not f["tables"]:
        return "no stored table found"
    if f["without_certificate"] == f["tables"]:
        return "no certificate stored"
    if f["without_certificate"]:
        return f"no certificate stored in {f['without_certificate']} of {f['tables']} tables"
    return None


def entry(f: dict) -> dict:
    """The ledger row's ``certificates`` field: ``checked``, ``unconverged``, ``corrections`` and ``tables``; with
    ``unconverged_in`` (kind → column → count) where some did not converge, and ``note`` (:func:`note`)."""
    out = {k: f[k] for k in ("checked", "unconverged", "corrections", "tables")}
    if f["unconverged"]:
        out["unconverged_in"] = {kind: {c: n["unconverged"] for c, n in cols.items() if n["unconverged"]}
                                 for kind, cols in f["by_column"].items()
                                 if any(n["unconverged"] for n in cols.values())}
    text = note(f)
    return out | ({"note": text} if text else {})


def describe(f: dict) -> str:
    """The summary's prefix for an uncertified verdict: ``uncertified: 3 of 1204 certified solves unconverged
    (traj: eig_converged 3)``."""
    return f"uncertified: {f['unconverged']} of {f['checked']} certified solves unconverged ({where(f)})"


__all__ = ["failures", "tables", "all_kinds", "where", "note", "entry", "describe", "empty", "ENDPOINTS"]
