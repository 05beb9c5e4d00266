"""The ``endpoints`` stage: every pre-registered measure at every end point of every sweep run.

Sweep runs store θ at their end points (``endpoints.pt``: init, threshold, time); this stage rebuilds each
run's objective, evaluates the measures listed in ``powerlaw.measures`` (see :mod:`eoslib.measures`) at each
end point on the run's fixed probe subset, and writes ``runs/endpoints/<setting>.csv`` — one row per
(run, end point), read back by :func:`eoslib.results.endpoint_table`. Measuring apart from training means a
new measure re-runs this stage only.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .io import read_json
from .results import describe


def measure_run(name: str, root: str | Path, measures: list[str], device: str = "cpu",
                endpoints: list[str] | None = None) -> list[dict]:
    """Rows (one per reached end point) of the measures at the end points of the finished sweep run ``name``:
    θ₀ and those of ``endpoints`` (default: every one the run stored) that the run reached."""
    import torch

    from .experiments.base import build_objective
    from .measures import measure_point

    folder = Path(root) / "runs" / name
    cfg, summ = read_json(folder / "config.json"), read_json(folder / "summary.json")
    objective, _ = build_objective(cfg | {"device": device})
    thetas = torch.load(folder / "endpoints.pt", map_location=objective.device, weights_only=False)
    ident = describe(name, cfg) | sharpening(folder / "trajectory.csv")
    cache: dict = {}
    init = measure_point(objective, thetas["init"], measures, probe=cfg["probe"], seed=cfg["seed"], cache=cache)
    rows = []
    for ep, th in thetas.items():
        if endpoints is not None and ep != "init" and ep not in endpoints:
            continue
        vals = init if ep == "init" else measure_point(objective, th, measures, probe=cfg["probe"], seed=cfg["seed"],
                                                        init=init, cache=cache)
        rows.append(ident | {"endpoint": ep} | summ["endpoints"][ep] | vals)
    return rows


def sharpening(trajectory: Path) -> dict:
    """λ_max along a sweep run as its solver recorded it (certified warm estimates, one per stepped iterate, up
    to the end of the run): at θ₀ (``lam_init``), its minimum (``lam_min``), its maximum after that minimum
    (``lam_max_flow``) and the rise ``sharpening`` = max_{t ≥ t_min} λ_max / λ_min — the authors'-regime gate of
    C4 v3 (large inits often dip first: a λ_max that only falls from θ₀ has sharpening 1, whatever it was at θ₀)."""
    tab = pd.read_csv(trajectory)
    col = "lam_max" if "lam_max" in tab else "sharpness"
    lam = tab[col].dropna().reset_index(drop=True) if col in tab else pd.Series(dtype=float)
    if lam.empty:
        return {}
    i = int(lam.idxmin())
    lo, hi = float(lam.iloc[i]), float(lam.iloc[i:].max())
    return {"lam_init": float(lam.iloc[0]), "lam_min": lo, "lam_max_flow": hi,
            "sharpening": hi / lo if lo > 0 else float("nan")}


def _one(args) -> list[dict]:
    return measure_run(*args)


def write_endpoints(setting: str, root: str | Path, measures: list[str], workers: int = 1, device: str = "cpu",
                    endpoints: list[str] | None = None) -> Path:
    """Measure every run of the stages ``sweep-<setting>`` and, when planned, ``agree-<setting>`` (from their
    plans) at θ₀ and the registered ``endpoints`` → ``runs/endpoints/<setting>.csv`` (column ``kind`` tells them
    apart)."""
    root = Path(root)
    runs: dict = {}
    for stage in (f"sweep-{setting}", f"agree-{setting}"):
        f = root / "runs" / "_plan" / f"{stage}.json"
        if f.exists():
            runs |= json.loads(f.read_text())["runs"]
    names = sorted(runs, key=lambda n: -runs[n]["n"])
    missing = [n for n in names if not (root / "runs" / n / "summary.json").exists()]
    if missing:
        raise FileNotFoundError(f"sweep runs not finished: {missing[:3]}{' …' if len(missing) > 3 else ''}; "
                                f"run `python -m eoslib train --stage sweep-{setting}` first")
    args = [(n, str(root), list(measures), device, None if endpoints is None else list(endpoints)) for n in names]
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            rows = [r for rs in pool.map(_one, args) for r in rs]
    else:
        rows = [r for a in args for r in _one(a)]
    out = root / "runs" / "endpoints" / f"{setting}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows).sort_values(["n", "seed", "endpoint"], kind="stable")
    tmp = out.with_name(out.name + ".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m eoslib.endpoints [--root R] --setting S`` (also ``eoslib endpoints``)."""
    import argparse
    import time

    from .io import read_params

    ap = argparse.ArgumentParser(prog="python -m eoslib endpoints", description="measure the sweep end points")
    ap.add_argument("--root", default=".", help="profile folder holding params.yaml")
    ap.add_argument("--setting", required=True)
    a = ap.parse_args(argv)
    p = read_params(a.root)
    t = time.perf_counter()
    out = write_endpoints(a.setting, a.root, p["powerlaw"]["measures"], workers=(p.get("executor") or {}).get("workers", 1),
                          device=p.get("device", "auto"), endpoints=p["powerlaw"]["endpoints"])
    print(f"{out}: measured in {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
