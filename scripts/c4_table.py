"""Print the README's C4 table from the profiles' metrics/powerlaw.json (so it never drifts from the fits).

    python scripts/c4_table.py [--measures alpha_mean chain_gain sharpness] [--endpoint threshold] [PROFILE …]

Columns: β_t (the mean of the per-seed slopes) with its 95 % t-interval — the interval belongs to that mean, not
to the pooled β; R² on per-N means (pooled R²); ΔAICc = AICc_power_law − AICc_saturating (> 2: the saturating
curve is preferred); and, where the fits carry criteria v3's growth tests, the one-sided p(β ≤ 0) over the
common range, upper-half/full slope ratio and the fold change over that range.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fmt(x, spec=".3f") -> str:
    return "–" if x is None or x != x else format(x, spec)


def criteria_version(root: Path) -> str:
    """The C4 criteria version that judges the profile's ledger (the last of ``criteria.C4`` in its params)."""
    import yaml

    versions = (yaml.safe_load((root / "params.yaml").read_text()).get("criteria") or {}).get("C4") or []
    return f"v{versions[-1]}" if versions else "–"


def rows(profile: str, measures: list[str], endpoint: str) -> list[str]:
    root = REPO if profile == "default" else REPO / "profiles" / profile
    f = root / "metrics" / "powerlaw.json"
    if not f.exists():
        return []
    version = criteria_version(root)
    fits = json.loads(f.read_text())["fits"]
    out = []
    for s, byep in fits.items():
        for m in measures:
            e = byep.get(endpoint, {}).get(m)
            if not e or "analysis" not in e:
                continue
            a, g = e["analysis"], e.get("growth") or {}
            lo, hi = a["beta_t_interval"]
            v3 = (f"{fmt(g.get('p_grows'), '.2g')} | {fmt(g.get('slope_ratio'), '.2f')} | "
                  f"×{fmt(g.get('fold_change'), '.2f')}") if g else "– | – | –"
            out.append(f"| {profile} ({version}) | {s} | {m} | {fmt(a['beta_t'])} [{fmt(lo)}, {fmt(hi)}] | "
                       f"{fmt(a['r2_means'], '.2f')} ({fmt(a['r2_pooled'], '.2f')}) | {fmt(a['delta_aicc'], '.1f')} | "
                       f"{a['preferred'] or '–'} | {v3} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profiles", nargs="*", default=["default", "extended", "long-range", "authors", "mse"])
    ap.add_argument("--measures", nargs="+", default=["alpha_mean", "chain_gain", "sharpness"])
    ap.add_argument("--endpoint", default="threshold")
    a = ap.parse_args(argv)
    print(f"| profile (C4 criteria) | setting | measure at {a.endpoint} | β (mean of per-seed slopes) [95 % t-interval] | "
          "R² means (pooled) | ΔAICc (pow − sat; > 2 favours saturating) | preferred | v3: p(β ≤ 0) | "
          "v3: upper/full slope | v3: fold change |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in a.profiles:
        for r in rows(p, a.measures, a.endpoint):  # a profile without fits (not run yet) has no rows
            print(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
