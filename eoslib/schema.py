"""A small declarative schema language for ``params.yaml`` (and the parameters of registered things).

A schema is a dict ``key → spec``; a spec is a validator object (``Num``, ``Int``, ``Choice``, ``Flag``,
``ListOf``, ``Interval``, ``MapOf``, ``Opt``) or a nested dict. ``check(value, spec, path)`` returns the value
or raises :class:`ParamsError` whose message starts with the dotted key, e.g.
``params.yaml: sweep.sizes: must be a non-empty list``. Keys missing from a mapping fail (``missing``) unless
their spec is ``Opt(...)``; keys a schema does not know fail too (``unknown key``), so typos never pass silently.

No torch here: check-params imports it only through the registries.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ParamsError(ValueError):
    """A bad value in params.yaml; the message starts with the dotted key."""


def fail(key: str, msg: str) -> None:
    raise ParamsError(f"params.yaml: {key}: {msg}")


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


class Spec:
    """Base of the validators: ``check(value, path) -> value``."""

    def check(self, v: Any, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Num(Spec):
    """A finite real number; ``positive`` (default) means > 0; ``minimum``/``maximum`` are inclusive."""

    positive: bool = True
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False

    def check(self, v, path):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (self.integer and not isinstance(v, int)):
            fail(path, f"must be {'an integer' if self.integer else 'a number'}, got {v!r}")
        if not math.isfinite(v):
            fail(path, f"must be finite, got {v!r}")
        if self.positive and self.minimum is None and not v > 0:
            fail(path, f"must be positive, got {v!r}")
        if self.minimum is not None and v < self.minimum:
            fail(path, f"must be ≥ {self.minimum}, got {v!r}")
        if self.maximum is not None and v > self.maximum:
            fail(path, f"must be ≤ {self.maximum}, got {v!r}")
        return v


def Int(minimum: int | None = None, maximum: int | None = None, positive: bool = True) -> Num:  # noqa: N802
    """An integer (> 0 unless ``minimum`` says otherwise)."""
    return Num(positive=positive, minimum=minimum, maximum=maximum, integer=True)


@dataclass(frozen=True)
class Choice(Spec):
    """One of ``choices`` (a sequence, or a callable returning one, e.g. a registry's ``names``)."""

    choices: Any
    what: str = "value"

    def options(self) -> list:
        return list(self.choices() if callable(self.choices) else self.choices)

    def check(self, v, path):
        opts = self.options()
        if v not in opts:
            fail(path, f"unknown {self.what} {v!r}; choose one of {opts}")
        return v


@dataclass(frozen=True)
class Flag(Spec):
    """A boolean."""

    def check(self, v, path):
        if not isinstance(v, bool):
            fail(path, f"must be true or false, got {v!r}")
        return v


@dataclass(frozen=True)
class Text(Spec):
    """A string."""

    def check(self, v, path):
        if not isinstance(v, str) or not v:
            fail(path, f"must be a non-empty string, got {v!r}")
        return v


@dataclass(frozen=True)
class ListOf(Spec):
    """A list of items matching ``item``; non-empty and without duplicates unless told otherwise;
    ``ascending`` requires sorted values."""

    item: Any
    nonempty: bool = True
    unique: bool = True
    ascending: bool = False

    def check(self, v, path):
        if not isinstance(v, list):
            fail(path, f"must be a list, got {v!r}")
        if self.nonempty and not v:
            fail(path, "must be a non-empty list (empty grid)")
        if self.unique and len(set(map(repr, v))) != len(v):
            fail(path, f"has duplicate entries: {v!r}")
        out = [check(x, self.item, f"{path}[{i}]") for i, x in enumerate(v)]
        if self.ascending and sorted(out) != out:
            fail(path, f"must be ascending, got {v!r}")
        return out


@dataclass(frozen=True)
class Interval(Spec):
    """[low, high] with low < high."""

    def check(self, v, path):
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                             for x in v) and v[0] < v[1]):
            fail(path, f"must be [low, high] with low < high, got {v!r}")
        return v


@dataclass(frozen=True)
class MapOf(Spec):
    """A mapping of free keys (names: letters, digits, '-', '_') to values matching ``value``."""

    value: Any
    nonempty: bool = True
    what: str = "entry"

    def check(self, v, path):
        if not isinstance(v, Mapping) or (self.nonempty and not v):
            fail(path, f"must be a{' non-empty' if self.nonempty else ''} mapping of name → {self.what}")
        for k in v:
            if not isinstance(k, str) or not k.replace("-", "").replace("_", "").isalnum():
                fail(_join(path, k), "names may use letters, digits, '-' and '_' only")
        return {k: check(x, self.value, _join(path, k)) for k, x in v.items()}


@dataclass(frozen=True)
class Opt(Spec):
    """An optional key: absent or None gives ``default``."""

    spec: Any
    default: Any = None

    def check(self, v, path):
        return self.default if v is None else check(v, self.spec, path)


@dataclass(frozen=True)
class Any_(Spec):
    """Anything (a free-form value passed through, e.g. notebook parameters)."""

    def check(self, v, path):
        return v


@dataclass(frozen=True)
class Tagged(Spec):
    """A mapping ``{name: <registered name>, **params}`` whose other keys follow the schema of the
    registered entry (``registry.entry(name).schema``) — e.g. ``solver: {name: ee, dt_max: 0.5}``."""

    registry: Any
    key: str = "name"

    def check(self, v, path):
        if not isinstance(v, Mapping):
            fail(path, f"must be a mapping with a '{self.key}' key")
        name = check(v.get(self.key), Choice(self.registry.names, self.registry.kind), _join(path, self.key))
        rest = {k: x for k, x in v.items() if k != self.key}
        return {self.key: name} | check(rest, dict(self.registry.entry(name).schema), path)


@dataclass(frozen=True)
class Where(Spec):
    """``spec`` plus a custom check ``fn(value, path)`` (which calls :func:`fail`)."""

    spec: Any
    fn: Callable[[Any, str], None]

    def check(self, v, path):
        v = check(v, self.spec, path)
        self.fn(v, path)
        return v


def check(v: Any, spec: Any, path: str = "") -> Any:
    """Validate ``v`` against ``spec`` (a :class:`Spec` or a dict schema); return the checked value."""
    if isinstance(spec, Spec):
        return spec.check(v, path)
    if isinstance(spec, Mapping):
        if not isinstance(v, Mapping):
            fail(path or "top level", f"must be a mapping, got {type(v).__name__}")
        for k in v:
            if k not in spec:
                fail(_join(path, k), f"unknown key; allowed: {sorted(spec)}")
        out = dict(v)
        for k, s in spec.items():
            if k not in v and not isinstance(s, Opt):
                fail(_join(path, k), "missing")
            out[k] = check(v.get(k), s, _join(path, k))
        return out
    raise TypeError(f"not a schema spec: {spec!r}")
