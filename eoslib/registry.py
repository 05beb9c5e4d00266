"""Registries: one place where each dataset, loss, solver and measure is defined by name.

A :class:`Registry` maps a name to an :class:`Entry` — the definition itself (a loader function, a class, a
measure function), a human label for figures and tables, and a ``schema`` of the parameters it accepts in
``params.yaml``. Config validation, run planning, the measurement hook, the end-point table and the plot labels
all read the registries, so adding a dataset, loss, solver or measure is *one* definition (decorated with
``@REGISTRY.register(...)``) plus its entry in ``params.yaml``; nothing else copies the list of names.

This module imports nothing heavy (no torch): ``python -m eoslib check-params`` stays fast.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name that is not registered; the message lists the registered names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered thing: ``obj`` (the definition), ``label`` (for figures), ``schema`` (params it takes,
    name → a validator spec of :mod:`eoslib.schema`) and free-form ``meta`` (e.g. a dataset's size)."""

    name: str
    obj: T
    label: str
    schema: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)


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
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        e = Entry(name, obj, label or name, dict(schema or {}), dict(meta))
        self._entries[name] = e
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
