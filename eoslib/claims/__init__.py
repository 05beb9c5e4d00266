"""The claims ledger: one module per claim, each criteria version a frozen dataclass (CLAIMS.md, metrics/claims.json).

A claim module (``eoslib/claims/<claim>.py``, listed in :data:`CLAIM_MODULES`) holds the claim's statement, its
notebook, and its criteria versions: ``class V<k>(Criteria)``, a frozen dataclass whose field values ARE the
registered thresholds, each with its judge. A version is never edited once registered (``claims.lock`` holds the
hashes of its values and its judge; ``python -m eoslib claims-lock --check``); a changed criterion is a new
version. A profile's ``params.yaml`` only says which versions it registers (``criteria: {C1: [1, 2], …}``); every
registered version is judged, the latest gives the verdict, the earlier ones stay visible ("as first registered").

This module is light on purpose: it imports nothing from eoslib and nothing heavy, so that the params validation
can read :data:`CLAIM_MODULES` without depending on any claim's code. The public API (``judge_claim``,
``build_claims``, ``write_ledger``, ``claim_result``, ``registered_versions``, ``CLAIMS`` and the verdicts,
*uncertified* among them: :mod:`eoslib.claims.certificates`) is
served lazily from :mod:`eoslib.claims.ledger` (PEP 562).
"""
from __future__ import annotations

import importlib
from typing import Any

#: claim key → the module defining it, in ledger order (the rows of CLAIMS.md)
CLAIM_MODULES: dict[str, str] = {
    "C1": "eoslib.claims.c1",
    "C2": "eoslib.claims.c2",
    "C3": "eoslib.claims.c3",
    "C4": "eoslib.claims.c4",
    "split": "eoslib.claims.split",
    "layers": "eoslib.claims.layers",
    "agreement": "eoslib.claims.agreement",
    "sensitivity": "eoslib.claims.sensitivity",
}

#: the public API, served from this module (not imported here: see the module docstring)
_LEDGER_MODULE = "eoslib.claims.ledger"
_LAZY = ("judge_claim", "build_claims", "write_ledger", "claim_result", "registered_versions",
         "HOLDS", "PARTLY", "FAILS", "NOT_MEASURED", "UNCERTIFIED", "TEST_INVALID", "VERDICTS", "CLAIMS")

__all__ = ["CLAIM_MODULES", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LEDGER_MODULE), name)
    if name == "main":  # the command line (`python -m eoslib ledger | claims-lock`)
        return importlib.import_module("eoslib.claims.__main__").main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
