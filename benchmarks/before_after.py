"""Steady-state exponential Euler step of the library at an older git revision vs the working tree, interleaved
in one process: `python -m benchmarks.before_after [--rev 3ac04f5]` (3ac04f5 = just before the issue-5 work).

The old eigen.py, objective.py and solvers.py are read with `git show` into a temporary package; both solvers
start from the same steady state (reached with the current library) and the same warm eigenvectors.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"

from .common import DIGITS, WIDE, build, interleaved, steady_state  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rev", default="3ac04f5")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--settings", default="digits,wide")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp()) / "eoslib_before"
    tmp.mkdir()
    (tmp / "__init__.py").write_text("")
    for f in ("eigen", "objective", "solvers"):
        src = subprocess.run(["git", "show", f"{args.rev}:eoslib/{f}.py"], capture_output=True, text=True, check=True)
        (tmp / f"{f}.py").write_text(src.stdout)
    sys.path.insert(0, str(tmp.parent))
    from eoslib_before.objective import Objective as OldObjective
    from eoslib_before.solvers import ExponentialEuler as OldEE

    out = {}
    for s in (DIGITS, WIDE):
        if s.name not in args.settings.split(","):
            continue
        new = build(s)
        theta, solver, _ = steady_state(new, s)
        old = OldObjective(new.model, new.X, new.y, "ce")
        osolver = OldEE(dt_max=s.dt_max, stiff_dim=s.k, tol=s.tol)
        osolver.step(old, theta)  # creates its tracker
        osolver.tracker.vectors = solver.tracker.vectors.clone()
        state = {"before": theta.clone(), "after": theta.clone()}
        mv: dict[str, list[int]] = {"before": [], "after": []}

        def stepper(which):
            def f():
                o, sv = (old, osolver) if which == "before" else (new, solver)
                state[which], rec = sv.step(o, state[which])
                mv[which].append(rec["eig_matvecs"])
            return f

        ts = interleaved({"before": stepper("before"), "after": stepper("after")}, 9 if s.name == "digits" else 3)
        b, a = statistics.median(ts["before"]), statistics.median(ts["after"])
        out[s.name] = {"before_s": b, "after_s": a, "speedup": b / a,
                       "before_matvecs": float(np.mean(mv["before"][1:])), "after_matvecs": float(np.mean(mv["after"][1:]))}
        print(f"{s.name}: before {b:.3f}s ({out[s.name]['before_matvecs']:.1f} matvecs/step), after {a:.3f}s "
              f"({out[s.name]['after_matvecs']:.1f}), speed-up {b / a:.2f}x", flush=True)
    return out


if __name__ == "__main__":
    main()
