"""The training loop: run a solver until a loss threshold, a flow time or a step budget; checkpoint and resume.

Row n of the returned table describes the iterate θ_n at flow time t_n = Σ_{j<n} Δt_j: its loss, gradient
norm, the eigenvalues the solver computed there, the step Δt_n taken from it, and whatever the hooks
measured at θ_n. The last row is the final iterate (no step taken from it).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

#: ``hook(objective, theta, step, t, final) -> dict | None``: extra columns for the row of θ at this step.
Hook = Callable[..., "dict | None"]


class DivergenceError(FloatingPointError):
    """The loss or the parameters became NaN/inf."""


@dataclass(frozen=True)
class Stop:
    """When to stop: the first of L(θ) < ``loss``, t ≥ ``time`` (the last step is shortened to land on it
    where the solver allows), or ``steps`` steps taken."""

    loss: float | None = None
    time: float | None = None
    steps: int = 100_000

    def __post_init__(self) -> None:
        if self.loss is not None and not self.loss > 0:
            raise ValueError(f"Stop.loss must be positive (got {self.loss})")
        if self.time is not None and not self.time > 0:
            raise ValueError(f"Stop.time must be positive (got {self.time})")
        if self.steps < 0:
            raise ValueError(f"Stop.steps must be ≥ 0 (got {self.steps})")


@dataclass
class TrainResult:
    """The trajectory table, the final parameters and why training stopped."""

    table: pd.DataFrame
    theta: Tensor
    stopped_by: str
    seconds: float
    extras: dict = field(default_factory=dict)


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _expand(rec: dict) -> dict:
    """Flatten the solver's record into table columns: eigs → lam1..lamk and sharpness = lam1."""
    rec = dict(rec)
    eigs = rec.pop("eigs", None)
    if eigs is not None:
        rec["sharpness"] = eigs[0]
        rec |= {f"lam{j + 1}": v for j, v in enumerate(eigs)}
    return rec


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

    With ``checkpoint`` set, the state (θ, rows so far, solver warm-start state) is written atomically every
    ``checkpoint_every`` steps and training resumes from it if the file exists; it is removed on success.
    Raises :class:`DivergenceError` naming the step when the loss or θ stops being finite.
    """
    until = Stop(**until) if isinstance(until, dict) else (until or Stop())
    theta = (objective.theta0 if theta0 is None else theta0).detach().clone()
    rows: list[dict] = []
    t, step, elapsed = 0.0, 0, 0.0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, weights_only=False)
        theta, rows, t, step, elapsed = state["theta"], state["rows"], state["t"], state["step"], state["seconds"]
        solver.load_state_dict(state["solver"])
    start = time.perf_counter() - elapsed
    bar = tqdm(total=until.steps, initial=step, desc=desc, disable=not progress, mininterval=1.0)
    stopped_by = "steps"
    while True:
        final = step >= until.steps or (until.time is not None and t >= until.time * (1 - 1e-12))
        if final:
            stopped_by = "steps" if step >= until.steps else "time"
        row = {"step": step, "t": t}
        if not final:
            cap = None if until.time is None else until.time - t
            theta_next, rec = solver.step(objective, theta, dt_cap=cap)
            row |= _expand(rec)
            loss = row["loss"]
        else:
            theta_next, loss = theta, objective.loss(theta).item()
            row["loss"] = loss
        if not math.isfinite(loss):
            raise DivergenceError(f"{desc}: loss became {loss} at step {step} (t={t:.6g}); lower the step size")
        if until.loss is not None and loss < until.loss:
            final, stopped_by, theta_next = True, "loss", theta
            row = {k: v for k, v in row.items() if k in ("step", "t", "loss") or k.startswith("lam") or k in (
                "sharpness", "grad_norm", "eig_matvecs", "eig_converged", "eig_residual")}
        for hook in hooks:
            extra = hook(objective, theta, step=step, t=t, final=final)
            if extra:
                row |= extra
        rows.append(row)
        if final:
            break
        if not torch.isfinite(theta_next).all():
            raise DivergenceError(f"{desc}: parameters became non-finite at step {step} (t={t:.6g})")
        theta, t, step = theta_next, t + row["dt"], step + 1
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss:.4g}", t=f"{t:.4g}", lam1=f"{row.get('sharpness', float('nan')):.4g}")
        if checkpoint is not None and step % checkpoint_every == 0:
            atomic_save({"theta": theta, "rows": rows, "t": t, "step": step, "solver": solver.state_dict(),
                         "seconds": time.perf_counter() - start}, checkpoint)
    bar.close()
    if checkpoint is not None and Path(checkpoint).exists():
        Path(checkpoint).unlink()
    table = pd.DataFrame(rows)
    if "dt" in table:
        table.loc[table.index[-1], "dt"] = float("nan")  # no step is taken from the final iterate
    return TrainResult(table, theta, stopped_by, time.perf_counter() - start)
