"""Where the time of one pipeline run goes: `python -m benchmarks.profile_run RUN [RUN ...]`.

Each RUN (a name from `python -m eoslib stages`, e.g. `sweep/fmnist-elu-ce/n512/seed0`, `traj/digits-elu-ce`)
is trained from its config as planned from params.yaml into a temporary folder under cProfile, in this
process; the table splits its wall time into imports, solver steps, measurements (and the alignment inside
them) and eigen-solves (and the Hessian / G / H products inside them).
The first run of a process pays the imports, as the first run of each pipeline worker does.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "benchmarks"

#: (label, file suffix, function names) whose cumulative times are read from the profile
PARTS = (
    ("imports", "<frozen importlib._bootstrap>", ("_find_and_load",)),
    ("solver steps", "eoslib/solvers/", ("step",)),
    ("measurements", "eoslib/measurement.py", ("__call__",)),
    ("of which alignment", "eoslib/alignment.py", ("alignment_stats",)),
    ("eigen-solves (in solver steps and measurements)", "eoslib/eigen.py", ("top_eigenpairs",)),
    ("of which Hessian / G / H products", "eoslib/objective.py", ("hvp", "ggn_vp")),
)


def _cumulative(stats: pstats.Stats, suffix: str, names: tuple[str, ...]) -> float:
    top = 0.0
    for (file, _line, fn), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if fn in names and (file.endswith(suffix) or (suffix.endswith("/") and suffix in file)):
            top += ct
    return top


def profile(name: str, root: Path) -> dict:
    """Seconds per part of one run (cProfile adds a few per cent of overhead to Python-heavy parts)."""
    from eoslib.config import load_params, run_config
    from eoslib.run import execute_run

    try:
        config = run_config(load_params(root / "params.yaml"), name)
    except KeyError as e:
        raise SystemExit(e.args[0]) from None
    tmp = Path(tempfile.mkdtemp())
    prof = cProfile.Profile()
    try:
        prof.enable()
        summary = execute_run(name, config, tmp)
        prof.disable()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stats = pstats.Stats(prof)
    total = _cumulative(stats, "eoslib/run.py", ("execute_run",))
    out = {"run": name, "total": total, "steps": summary["steps"]}
    for label, suffix, names in PARTS:
        out[label] = _cumulative(stats, suffix, names)
    return out


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    from eoslib.results import find_root

    torch.set_num_threads(args.threads)
    root = find_root()
    rows = [profile(r, root) for r in args.runs]
    labels = ["total"] + [p[0] for p in PARTS]
    print("| part | " + " | ".join(f"{r['run']} ({r['steps']} steps)" for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for lab in labels:
        cells = [f"{r[lab]:.1f} s ({100 * r[lab] / r['total']:.0f}%)" for r in rows]
        print(f"| {lab} | " + " | ".join(cells) + " |")
    return rows


if __name__ == "__main__":
    main()
