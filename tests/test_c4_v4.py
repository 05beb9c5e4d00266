"""C4 v4 (the long-range reading) on constructed fits: over 64…16384 with 3 seeds, flat data read as flat over
256×, a slow power law (β = 0.05) is not (range-limited null or growth), a falling measure does not grow, and a
range shorter than 256× gives no reading."""
from __future__ import annotations

import numpy as np
import pandas as pd

from eoslib.claims.c4 import V4, judge_v4
from eoslib.fits import _fit_entry, sharpening_by_size

PL = {"n_boot": 200, "level": 0.95, "min_groups_bootstrap": 10}
LONG = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]


def table(fn, sizes=LONG, seeds=3, noise=0.01, rng=0):
    r = np.random.default_rng(rng)
    rows = [{"run": f"r/n{n}/seed{s}", "n": n, "seed": s, "m": fn(n) * np.exp(r.normal(0, noise)),
             "lam_init": 1.0, "lam_min": 0.5, "lam_max_flow": 10.0, "sharpening": 20.0}
            for s in range(seeds) for n in sizes]
    return pd.DataFrame(rows)


def judge(tabs: dict) -> dict:
    params = {"powerlaw": {"primary": {"measure": "m", "endpoint": "threshold"}}}
    fits = {"fits": {s: {"threshold": {"m": _fit_entry(t, "m", PL)}} for s, t in tabs.items()},
            "sharpening": {s: sharpening_by_size(t) for s, t in tabs.items()}}
    return judge_v4(params, None, V4(), fits)


def test_flat_over_256x_and_a_slow_power_law_are_told_apart():
    out = judge({"flat": table(lambda n: 0.7), "slow": table(lambda n: 0.2 * n ** 0.05),
                 "fall": table(lambda n: n ** -0.1)})
    s = out["measured"]["settings"]
    assert s["flat"]["long_range_reading"].startswith("flat over 256×")
    assert s["slow"]["measurable"] and s["slow"]["n_groups"] == 3  # 3 seeds suffice under v4
    assert s["slow"]["long_range_reading"].startswith("range-limited")
    assert s["slow"]["ok"] and out["verdict"] == "partly"
    assert s["fall"]["long_range_reading"].startswith("does not grow over 256×")
    assert "long-range reading" in out["summary"]


def test_a_short_range_gives_no_reading():
    out = judge({"short": table(lambda n: 0.7, sizes=LONG[:7])})
    assert out["measured"]["settings"]["short"]["long_range_reading"].startswith("no reading (range 64×")
