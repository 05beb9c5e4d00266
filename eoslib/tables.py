"""Pure-pandas helpers on trajectory tables, shared by a kind's run summary (training) and the analysis
(:mod:`eoslib.causal`, the claims): a leaf module, so neither layer imports the other."""
from __future__ import annotations

import numpy as np
import pandas as pd

#: the chain-gain decomposition columns (every iterate of an intervention run)
CHAIN_COLUMNS = ("abar", "log_alpha_mean", "log_norms_mean", "log_chain_mean")


def _float(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def lam_max(table: pd.DataFrame) -> pd.Series:
    """λ_max(∇²L) per row: the solver's ``sharpness`` (every iterate for agd/rkc), where missing (the final row,
    or a solver that does not track it) the measured ``hess_lam1``; both are the top eigenvalue to tolerance."""
    nan = pd.Series(np.nan, index=table.index)
    return table.get("sharpness", nan).combine_first(table.get("hess_lam1", nan))


def value_at(table: pd.DataFrame, x: str, level: float, y: str, log: bool = True, rtol: float = 0.0
             ) -> float | None:
    """``y`` where ``x`` first reaches ``level`` (x decreasing, e.g. the loss: first row with x ≤ level; x
    increasing, e.g. t: first row with x ≥ level), linearly interpolated (in log x with ``log``) between that row
    and the previous. A run ending within ``rtol`` of the level (a loss landed on the threshold within
    ``Stop.land_rtol``) gives its last value; None when the level is never reached."""
    d = table[[x, y]].dropna()
    xs, ys = d[x].to_numpy(float), d[y].to_numpy(float)
    if len(xs) == 0:
        return None
    down = xs[-1] <= xs[0]
    hit = np.nonzero(xs <= level if down else xs >= level)[0]
    if len(hit) == 0:
        return float(ys[-1]) if abs(xs[-1] / level - 1) <= rtol else None
    i = hit[0]
    if i == 0:
        return float(ys[0])
    f = (lambda v: np.log(v)) if log else (lambda v: v)
    a, b, c = f(xs[i - 1]), f(xs[i]), f(level)
    w = 0.0 if b == a else (c - a) / (b - a)
    return float(ys[i - 1] + w * (ys[i] - ys[i - 1]))


#: a run landing on the loss threshold ends within Stop.land_rtol (1 %) of it: two runs within 2 % of each other
LOSS_RTOL = 0.02


def loss_levels(loss_switch: float, threshold: float, fractions) -> list[float]:
    """L_s·(L_thr/L_s)^f: geometric steps from the switch loss to the threshold."""
    return [float(loss_switch * (threshold / loss_switch) ** f) for f in fractions]
