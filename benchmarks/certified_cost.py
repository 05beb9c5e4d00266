"""What the certified measurements cost (issue 17): Hessian products per run, before and after, side by side.

    python benchmarks/certified_cost.py --before 4bad927 --after HEAD \
        --run .:gd/digits-elu-ce/lr0.1/seed0 --run profiles/extended:sweep/fmnist-elu-ce/n2048/seed0 …

Each ``--run PROFILE:NAME`` is trained twice, with the library of each revision (a ``git worktree`` of it,
first on ``PYTHONPATH``), from that profile's ``params.yaml`` planned in a scratch folder, one thread. The
counts are deterministic (products, not seconds), so one run each suffices; wall times are printed for
information only (the machines are shared). Products: the trajectory's ``cost_hvp`` summed (every Hessian(-like)
product of the solver's eigen-solves, cold checks and retries included) and ``cost_grad``; the measurement
hook's solves are reported apart (``measure_seconds``) since they are not part of the flow.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def worktree(rev: str, where: Path) -> Path:
    """A detached worktree of ``rev`` at ``where`` (``.``: this working tree, as it is)."""
    if rev == ".":
        return REPO
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(where), rev], check=True)
    return where


def train_once(tree: Path, profile: str, name: str, scratch: Path) -> dict:
    """Plan ``profile``'s params in ``scratch`` and train run ``name`` with the library in ``tree``."""
    root = scratch / profile.replace("/", "_")
    if not root.exists():
        root.mkdir(parents=True)
        shutil.copy(REPO / profile / "params.yaml", root / "params.yaml")
        if (REPO / profile / "data").exists():
            shutil.copytree(REPO / profile / "data", root / "data")
    env = os.environ | {"PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    py = [sys.executable, "-m", "eoslib"]
    subprocess.run(py + ["check-params", "--root", str(root)], env=env, check=True, capture_output=True, cwd=scratch)
    t = time.perf_counter()
    subprocess.run(py + ["train", "--root", str(root), "--run", name], env=env, check=True, capture_output=True,
                   cwd=scratch)
    wall = time.perf_counter() - t
    traj = pd.read_csv(root / "runs" / name / "trajectory.csv")
    out = {"steps": int(len(traj) - 1), "hvp": int(traj.get("cost_hvp", pd.Series(dtype=float)).sum()),
           "grad": int(traj.get("cost_grad", pd.Series(dtype=float)).sum()), "wall_s": round(wall, 1)}
    for c in ("eig_corrected", "eig_cold_checked"):
        if c in traj:
            out[c] = int(traj[c].fillna(0).astype(float).sum())
    shutil.rmtree(root / "runs" / name)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", default="HEAD", help="a revision, or . for the working tree")
    ap.add_argument("--run", action="append", required=True, help="PROFILE:NAME (PROFILE . for the default)")
    ap.add_argument("--out", default=str(REPO / "metrics" / "certified_cost.json"))
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="certcost-"))
    trees = {k: worktree(rev, tmp / k) for k, rev in (("before", a.before), ("after", a.after))}
    revs = {k: subprocess.run(["git", "-C", str(t), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip() for k, t in trees.items()}
    rows = []
    try:
        for spec in a.run:
            profile, name = spec.split(":", 1)
            r = {"profile": profile, "run": name}
            for k, tree in trees.items():  # before, then after, one run at a time
                r[k] = train_once(tree, profile, name, tmp / f"scratch-{k}")
            r["ratio_hvp"] = round(r["after"]["hvp"] / max(r["before"]["hvp"], 1), 3)
            r["ratio_products"] = round((r["after"]["hvp"] + r["after"]["grad"])
                                        / max(r["before"]["hvp"] + r["before"]["grad"], 1), 3)
            rows.append(r)
            print(json.dumps(r), flush=True)
    finally:
        for t in trees.values():
            if t != REPO:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(t)], check=False)
    result = {"before": revs["before"], "after": revs["after"], "runs": rows}
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
