"""Experiment kinds against independent oracles: the compare run's distances on a quadratic with a known flow,
the sweep's end points (θ at init, on the loss threshold, at the fixed flow time) on a real tiny run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eoslib.experiments import KINDS
from eoslib.experiments.compare import distances
from eoslib.solvers import phi1
from conftest import quadratic


def test_compare_distances_on_a_quadratic_with_a_known_flow():
    """GD on a quadratic has the closed form θ_k − θ_flow(kη) computable by hand from the eigendecomposition
    (θ_k = θ₀ − V·[(1 − (1 − ηλ)^k)/λ]·Vᵀg₀, the flow uses (1 − e^{−λt})/λ); every distance and the scale
    ‖θ_ref(t_end) − θ₀‖ at the flow solver's end time t_end (not the last snapshot: GD's runs past it) must
    match it."""
    ob = quadratic()
    A = ob.hvp(ob.theta0, torch.eye(ob.P, dtype=torch.float64))
    lam, V = torch.linalg.eigh((A + A.T) / 2)
    lam = torch.where(lam.abs() < 1e-12, torch.zeros_like(lam), lam)
    c0 = V.T @ ob.grad(ob.theta0)
    flow = lambda t: ob.theta0 - V @ (phi1(lam, t) * c0)  # noqa: E731

    def gd(k, eta):
        fac = torch.where(lam == 0, torch.full_like(lam, k * eta), (1 - (1 - eta * lam) ** k) / torch.where(lam == 0, 1, lam))
        return ob.theta0 - V @ (fac * c0)

    eta, t_end = 0.05, 0.5
    snaps = {"ee": [(0.0, flow(0.0)), (0.25, flow(0.25) + 1e-3), (t_end, flow(t_end))],
             "gd0.05": [(k * eta, gd(k, eta)) for k in range(0, 15)]}  # GD runs to t = 0.7 > t_end
    df = distances(snaps, lambda ts: [flow(t) for t in ts], ob.theta0, t_end, lambda th: ob.loss(th).item())
    scale = (flow(t_end) - ob.theta0).norm().item()
    ee = df[df.solver == "ee"].set_index("t")
    assert ee.loc[0.25, "dist"] == pytest.approx(1e-3 * np.sqrt(ob.P), rel=1e-9)  # a constant offset 1e-3 per entry
    assert ee.loc[0.25, "rel_dist"] == pytest.approx(1e-3 * np.sqrt(ob.P) / scale, rel=1e-9)
    assert ee.loc[t_end, "dist"] == pytest.approx(0.0, abs=1e-14)
    g = df[df.solver == "gd"]
    for k in (3, 10, 14):
        t = k * eta
        row = g[np.isclose(g.t, t, rtol=0, atol=1e-12)].iloc[0]
        d = (gd(k, eta) - flow(t)).norm().item()
        assert row["dist"] == pytest.approx(d, rel=1e-9)
        assert row["rel_dist"] == pytest.approx(d / scale, rel=1e-9)
        assert row["rel_dist_local"] == pytest.approx(d / (flow(t) - ob.theta0).norm().item(), rel=1e-9)
    ref = df[df.solver == "reference"]
    assert (ref.dist == 0).all() and set(np.round(ref.t, 12)) >= {0.25, t_end, 0.7}


def tiny_sweep_config(time: float = 0.8, thr: float = 0.9) -> dict:
    return {"kind": "sweep", "setting": {"name": "d", "dataset": "digits", "activation": "elu", "loss": "ce",
                                         "classes": 3, "standardize": False},
            "n": 24, "seed": 0, "model": {"width": 16, "depth": 3, "init": "default", "dtype": "float64"},
            "threads": 1, "loss_threshold": thr, "solver": {"name": "ee", "dt_max": 0.5, "tol": 1e-6},
            "time": time, "max_steps": 300, "probe": 16}


@pytest.mark.parametrize("time", [0.8, 30.0])  # the time end point before, then after, the threshold
def test_sweep_end_points(tmp_path, time):
    from eoslib.experiments.base import build_objective

    cfg = tiny_sweep_config(time=time)
    tab, info = KINDS["sweep"].run(cfg, tmp_path, False)
    thetas = torch.load(tmp_path / "endpoints.pt", weights_only=False)
    assert set(thetas) == set(info["endpoints"]) >= {"init", "threshold", "time"}
    ob, _ = build_objective(cfg)
    assert torch.equal(thetas["init"], ob.theta0)
    thr = cfg["loss_threshold"]
    L_thr = ob.loss(thetas["threshold"]).item()
    assert abs(L_thr / thr - 1) <= 0.01 and info["endpoints"]["threshold"]["loss"] == pytest.approx(L_thr, rel=1e-12)
    assert info["endpoints"]["time"]["t"] == pytest.approx(time, abs=1e-9)
    assert info["endpoints"]["time"]["loss"] == pytest.approx(ob.loss(thetas["time"]).item(), rel=1e-12)
    # the rows are the table's rows at those end points, the table's t is the running sum of its Δt
    for ep in ("threshold", "time"):
        row = tab[tab.step == info["endpoints"][ep]["step"]].iloc[0]
        assert row.t == pytest.approx(info["endpoints"][ep]["t"]) and row.loss == pytest.approx(info["endpoints"][ep]["loss"])
    assert np.allclose(np.cumsum(tab.dt.to_numpy()[:-1]), tab.t.to_numpy()[1:], atol=1e-9)
    first = "time" if time < info["endpoints"]["threshold"]["t"] else "threshold"
    assert info["stopped_by"][0] == {"time": "time", "threshold": "loss"}[first]


@pytest.mark.parametrize("time", [0.8, 30.0])
def test_sweep_end_points_read_along_the_way(tmp_path, time):
    """peak, edge and half_loss are the stepped iterates the trajectory says (up to the threshold): an
    independent hook keeps every iterate, and the table picks the one each definition names."""
    cfg = tiny_sweep_config(time=time)
    first, _ = KINDS["sweep"].run(dict(cfg), tmp_path / "probe", False)
    lam = first["sharpness"].dropna()
    cfg["edge_lr"] = 2.0 / float(lam.quantile(0.6))  # 2/η₀ inside the flow's range of λ_max

    kept = {}
    from eoslib import training

    real_train = training.train

    def train_keeping(*a, hooks=(), **k):  # every iterate θ by its loss (the flow's loss falls strictly)
        def keep(objective, theta, step, t, final):
            kept[objective.loss(theta).item()] = theta.detach().clone()
        return real_train(*a, hooks=[*hooks, keep], **k)

    training.train = train_keeping
    try:
        tab, info = KINDS["sweep"].run(cfg, tmp_path / "run", False)
    finally:
        training.train = real_train
    thetas = torch.load(tmp_path / "run" / "endpoints.pt", weights_only=False)
    assert {"peak", "edge", "half_loss"} <= set(thetas)
    upto = tab[tab.step < info["endpoints"]["threshold"]["step"]]  # stepped iterates before the threshold
    want = {"peak": upto.loc[upto.sharpness.idxmax()],
            "edge": upto[upto.sharpness >= 2.0 / cfg["edge_lr"]].iloc[0],
            "half_loss": upto[upto.loss <= (tab.loss.iloc[0] + cfg["loss_threshold"]) / 2].iloc[0]}
    for ep, row in want.items():
        assert info["endpoints"][ep]["step"] == row.step, ep
        assert torch.equal(thetas[ep], kept[row.loss]), ep
    cfg["edge_lr"] = 1e-6  # 2/η₀ above every λ_max: the flow never reaches the edge, no such end point
    _, info = KINDS["sweep"].run(cfg, tmp_path / "never", False)
    assert "edge" not in info["endpoints"] and "peak" in info["endpoints"]


def test_cost_kind_orders_on_a_quadratic(tmp_path):
    """On a quadratic, GD's error against the exact reference halves with η (first order), and the recorded
    work is one gradient per step."""
    import copy

    from eoslib.experiments.cost import order, variants

    vs = variants([{"name": "gd", "lr": [0.04, 0.02, 0.01]}])
    assert [v[0] for v in vs] == ["gd lr=0.04", "gd lr=0.02", "gd lr=0.01"]
    assert order([0.04, 0.02, 0.01], [4e-3, 2e-3, 1e-3]) == pytest.approx(1.0)
    assert order([0.5, 0.25], [1e-2, 2.5e-3]) == pytest.approx(2.0)
    cfg = {"kind": "cost", "setting": {"name": "q", "dataset": "digits", "activation": "elu", "loss": "mse",
                                       "classes": 2, "standardize": False},
           "n": 8, "seed": 0, "model": {"width": 4, "depth": 2, "init": "default", "dtype": "float64"}, "threads": 1,
           "loss_threshold": 1e-6, "time": 1.0, "rtol": 1e-10, "atol": 1e-12, "max_steps": 1000,
           "solvers": [{"name": "gd", "lr": [0.04, 0.02, 0.01]}]}
    tab, info = KINDS["cost"].run(copy.deepcopy(cfg), tmp_path, False)
    v = info["variants"]
    assert v["gd lr=0.01"]["work"] == v["gd lr=0.01"]["steps"] == 100 and v["gd lr=0.01"]["hvps"] == 0
    assert 0.9 < info["orders"]["gd"] < 1.1  # GD is a first-order integrator of the flow away from the edge


def test_sweep_sizes_may_end_with_full():
    """`full` stands for each setting's whole training set in its classes; sizes are planned per setting."""
    import copy

    import yaml

    from eoslib.config import plan, validate
    from eoslib.schema import ParamsError

    p = yaml.safe_load(open(Path(__file__).resolve().parents[1] / "params.yaml"))
    p = copy.deepcopy(p)
    p["sweep"] |= {"settings": ["digits-elu-ce"], "sizes": [16, "full"], "seeds": [0]}
    runs = plan(validate(p))["sweep-digits-elu-ce"]["runs"]
    assert sorted(c["n"] for c in runs.values()) == [16, 720]  # digits has 720 examples in its first 4 classes
    p["sweep"]["sizes"] = ["full", 16]
    with pytest.raises(ParamsError, match="sweep.sizes"):
        validate(p)


def test_stage_items_orders_runs_without_a_single_solver(tmp_path):
    """Regression: cost runs carry `solvers`, not `solver`; ordering a stage's runs must not need one."""
    import json

    from eoslib.execute import stage_items

    d = tmp_path / "runs" / "_plan"
    d.mkdir(parents=True)
    (d / "cost.json").write_text(json.dumps({"kind": "cost", "dir": "runs/cost", "runs": {
        "cost/a/seed0": {"n": 8, "solvers": []}, "cost/a/seed1": {"n": 16, "solvers": []}}}))
    _, items = stage_items("cost", tmp_path)
    assert [n for n, _ in items] == ["cost/a/seed1", "cost/a/seed0"]


def test_stage_items_put_the_runs_that_cost_most_last_time_first(tmp_path):
    """Within one N, the CPU seconds of the last generation (metrics/run_costs.json) order the runs, longest first
    (a run never recorded first of all), so that the slowest runs do not start last; then plan order."""
    import json

    from eoslib.execute import stage_items

    d = tmp_path / "runs" / "_plan"
    d.mkdir(parents=True)
    runs = {f"iv/{k}": {"n": 256} for k in ("a", "b", "c", "new", "d")}
    (d / "iv.json").write_text(json.dumps({"kind": "intervene", "dir": "runs/iv", "runs": runs}))
    assert [n for n, _ in stage_items("iv", tmp_path)[1]] == list(runs)  # nothing recorded: plan order
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "run_costs.json").write_text(json.dumps({"runs": [
        {"run": "iv/a", "cpu_seconds": 10.0}, {"run": "iv/b", "cpu_seconds": 300.0},
        {"run": "iv/c", "cpu_seconds": 20.0}, {"run": "iv/d", "cpu_seconds": 20.0}]}))
    assert [n for n, _ in stage_items("iv", tmp_path)[1]] == ["iv/new", "iv/b", "iv/c", "iv/d", "iv/a"]
