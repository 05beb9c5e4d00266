"""The run folders a judge reads (through :mod:`eoslib.results`), and the per-trajectory-run judging loop."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..results import load_run, run_names
from .framework import NotMeasured


def load_kind(kind: str, root: str | Path) -> list[dict]:
    """Every finished run of ``kind`` (:func:`eoslib.results.load_run` dicts); NotMeasured if there is none."""
    names = run_names(kind, root)
    if not names:
        raise NotMeasured(f"no finished {kind} runs")
    return [load_run(n, root) for n in names]


def run_key(r: dict) -> str:
    """A trajectory run's key in the ledger: its name without the kind (``<setting>/seed<s>``)."""
    return r["name"].split("/", 1)[1]


def per_traj_run(root: str | Path, judge: Callable[[pd.DataFrame], dict | None]) -> tuple[dict, list[bool]]:
    """``judge(table) -> dict`` (with an ``"ok"`` key) for every measured trajectory run that has the columns
    the judge needs (it returns None otherwise), keyed by ``<setting>/seed<s>``; with the judged oks (an ``ok``
    of None — the run never reached the judged part — is reported, not judged)."""
    per = {}
    for r in load_kind("traj", root):
        out = judge(r["table"])
        if out is not None:
            per[run_key(r)] = out
    if not per:
        raise NotMeasured("no measured trajectory run has the columns this claim needs")
    oks = [v["ok"] for v in per.values() if v["ok"] is not None]
    if not oks:
        raise NotMeasured("no measured run reached the part of training this claim judges")
    return per, oks
