"""``params.yaml``: loading, validation and expansion into one resolved config per run.

Validation runs before any training (``python -m eoslib check-params``, the first stage of ``dvc.yaml``) and
fails with a :class:`ParamsError` whose message names the offending key, e.g.
``params.yaml: sweep.sizes: must be a non-empty list``.

The run plan (:func:`plan`) maps every stage of the pipeline to the resolved, JSON-ready configs of its runs.
``check-params`` writes each one to ``runs/_plan/<stage>.json``; the training stage depends on that file
only, so editing one parameter re-runs exactly the stages whose resolved config changed.

This module imports no torch (check-params is fast).
"""
from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

DATASETS = ("digits", "mnist1d", "fashion-mnist-mini", "fashion-mnist", "mnist", "cifar10")
#: examples available offline per dataset (upper bound for a requested size)
DATASET_SIZES = {"digits": 1797, "mnist1d": 4000, "fashion-mnist-mini": 8192}
ACTIVATIONS = ("elu", "tanh", "relu", "gelu", "softplus")
LOSSES = ("ce", "mse")
INITS = ("xavier", "default")
DTYPES = ("float32", "float64")
#: pre-registrable alignment/curvature measures (see ``eoslib.ledger``)
MEASURES = ("alpha_mean", "alpha_median", "alpha_gmean", "one_minus_alpha", "chain_gain", "alpha_growth",
            "sharpness")
ENDPOINTS = ("threshold", "time")
NOTEBOOKS = ("01_edge_of_stability", "02_flow_accuracy", "03_hessian_split", "04_layer_shares",
             "05_alignment", "06_power_law")


class ParamsError(ValueError):
    """A bad value in params.yaml; the message starts with the dotted key."""


def _fail(key: str, msg: str) -> None:
    raise ParamsError(f"params.yaml: {key}: {msg}")


def _get(d: Mapping, key: str, path: str) -> Any:
    if not isinstance(d, Mapping):
        _fail(path, f"must be a mapping, got {type(d).__name__}")
    if key not in d:
        _fail(f"{path}.{key}" if path else key, "missing")
    return d[key]


def _num(d: Mapping, key: str, path: str, *, positive: bool = True, integer: bool = False, allow_none=False,
         minimum: float | None = None, maximum: float | None = None):
    v = _get(d, key, path)
    full = f"{path}.{key}" if path else key
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        _fail(full, f"must be {'an integer' if integer else 'a number'}, got {v!r}")
    if not math.isfinite(v):
        _fail(full, f"must be finite, got {v!r}")
    if positive and not v > 0:
        _fail(full, f"must be positive, got {v!r}")
    if minimum is not None and v < minimum:
        _fail(full, f"must be ≥ {minimum}, got {v!r}")
    if maximum is not None and v > maximum:
        _fail(full, f"must be ≤ {maximum}, got {v!r}")
    return v


def _choice(d: Mapping, key: str, path: str, choices) -> str:
    v = _get(d, key, path)
    if v not in choices:
        _fail(f"{path}.{key}", f"unknown value {v!r}; choose one of {list(choices)}")
    return v


def _list(d: Mapping, key: str, path: str, *, nonempty: bool = True) -> list:
    v = _get(d, key, path)
    full = f"{path}.{key}"
    if not isinstance(v, list):
        _fail(full, f"must be a list, got {v!r}")
    if nonempty and not v:
        _fail(full, "must be a non-empty list (empty grid)")
    if len(set(map(repr, v))) != len(v):
        _fail(full, f"has duplicate entries: {v!r}")
    return v


def _members(d: Mapping, key: str, path: str, allowed, what: str, hint: str) -> list:
    """d[key]: a non-empty list whose items all lie in ``allowed``; an error names the first that does not."""
    items = _list(d, key, path)
    for i, x in enumerate(items):
        if x not in allowed:
            _fail(f"{path}.{key}[{i}]", f"unknown {what} {x!r}; {hint}")
    return items


def _num_list(d, key, path, *, integer=False, minimum=None) -> list:
    v = _list(d, key, path)
    for i, x in enumerate(v):
        _num({f"{key}[{i}]": x}, f"{key}[{i}]", path, integer=integer, minimum=minimum, positive=minimum is None)
    return v


def _interval(d, key, path) -> list:
    v = _get(d, key, path)
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v) and v[0] < v[1]):
        _fail(f"{path}.{key}", f"must be [low, high] with low < high, got {v!r}")
    return v


# ---------------------------------------------------------------------------------------------- validation


def validate(p: Mapping) -> dict:
    """Check every key the pipeline reads; return the params unchanged (a deep copy). Raises ParamsError."""
    if not isinstance(p, Mapping):
        raise ParamsError("params.yaml: top level must be a mapping")
    p = copy.deepcopy(dict(p))
    _num(p, "threads", "", integer=True)
    _num(p, "workers", "", integer=True)
    m = _get(p, "model", "")
    _num(m, "width", "model", integer=True)
    _num(m, "depth", "model", integer=True, minimum=2)
    _choice(m, "init", "model", INITS)
    _choice(m, "dtype", "model", DTYPES)

    settings = _get(p, "settings", "")
    if not isinstance(settings, Mapping) or not settings:
        _fail("settings", "must be a non-empty mapping of setting name → {dataset, activation, loss}")
    for name, s in settings.items():
        path = f"settings.{name}"
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            _fail(path, "setting names may use letters, digits, '-' and '_' only")
        _choice(s, "dataset", path, DATASETS)
        _choice(s, "activation", path, ACTIVATIONS)
        _choice(s, "loss", path, LOSSES)
        if s.get("classes") is not None:
            _num(s, "classes", path, integer=True, minimum=2, maximum=10)

    sol = _get(p, "solver", "")
    _num(sol, "dt_max", "solver")
    _num(sol, "tol", "solver")
    th = _get(p, "loss_threshold", "")
    for loss in LOSSES:
        _num(th, loss, "loss_threshold")

    def setting_ref(d, key, path):
        v = _get(d, key, path)
        if v not in settings:
            _fail(f"{path}.{key}", f"unknown setting {v!r}; define it under settings (have {list(settings)})")
        return v

    def size_ok(setting, n, key):
        ds, classes = settings[setting]["dataset"], settings[setting].get("classes") or 10
        if ds in DATASET_SIZES:
            avail = DATASET_SIZES[ds] * classes // 10  # the offline datasets are (nearly) class-balanced
            if n > avail:
                _fail(key, f"n={n} exceeds the ~{avail} examples of {ds!r} in {classes} classes (setting {setting!r})")

    sw = _get(p, "sweep", "")
    names = _members(sw, "settings", "sweep", settings, "setting", "define it under settings")
    sizes = _num_list(sw, "sizes", "sweep", integer=True, minimum=2)
    if sorted(sizes) != sizes:
        _fail("sweep.sizes", f"must be ascending, got {sizes}")
    for s in names:
        size_ok(s, max(sizes), "sweep.sizes")
    _num_list(sw, "seeds", "sweep", integer=True, minimum=0)
    _num(sw, "time", "sweep")
    _num(sw, "max_steps", "sweep", integer=True)
    _num(sw, "probe", "sweep", integer=True)

    tr = _get(p, "trajectories", "")
    tnames = _members(tr, "settings", "trajectories", settings, "setting", "define it under settings")
    _num(tr, "n", "trajectories", integer=True, minimum=2)
    for s in tnames:
        size_ok(s, tr["n"], "trajectories.n")
    _num(tr, "seed", "trajectories", integer=True, positive=False, minimum=0)
    _num(tr, "measure_every", "trajectories", integer=True)
    _num(tr, "probe", "trajectories", integer=True)
    _num(tr, "max_steps", "trajectories", integer=True)
    _num(tr, "checkpoint_every", "trajectories", integer=True)
    ov = tr.get("overrides") or {}
    if not isinstance(ov, Mapping):
        _fail("trajectories.overrides", "must be a mapping of setting → {n, measure_every, max_steps}")
    for s, o in ov.items():
        path = f"trajectories.overrides.{s}"
        if s not in tnames:
            _fail(path, f"{s!r} is not in trajectories.settings")
        if not isinstance(o, Mapping):
            _fail(path, "must be a mapping with keys among n, measure_every, max_steps")
        for k in o:
            if k not in ("n", "measure_every", "max_steps"):
                _fail(f"{path}.{k}", "unknown key; allowed: n, measure_every, max_steps")
            _num(o, k, path, integer=True, minimum=2 if k == "n" else 1)
        if "n" in o:
            size_ok(s, o["n"], f"{path}.n")

    gd = _get(p, "gd", "")
    setting_ref(gd, "setting", "gd")
    _num(gd, "n", "gd", integer=True, minimum=2)
    size_ok(gd["setting"], gd["n"], "gd.n")
    _num(gd, "seed", "gd", integer=True, positive=False, minimum=0)
    _num_list(gd, "lrs", "gd")
    _num(gd, "time", "gd")
    _num(gd, "max_steps", "gd", integer=True)
    _num(gd, "track_every", "gd", integer=True)
    _num(gd, "measure_every", "gd", integer=True)

    ref = _get(p, "reference", "")
    setting_ref(ref, "setting", "reference")
    _num(ref, "n", "reference", integer=True, minimum=2)
    size_ok(ref["setting"], ref["n"], "reference.n")
    _num(ref, "seed", "reference", integer=True, positive=False, minimum=0)
    _num(ref, "rtol", "reference")
    _num(ref, "atol", "reference")
    _choice(ref, "dtype", "reference", DTYPES)
    _num_list(ref, "gd_lrs", "reference")
    _num(ref, "max_steps", "reference", integer=True)
    _num(ref, "snapshot_every", "reference", integer=True)

    pl = _get(p, "powerlaw", "")
    meas = _members(pl, "measures", "powerlaw", MEASURES, "measure", f"choose from {list(MEASURES)}")
    eps = _members(pl, "endpoints", "powerlaw", ENDPOINTS, "end point", f"choose from {list(ENDPOINTS)}")
    prim = _get(pl, "primary", "powerlaw")
    if not (isinstance(prim, Mapping) and prim.get("measure") in meas and prim.get("endpoint") in eps):
        _fail("powerlaw.primary", "must be {measure, endpoint} taken from powerlaw.measures / powerlaw.endpoints")
    _num(pl, "n_boot", "powerlaw", integer=True)
    _num(pl, "level", "powerlaw", maximum=0.999)

    crit = _get(p, "criteria", "")
    c1 = _get(crit, "C1", "criteria")
    _interval(c1, "ratio_band", "criteria.C1")
    _num(c1, "tail_fraction", "criteria.C1", maximum=1)
    _num(c1, "min_sharpening", "criteria.C1")
    c2 = _get(crit, "C2", "criteria")
    _num(c2, "max_rel_distance", "criteria.C2")
    _num(c2, "min_advantage", "criteria.C2")
    c3 = _get(crit, "C3", "criteria")
    _num(c3, "min_spearman", "criteria.C3", positive=False, minimum=-1, maximum=1)
    _num(c3, "min_alpha_growth", "criteria.C3")
    c4 = _get(crit, "C4", "criteria")
    _interval(c4, "paper_r2", "criteria.C4")
    _num(c4, "min_r2", "criteria.C4", maximum=1)
    sp = _get(crit, "split", "criteria")
    _num(sp, "min_ggn_ratio", "criteria.split", maximum=1)
    _num(sp, "min_sharpening", "criteria.split")
    ly = _get(crit, "layers", "criteria")
    _num(ly, "min_sharpening", "criteria.layers")

    nbs = _get(p, "notebooks", "")
    if not isinstance(nbs, Mapping):
        _fail("notebooks", "must be a mapping of notebook name → parameters")
    for k, v in nbs.items():
        if k not in NOTEBOOKS:
            _fail(f"notebooks.{k}", f"unknown notebook; expected one of {list(NOTEBOOKS)}")
        if v is not None and not isinstance(v, Mapping):
            _fail(f"notebooks.{k}", "must be a mapping of parameter → value (or empty)")
    return p


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    return validate(raw)


# ---------------------------------------------------------------------------------------------- run plan


def _setting(p: dict, name: str) -> dict:
    s = p["settings"][name]
    return {"name": name, "dataset": s["dataset"], "activation": s["activation"], "loss": s["loss"],
            "classes": s.get("classes"), "standardize": bool(s.get("standardize", False))}


def _base(p: dict, setting: str, n: int, seed: int, dtype: str | None = None) -> dict:
    s = _setting(p, setting)
    return {
        "setting": s,
        "n": int(n),
        "seed": int(seed),
        "model": {"width": p["model"]["width"], "depth": p["model"]["depth"], "init": p["model"]["init"],
                  "dtype": dtype or p["model"]["dtype"]},
        "threads": p["threads"],
        "loss_threshold": p["loss_threshold"][s["loss"]],
    }


def fmt_num(x: float) -> str:
    """A number as DVC interpolates it into stage names and paths (``str``): 0.2 → '0.2', 1.0 → '1.0'."""
    return str(x)


def plan(p: dict) -> dict[str, dict]:
    """Stage id → {"kind", "dir", "runs": {run name → resolved config}} for every training stage.

    Run names are paths below ``runs/``: ``sweep/<setting>/n<N>/seed<s>``, ``traj/<setting>``, ``gd/lr<η>``,
    ``compare``. Stages: ``sweep-<setting>`` (all sizes × seeds of one setting), ``traj``, ``gd``, ``compare``.
    Runs within a stage are listed most expensive first (largest N), so parallel workers balance.
    """
    out: dict[str, dict] = {}
    sw = p["sweep"]
    for s in sw["settings"]:
        runs = {}
        for n in sorted(sw["sizes"], reverse=True):
            for seed in sw["seeds"]:
                c = _base(p, s, n, seed)
                c |= {"kind": "sweep", "solver": {"name": "ee", **p["solver"]}, "time": sw["time"],
                      "max_steps": sw["max_steps"], "probe": sw["probe"]}
                runs[f"sweep/{s}/n{n}/seed{seed}"] = c
        out[f"sweep-{s}"] = {"kind": "sweep", "dir": f"runs/sweep/{s}", "runs": runs}
    tr = p["trajectories"]
    runs = {}
    for s in tr["settings"]:
        o = (tr.get("overrides") or {}).get(s) or {}
        c = _base(p, s, o.get("n", tr["n"]), tr["seed"])
        c |= {"kind": "traj", "solver": {"name": "ee", **p["solver"]},
              "measure_every": o.get("measure_every", tr["measure_every"]), "probe": tr["probe"],
              "max_steps": o.get("max_steps", tr["max_steps"]), "checkpoint_every": tr["checkpoint_every"]}
        runs[f"traj/{s}"] = c
    out["traj"] = {"kind": "traj", "dir": "runs/traj", "runs": runs}
    gd = p["gd"]
    runs = {}
    for lr in sorted(gd["lrs"]):  # smallest η = most steps first
        c = _base(p, gd["setting"], gd["n"], gd["seed"])
        c |= {"kind": "gd", "solver": {"name": "gd", "lr": lr, "track_every": gd["track_every"]},
              "time": gd["time"], "max_steps": gd["max_steps"], "measure_every": gd["measure_every"],
              "probe": p["trajectories"]["probe"], "checkpoint_every": p["trajectories"]["checkpoint_every"]}
        runs[f"gd/lr{lr}"] = c
    out["gd"] = {"kind": "gd", "dir": "runs/gd", "runs": runs}
    ref = p["reference"]
    c = _base(p, ref["setting"], ref["n"], ref["seed"], dtype=ref["dtype"])
    c |= {"kind": "compare", "solver": {"name": "ee", **p["solver"]}, "gd_lrs": ref["gd_lrs"],
          "rtol": ref["rtol"], "atol": ref["atol"], "max_steps": ref["max_steps"],
          "snapshot_every": ref["snapshot_every"]}
    out["compare"] = {"kind": "compare", "dir": "runs/compare", "runs": {"compare": c}}
    return out


def run_config(p: dict, name: str) -> dict:
    """The resolved config of the planned run ``name`` (see :func:`plan`); KeyError when no stage has it."""
    for st in plan(p).values():
        if name in st["runs"]:
            return st["runs"][name]
    raise KeyError(f"no planned run {name!r}; see `python -m eoslib stages`")


def write_plan(p: dict, root: str | Path = ".") -> list[Path]:
    """Write ``runs/_plan/<stage>.json`` for every stage (content-stable: unchanged configs keep their bytes,
    so DVC sees no change) and remove plan files of stages that no longer exist."""
    d = Path(root) / "runs" / "_plan"
    d.mkdir(parents=True, exist_ok=True)
    written = []
    stages = plan(p)
    for sid, st in stages.items():
        f = d / f"{sid}.json"
        text = json.dumps(st, indent=1, sort_keys=True) + "\n"
        if not f.exists() or f.read_text() != text:
            f.write_text(text)
        written.append(f)
    for f in d.glob("*.json"):
        if f.stem not in stages:
            f.unlink()
    return written
