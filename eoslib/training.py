"""The training loop: run a solver until a loss threshold, a flow time or a step budget; checkpoint and resume.

Row n of the returned table describes the iterate θ_n at flow time t_n = Σ_{j<n} Δt_j: its loss, gradient
norm, the eigenvalues the solver computed there, the step Δt_n taken from it, its cost (``cost_grad``,
``cost_hvp``: gradients and Hessian-vector products the step used, from ``objective.counts``) and whatever the
hooks measured at θ_n (their own work is not in the cost). The last row is the final iterate (no step taken
from it).
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .eigen import EigenConvergenceError
from .io import atomic_save

#: ``hook(objective, theta, step, t, final) -> dict | None``: extra columns for the row of θ at this step.
Hook = Callable[..., "dict | None"]


class DivergenceError(FloatingPointError):
    """The loss or the parameters became NaN/inf."""


class LossRoseError(DivergenceError):
    """Along a flow run (a solver with ``flow = True``: an integrator of dθ/dt = −∇L, on which L can only fall)
    the loss rose by more than :func:`loss_rise_tolerance`: the integrator is unstable (a Δt above 2/λ_max, an
    eigenvalue its tracker missed), so what follows is not the flow."""


def loss_rise_tolerance(dtype: torch.dtype, loss0: float, loss: float) -> float:
    """How much L_{n+1} may exceed L_n along a flow before it counts as a rise: rounding only,
    1000·eps·L_n + 10·eps·L₀ (eps of the objective's dtype: 1.2e-4 relative in float32). The loss is a sum of
    N terms evaluated in ``dtype``, so two evaluations of equal true losses differ by a few hundred eps·L at
    most (pairwise summation); the absolute part covers a loss that has fallen far below its start, where the
    terms' rounding is set by L₀'s scale."""
    eps = torch.finfo(dtype).eps
    return 1000 * eps * abs(loss) + 10 * eps * abs(loss0)


@dataclass(frozen=True)
class Event:
    """An event that ends a run: the function ``value`` of θ first reaching ``target`` (from below).

    Reached at θ when value(θ) ≥ target·(1 − rtol); a step that overshoots (value > target·(1 + rtol)) is
    retaken from its start with a shorter Δt by :func:`land_step`, so the run ends on the event within
    ``rtol`` (when the solver honours ``dt_cap``). ``name`` is the run's ``stopped_by``. (The intervention's
    switch: ᾱ reaching α*.)"""

    name: str
    value: Callable[[Tensor], float]
    target: float
    rtol: float = 1e-3

    def reached(self, theta: Tensor) -> bool:
        return self.value(theta) >= self.target * (1 - self.rtol)

    def land(self, solver, objective, theta: Tensor, theta_next: Tensor, dt: float):
        """(θ, Δt) of the step from θ retaken to land on the event, or None when no retake is needed or possible."""
        v0, v1 = self.value(theta), self.value(theta_next)
        if not v1 > self.target * (1 + self.rtol):
            return None

        def probe(th: Tensor) -> tuple[float, float, bool]:
            v = self.value(th)
            return self.target - v, v, abs(v / self.target - 1) <= self.rtol

        landed = land_step(solver, objective, theta, dt, self.target - v0, self.target - v1, probe, 8)
        return None if landed is None else landed[:2]


@dataclass(frozen=True)
class Stop:
    """When to stop: the first of L(θ) < ``loss``, t ≥ ``time``, ``steps`` steps taken, or ``event``
    (an :class:`Event`, landed on like the loss threshold).

    A time limit is met exactly: the last step is shortened (``dt_cap``) to land on t = ``time``. With ``land``
    (default) a loss threshold is met the same way: when a step takes the loss below ``loss``, that step is
    retaken from the previous iterate with a shorter Δt, chosen by safeguarded secant iterations on
    log L(θ(Δt)) − log ``loss``, until |L/``loss`` − 1| ≤ ``land_rtol`` (solvers that ignore ``dt_cap``, like
    GD, cannot land: their first iterate below the threshold ends the run, marked ``landed = False``)."""

    loss: float | None = None
    time: float | None = None
    steps: int = 100_000
    land: bool = True
    land_rtol: float = 0.01
    event: Event | None = None

    def __post_init__(self) -> None:
        if self.loss is not None and not self.loss > 0:
            raise ValueError(f"Stop.loss must be positive (got {self.loss})")
        if self.time is not None and not self.time > 0:
            raise ValueError(f"Stop.time must be positive (got {self.time})")
        if self.steps < 0:
            raise ValueError(f"Stop.steps must be ≥ 0 (got {self.steps})")
        if not 0 < self.land_rtol < 1:
            raise ValueError(f"Stop.land_rtol must be in (0, 1) (got {self.land_rtol})")


@dataclass
class TrainResult:
    """The trajectory table, the final parameters and why training stopped."""

    table: pd.DataFrame
    theta: Tensor
    stopped_by: str
    seconds: float
    extras: dict = field(default_factory=dict)


def _expand(rec: dict) -> dict:
    """Flatten the solver's record into table columns: eigs → lam1..lamk and sharpness = lam1."""
    rec = dict(rec)
    eigs = rec.pop("eigs", None)
    if eigs is not None:
        rec["sharpness"] = eigs[0]
        rec |= {f"lam{j + 1}": v for j, v in enumerate(eigs)}
    return rec


def _spent(objective, before: dict) -> dict:
    """The work of one solver step: ``cost_grad``, ``cost_hvp`` (gradients and Hessian-vector products)."""
    counts = getattr(objective, "counts", None)
    if not counts:
        return {}
    return {f"cost_{k}": counts[k] - before.get(k, 0) for k in ("grad", "hvp")}


@contextmanager
def _naming_the_step(desc: str, step: int, t: float):
    """Re-raise a solver's failed eigen-solve naming the run, the step and the flow time."""
    try:
        yield
    except EigenConvergenceError as e:
        raise EigenConvergenceError(f"{desc}: step {step} (t={t:.6g}): {e}", result=e.result,
                                    matvecs=e.matvecs) from e


def land_step(solver, objective, theta_prev: Tensor, dt_full: float, f_prev: float, f_next: float,
              probe: Callable[[Tensor], tuple[float, float, bool]], max_evals: int = 12
              ) -> tuple[Tensor, float, float, int] | None:
    """Retake the step from ``theta_prev`` with a Δt ∈ (0, ``dt_full``) at which an event happens: a root of
    f(Δt) = f(step(θ_prev, Δt)), with f(0) = ``f_prev`` > 0 (before the event) ≥ ``f_next`` = f(``dt_full``).

    ``probe(θ) -> (f, value, close)``: f at θ, the value reported (e.g. the loss) and whether θ is close enough
    to the event to stop. Illinois-modified regula falsi keeps the root bracketed and converges superlinearly
    (two or three re-steps in practice). Returns (θ, Δt taken, value, evaluations), or None when the solver
    ignores ``dt_cap``. Used to land a loss threshold (:func:`_land`) and the intervention's switch on ᾱ = α*."""
    lo, flo, hi, fhi = 0.0, f_prev, dt_full, f_next
    side = 0
    best = None
    for n in range(1, max_evals + 1):
        dt = hi - fhi * (hi - lo) / (fhi - flo) if fhi != flo else (lo + hi) / 2
        dt = min(max(dt, lo + 1e-3 * (hi - lo)), hi - 1e-3 * (hi - lo))  # stay strictly inside the bracket
        th, rec = solver.step(objective, theta_prev, dt_cap=dt)
        if rec["dt"] > dt * (1 + 1e-9):
            return None  # the solver does not shorten its step: cannot land
        dt = rec["dt"]  # the step it took (a solver may shorten a capped step further)
        f, value, close = probe(th)
        best = (th, dt, value, n)
        if close:
            break
        if f > 0:
            lo, flo = dt, f
            if side == 1:
                fhi /= 2
            side = 1
        else:
            hi, fhi = dt, f
            if side == -1:
                flo /= 2
            side = -1
    return best


def _land(solver, objective, theta_prev: Tensor, dt_full: float, loss_prev: float, loss_next: float,
          target: float, rtol: float) -> tuple[Tensor, float, float, int] | None:
    """Land the loss on ``target``·(1 ± rtol): :func:`land_step` on f = log L − log target."""
    def probe(th: Tensor) -> tuple[float, float, bool]:
        loss = objective.loss(th).item()
        return (math.log(loss / target) if loss > 0 else -math.inf), loss, abs(loss / target - 1) <= rtol

    return land_step(solver, objective, theta_prev, dt_full, math.log(loss_prev / target),
                     math.log(loss_next / target), probe)


def _rise_message(desc: str, step: int, t: float, prev: dict, loss: float) -> str:
    """What a flow run's loss rise says: the step, the Δt taken, the λ estimates it was taken with."""
    lams = {k: v for k, v in prev.items() if k in ("lam_max", "eig_residual", "eig_converged", "stages")
            or (k.startswith("lam") and k[3:].isdigit())}
    return (f"{desc}: the loss rose along the flow at step {step} (t={t:.6g}): {prev['loss']:.9g} → {loss:.9g} "
            f"after a step of Δt = {prev.get('dt', float('nan')):.6g} taken with {lams or 'no λ estimate'}; the "
            "integrator was unstable there (Δt above 2/λ_max, or an eigenvalue its tracker missed). Lower dt_max or "
            "tighten the solver's eigen tolerance")


def train(
    solver,
    objective,
    theta0: Tensor | None = None,
    until: Stop | dict | None = None,
    hooks: Sequence[Hook] = (),
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 200,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Run ``solver`` on ``objective`` from ``theta0`` (default ``objective.theta0``) until ``until``.

    With ``checkpoint`` set, the state (θ, rows so far, the solver's and the hooks' warm-start state — hooks
    with ``state_dict``/``load_state_dict``) is written atomically every ``checkpoint_every`` steps and training
    resumes from it if the file exists, to the same results bit for bit; it is removed on success.
    Raises :class:`DivergenceError` naming the step when the loss or θ stops being finite, and, for a flow
    solver (``solver.flow``), :class:`LossRoseError` naming the step, its Δt and the solver's λ estimates when
    the loss rises beyond :func:`loss_rise_tolerance`.
    """
    until = Stop(**until) if isinstance(until, dict) else (until or Stop())
    flow = bool(getattr(solver, "flow", False))
    theta = (objective.theta0 if theta0 is None else theta0).detach().clone()
    rows: list[dict] = []
    t, step, elapsed = 0.0, 0, 0.0
    prev: tuple[Tensor, float, float] | None = None  # (θ, Δt, loss) of the previous iterate, for landing
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=objective.device, weights_only=False)
        theta, rows, t, step, elapsed = state["theta"], state["rows"], state["t"], state["step"], state["seconds"]
        solver.load_state_dict(state["solver"])
        prev = state.get("prev")
        for hook, hs in zip(hooks, state.get("hooks", [])):
            if hs is not None and hasattr(hook, "load_state_dict"):
                hook.load_state_dict(hs)
    start = time.perf_counter() - elapsed
    bar = tqdm(total=until.steps, initial=step, desc=desc, disable=not progress, mininterval=1.0)
    stopped_by = "steps"
    while True:
        final = step >= until.steps or (until.time is not None and t >= until.time * (1 - 1e-12))
        if final:
            stopped_by = "steps" if step >= until.steps else "time"
        elif until.event is not None and until.event.reached(theta):
            final, stopped_by = True, until.event.name
        row = {"step": step, "t": t}
        if not final:
            cap = None if until.time is None else until.time - t
            before = dict(getattr(objective, "counts", {}))
            with _naming_the_step(desc, step, t):
                theta_next, rec = solver.step(objective, theta, dt_cap=cap)
            row |= _expand(rec) | _spent(objective, before)
            loss = row["loss"]
        else:
            theta_next, loss = theta, objective.loss(theta).item()
            row["loss"] = loss
        if not math.isfinite(loss):
            raise DivergenceError(f"{desc}: loss became {loss} at step {step} (t={t:.6g}); lower the step size")
        if flow and rows and loss > rows[-1]["loss"] + loss_rise_tolerance(objective.dtype, rows[0]["loss"],
                                                                             rows[-1]["loss"]):
            raise LossRoseError(_rise_message(desc, step, t, rows[-1], loss))
        if until.loss is not None and loss < until.loss:
            final, stopped_by, theta_next = True, "loss", theta
            with _naming_the_step(desc, step - 1, rows[-1]["t"] if rows else t):
                landed = _land(solver, objective, prev[0], prev[1], prev[2], loss, until.loss, until.land_rtol) \
                    if until.land and prev is not None else None
            if landed is not None:  # the last step retaken with a shorter Δt: θ on the threshold
                theta, dt_land, loss, evals = landed
                t = rows[-1]["t"] + dt_land
                rows[-1]["dt"] = dt_land
                row = {"step": step, "t": t, "loss": loss, "landed": True, "land_evals": evals}
            else:  # nothing to land on (the first iterate is below) or the solver cannot shorten its step
                row["landed"] = False
        elif not final and until.event is not None:
            with _naming_the_step(desc, step, t):
                landed = until.event.land(solver, objective, theta, theta_next, row["dt"])
            if landed is not None:  # the step retaken shorter: the next iterate is on the event
                theta_next, row["dt"] = landed
        for hook in hooks:
            extra = hook(objective, theta, step=step, t=t, final=final)
            if extra:
                row |= extra
        rows.append(row)
        if final:
            break
        if not torch.isfinite(theta_next).all():
            raise DivergenceError(f"{desc}: parameters became non-finite at step {step} (t={t:.6g})")
        prev = (theta, row["dt"], loss)
        theta, t, step = theta_next, t + row["dt"], step + 1
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss:.4g}", t=f"{t:.4g}", lam1=f"{row.get('sharpness', float('nan')):.4g}")
        if checkpoint is not None and step % checkpoint_every == 0:
            atomic_save({"theta": theta, "rows": rows, "t": t, "step": step, "solver": solver.state_dict(),
                         "prev": prev, "seconds": time.perf_counter() - start,
                         "hooks": [h.state_dict() if hasattr(h, "state_dict") else None for h in hooks]}, checkpoint)
    bar.close()
    if checkpoint is not None and Path(checkpoint).exists():
        Path(checkpoint).unlink()
    table = pd.DataFrame(rows)
    if "dt" in table:
        table.loc[table.index[-1], "dt"] = float("nan")  # no step is taken from the final iterate
    return TrainResult(table, theta, stopped_by, time.perf_counter() - start)
