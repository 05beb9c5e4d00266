"""A measurement hook for :func:`eoslib.training.train`: curvature, layer shares and alignment along a run.

Columns it adds to the trajectory row of θ (every ``every`` steps and at the final iterate):
``accuracy``; ``hess_lam1``, ``ggn_lam1``, ``res_lam1`` — λ_max of ∇²L, G and H (largest algebraic);
``share_1..share_K`` — layer shares ‖w_k‖² of λ_max(G) (top eigenvector w); ``shareq_1..shareq_K`` — the same
over the top-q eigenspace of G, q = the loss's outlier count (Q, Q − 1 for CE), weighted by the eigenvalues:
Σ_j λ_j ‖w_{j,k}‖² / Σ_j λ_j (robust to near-degenerate top eigenvalues, where the top vector alone is not
well defined); ``ggn_lamq`` = λ_q(G); the certificate of each operator's solve, ``<op>_converged``, ``<op>_residual`` (max
relative residual) and ``<op>_corrected`` (1 when a cold check replaced the warm result); on a fixed probe subset every registered alignment
measure (:mod:`eoslib.measures`: ``alpha_mean``, ``alpha_median``, ``alpha_gmean``, ``chain_gain``, …) and per
layer ``jnorm_k`` = geometric mean of ‖Jᵏ‖₂, ``afac_k`` = mean aₖ; ``measure_seconds``, the hook's own cost.
Eigenvectors are warm-started from the previous measurement by one :class:`~eoslib.solvers.base.EigenTracker`
per operator (guarded at every measurement — they are 10 steps apart, so a guard costs little beside the
training — checked cold every ``COLD_EVERY``-th and when λ₁ leaves its trend by 25 %; never raising: an unconverged value is stored with ``converged`` False and the ledger refuses it).
"""
from __future__ import annotations

import time

import numpy as np
from torch import Tensor

from .alignment import probe_subset
from .curvature import OPERATORS, shares_of
from .objective import Objective
from .solvers.base import EigenTracker

_SHORT = {"hessian": "hess", "ggn": "ggn", "residual": "res"}


class Measurement:
    """Train hook: ``hook(objective, θ, step=, t=, final=) -> dict | None`` (fires when step % every == 0
    or at the final iterate). ``probe``: size of the fixed seeded subset used for alignment (None = all).
    Per-measurement cost is printed once (``verbose``) and stored in ``measure_seconds``."""

    def __init__(
        self,
        every: int = 10,
        tol: float = 1e-3,
        operators: tuple[str, ...] = OPERATORS,
        shares: bool = True,
        alignment: bool = True,
        probe: int | None = 512,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be ≥ 1 (got {every})")
        if shares and "ggn" not in operators:
            raise ValueError("layer shares need the 'ggn' operator")
        self.every, self.tol, self.operators = every, tol, operators
        self.shares, self.alignment, self.probe, self.seed, self.verbose = shares, alignment, probe, seed, verbose
        self.trackers: dict[str, EigenTracker] = {}

    #: a cold check every 10th measurement (every 100 steps at the default ``every``)
    COLD_EVERY = 10

    def tracker(self, name: str, k: int) -> EigenTracker:
        """The warm-started tracker of operator ``name`` (top k)."""
        if name not in self.trackers:
            self.trackers[name] = EigenTracker(k, self.tol, strict=False, operator=name, guard_every=1,
                                              cold_every=self.COLD_EVERY)
        t = self.trackers[name]
        t.k = k
        return t

    def state_dict(self) -> dict:
        """The trackers' state (checkpointed by :func:`eoslib.training.train`, so a resumed run measures the same
        values bit for bit)."""
        return {"trackers": {n: t.state_dict() for n, t in self.trackers.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.trackers = {}
        for n, st in state.get("trackers", {}).items():
            self.tracker(n, 1).load_state_dict(st)
            self.trackers[n].k = st["vectors"].shape[1] if st.get("vectors") is not None else 1

    def __call__(self, objective: Objective, theta: Tensor, step: int, t: float, final: bool) -> dict | None:
        if not final and step % self.every:
            return None
        start = time.perf_counter()
        return self.measure(objective, theta) | {"measure_seconds": time.perf_counter() - start}

    def measure(self, objective: Objective, theta: Tensor) -> dict:
        """All columns at θ, without the firing rule."""
        row: dict = {"accuracy": objective.accuracy(theta)}
        for name in self.operators:
            k = max(1, min(objective.stiff_dim, objective.P)) if name == "ggn" and self.shares else 1
            r = self.tracker(name, k)(objective, theta)
            short = _SHORT[name]
            row |= {f"{short}_lam1": float(r.values[0]), f"{short}_converged": bool(r.converged),
                    f"{short}_residual": float(r.rel_residuals.max()), f"{short}_corrected": int(r.corrected)}
            if name == "ggn" and self.shares:
                row |= {f"share_{j + 1}": float(s) for j, s in enumerate(shares_of(objective, r.vectors[:, 0]))}
                w = r.values.clamp_min(0)
                sq = sum(float(w[i]) * shares_of(objective, r.vectors[:, i]) for i in range(k)) / max(float(w.sum()), 1e-300)
                row |= {f"shareq_{j + 1}": float(s) for j, s in enumerate(sq)}
                row["ggn_lamq"] = float(r.values[k - 1])
        if self.alignment:
            from .measures import MEASURES, source
            from .measures.library import probe_stats

            st = probe_stats(objective.to_model(theta), probe_subset(objective.X, self.probe, self.seed),
                             probe_subset(objective.y, self.probe, self.seed), objective.criterion)
            row |= {n: MEASURES[n](st) for n in MEASURES if source(n) == "alignment"}
            row |= {f"jnorm_{k + 1}": float(v) for k, v in enumerate(np.exp(np.log(st.norms).mean(axis=0)))}
            row |= {f"afac_{k + 1}": float(v) for k, v in enumerate(st.factors.mean(axis=0))}
        return row
