"""The claim framework: a claim, its frozen criteria versions, and the verdict arithmetic.

A :class:`Claim` has a statement, a notebook (its figure has the same name) and criteria versions k = 1, 2, …
Each version is a :class:`Version`: a :class:`Criteria` instance — a frozen dataclass whose fields hold the
registered thresholds, and whose :meth:`Criteria.criterion` writes the human criterion from those fields — and a
judge ``judge(params, root, criteria, fits) -> {"verdict", "measured", "summary"}``. Registration::

    @dataclass(frozen=True)
    class V1(Criteria):
        min_r2: float = 0.74

        def criterion(self, params): return f"R² ≥ {self.min_r2}"

    @CLAIM.version(1, V1())
    def judge_v1(params, root, c: V1, fits=None) -> dict: ...

Verdicts are mechanical: a judge collects one boolean per judged unit (run, step size, setting); all true →
*holds*, some → *partly*, none → *does not hold at this scale*, no unit or absent inputs → *not measured*; a causal
test whose positive control failed → *test invalid*. The
ledger then checks the certificates of the numbers the verdict rests on (``Claim.reads``, :mod:`.certificates`):
if any eigen- or singular-solve among them did not converge, the verdict is *uncertified* (the would-be verdict is
kept beside it, never given).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOLDS, PARTLY, FAILS, NOT_MEASURED = "holds", "partly", "does not hold at this scale", "not measured"
#: a judged verdict resting on a number whose solve did not converge (set by the ledger, never by a judge)
UNCERTIFIED = "uncertified"
#: a causal test whose positive control failed: the apparatus could not detect a known cause, so its null result
#: says nothing (C3 v4)
TEST_INVALID = "test invalid"
VERDICTS = (HOLDS, PARTLY, FAILS, NOT_MEASURED, UNCERTIFIED, TEST_INVALID)
#: the verdicts a judge reaches on measured numbers: the ones the ledger certifies
JUDGED = (HOLDS, PARTLY, FAILS, TEST_INVALID)


class NotMeasured(LookupError):
    """A claim's inputs (runs, fits) are absent from this profile."""


def verdict_of(oks: list[bool]) -> str:
    """*holds* if every judged unit is ok, *partly* if some are, *does not hold* if none, *not measured* if empty."""
    if not oks:
        return NOT_MEASURED
    if all(oks):
        return HOLDS
    return PARTLY if any(oks) else FAILS


def _plain(x: Any) -> Any:
    """Tuples (the frozen form of lists and mappings' items) → lists, recursively: JSON's shapes."""
    if isinstance(x, (tuple, list)):
        return [_plain(v) for v in x]
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    return x


@dataclass(frozen=True)
class Criteria:
    """One criteria version of a claim: subclasses are frozen dataclasses whose field defaults are the registered
    values (tuples where a list is meant, so that a version is immutable and hashable)."""

    def values(self) -> dict[str, Any]:
        """The fields and their values, JSON-safe (tuples → lists), in definition order."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def criterion(self, params: Mapping) -> str:
        """The human criterion (CLAIMS.md's *Criterion* column), written from the fields (and, where a criterion
        names a pre-registered choice of the profile such as ``powerlaw.primary``, from ``params``)."""
        raise NotImplementedError


#: ``judge(params, root, criteria, fits) -> {"verdict", "measured", "summary"}``
Judge = Callable[[dict, Path, Criteria, "dict | None"], dict]


@dataclass(frozen=True)
class Version:
    """Criteria version ``number`` of a claim: its registered ``criteria`` and its ``judge``."""

    number: int
    criteria: Criteria
    judge: Judge


@dataclass(frozen=True)
class Claim:
    """A claim of the ledger: ``key`` (the row's name), ``statement``, ``notebook`` (its figure has the same name),
    ``versions``: criteria version number → :class:`Version`, and ``reads``: the stored tables its verdict rests on
    (result kinds of :func:`eoslib.claims.certificates.failures`: a run kind such as ``"traj"``, ``"endpoints"``,
    or ``"endpoints:<kind>"``), one tuple for every version or a mapping version → tuple. ``reads`` is not part of
    a version's lock: it names where the numbers come from, not how they are judged. ``report``, optional:
    ``report(params, root) -> (numbers, sentence)``, facts about the runs that the ledger shows beside the latest
    version's verdict (``reported`` in claims.json, the sentence appended to the summary) — never judged, so not
    part of any version's lock either, and free to grow after a version was registered."""

    key: str
    statement: str
    notebook: str
    versions: dict[int, Version] = field(default_factory=dict)
    reads: tuple[str, ...] | Mapping[int, tuple[str, ...]] = ()
    report: Callable[[Mapping, Path], tuple[dict, str]] | None = None

    def reads_of(self, number: int) -> tuple[str, ...]:
        """The result kinds criteria version ``number``'s judge reads (() when the claim names none for it)."""
        if isinstance(self.reads, Mapping):
            return tuple(self.reads.get(number, ()))
        return tuple(self.reads)

    def version(self, number: int, criteria: Criteria) -> Callable[[Judge], Judge]:
        """Decorator registering ``judge`` with ``criteria`` as version ``number`` (once per number)."""
        if number in self.versions:
            raise ValueError(f"claim {self.key}: criteria version {number} is already registered")
        if not (dataclasses.is_dataclass(criteria) and type(criteria).__dataclass_params__.frozen):
            raise TypeError(f"claim {self.key} v{number}: criteria must be a frozen dataclass instance")

        def deco(judge: Judge) -> Judge:
            self.versions[number] = Version(number, criteria, judge)
            return judge

        return deco
