"""Agreement of the sweep's flow solver with a second solver at the same end points (e.g. Runge–Kutta–Chebyshev
sweeps checked against exponential Euler on the sizes where both run).

Section ``agreement`` of params.yaml: ``{solver: {...}, sizes: [...], seeds: [...]}`` for every sweep setting.
The runs ``agree/<setting>/n<N>/seed<s>`` are sweep runs (the same data, network, end points) with the other
solver; the ``endpoints`` stage measures them beside the sweep's, and the ledger's ``agreement`` check compares
ᾱ, the chain gain and λ_max at each end point within the tolerances registered in ``criteria``.
"""
from __future__ import annotations

from ..schema import Int, ListOf
from .base import SOLVER_SPEC, Experiment, Stage, base_config
from .sweep import run as sweep_run

SCHEMA = {
    "solver": SOLVER_SPEC,
    "sizes": ListOf(Int(minimum=2), ascending=True),
    "seeds": ListOf(Int(minimum=0)),
}


def plan(p: dict) -> dict[str, Stage]:
    """One stage per sweep setting (``agree-<setting>``), runs ``agree/<setting>/n<N>/seed<s>``."""
    sw, ag = p["sweep"], p["agreement"]
    out = {}
    for s in sw["settings"]:
        runs = {}
        for n in sorted(ag["sizes"], reverse=True):
            for seed in ag["seeds"]:
                c = base_config(p, s, n, seed, "agreement.sizes")
                c |= {"kind": "agree", "solver": dict(ag["solver"]), "time": sw["time"], "max_steps": sw["max_steps"],
                      "probe": sw["probe"]}
                runs[f"agree/{s}/n{n}/seed{seed}"] = c
        out[f"agree-{s}"] = Stage("agree", f"runs/agree/{s}", runs)
    return out


EXPERIMENT = Experiment("agreement", plan, sweep_run, "the sweep's end points with a second solver", schema=SCHEMA)
