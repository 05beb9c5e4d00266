"""The ledger: every claim judged under every criteria version its profile registers (metrics/claims.json, CLAIMS.md).

Everything is computed from the run folders and ``metrics/powerlaw.json`` alone (no notebook has to execute); the
notebooks read the rows back from ``metrics/claims.json``. A profile's ``params.yaml`` lists which criteria
versions it registers, ``criteria: {<claim>: [k, …]}`` (ascending); the versions themselves — thresholds and
judge — are frozen in the claim's module (:data:`eoslib.claims.CLAIM_MODULES`) and locked in ``claims.lock``.
The latest registered version gives the verdict; the earlier ones stay visible beside it ("as first registered").

Every judged verdict is then certified (:func:`certify`): the stored tables its version reads (``Claim.reads``)
are scanned for unconverged solves (:func:`eoslib.claims.certificates.failures`). Any → the verdict is
*uncertified*, the judge's verdict stays beside it as ``verdict_if_certified`` and the summary says how many and
where; either way the row gets ``certificates`` (how many numbers were checked).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ..io import json_safe, read_json, write_json, write_text
from . import CLAIM_MODULES
# every claim module, imported by name as well: the pipeline's dependency closure reads import statements
from . import agreement, c1, c2, c3, c4, layers, sensitivity, split  # noqa: F401
from . import certificates
from .framework import (FAILS, HOLDS, JUDGED, NOT_MEASURED, PARTLY, TEST_INVALID, UNCERTIFIED, VERDICTS, Claim,
                        NotMeasured)
from .render import render_markdown


def _load_claims() -> dict[str, Claim]:
    claims = {}
    for key, mod in CLAIM_MODULES.items():
        claim = importlib.import_module(mod).CLAIM
        if claim.key != key:
            raise RuntimeError(f"{mod} defines claim {claim.key!r}, CLAIM_MODULES lists it as {key!r}")
        claims[key] = claim
    return claims


#: claim key → :class:`~eoslib.claims.framework.Claim`, in ledger order
CLAIMS: dict[str, Claim] = _load_claims()


def registered_versions(params: dict, key: str) -> list[int]:
    """The criteria versions of claim ``key`` that the profile registers (``criteria.<key>`` in params.yaml: an
    ascending list of version numbers, each defined by the claim's module); [] when the profile lists none.
    Raises ValueError naming ``criteria.<key>`` for an unknown claim or a version the claim does not define."""
    where = f"criteria.{key}"
    if key not in CLAIMS:
        raise ValueError(f"{where}: unknown claim {key!r}; the claims are {list(CLAIMS)}")
    listed = (params.get("criteria") or {}).get(key)
    if listed is None:
        return []
    if not isinstance(listed, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in listed):
        raise ValueError(f"{where}: expected a list of criteria version numbers (e.g. [1, 2]), got {listed!r}")
    if listed != sorted(set(listed)):
        raise ValueError(f"{where}: versions must be ascending without repeats, got {listed}")
    defined = sorted(CLAIMS[key].versions)
    missing = [v for v in listed if v not in CLAIMS[key].versions]
    if missing:
        raise ValueError(f"{where}: claim {key} has no criteria version {missing[0]} ({CLAIM_MODULES[key]} defines "
                         f"{defined})")
    return list(listed)


def check_criteria(params: dict) -> None:
    """Every key of ``criteria`` is a claim and every version it lists is defined (ValueError naming the key)."""
    for key in params.get("criteria") or {}:
        registered_versions(params, key)


def certify(row: dict, claim: Claim, root: str | Path) -> dict:
    """A judged row (*holds*, *partly*, *does not hold*) with ``certificates``
    (:func:`eoslib.claims.certificates.entry` of the tables its version reads); *uncertified* — with the judge's
    verdict as ``verdict_if_certified`` and the count and place in front of the summary — when any number there
    did not converge. Other rows (*not measured*) are returned unchanged: there is no verdict to certify."""
    if row["verdict"] not in JUDGED:
        return row
    f = certificates.failures(root, claim.reads_of(row["criteria_version"]))
    row = row | {"certificates": certificates.entry(f)}
    if not f["unconverged"]:
        return row
    return row | {"verdict": UNCERTIFIED, "verdict_if_certified": row["verdict"],
                  "summary": f"{certificates.describe(f)}; would be {row['verdict']}: {row['summary']}"}


def judge_claim(key: str, params: dict, root: str | Path, fits: dict | None, version: int | None = None) -> dict:
    """One claim judged under criteria version ``version`` (default: the latest the profile registers): a dict
    with ``verdict``, ``measured``, ``summary``, ``criterion`` and ``criteria_version``; a judged verdict also with
    ``certificates``, and when a number it rests on did not converge, verdict *uncertified* with
    ``verdict_if_certified`` (:func:`certify`). A version the profile does not register, or a claim whose inputs
    are absent, is *not measured* (never an error)."""
    versions = registered_versions(params, key)
    if not versions or (version is not None and version not in versions):
        what = "no criteria" if not versions else f"criteria v{version} not"
        return {"verdict": NOT_MEASURED, "measured": {}, "summary": f"{what} registered in this profile",
                "criterion": "", "criteria_version": version}
    v = versions[-1] if version is None else version
    ver = CLAIMS[key].versions[v]
    try:
        out = ver.judge(params, Path(root), ver.criteria, fits) | {"criterion": ver.criteria.criterion(params)}
    except (NotMeasured, FileNotFoundError) as e:
        out = {"verdict": NOT_MEASURED, "measured": {}, "summary": f"not measured: {e}", "criterion": ""}
    return certify(out | {"criteria_version": v}, CLAIMS[key], root)


def with_report(row: dict, claim: Claim, params: dict, root: Path) -> dict:
    """``row`` with the claim's :attr:`~.framework.Claim.report` beside its verdict: ``reported`` (the numbers)
    and the report's sentence appended to the summary (nothing when there is nothing to report)."""
    numbers, sentence = claim.report(params, root)
    if not numbers:
        return row
    return row | {"reported": numbers, "summary": f"{row['summary']}; {sentence}" if sentence else row["summary"]}


#: the fields :func:`certify` adds to a judged row (an earlier version's row keeps them too)
CERTIFICATE_FIELDS = ("verdict_if_certified", "certificates")


def _read_fits(root: Path) -> dict | None:
    f = root / "metrics" / "powerlaw.json"
    return read_json(f) if f.exists() else None


def build_claims(params: dict, root: str | Path = ".") -> dict:
    """Every claim the profile registers, judged under every registered criteria version: one row per claim (the
    latest version's verdict, with ``criteria_values``) and its earlier versions under ``earlier``."""
    root = Path(root)
    check_criteria(params)
    fits = _read_fits(root)
    rows = {}
    for key, c in CLAIMS.items():
        versions = registered_versions(params, key)
        if not versions:  # not part of this profile's ledger
            continue
        row = judge_claim(key, params, root, fits)
        if c.report is not None:
            row = with_report(row, c, params, root)
        earlier = {f"v{v}": judge_claim(key, params, root, fits, v) for v in versions[:-1]}
        nb = c.notebook
        rows[key] = {"claim": key, "statement": c.statement} | row | {
            "criteria_values": c.versions[row["criteria_version"]].criteria.values(),
            "earlier": {k: {f: e[f] for f in ("verdict", "summary", "criterion", "measured", "criteria_version")}
                        | {f: e[f] for f in CERTIFICATE_FIELDS if f in e}
                        | {"criteria_values": c.versions[e["criteria_version"]].criteria.values()}
                        for k, e in earlier.items()},
            "figure": f"figures/{nb}.png", "figure_pdf": f"figures/{nb}.pdf", "notebook": f"notebooks/{nb}.ipynb"}
    return rows


def write_ledger(params: dict, root: str | Path = ".") -> dict:
    """Write ``metrics/claims.json`` and ``CLAIMS.md`` of the profile at ``root``; return the rows."""
    root = Path(root)
    rows = json_safe(build_claims(params, root))
    write_json(rows, root / "metrics" / "claims.json")
    write_text(render_markdown(rows, params), root / "CLAIMS.md")
    return rows


def claim_result(key: str, params: dict, root: str | Path = ".") -> dict:
    """The ledger row of one claim under its latest registered version (as in CLAIMS.md), computed afresh."""
    return judge_claim(key, params, root, _read_fits(Path(root)))


__all__ = ["CLAIMS", "registered_versions", "check_criteria", "judge_claim", "certify", "build_claims",
           "write_ledger", "claim_result", "HOLDS", "PARTLY", "FAILS", "NOT_MEASURED", "UNCERTIFIED", "TEST_INVALID",
           "VERDICTS"]
