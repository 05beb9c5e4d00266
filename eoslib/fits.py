"""The ``fit`` stage: power-law fits value ≈ c·N^β of every pre-registered measure → metrics/powerlaw.json.

``python -m eoslib.fits [--root R]`` (also ``python -m eoslib fit``). Computed from the end-point tables alone
(``runs/endpoints/*.csv``); the statistics are :mod:`eoslib.powerlaw`'s. The claims ledger (:mod:`eoslib.claims`)
judges C4 on this file; nothing here depends on the claims' code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import json_safe, write_json
from .powerlaw import PAPER_R2, analyse_power_law, fit_power_law, growth_tests
from .results import endpoint_table


def _fit_entry(sub, measure: str, pl: dict) -> dict:
    """One setting × end point × measure: the fit as first registered (pooled OLS, bootstrap over seeds) and the
    seed-aware ``analysis``; non-positive or missing values are excluded (log v), a fit that cannot be made
    records its ``error``."""
    vals = sub[measure].to_numpy(float) if measure in sub else np.array([])
    ok = np.isfinite(vals) & (vals > 0)
    entry = {"n_runs": int(len(sub)), "n_excluded": int((~ok).sum()), "sizes": sorted(int(n) for n in sub.n.unique())}
    N, v, g = sub.n.to_numpy(float)[ok], vals[ok], sub.seed.to_numpy()[ok]
    try:
        f = fit_power_law(N, v, groups=g, n_boot=pl["n_boot"], level=pl["level"], seed=0)
        entry |= f.to_dict()
        lo, hi = f.beta_interval
        entry["beta_excludes_zero"] = bool(lo > 0 or hi < 0)
        entry["analysis"] = analyse_power_law(
            N, v, groups=g, level=pl["level"], n_boot=pl["n_boot"], seed=0,
            min_groups_bootstrap=pl.get("min_groups_bootstrap", 10)).to_dict()
        entry["growth"] = growth_tests(N, v, g, level=pl["level"]).to_dict()
    except ValueError as e:
        entry |= {"error": str(e)}
    return entry


def fit_all(params: dict, root: str | Path = ".") -> dict:
    """Fit value ≈ c·N^β for every setting × end point × pre-registered measure.

    Each entry holds the fit as first registered (:func:`eoslib.powerlaw.fit_power_law`: pooled OLS, R² over
    pooled runs, bootstrap over seeds) and under ``analysis`` the seed-aware statistics
    (:func:`eoslib.powerlaw.analyse_power_law`: per-seed slopes with a t-interval, R² on per-N means, a
    saturating alternative compared by AICc). ``primary_r2``: the pooled R² of the primary measure per setting;
    ``paper_r2``: the paper's R² range, beside the fits of a profile that judges C4."""
    pl = params["powerlaw"]
    settings = (params.get("sweep") or {}).get("settings", [])
    if not settings:  # a profile without a sweep (e.g. the causal profile): nothing to fit
        return {"primary": pl["primary"], "primary_r2": {}, "fits": {}, "sharpening": {}}
    ep = endpoint_table(root)
    if "kind" in ep:
        ep = ep[ep.kind == "sweep"]
    fits: dict = {}
    for setting in settings:
        for endpoint in pl["endpoints"]:
            sub = ep[(ep.setting == setting) & (ep.endpoint == endpoint)]
            fits.setdefault(setting, {})[endpoint] = {m: _fit_entry(sub, m, pl) for m in pl["measures"]}
    prim = pl["primary"]
    r2 = {s: fits[s][prim["endpoint"]][prim["measure"]].get("r2") for s in fits}
    paper = {"paper_r2": list(PAPER_R2)} if (params.get("criteria") or {}).get("C4") else {}
    sharp = {s: sharpening_by_size(ep[ep.setting == s]) for s in settings}
    return {"primary": prim, "primary_r2": r2, "fits": fits, "sharpening": sharp} | paper


def sharpening_by_size(sub) -> dict:
    """Per N, over the runs (seeds): λ_max at θ₀, its minimum, its maximum along the flow and the smallest ratio
    max/min (the runs' ``lam_*`` columns, :func:`eoslib.endpoints.sharpening`) — the gate of C4 v3."""
    if "sharpening" not in sub:
        return {}
    runs = sub.drop_duplicates("run")
    out = {}
    for n, g in runs.groupby("n"):
        out[str(int(n))] = {"runs": int(len(g)), "lam_init": float(g.lam_init.median()),
                            "lam_min": float(g.lam_min.median()), "lam_max": float(g.lam_max_flow.median()),
                            "min_sharpening": float(g.sharpening.min()), "median_sharpening": float(g.sharpening.median())}
    return out


def write_fits(params: dict, root: str | Path = ".") -> dict:
    """Write ``metrics/powerlaw.json`` of the profile at ``root``; return its content."""
    out = json_safe(fit_all(params, root))
    write_json(out, Path(root) / "metrics" / "powerlaw.json")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m eoslib.fits [--root R]`` (also ``python -m eoslib fit``)."""
    import argparse

    from .io import read_params

    ap = argparse.ArgumentParser(prog="python -m eoslib.fits", description="power-law fits → metrics/powerlaw.json")
    ap.add_argument("--root", default=".", help="profile folder holding params.yaml")
    a = ap.parse_args(argv)
    out = write_fits(read_params(a.root), a.root)
    prim = out["primary"]
    for s, r2 in out["primary_r2"].items():
        f = out["fits"][s][prim["endpoint"]][prim["measure"]]
        print(f"{s}: {prim['measure']}@{prim['endpoint']} β = {f.get('beta')}, R² = {r2}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
