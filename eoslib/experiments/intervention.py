"""A causal test of C3: hold the alignment fixed once ᾱ reaches α* and see whether the sharpening stops.

Per setting and seed, one **free** run: the flow solver from θ₀ to the horizon (the loss threshold, capped by the
flow time ``intervention.time`` and ``max_steps``). Per (setting, seed, α*, hold) one **arm**: the same flow until
ᾱ first reaches α* (checked at every iterate; the crossing step is retaken shorter so that ᾱ lands on α* within
0.1 %, when the solver honours ``dt_cap``), then the projected flow θ' = −P∇L to the same horizon, with ``hold``
one of (:mod:`eoslib.intervention`):

* ``alpha`` — the scalar ᾱ held (the probe mean of α);
* ``vector`` — every per-layer mean āₖ and every sub-chain mean ᾱₖ held at once (the projection onto the
  intersection of their tangent spaces, :func:`eoslib.constraints.project_tangent`, Gauss–Newton correction);
* ``chain`` — mean log‖P₁‖ held: the positive control (it holds the gain that makes layer 1's G block);
* ``placebo`` — the matched placebo: the fraction of ‖∇L‖² that the scalar arm (``alpha``, same setting, seed
  and α*) removed at the same flow time since the switch (run in-process, interpolated in time: :func:`alpha_schedule`)
  is removed along a fixed random direction (seed ``PLACEBO_SEED`` + seed; :class:`~eoslib.intervention.PlaceboObjective`);
* ``norms`` — the first placebo, the probe mean of Σₖ log‖Jᵏ‖ held (a second treatment: it stalls the loss).

With ``mechanism``, per setting and seed also the **Taylor** run: the same solver on the network's second-order
Taylor model around θ₀ (no layers), to the same horizon — does sharpening need layers? The projection needs a gradient-only solver (``gd``, ``agd``, ``rkc``);
the default ``agd`` (Δt = min(Δt_max, c/λ₁), c = 1) stays below the edge of stability 2/λ₁, so λ_max is the
flow's. ᾱ and the constraints use the probe rows of :class:`~eoslib.measurement.Measurement` (same probe, seed).
Both phases run on the shared loop, :func:`eoslib.training.train` (hooks, checkpoints and resume, divergence and
loss-rise checks): the first stops on the :class:`~eoslib.training.Event` "ᾱ reaches α*" (:func:`switch_event`).
:class:`ChainHook` checks the held ᾱ against the measured ``alpha_mean`` (column ``abar_gap``; a disagreement
beyond its stated tolerance stops the run): at every measured row of the free run, every ``check_every`` steps of
an arm's held phase and at its final iterate.

Columns of ``trajectory.csv``: the solver's record (``sharpness`` = λ_max(∇²L) at every iterate for agd/rkc),
every ``measure_every`` steps of the free run and of an arm's held phase (from the switch on; before it the
free run has them) the :class:`~eoslib.measurement.Measurement` columns (eigen-solves of the operators in
``curvature``; in the free run also every alignment measure on the probe, in an arm ``alpha_mean`` alone, every
``check_every`` steps: the whole family was half an arm's cost and only the free runs' is read), at every iterate
the chain-gain
decomposition ``abar`` (ᾱ), ``log_alpha_mean``, ``log_norms_mean``, ``log_chain_mean`` (mean log‖P₁‖ = mean
log α + mean Σₖ log‖Jᵏ‖), ``phase`` (``free`` | ``hold``), and in the held phase the projection's ``c``,
``c_drift``, ``c_grad_norm``, ``removed`` (fraction of ‖∇L‖² projected out), ``c_step_drift``, ``newton``,
``halvings``, ``c_jump``, ``loss_jump`` (:class:`~eoslib.intervention.ProjectedSolver`: steps retaken shorter, and
the jumps of a discontinuous c crossed; ``summary.json``'s ``jumps`` counts them and sums their loss rises);
``abar_gap`` = ᾱ/alpha_mean − 1 at measured rows.

Runs ``intervene/<setting>/seed<s>/free``, ``…/taylor`` and ``intervene/<setting>/seed<s>/a<α*>-<hold>``, one stage
``intervene``. ``summary.json`` adds ``arm``, ``alpha_star``, ``switched``, ``switch`` (step, t, loss, ᾱ, λ_max,
target), ``end``, ``sharpness_at_loss`` (λ_max at the loss levels L_s·(L_thr/L_s)^f, f in ``levels``, between
the switch loss L_s and the threshold) and the drift of both constraints in the held phase.
:func:`eoslib.causal.compare_arms` sets every arm beside the free run of its seed at equal losses and equal flow
times; :func:`eoslib.causal.decomposition` gives the chain-gain growth split (a figure panel per run).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..tables import CHAIN_COLUMNS, LOSS_RTOL, _float, lam_max, loss_levels, value_at
from ..curvature import OPERATORS
from ..intervention import CONSTRAINTS
from ..schema import Choice, Flag, Int, ListOf, Num, Opt, Text, Where, fail
from .base import SOLVER_SPEC, Experiment, Stage, base_config, build_objective, build_solver, setting_config

#: solvers that only take gradients (and Hessian products for their step size): the projection applies to them
GRADIENT_ONLY = ("gd", "agd", "rkc")
DEFAULT_SOLVER = {"name": "agd", "dt_max": 0.5, "c": 1.0}
#: ᾱ lands on α* within this relative tolerance when the crossing step is retaken
LAND_RTOL = 1e-3
#: the placebo's random direction is drawn with seed PLACEBO_SEED + the run's seed
PLACEBO_SEED = 7919


def _gradient_only(spec: dict, path: str) -> None:
    if spec["name"] not in GRADIENT_ONLY:
        fail(f"{path}.name", f"the projected flow needs a gradient-only solver, one of {list(GRADIENT_ONLY)} (got "
                             f"{spec['name']!r}: it integrates the stiff directions of the unprojected Hessian)")


#: the arms besides the free flow: a registered constraint held fixed (``alpha``: the scalar ᾱ; ``vector``: every
#: āₖ and sub-chain ᾱₖ; ``chain``: mean log‖P₁‖, the positive control; ``norms``: the layer norms), or ``placebo``:
#: the matched placebo (:class:`~eoslib.intervention.PlaceboObjective`)
def HOLDS() -> list[str]:  # noqa: N802 (a registry-style lazy list of names)
    return [*CONSTRAINTS.names(), "placebo"]

SCHEMA = {
    "settings": ListOf(Text()),
    "n": Int(minimum=2),
    "seeds": ListOf(Int(minimum=0)),
    "alpha_stars": ListOf(Num(maximum=1.0), ascending=True),  # 0 < α* ≤ 1
    "holds": ListOf(Choice(HOLDS, "arm")),
    "mechanism": Opt(Flag(), False),  # per seed, the Taylor-model flow (the mechanism control with no layers)
    "probe": Int(),
    "measure_every": Int(),
    "max_steps": Int(),
    "time": Num(),  # flow-time cap of the horizon (the horizon is the loss threshold, or this time if sooner)
    "solver": Opt(Where(SOLVER_SPEC, _gradient_only), DEFAULT_SOLVER),
    "levels": Opt(ListOf(Num(maximum=1.0), ascending=True), [0.25, 0.5, 0.75, 1.0]),
    "curvature": Opt(ListOf(Choice(OPERATORS, "operator")), ["hessian"]),  # Measurement's eigen-solves
    "checkpoint_every": Opt(Int(), 50),
    # an arm's cold check of the held ᾱ (the Gram path, :func:`measured_alpha_mean`) every this many steps
    "check_every": Opt(Int(), 50),
}


def run_name(setting: str, seed: int, alpha_star: float | None = None, hold: str | None = None) -> str:
    """``intervene/<setting>/seed<s>/free``, ``…/taylor`` (hold ``taylor``: the mechanism control) or
    ``intervene/<setting>/seed<s>/a<α*>-<hold>``."""
    arm = "free" if hold is None else "taylor" if hold == "taylor" else f"a{alpha_star:g}-{hold}"
    return f"intervene/{setting}/seed{seed}/{arm}"


def plan(p: dict) -> dict[str, Stage]:
    """One stage ``intervene``: per setting and seed the free run, every (α*, hold) arm and, with ``mechanism``,
    the Taylor-model flow."""
    iv = p["intervention"]
    runs = {}
    for i, s in enumerate(iv["settings"]):
        setting_config(p, s, f"intervention.settings[{i}]")
        for seed in iv["seeds"]:
            c = base_config(p, s, iv["n"], seed, "intervention.n")
            c |= {"kind": "intervene", "solver": dict(iv["solver"]), "probe": iv["probe"],
                  "measure_every": iv["measure_every"], "max_steps": iv["max_steps"], "time": iv["time"],
                  "levels": list(iv["levels"]), "curvature": list(iv["curvature"]),
                  "checkpoint_every": iv["checkpoint_every"], "check_every": iv["check_every"]}
            runs[run_name(s, seed)] = c | {"hold": None, "alpha_star": None}
            for a in iv["alpha_stars"]:
                for h in iv["holds"]:
                    runs[run_name(s, seed, a, h)] = c | {"hold": h, "alpha_star": float(a)}
            if iv["mechanism"]:
                runs[run_name(s, seed, hold="taylor")] = c | {"hold": "taylor", "alpha_star": None}
    return {"intervene": Stage("intervene", "runs/intervene", runs)}


# ---------------------------------------------------------------------------------------------- running


class AlignmentMismatchError(RuntimeError):
    """The ᾱ the intervention holds (:class:`~eoslib.intervention.ChainTerms`: envelope-theorem singular pairs)
    and the measured ``alpha_mean`` (:mod:`eoslib.alignment`: eigvalsh of every Gram matrix) disagree: one of
    the two computed a wrong singular value."""


class ChainHook:
    """Train hook: the chain-gain decomposition columns (:data:`CHAIN_COLUMNS`) at every iterate with the
    certificate of their singular pairs (``chain_converged``, ``chain_residual``), where the wrapped
    :class:`~eoslib.measurement.Measurement` fires its columns, and a run-time check that the held ᾱ (``abar``)
    and the measured ``alpha_mean`` agree: |abar/alpha_mean − 1| ≤ ``abar_rtol`` (column ``abar_gap``), else
    :class:`AlignmentMismatchError` naming the step. ``alpha_mean`` comes from the measurement where it measures
    alignment (the free run: every measure of the family, read by the horse race), else — the arms, whose
    measurement solves only the curvature operators — from :func:`measured_alpha_mean` every ``check_every``
    steps and at the final iterate (None: no check).

    Tolerance: both are means over the same probe rows of α = ‖P₁‖/Πₖ‖Jᵏ‖. A top pair of JᵀJ with relative
    residual r has an eigenvalue within r·σ² of its Ritz value, so each ‖Jᵏ‖ is within r/2 relative and α within
    (K−1)·r/2 + the same for P₁; with r = ``terms.tol`` the default ``abar_rtol`` = K·tol + 100·eps of the dtype
    (3.5e-4·K in float32) allows that and rounding, and no more: a layer solved onto its second singular value
    (1–6 % low on these networks) fails it. ``state_dict`` carries the terms' warm starts and the measurement's
    trackers, so a resumed run computes the same values."""

    def __init__(self, terms, measurement=None, abar_rtol: float | None = None,
                 check_every: int | None = None) -> None:
        import torch

        self.terms, self.measurement, self.check_every = terms, measurement, check_every
        eps = torch.finfo(terms.objective.dtype).eps
        depth = sum(1 for m in terms.objective.model.modules() if isinstance(m, torch.nn.Linear))  # K
        self.abar_rtol = depth * terms.tol + 100 * eps if abar_rtol is None else abar_rtol

    def __call__(self, objective, theta, step, t, final) -> dict:
        from ..measures.library import output_weight_norm

        ev = self.terms.evaluate(theta)
        row = ev.terms.summary() | (ev.certificate or {})
        row["output_weight_norm"] = output_weight_norm(objective, theta, {})  # a rival predictor (horse race)
        if self.measurement is not None:
            row |= self.measurement(objective, theta, step=step, t=t, final=final) or {}
        if "alpha_mean" not in row and self.check_every and (final or step % self.check_every == 0):
            row["alpha_mean"] = measured_alpha_mean(objective, theta, self.terms.X)
        if "alpha_mean" in row:
            gap = row["abar"] / row["alpha_mean"] - 1
            row["abar_gap"] = gap
            if not abs(gap) <= self.abar_rtol:
                raise AlignmentMismatchError(
                    f"step {step} (t={t:.6g}): the held ᾱ = {row['abar']:.8g} and the measured alpha_mean = "
                    f"{row['alpha_mean']:.8g} differ by {gap:.3g} (relative) > {self.abar_rtol:.3g}")
        return row

    def state_dict(self) -> dict:
        return {"terms": self.terms.state_dict(),
                "measurement": None if self.measurement is None else self.measurement.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.terms.load_state_dict(state["terms"])
        if self.measurement is not None and state.get("measurement") is not None:
            self.measurement.load_state_dict(state["measurement"])


def measured_alpha_mean(objective, theta, X) -> float:
    """``alpha_mean`` at θ on the rows X by the measurement's own path, cold: ‖Jᵏ‖₂ and ‖P₁‖₂ from ``eigvalsh`` of
    every Gram matrix (:func:`eoslib.alignment.alignment_stats`, the pass :class:`~eoslib.measurement.Measurement`
    makes, without the statistics beyond α) and the registered measure :func:`eoslib.measures.library.alpha_mean` —
    independent of the warm envelope-theorem pairs of :class:`~eoslib.intervention.ChainTerms` it checks. The same
    bits as the measurement's ``alpha_mean`` on the same rows (the same chunks and kernel)."""
    from ..alignment import alignment_stats
    from ..measures.library import ProbeStats, alpha_mean

    f = lambda v: v.detach().double().cpu().numpy()  # noqa: E731
    norms, chain, factors = (f(v) for v in alignment_stats(objective.to_model(theta), X))
    return alpha_mean(ProbeStats(norms, chain, factors, {}))


def switch_event(terms, alpha_star: float):
    """The :class:`~eoslib.training.Event` "ᾱ first reaches α*" (landed on within LAND_RTOL)."""
    from ..training import Event

    return Event("switch", lambda th: terms.evaluate(th).terms.summary()["abar"], alpha_star, LAND_RTOL)


def run(config: dict, folder: Path, progress: bool, measure: bool = True) -> tuple[pd.DataFrame, dict]:
    """The free run, or an arm: the free flow to the switch (saved in ``phase1.pt``), then the projected flow.
    ``measure=False`` leaves out the :class:`~eoslib.measurement.Measurement` columns (a read-only hook: the flow
    and its chain columns are the same bits), for the placebo's in-process scalar arm (:func:`alpha_schedule`)."""
    import torch

    from ..alignment import probe_subset
    from ..intervention import ChainTerms, Constraint, PlaceboObjective, ProjectedObjective, ProjectedSolver
    from ..io import atomic_save
    from ..measurement import Measurement
    from ..training import Stop, train

    objective, _ = build_objective(config)
    solver = build_solver(config["solver"])
    thr, T, steps = config["loss_threshold"], config["time"], config["max_steps"]
    kw = {"checkpoint": folder / "checkpoint.pt", "checkpoint_every": config["checkpoint_every"],
          "progress": progress, "desc": str(folder)}
    if config["hold"] == "taylor":
        return run_taylor(objective, solver, Stop(loss=thr, time=T, steps=steps), config, kw)
    terms = ChainTerms(objective, probe_subset(objective.X, config["probe"], config["seed"]),
                       extended=config["hold"] == "vector")
    ops, hold, a_star = tuple(config["curvature"]), config["hold"], config["alpha_star"]
    # the free run measures every alignment measure (the horse race reads them); an arm only the curvature, and
    # checks its held ᾱ cold every check_every steps (the whole family every 10 steps was half an arm's cost)
    meas = Measurement(every=config["measure_every"], probe=config["probe"], seed=config["seed"], operators=ops,
                       shares="ggn" in ops, alignment=hold is None)
    hooks = [ChainHook(terms, meas, check_every=None if hold is None else config["check_every"]) if measure
             else ChainHook(terms)]
    if hold is None:
        r = train(solver, objective, until=Stop(loss=thr, time=T, steps=steps), hooks=hooks, **kw)
        table = r.table.assign(phase="free")
        info = {"arm": "free", "alpha_star": None, "switched": False, "switch": None, "stopped_by": r.stopped_by,
                "seconds": r.seconds, "theta": r.theta}
        return table, info | summarize(table, config)

    p1 = folder / "phase1.pt"
    if p1.exists():
        pre = torch.load(p1, map_location=objective.device, weights_only=False)
        solver.load_state_dict(pre["solver"])
        terms.load_state_dict(pre["terms"])
    else:  # the free flow to the switch, on the shared loop (chain columns only: the free run has the rest)
        r1 = train(solver, objective, until=Stop(loss=thr, time=T, steps=steps, event=switch_event(terms, a_star)),
                   hooks=[ChainHook(terms)], checkpoint=folder / "phase1-checkpoint.pt",
                   checkpoint_every=config["checkpoint_every"], progress=progress, desc=f"{folder} (to the switch)")
        last = r1.table.iloc[-1]
        pre = {"theta": r1.theta, "rows": r1.table.iloc[:-1].to_dict("records"), "t": float(last["t"]),
               "step": int(last["step"]), "reason": r1.stopped_by, "seconds": r1.seconds,
               "solver": solver.state_dict(), "terms": terms.state_dict()}
        atomic_save(pre, p1)
    prefix = pd.DataFrame(pre["rows"]).assign(phase="free")
    info = {"arm": hold, "alpha_star": a_star, "switched": pre["reason"] == "switch"}
    if pre["reason"] != "switch":  # the horizon came first: the arm is the free flow (its last iterate below)
        last = {"step": pre["step"], "t": pre["t"], "loss": objective.loss(pre["theta"]).item(), "phase": "free"}
        last |= terms.evaluate(pre["theta"]).terms.summary()
        table = pd.concat([prefix, pd.DataFrame([last])], ignore_index=True)
        info |= {"switch": None, "stopped_by": pre["reason"], "seconds": pre["seconds"], "theta": pre["theta"]}
        return table, info | summarize(table, config)

    if hold == "placebo":  # the scalar arm's removed fraction over time, along a fixed random direction
        from ..constraints import random_direction

        hold_c = Constraint("alpha", terms)
        u = random_direction(pre["theta"].numel(), seed=PLACEBO_SEED + config["seed"], dtype=objective.dtype,
                             device=objective.device)
        target = hold_c.value(pre["theta"])
        tau, rho = alpha_schedule(config, folder, progress)
        po = PlaceboObjective(objective, hold_c, u, target=target, schedule=lambda t: float(np.interp(t, tau, rho)))
    else:
        hold_c = Constraint(hold, terms)
        target = hold_c.value(pre["theta"])
        po = ProjectedObjective(objective, hold_c, target=target)
    r = train(ProjectedSolver(solver, po), po, theta0=pre["theta"],
              until=Stop(loss=thr, time=T - pre["t"], steps=max(steps - pre["step"], 0)), hooks=hooks, **kw)
    held = r.table.copy()
    held["step"] += pre["step"]
    held["t"] += pre["t"]
    table = pd.concat([prefix, held.assign(phase="hold")], ignore_index=True) if len(prefix) else \
        held.assign(phase="hold")
    first = held.iloc[0]
    info |= {"switch": {"step": int(first["step"]), "t": float(first["t"]), "loss": float(first["loss"]),
                        "abar": float(first["abar"]), "sharpness": _float(first.get("sharpness")),
                        "target": target if not isinstance(target, torch.Tensor) else target.tolist()},
             "stopped_by": r.stopped_by, "seconds": pre["seconds"] + r.seconds, "theta": r.theta}
    return table, info | summarize(table, config)


def alpha_schedule(config: Mapping, folder: Path, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(τ, ρ): the scalar arm's removed fraction of ‖∇L‖² (column ``removed``) against the flow time since its
    switch τ, for the placebo of the same setting, seed and α*: the scalar arm itself, run here (deterministic: the
    same bits as its own run ``a<α*>-alpha``) in a subfolder that is removed afterwards — so the placebo depends
    neither on the order in which the stage's runs finish nor on the orchestration code. The free flow to the
    switch is the same for every arm of a (setting, seed, α*): the scalar arm resumes from the placebo's
    ``phase1.pt``, and runs without the Measurement hook (only ``removed`` is read)."""
    import shutil

    sub = folder / "alpha-arm"
    sub.mkdir(exist_ok=True)
    shutil.copyfile(folder / "phase1.pt", sub / "phase1.pt")
    table, info = run(dict(config) | {"hold": "alpha"}, sub, progress, measure=False)
    shutil.rmtree(sub)
    if not info.get("switched"):
        raise RuntimeError(f"{folder}: the scalar arm never switched, so the placebo has no schedule")
    held = table[table["phase"] == "hold"]
    tau, rho = (held["t"] - info["switch"]["t"]).to_numpy(float), held["removed"].to_numpy(float)
    ok = np.isfinite(rho)
    return tau[ok], rho[ok]


def run_taylor(objective, solver, until, config: Mapping, kw: dict) -> tuple[pd.DataFrame, dict]:
    """The mechanism control: the same solver from θ₀ on the second-order Taylor model of the network around θ₀
    (:func:`eoslib.taylor.taylor_objective`: a model quadratic in θ with no layers), to the same horizon; λ_max
    of its loss Hessian is the solver's ``sharpness`` column (agd, rkc). Does a model without layers sharpen?"""
    from ..taylor import taylor_objective
    from ..training import train

    r = train(solver, taylor_objective(objective), until=until, **kw)
    table = r.table.assign(phase="taylor")
    lam = lam_max(table).dropna()
    info = {"arm": "taylor", "alpha_star": None, "switched": False, "switch": None, "stopped_by": r.stopped_by,
            "seconds": r.seconds, "theta": r.theta,
            "taylor": {"lam_start": _float(lam.iloc[0]) if len(lam) else None,
                       "lam_min": _float(lam.min()) if len(lam) else None,
                       "lam_peak": _float(lam.max()) if len(lam) else None,
                       "lam_end": _float(lam.iloc[-1]) if len(lam) else None}}
    tl = info["taylor"]
    tl["sharpening"] = tl["lam_peak"] / tl["lam_min"] if tl["lam_min"] else None
    return table, info | summarize(table, config)


# ---------------------------------------------------------------------------------------------- summaries


def summarize(table: pd.DataFrame, config: Mapping) -> dict:
    """The run's ``end``, ``sharpness_max``, ``sharpness_at_loss`` (from the switch, arms only) and the drift of
    ᾱ and mean Σₖ log‖Jᵏ‖ over the held phase (``hold_drift``)."""
    table = table.assign(lam_max=lam_max(table))
    last = table.iloc[-1]
    lam_end = table["lam_max"].dropna()
    out = {"end": {"t": float(last["t"]), "loss": float(last["loss"]),
                   "sharpness": float(lam_end.iloc[-1]) if len(lam_end) else None,
                   **{k: _float(last.get(k)) for k in CHAIN_COLUMNS}},
           "lam_max_max": _float(table["lam_max"].max())}
    held = table[table["phase"] == "hold"] if "phase" in table else table.iloc[:0]
    if len(held):
        ls = float(held["loss"].iloc[0])
        after = table.loc[held.index[0]:]
        out["sharpness_at_loss"] = {f"{lv:.6g}": value_at(after, "loss", lv, "lam_max", rtol=LOSS_RTOL)
                                    for lv in loss_levels(ls, config["loss_threshold"], config["levels"])}
        keys = [k for k in held if k in ("abar", "log_norms_mean", "log_chain_mean")
                or k.startswith(("abar_", "afac_mean_"))]
        out["hold_drift"] = {k: {"min": float(held[k].min() - held[k].iloc[0]),
                                 "max": float(held[k].max() - held[k].iloc[0])} for k in keys}
        out["hold_drift"]["c_abs_max"] = _float(held["c_drift"].abs().max()) if "c_drift" in held else None
        out["removed_mean"] = _float(held["removed"].mean()) if "removed" in held else None
        if "loss_jump" in held:  # jumps of a discontinuous c crossed by the projected flow (ProjectedSolver)
            jumped = held["loss_jump"].fillna(0) > 0
            out["jumps"] = {"count": int(jumped.sum()), "loss_rise": float(held.loc[jumped, "loss_jump"].sum()),
                            "halvings": int(held["halvings"].fillna(0).sum())}
    return out


EXPERIMENT = Experiment("intervention", plan, run, "the flow with ᾱ (or the placebo) held fixed", schema=SCHEMA)
