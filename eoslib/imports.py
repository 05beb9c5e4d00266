"""The import graph of eoslib, read from the sources (no module is imported): what a module imports, the
closure of a set of modules, and the graph itself (checked for cycles by tests/test_layers.py).

An import counts wherever it stands — at the top of a file or inside a function — because either runs the
imported code when the importing code runs. Lookups by name in a catalog (:mod:`eoslib.registry`'s lazy
entries, ``importlib`` with a computed name) are not imports: whoever resolves them adds the module named in
the catalog (:mod:`eoslib.provenance` for a run's code, :mod:`eoslib.pipeline` for a stage's dependencies).
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

from .paths import REPO

PKG = REPO / "eoslib"


def _module_file(mod: str) -> Path | None:
    rel = mod.split(".")[1:]
    base = PKG.joinpath(*rel) if rel else PKG
    if base.is_dir() and (base / "__init__.py").exists():
        return base / "__init__.py"
    f = base.with_suffix(".py")
    return f if f.exists() else None


def module_imports(mod: str) -> set[str]:
    """eoslib modules imported anywhere in ``mod``'s source (top level or inside functions)."""
    f = _module_file(mod)
    if f is None:
        return set()
    st = f.stat()
    return set(_parsed_imports(mod, f, st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=None)
def _parsed_imports(mod: str, f: Path, mtime_ns: int, size: int) -> frozenset[str]:
    """:func:`module_imports` of one version of a source file (cached while the file is unchanged)."""
    pkg = mod if f.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "eoslib"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "eoslib":
                continue
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names if _module_file(f"{target}.{a.name}")}
    # a submodule import runs its package's __init__ too
    for m in list(out):
        parts = m.split(".")
        out |= {".".join(parts[:i]) for i in range(2, len(parts))}
    return frozenset(m for m in out if _module_file(m) is not None)


def import_closure(*modules: str) -> list[str]:
    """Source files (relative to the repository) of ``modules`` and every eoslib module they import."""
    seen: set[str] = set()
    # importing a module runs its packages' __init__ first
    todo = [".".join(m.split(".")[:i]) for m in modules for i in range(1, len(m.split(".")) + 1)]
    while todo:
        m = todo.pop()
        if m in seen or _module_file(m) is None:
            continue
        seen.add(m)
        todo += module_imports(m)
    return sorted(_module_file(m).relative_to(REPO).as_posix() for m in seen)


def all_modules() -> list[str]:
    """Every module of the package, dotted (``eoslib.solvers.rkc``; a package as its own name)."""
    out = []
    for f in sorted(PKG.rglob("*.py")):
        parts = f.relative_to(REPO).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def graph() -> dict[str, set[str]]:
    """Module → the eoslib modules it imports (a submodule import also counts its parent packages)."""
    return {m: module_imports(m) - {m} for m in all_modules()}


def module_file(mod: str) -> Path | None:
    """The source file of ``mod`` (None when there is none)."""
    return _module_file(mod)
