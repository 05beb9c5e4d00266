"""Cost to the loss threshold: exponential Euler vs Runge–Kutta–Chebyshev vs gradient descent.

    python -m benchmarks.rkc [--quick] [--out PATH] [--sizes 256,512,1024,2048] [--gd-sizes 256,512]
                             [--reference 512]      (≈ 40 min on 2 shared cores; --quick ≈ 3 min)

Fashion-MNIST-mini, all 10 classes, ELU MLP width 128 depth 6, PyTorch default init, CE, float32, one thread.
For each N every solver trains from the same θ₀ to the loss threshold 0.1 (the flow solvers land on it within 1%
by retaking their last step shorter; GD, which cannot, stops at its first iterate below):

* ``ee``: ``ExponentialEuler(dt_max=0.5, tol=1e-3)`` (the project's flow solver);
* ``rkc``: ``RungeKuttaChebyshev`` with the options in ``RKC`` (its defaults: error control at rtol 1e-3), and
  ``rkc_tight`` at rtol 1e-4;
* ``gd``: gradient descent at η = ``GD_C``/λ_max = 1.8/λ_max, λ_max the largest sharpness the flow solvers met
  (below the edge of stability 2/λ_max; the cheapest GD that stays off it). Its cost grows like λ_max·t, so it
  runs only at ``--gd-sizes``.

Cost: wall and CPU seconds, gradients and Hessian-vector products (the objective's ``counts``; one HVP
column counts one; the steps retaken to land on the threshold are included). The solvers of one N run one
after the other in one process, so machine-load drifts hit them alike; CPU seconds (``time.process_time``,
one thread) are less sensitive to other processes on the machine than wall seconds. At each endpoint:
λ_max, mean chain alignment ᾱ and chain gain (probe 256), each endpoint's relative distance to the others
‖θ_a − θ_b‖/‖θ_b − θ₀‖ and, for N in ``--reference``, to a reference flow at the same flow time,
‖θ_a − θ_ref(t_a)‖/‖θ_ref(t_a) − θ₀‖: a float64 RKC at rtol 1e-7 (``REFERENCE``; ``ReferenceFlow``'s DOP853 is
unaffordable at these sharpnesses, see there).
The cost exponent of each solver is the least-squares slope of log cost against log N.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from eoslib.alignment import alignment_summary
from eoslib.data import load_dataset
from eoslib.eigen import top_eigenpairs
from eoslib.models import mlp
from eoslib.objective import Objective
from eoslib.solvers import ExponentialEuler, GradientDescent, RungeKuttaChebyshev
from eoslib.training import Stop, train

THRESHOLD = 0.1
EE = {"dt_max": 0.5, "tol": 1e-3}
RKC: dict = {"dt_max": 4.0}  # the constructor's defaults otherwise (error control at rtol 1e-3, atol 1e-5)
RKC_TIGHT: dict = {"dt_max": 4.0, "rtol": 1e-4, "atol": 1e-6}  # the same, 10× tighter: the accuracy dial
GD_C = 1.8
#: The reference: DOP853 (ReferenceFlow) takes ~12 gradients per ~(5/λ_max) of flow time; at N = 512
#: (∫λ_max dt ≈ 1.25·10⁴ to the threshold) ~2.5–4.5·10⁴ gradients, unaffordable here for every N. A float64 RKC
#: at rtol 1e-7 (~4.7·10³ gradients at N = 512) stands in: against DOP853 it is 1.2e-5 off over notebook 2's
#: whole run, and 1.3e-4 of the local travel over the first 5 time units at N = 512.
REFERENCE = {"dt_max": 4.0, "rtol": 1e-7, "atol": 1e-9}
MAX_STEPS = 200_000


class Counted:
    """The gradients and HVP columns an objective computed since the last ``take`` (its own counters)."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.before = dict(objective.counts)

    def take(self) -> tuple[int, int]:
        now = dict(self.objective.counts)
        out = (now["grad"] - self.before["grad"], now["hvp"] - self.before["hvp"])
        self.before = now
        return out


def build(n: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Objective:
    ds = load_dataset("fashion-mnist-mini", n=n, seed=0)
    model = mlp(ds.X.shape[1], 128, 6, ds.num_classes, activation="elu", init="default", seed=0, dtype=dtype)
    return Objective(model.to(device), ds.X.to(dtype), ds.y, loss="ce")


def solve(name: str, solver, ob: Objective, counter: Counted) -> dict:
    counter.take()
    wall, cpu = time.perf_counter(), time.process_time()
    res = train(solver, ob, until=Stop(loss=THRESHOLD, steps=MAX_STEPS), progress=False, desc=name)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    grads, hvps = counter.take()
    tab = res.table
    out = {"wall_s": wall, "cpu_s": cpu, "grads": grads, "hvps": hvps, "steps": len(tab) - 1,
           "t": float(tab.t.iloc[-1]), "loss": float(tab.loss.iloc[-1]), "stopped_by": res.stopped_by}
    if "sharpness" in tab:
        out["sharpness_max_seen"] = float(tab.sharpness.max())
    if "stages" in tab:
        out |= {"stages_mean": float(tab.stages.mean()), "stages_max": int(tab.stages.max()),
                "rejected": int(tab.rejected.sum())}
    if "dt" in tab:
        out |= {"dt_mean": float(tab.dt.iloc[:-1].mean()), "dt_min": float(tab.dt.iloc[:-1].min())}
    return out, res.theta


def endpoint(ob: Objective, theta: torch.Tensor) -> dict:
    lam = float(top_eigenpairs(ob.hvp_operator(theta), ob.P, 1, tol=1e-3, dtype=ob.dtype).values[0])
    a = alignment_summary(ob.to_model(theta), ob.X, probe=256)
    return {"lambda_max": lam, "alpha_mean": a["alpha_mean"], "chain_gain_mean": a["chain_gain_mean"]}


def reference_states(ob: Objective, times: list[float]) -> tuple[list[torch.Tensor], dict]:
    """θ(t) at the ascending ``times`` by the surrogate reference ``REFERENCE`` on a float64 copy of ``ob`` (the
    same θ₀ cast, not a float64 re-initialisation, which draws other weights), run in segments that land on each
    time."""
    ob64 = Objective(copy.deepcopy(ob.model).double(), ob.X.double(), ob.y, loss=ob.loss_name)
    solver = RungeKuttaChebyshev(**REFERENCE)
    theta, t, out, grads = ob64.theta0, 0.0, [], 0
    for T in times:
        if T > t:
            res = train(solver, ob64, theta0=theta, until=Stop(time=T - t, steps=MAX_STEPS), progress=False)
            theta, t = res.theta, T
            grads += int(res.table.n_grad.sum())
        out.append(theta.clone())
    return out, {"solver": "rkc", **REFERENCE, "dtype": "float64", "grads": grads, "theta0": ob64.theta0}


def slope(ns: list[int], ys: list[float]) -> float | None:
    if len(ns) < 2 or any(not (y > 0) for y in ys):
        return None
    return float(np.polyfit(np.log(ns), np.log(ys), 1)[0])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 64, 128, no reference (a few minutes)")
    p.add_argument("--sizes", default="256,512,1024,2048")
    p.add_argument("--gd-sizes", default="256,512", help="sizes that also run GD (its cost grows ~ λ_max·t)")
    p.add_argument("--reference", default="512", help="sizes that also get a reference flow ('' for none)")
    p.add_argument("--out", default="/tmp/bench_rkc.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda (the reference flow, if any, runs there in float64)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    sizes, gd_sizes, ref_sizes = ([64, 128], [64, 128], []) if args.quick else \
        (ints(args.sizes), ints(args.gd_sizes), ints(args.reference))

    def log(msg):
        print(msg, flush=True)

    def loadavg():
        f = Path("/proc/loadavg")
        return [float(x) for x in f.read_text().split()[:3]] if f.exists() else None

    result = {"meta": {"threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
                       "cpus": os.cpu_count(), "loadavg": {"start": loadavg()}, "threshold": THRESHOLD,
                       "setting": "fashion-mnist-mini, 10 classes, ELU MLP 128x6, init default, CE, float32",
                       "ee": EE, "rkc": RKC, "rkc_tight": RKC_TIGHT, "gd_lr": f"{GD_C}/lambda_max of the run",
                       "reference": REFERENCE, "device": args.device,
                       "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None},
              "sizes": {}}
    thetas: dict[int, dict] = {}
    objectives: dict[int, Objective] = {}

    def save():
        Path(args.out).write_text(json.dumps(result, indent=1))

    # phase 1: the flow solvers at every N, one after the other; phase 2: GD; phase 3: endpoints; 4: references
    for n in sizes:
        ob = objectives[n] = build(n, device=args.device)
        counter = Counted(ob)
        runs, thetas[n] = {}, {}
        for name, solver in (("rkc", RungeKuttaChebyshev(**RKC)), ("ee", ExponentialEuler(**EE)),
                             ("rkc_tight", RungeKuttaChebyshev(**RKC_TIGHT))):
            runs[name], thetas[n][name] = solve(name, solver, ob, counter)
            log(f"N={n} {name} {runs[name]}")
        ratios = {f"ratio_ee_over_{a}": {k: runs["ee"][k] / runs[a][k] for k in ("wall_s", "cpu_s")}
                  for a in ("rkc", "rkc_tight")}
        result["sizes"][str(n)] = {"n": n, "P": ob.P, "solvers": runs} | ratios
        result["meta"]["loadavg"][f"after_flow_{n}"] = loadavg()
        save()
    for n in gd_sizes:
        r = result["sizes"][str(n)]
        lr = GD_C / max(r["solvers"][a]["sharpness_max_seen"] for a in ("ee", "rkc"))
        run, thetas[n]["gd"] = solve("gd", GradientDescent(lr), objectives[n], Counted(objectives[n]))
        r["solvers"]["gd"] = run | {"lr": lr}
        log(f"N={n} gd {r['solvers']['gd']}")
        result["meta"]["loadavg"][f"after_gd_{n}"] = loadavg()
        save()
    for n in sizes:
        ob, runs, th = objectives[n], result["sizes"][str(n)]["solvers"], thetas[n]
        for a in runs:
            runs[a]["endpoint"] = endpoint(ob, th[a])
            runs[a]["rel_distance_to"] = {b: ((th[a] - th[b]).norm() / (th[b] - ob.theta0).norm()).item()
                                          for b in runs if b != a}
        save()
    for n in ref_sizes:
        runs, th = result["sizes"][str(n)]["solvers"], thetas[n]
        names = sorted(runs, key=lambda a: runs[a]["t"])
        start = time.perf_counter()
        states, info = reference_states(objectives[n], [runs[a]["t"] for a in names])
        theta0 = info.pop("theta0")
        result["sizes"][str(n)]["reference"] = info | {"wall_s": time.perf_counter() - start}
        for a, ref in zip(names, states):
            runs[a]["rel_distance_to_reference"] = ((th[a].double() - ref).norm() / (ref - theta0).norm()).item()
        log(f"N={n} reference {result['sizes'][str(n)]['reference']} "
            + str({a: runs[a]["rel_distance_to_reference"] for a in names}))
        save()
    result["exponents"] = {}
    for a in ("ee", "rkc", "rkc_tight", "gd"):
        rs = [r for r in result["sizes"].values() if a in r["solvers"]]
        ns = [r["n"] for r in rs]
        result["exponents"][a] = {"sizes": ns} | {k: slope(ns, [r["solvers"][a][k] for r in rs])
                                                  for k in ("wall_s", "cpu_s", "grads", "hvps", "steps")}
    result["meta"]["loadavg"]["end"] = loadavg()
    save()
    log(table(result))
    return result


def table(result: dict) -> str:
    rows = ["| N | solver | steps | t | grads | HVPs | CPU s | wall s | dist. to ref | λ_max | ᾱ | chain gain |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["sizes"].values():
        for a, s in r["solvers"].items():
            e = s.get("endpoint", {"lambda_max": math.nan, "alpha_mean": math.nan, "chain_gain_mean": math.nan})
            ref = s.get("rel_distance_to_reference", math.nan)
            rows.append(f"| {r['n']} | {a} | {s['steps']} | {s['t']:.3g} | {s['grads']} | {s['hvps']} | "
                        f"{s['cpu_s']:.1f} | {s['wall_s']:.1f} | {ref:.2e} | {e['lambda_max']:.4g} | "
                        f"{e['alpha_mean']:.3f} | {e['chain_gain_mean']:.4g} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
