"""Registries: one place where each dataset, loss, solver and measure is defined by name.

A :class:`Registry` maps a name to an :class:`Entry` — the definition itself (a loader function, a class, a
measure function), a human label for figures and tables, and a ``schema`` of the parameters it accepts in
``params.yaml``. Config validation, run planning, the measurement hook, the end-point table and the plot labels
all read the registries, so adding a dataset, loss, solver or measure is *one* definition plus its entry in
``params.yaml``; nothing else copies the list of names.

Two ways to register:

* ``REG.lazy(name, "eoslib.solvers.rkc:RungeKuttaChebyshev", label=..., schema=...)`` — a *catalog* entry: the
  name, label, schema and meta are declared in the package's ``__init__`` (which imports no plugin), and the
  module is imported only when the definition is looked up (``REG[name]``). This is what keeps a training
  stage's code dependencies to the modules its own runs use (:mod:`eoslib.pipeline`, :mod:`eoslib.provenance`):
  ``Entry.module`` names the module without importing it.
* ``@REG.register(name, ...)`` / ``REG.add`` — an eager entry, for registries whose definitions live in the same
  module as the registry (losses, measures) and for tests.

This module imports nothing heavy (no torch): ``python -m eoslib check-params`` stays fast.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name that is not registered; the message lists the registered names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


_UNSET: Any = object()


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered thing: ``obj`` (the definition; for a lazy entry imported from ``target`` =
    ``"module:attr"`` on first access), ``label`` (for figures), ``schema`` (params it takes, name → a validator
    spec of :mod:`eoslib.schema`) and free-form ``meta`` (e.g. a dataset's size)."""

    name: str
    _obj: Any
    label: str
    schema: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    target: str | None = None

    @property
    def obj(self) -> T:
        if self._obj is _UNSET:
            mod, _, attr = self.target.partition(":")
            object.__setattr__(self, "_obj", getattr(importlib.import_module(mod), attr))
        return self._obj

    @property
    def module(self) -> str:
        """The module defining the entry (not imported by asking)."""
        if self.target is not None:
            return self.target.partition(":")[0]
        return getattr(self._obj, "__module__", None) or type(self._obj).__module__


class Registry(Generic[T]):
    """Name → :class:`Entry`, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, label: str | None = None, schema: Mapping[str, Any] | None = None,
                 **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name", label=..., schema={...}, **meta)`` on a function or class."""

        def deco(obj: T) -> T:
            self.add(name, obj, label=label, schema=schema, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, *, label: str | None = None, schema: Mapping[str, Any] | None = None,
            **meta: Any) -> Entry[T]:
        """Register ``obj`` under ``name`` (a name can be registered once)."""
        return self._put(Entry(name, obj, label or name, dict(schema or {}), dict(meta)))

    def lazy(self, name: str, target: str, *, label: str | None = None, schema: Mapping[str, Any] | None = None,
             **meta: Any) -> Entry[T]:
        """Register ``target`` = ``"package.module:attr"`` under ``name``, imported when first looked up."""
        if ":" not in target:
            raise ValueError(f"lazy target must be 'module:attr', got {target!r}")
        return self._put(Entry(name, _UNSET, label or name, dict(schema or {}), dict(meta), target))

    def _put(self, e: Entry[T]) -> Entry[T]:
        if e.name in self._entries:
            raise ValueError(f"{self.kind} {e.name!r} is already registered")
        self._entries[e.name] = e
        return e

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(f"unknown {self.kind} {name!r}; choose one of {self.names()}") from None

    def __getitem__(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def label(self, name: str) -> str:
        return self.entry(name).label

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def module(self, name: str) -> str:
        """The module defining ``name`` (without importing it)."""
        return self.entry(name).module
