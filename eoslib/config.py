"""``params.yaml``: the schema, validation and expansion into one resolved config per run.

The schema below is the whole of ``params.yaml``; the names it accepts come from the registries (datasets,
activations, losses, solvers, executors, measures, experiment kinds, claims), so nothing here copies a list
of names. Validation runs before any training (``python -m eoslib check-params``, the first stage of
``dvc.yaml``) and fails with a :class:`ParamsError` whose message names the offending key, e.g.
``params.yaml: sweep.sizes: must be a non-empty list``.

The run plan (:func:`plan`) maps every training stage to the resolved, JSON-ready configs of its runs (each
experiment kind plans its own, :mod:`eoslib.experiments`). ``check-params`` writes them to
``runs/_plan/<stage>.json``; a training stage depends on that file only, so editing one parameter re-runs
exactly the stages whose resolved configs changed.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .device import DEVICES
from .paths import NOTEBOOK_SOURCES, VALIDATED_PARAMS
from .schema import Any_, Choice, Flag, Int, ListOf, MapOf, Num, Opt, ParamsError, Tagged, Text, Where, check, fail

__all__ = ["ParamsError", "schema", "validate", "load_params", "plan", "run_config", "write_plan"]

DTYPES = ("float32", "float64")
ENDPOINTS = ("threshold", "time", "peak", "edge", "half_loss")  # eoslib.experiments.sweep defines them


def _registries():
    from .data import DATASETS
    from .executors import EXECUTORS
    from .experiments import KINDS
    from .losses import LOSSES
    from .measures import MEASURES
    from .models import ACTIVATIONS, INITS, MODEL_KINDS
    from .solvers import SOLVERS

    return DATASETS, EXECUTORS, KINDS, LOSSES, MEASURES, SOLVERS, ACTIVATIONS, INITS, MODEL_KINDS


def _criteria_spec():
    """``criteria``: claim key (one of :data:`eoslib.claims.CLAIM_MODULES`) → the ascending criteria versions this
    profile registers. The criteria themselves are frozen in the claim modules (:mod:`eoslib.claims`); whether
    each listed version exists is checked by the ledger stage, so that the params schema does not depend on the
    claims' code."""
    from .claims import CLAIM_MODULES

    def known(v, path):
        for k in v:
            if k not in CLAIM_MODULES:
                fail(f"{path}.{k}", f"unknown claim; choose among {list(CLAIM_MODULES)}")

    return Where(MapOf(ListOf(Int(minimum=1), ascending=True), what="list of criteria versions"), known)


def schema(raw: Mapping | None = None) -> dict:
    """The schema of params.yaml (specs of :mod:`eoslib.schema`). An experiment kind's section schema comes from
    its module, imported only when ``raw`` (the params being checked) has that section."""
    DATASETS, EXECUTORS, KINDS, LOSSES, MEASURES, SOLVERS, ACTIVATIONS, INITS, MODEL_KINDS = _registries()
    model_over = {"kind": Opt(Choice(MODEL_KINDS, "model kind")), "width": Opt(Int()), "depth": Opt(Int(minimum=2)),
                  "init": Opt(Choice(INITS, "init")), "dtype": Opt(Choice(DTYPES, "dtype"))}
    setting = {"dataset": Choice(DATASETS.names, "dataset"), "activation": Choice(list(ACTIVATIONS), "activation"),
               "loss": Choice(LOSSES.names, "loss"), "classes": Opt(Int(minimum=2, maximum=10)),
               "standardize": Opt(Flag(), False), "model": Opt(model_over, {})}
    sch: dict[str, Any] = {
        "profile": Text(),
        "threads": Int(),
        "device": Opt(Choice(DEVICES, "device"), "auto"),
        "executor": Opt(Tagged(EXECUTORS, key="kind"), {"kind": "local", "workers": 1}),
        "model": {"kind": Opt(Choice(MODEL_KINDS, "model kind"), "mlp"), "width": Int(), "depth": Int(minimum=2),
                  "init": Choice(INITS, "init"), "dtype": Choice(DTYPES, "dtype")},
        "settings": MapOf(setting, what="{dataset, activation, loss, classes}"),
        "solver": Tagged(SOLVERS),
        "loss_threshold": MapOf(Num(), what="loss threshold"),
        "powerlaw": {"measures": ListOf(Choice(MEASURES.names, "measure")),
                     "endpoints": ListOf(Choice(ENDPOINTS, "end point")),
                     "primary": {"measure": Text(), "endpoint": Text()},
                     "n_boot": Int(), "level": Num(maximum=0.999),
                     "min_groups_bootstrap": Opt(Int(minimum=2), 10)},  # fewer seeds: t-interval over seeds
        "criteria": _criteria_spec(),
        "notebooks": MapOf(Opt(Any_(), {}), what="notebook parameters"),
    }
    for e in KINDS.entries():  # every experiment kind's section is optional (a profile without a sweep fits nothing)
        sec = e.meta["section"]
        present = raw is None or (raw.get(sec) is not None)
        spec = e.obj.schema if present else Any_()
        sch[sec] = Opt(spec)
    return sch


def validate(p: Mapping) -> dict:
    """Check every key the pipeline reads (types, ranges, names, cross-references, sizes); return a checked
    deep copy. Raises ParamsError naming the key."""
    if not isinstance(p, Mapping):
        raise ParamsError("params.yaml: top level must be a mapping")
    p = check(copy.deepcopy(dict(p)), schema(p))
    settings = p["settings"]
    for name, s in settings.items():
        if s["loss"] not in p["loss_threshold"]:
            fail(f"loss_threshold.{s['loss']}", f"missing (setting {name!r} trains with loss {s['loss']!r})")
    pl = p["powerlaw"]
    for k, allowed in (("measure", pl["measures"]), ("endpoint", pl["endpoints"])):
        if pl["primary"][k] not in allowed:
            fail(f"powerlaw.primary.{k}", f"{pl['primary'][k]!r} is not among powerlaw.{k}s {allowed}")
    plan(p)  # cross-references (setting names, sizes against the data) are checked while planning
    return p


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read and validate a params file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    return validate(raw)


# ---------------------------------------------------------------------------------------------- run plan


def plan(p: dict) -> dict[str, dict]:
    """Stage id → {"kind", "dir", "runs": {run name → resolved config}} for every training stage, from every
    registered experiment kind whose section is in params (``sweep-<setting>``, ``traj``, ``gd``, ``compare``, …)."""
    from .experiments import KINDS

    out: dict[str, dict] = {}
    for e in KINDS.entries():
        if p.get(e.meta["section"]) is not None:
            out |= {sid: st.to_dict() for sid, st in e.obj.plan(p).items()}
    return out


def run_config(p: dict, name: str) -> dict:
    """The resolved config of the planned run ``name``; KeyError when no stage has it."""
    for st in plan(p).values():
        if name in st["runs"]:
            return st["runs"][name]
    raise KeyError(f"no planned run {name!r}; see `python -m eoslib stages`")


def write_plan(p: dict, root: str | Path = ".") -> list[Path]:
    """Write ``runs/_plan/<stage>.json`` for every stage and ``runs/_plan/params.json`` (the validated params with
    their defaults, which every later stage reads: :func:`eoslib.io.read_params`), content-stable (unchanged
    files keep their bytes, so DVC sees no change), and remove plan files of stages that no longer exist."""
    from .io import write_text

    d = Path(root) / "runs" / "_plan"
    d.mkdir(parents=True, exist_ok=True)
    written = []
    stages = plan(p)
    text = json.dumps(p, indent=1, sort_keys=True) + "\n"
    f = Path(root) / VALIDATED_PARAMS
    if not f.exists() or f.read_text() != text:
        write_text(text, f)
    for sid, st in stages.items():
        f = d / f"{sid}.json"
        text = json.dumps(st, indent=1, sort_keys=True) + "\n"
        if not f.exists() or f.read_text() != text:
            write_text(text, f)
        written.append(f)
    for f in d.glob("*.json"):
        if f.stem not in stages and f.name != VALIDATED_PARAMS.name:
            f.unlink()
    return written


def check_notebooks(p: dict) -> None:
    """Every notebook listed in params.yaml has its source ``notebooks/src/<name>.ipynb`` — where the sources are:
    an installed eoslib (a wheel, no repository around it) has none, trains without them, and cannot run the
    notebooks anyway (tests/test_wheel.py)."""
    SOURCES = NOTEBOOK_SOURCES
    if not SOURCES.is_dir():
        return
    for name in p["notebooks"]:
        if not (SOURCES / f"{name}.ipynb").exists():
            fail(f"notebooks.{name}", f"no source notebook {SOURCES / (name + '.ipynb')}; add it (a copy of another "
                                      "notebook is a good start) or remove the entry")


def check_data(p: dict, root: str | Path = ".") -> None:
    """Every dataset a planned run uses is present and intact (one clear error naming the setting otherwise)."""
    from .data import check_available

    used = {cfg["setting"]["name"] for st in plan(p).values() for cfg in st["runs"].values()}
    for name in sorted(used):
        try:
            check_available(p["settings"][name]["dataset"], root=Path(root) / "data")
        except FileNotFoundError as e:
            fail(f"settings.{name}.dataset", str(e))


def main(argv: list[str] | None = None) -> int:
    """``python -m eoslib.config [--root R] check|stages`` (also ``eoslib check-params`` / ``eoslib stages``)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m eoslib.config", description="validate params.yaml, plan the runs")
    ap.add_argument("--root", default=".", help="profile folder holding params.yaml")
    ap.add_argument("what", choices=("check", "stages"))
    a = ap.parse_args(argv)
    try:
        p = load_params(Path(a.root) / "params.yaml")
        if a.what == "stages":
            for sid, st in plan(p).items():
                print(f"{sid}: {', '.join(st['runs'])}")
            return 0
        check_data(p, a.root)
        check_notebooks(p)
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = write_plan(p, a.root)
    n = sum(len(s["runs"]) for s in plan(p).values())
    print(f"params.yaml OK: {len(files)} training stages, {n} runs; plan in {Path(a.root) / 'runs' / '_plan'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
