"""What a profile costs before it runs: ``python -m eoslib plan [--root PROFILE]``.

Every finished run records its CPU seconds (``summary.json``); the ``costs`` stage of each profile collects them
into ``metrics/run_costs.json`` (kind, solver, N, parameter count P, classes, CPU and wall seconds, steps). The
estimate fits, per experiment kind and solver, log(CPU s) = c + a·log N + b·log P by least squares on the
committed run costs of every profile (the default profile: EE sweeps N = 16…512; the extended profile: RKC
sweeps N = 64…4096, two input sizes), and predicts each planned run from its N and P. Runs outside the
calibrated range are extrapolated — the table says by how much, since a power law fitted on small CPU runs is
only a rough guide at N = 50,000 or P = 10⁷. GPU hours cannot be estimated from CPU measurements: the estimate
says so unless ``metrics/bench.json`` holds a GPU measurement (``python -m benchmarks.run --device cuda``).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .io import read_json, write_json
from .results import run_names

REPO = Path(__file__).resolve().parents[1]


def run_costs(root: str | Path) -> pd.DataFrame:
    """One row per finished run of the profile at ``root``: kind, solver, n, P, classes, cpu/wall seconds, steps."""
    rows = []
    for name in run_names(None, root):
        folder = Path(root) / "runs" / name
        cfg, summ = read_json(folder / "config.json"), read_json(folder / "summary.json")
        if "cpu_seconds" not in summ:
            continue
        rows.append({"run": name, "kind": cfg["kind"], "solver": cfg["solver"]["name"] if "solver" in cfg else "",
                     "n": cfg["n"], "P": summ.get("P"), "classes": cfg["setting"].get("classes"),
                     "model": (cfg.get("model") or {}).get("kind", "mlp"), "cpu_seconds": summ["cpu_seconds"],
                     "wall_seconds": summ.get("wall_seconds"), "steps": summ.get("steps")})
    return pd.DataFrame(rows)


def write_run_costs(root: str | Path = ".") -> Path:
    out = Path(root) / "metrics" / "run_costs.json"
    df = run_costs(root)
    write_json({"runs": df.to_dict(orient="records")}, out)
    return out


def calibration(roots) -> pd.DataFrame:
    """The committed run costs of the given profiles, stacked (the ``profile`` column names each)."""
    frames = []
    for r in roots:
        f = Path(r) / "metrics" / "run_costs.json"
        if f.exists():
            frames.append(pd.DataFrame(read_json(f)["runs"]).assign(profile=Path(r).name or "default"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def fit(cal: pd.DataFrame) -> dict:
    """(kind, solver) → {c, a, b, runs, n_range, P_range}: log cpu = c + a log N + b log P (b = 1 when P does not
    vary in the calibration: one gradient costs ∝ P)."""
    out = {}
    if cal.empty:
        return out
    for (kind, solver), g in cal.groupby(["kind", "solver"]):
        g = g[(g.cpu_seconds > 0) & g.P.notna()]
        if len(g) < 3:
            continue
        x1, x2, y = np.log(g.n.astype(float)), np.log(g.P.astype(float)), np.log(g.cpu_seconds.astype(float))
        if np.ptp(x2) > 0.5:
            A = np.column_stack([np.ones_like(x1), x1, x2])
            (c, a, b), *_ = np.linalg.lstsq(A, y, rcond=None)
        else:
            A = np.column_stack([np.ones_like(x1), x1])
            (c, a), *_ = np.linalg.lstsq(A, y - x2, rcond=None)
            b = 1.0
        out[(kind, solver)] = {"c": float(c), "a": float(a), "b": float(b), "runs": int(len(g)),
                               "n_range": [int(g.n.min()), int(g.n.max())], "P_range": [int(g.P.min()), int(g.P.max())]}
    return out


def parameter_count(config: dict) -> int:
    """P of a planned run's network, built without data (on the meta device)."""
    import torch

    from .data import DATASETS
    from .models import network

    s, m = config["setting"], config["model"]
    meta = DATASETS.entry(s["dataset"]).meta
    shape = tuple(meta["input_shape"])
    q = s.get("classes") or meta["num_classes"]
    with torch.device("meta"):
        net = network(m.get("kind", "mlp"), shape, m["width"], m["depth"], q, init="default", seed=None)
    return int(sum(p.numel() for p in net.parameters()))


def estimate(params: dict, model: dict) -> pd.DataFrame:
    """One row per planned stage: runs, estimated CPU hours, the calibration used and how far it extrapolates."""
    from .config import plan

    rows = []
    for sid, st in plan(params).items():
        total, worst, used, missing = 0.0, 1.0, set(), 0
        for cfg in st["runs"].values():
            key = (cfg["kind"], cfg["solver"]["name"] if "solver" in cfg else "")
            f = model.get(key) or next((v for (k, _), v in model.items() if k == cfg["kind"]), None)
            if f is None:
                missing += 1
                continue
            n, P = cfg["n"], parameter_count(cfg)
            total += math.exp(f["c"] + f["a"] * math.log(n) + f["b"] * math.log(P))
            worst = max(worst, n / f["n_range"][1], P / f["P_range"][1])
            used.add(f"{key[0]}/{key[1]}")
        rows.append({"stage": sid, "runs": len(st["runs"]), "cpu_hours": total / 3600, "uncalibrated_runs": missing,
                     "extrapolation": worst, "calibration": ", ".join(sorted(used))})
    return pd.DataFrame(rows)


def gpu_note(bench: dict) -> str:
    dev = (bench.get("meta") or {}).get("device", "cpu")
    if str(dev).startswith("cuda"):
        return f"GPU: metrics/bench.json holds a {dev} measurement ({(bench.get('meta') or {}).get('device_name', '')})"
    return ("GPU hours: not estimated — no GPU measurement in metrics/bench.json (this machine has no GPU); run "
            "`python -m benchmarks.run --device cuda` on the GPU to calibrate")


def main(argv: list[str] | None = None) -> int:
    """``python -m eoslib plan [--root PROFILE]`` (also ``python -m eoslib.estimate write`` for the costs stage)."""
    import argparse

    from .config import load_params

    ap = argparse.ArgumentParser(prog="python -m eoslib plan", description="runs and estimated compute of a profile")
    ap.add_argument("what", nargs="?", choices=("plan", "write"), default="plan")
    ap.add_argument("--root", default=".", help="profile folder holding params.yaml")
    a = ap.parse_args(argv)
    if a.what == "write":
        print(f"wrote {write_run_costs(a.root)}")
        return 0
    params = load_params(Path(a.root) / "params.yaml")
    roots = [REPO] + sorted({p.parent.parent for p in (REPO / "profiles").glob("*/metrics/run_costs.json")})
    model = fit(calibration(roots))
    if not model:
        print("no measured run costs yet (metrics/run_costs.json of a profile): run `dvc repro` once", file=sys.stderr)
    est = estimate(params, model)
    pd.set_option("display.width", 160)
    print(f"profile {params.get('profile', a.root)}: {int(est.runs.sum())} runs in {len(est)} training stages; "
          f"calibrated on {sum(v['runs'] for v in model.values())} measured runs")
    print(est.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    cpu = est.cpu_hours.sum()
    workers = ((params.get("executor") or {}).get("workers") or 1)
    print(f"total: {cpu:.3g} CPU hours (≈ {cpu / workers:.3g} h wall with {workers} local workers, one thread each)")
    if (est.extrapolation > 2).any():
        print(f"note: extrapolated up to {est.extrapolation.max():.0f}× beyond the calibrated N or P — a rough guide")
    bench = REPO / "metrics" / "bench.json"
    print(gpu_note(read_json(bench) if bench.exists() else {}))
    return 0


__all__ = ["run_costs", "write_run_costs", "calibration", "fit", "parameter_count", "estimate", "main"]

if __name__ == "__main__":
    sys.exit(main())
