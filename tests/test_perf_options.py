"""Speed options of the curvature hot path give the same results as the plain path (issue 5).

The gradient-graph cache, the batched/vmap HVP formulations, float32 LOBPCG blocks, the extrapolated warm
start and the device/dtype plumbing (on a CPU-only machine through the stub device of ``conftest.StubDevice``,
which raises where a CPU tensor meets device tensors); plus a smoke run of the benchmark suite (``--quick``)."""
import json
import warnings
from pathlib import Path

import pytest
import torch

from conftest import StubDevice, tiny_objective
from eoslib.eigen import EigenConvergenceWarning, top_eigenpairs
from eoslib.models import mlp
from eoslib.objective import Objective
from eoslib.solvers import ExponentialEuler


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a small shared machine two spinning threads slow these tiny problems ~10×."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_objective(dtype=torch.float32, device: str | StubDevice = "cpu", **kw) -> Objective:
    """A float32 (or float64) MLP big enough for the eigen tracker to do real work (P ≈ 1,000), on a device
    or on the stub device of conftest.StubDevice."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 8, generator=g)
    y = torch.randint(0, 4, (64,), generator=g)
    model = mlp(8, 24, 3, 4, activation="elu", init="default", seed=0).to(dtype=dtype)  # same weights in any dtype
    if isinstance(device, StubDevice):
        return Objective(device.module(model), device.put(X.to(dtype)), device.put(y), loss="ce", **kw)
    return Objective(model.to(device), X.to(device), y.to(device), loss="ce", **kw)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_graph_cache_gives_identical_products_and_gradient(loss):
    cached, plain = tiny_objective(loss), tiny_objective(loss)
    plain.cache_graph = False
    assert cached.cache_graph  # on by default for unchunked data
    theta = cached.theta0 + 0.1 * torch.randn(cached.P, dtype=torch.float64)
    V = torch.randn(cached.P, 5, dtype=torch.float64)
    l1, g1 = cached.loss_and_grad(theta, keep_graph=True)
    l0, g0 = plain.loss_and_grad(theta)
    assert torch.equal(g1, g0) and torch.equal(l1, l0)
    for _ in range(2):  # the second call reuses the graph
        assert torch.equal(cached.hvp(theta, V), plain.hvp(theta, V))
    assert torch.equal(cached.hvp(theta, V[:, 0]), plain.hvp(theta, V[:, 0]))
    assert torch.equal(cached.loss_and_grad(theta)[1], g0)  # served from the cache


def test_graph_cache_follows_theta_identity_and_in_place_changes():
    ob, ref = tiny_objective("ce"), tiny_objective("ce")
    ref.cache_graph = False
    theta = ob.theta0.clone()
    V = torch.randn(ob.P, 3, dtype=torch.float64)
    ob.hvp(theta, V)
    key = ob._graph
    theta.add_(0.05)  # in place: the version counter moves, the graph must be rebuilt
    assert torch.equal(ob.hvp(theta, V), ref.hvp(theta, V))
    assert ob._graph is not key
    other = theta.clone()  # equal values, another tensor: rebuilt, same numbers
    assert torch.equal(ob.hvp(other, V), ref.hvp(other, V))
    ob.release_graph()
    assert ob._graph is None
    chunked = tiny_objective("ce", chunk_size=3)
    assert not chunked.cache_graph  # keeping every chunk's graph would defeat chunking
    assert torch.allclose(chunked.hvp(theta, V), ref.hvp(theta, V), atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", ["batched", "jvp"])
@pytest.mark.parametrize("cache", [True, False])
def test_hvp_formulations_agree(method, cache):
    loop = tiny_objective("ce")
    other = tiny_objective("ce")
    other.hvp_method, other.cache_graph = method, cache
    theta = loop.theta0 + 0.2 * torch.randn(loop.P, dtype=torch.float64)
    V = torch.randn(loop.P, 4, dtype=torch.float64)
    assert torch.allclose(other.hvp(theta, V), loop.hvp(theta, V), atol=1e-12, rtol=0)
    assert torch.allclose(other.loss_and_grad(theta, keep_graph=True)[1], loop.grad(theta), atol=1e-14, rtol=0)


def test_exponential_euler_same_with_and_without_cache():
    a, b = small_objective(torch.float64), small_objective(torch.float64, cache_graph=False)
    sa, sb = ExponentialEuler(dt_max=0.5, stiff_dim=3), ExponentialEuler(dt_max=0.5, stiff_dim=3)
    ta, tb = a.theta0.clone(), b.theta0.clone()
    for _ in range(3):
        ta, ra = sa.step(a, ta)
        tb, rb = sb.step(b, tb)
        assert ra["eig_matvecs"] == rb["eig_matvecs"]
    assert torch.equal(ta, tb)


def test_float32_blocks_match_float64_blocks():
    ob = small_objective(torch.float32)
    theta = ob.theta0
    op = ob.hvp_operator(theta)
    r64 = top_eigenpairs(op, ob.P, 4, tol=1e-3, dtype=torch.float64)
    r32 = top_eigenpairs(op, ob.P, 4, tol=1e-3, dtype=torch.float32)
    assert r32.converged and r64.converged
    assert r32.vectors.dtype == torch.float32 and r32.values.dtype == torch.float64
    assert torch.allclose(r32.values, r64.values, rtol=0, atol=2e-3 * r64.values[0].item())
    true = (ob.hvp(theta, r32.vectors).double() - r32.vectors.double() * r32.values).norm(dim=0)
    assert (true <= 1e-3 * r32.values[0] * 1.01).all()  # the reported criterion holds for the real residuals


def test_float64_switch_and_extrapolated_tracker():
    """The same network in float64 and float32 takes the same steps to float32 accuracy; the tracker's
    extrapolated warm start changes only the start of each solve, not what it converges to."""
    runs = {}
    for dtype, extrapolate in ((torch.float64, True), (torch.float32, True), (torch.float64, False)):
        ob = small_objective(dtype)
        solver = ExponentialEuler(dt_max=0.5, stiff_dim=3, tol=1e-6 if dtype == torch.float64 else 1e-4)
        solver.tracker.extrapolate = extrapolate
        theta, eigs = ob.theta0.clone(), []
        for _ in range(5):
            theta, rec = solver.step(ob, theta)
            eigs.append(rec["eigs"])
        assert theta.dtype == dtype and solver.tracker.vectors.dtype == dtype
        runs[dtype, extrapolate] = (theta.double(), torch.tensor(eigs))
    (t64, e64), (t32, e32), (tno, eno) = runs.values()
    assert torch.allclose(t64, t32, rtol=0, atol=1e-4 * t64.abs().max())
    assert torch.allclose(e64, e32, rtol=1e-3, atol=0)
    assert torch.allclose(t64, tno, rtol=0, atol=1e-7 * t64.abs().max())  # tol 1e-6: equal to ~the tolerance


def test_tracker_state_round_trip_and_warm_start():
    ob = small_objective()
    s1 = ExponentialEuler(dt_max=0.5, stiff_dim=3)
    theta = ob.theta0.clone()
    for _ in range(3):
        theta, _ = s1.step(ob, theta)
    v0 = s1.tracker.warm_start(theta)
    assert v0.shape == s1.tracker.vectors.shape and not torch.equal(v0, s1.tracker.vectors)
    s2 = ExponentialEuler(dt_max=0.5, stiff_dim=3)
    s2.load_state_dict(s1.state_dict())
    s2.tracker.k = s1.tracker.k  # as ExponentialEuler.step sets it from the objective before every solve
    assert torch.equal(s2.tracker.warm_start(theta), v0)
    s1.tracker.extrapolate = False
    assert s1.tracker.warm_start(theta) is s1.tracker.vectors


def test_warm_start_with_dependent_columns_falls_back_to_orthonormalising():
    Q, _ = torch.linalg.qr(torch.randn(50, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    ev = torch.cat([torch.tensor([3.0, 2.5, 2.2], dtype=torch.float64), torch.linspace(0, 2, 47, dtype=torch.float64)])
    A = (Q * ev) @ Q.T
    ref = ev[:3]
    v = torch.randn(50, 1, dtype=torch.float64).repeat(1, 3)  # three equal columns
    near = Q[:, :3] + 0.1 * torch.randn(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for v0 in (v, near, near * torch.tensor([1.0, 1e-3, 1e3], dtype=torch.float64)):  # dependent; badly scaled
        with warnings.catch_warnings():
            warnings.simplefilter("error", EigenConvergenceWarning)
            r = top_eigenpairs(lambda V: A @ V, 50, 3, v0=v0, tol=1e-9)
        assert r.converged and torch.allclose(r.values, ref, atol=1e-12, rtol=0)


def _device_workload(ob: Objective, theta: torch.Tensor, V: torch.Tensor) -> dict:
    """What the device test runs, name → results (tensors and numbers): every objective product in every
    formulation, an eigen-solve and two exponential-Euler steps. Grow it to cover more of a run."""
    out = {"grad": ob.grad(theta)}  # without the graph cache
    for method in ("batched", "jvp"):  # the other HVP formulations, uncached
        ob.hvp_method, ob.cache_graph = method, False
        out[f"hvp {method}"] = ob.hvp(theta, V)
    ob.hvp_method, ob.cache_graph = "backward", True
    out["loss_and_grad"] = ob.loss_and_grad(theta, keep_graph=True)
    out |= {f: getattr(ob, f)(theta, V) for f in ("hvp", "ggn_vp", "residual_vp")}
    out |= {"loss": ob.loss(theta), "outputs": ob.outputs(theta), "accuracy": ob.accuracy(theta)}
    r = top_eigenpairs(ob.hvp_operator(theta), ob.P, 2, tol=1e-3, device=ob.device)
    out["eigen"] = (r.values, r.vectors, r.matvecs)
    solver, th = ExponentialEuler(dt_max=0.5, stiff_dim=3), ob.theta0.clone()
    for step in range(2):
        th, rec = solver.step(ob, th)
        out[f"ee step {step}"] = (th, solver.tracker.vectors, rec)
    return out


def test_nothing_silently_moves_to_cpu():
    """The device workload runs on a second device (the stub of conftest.StubDevice: ``meta`` holding real
    data, which raises where a CPU tensor meets device tensors) and gives bit-identical results to the CPU,
    every tensor result and all solver state staying on the device."""
    g = torch.Generator().manual_seed(3)
    cpu = small_objective()
    theta, V = cpu.theta0 + 0.1 * torch.randn(cpu.P, generator=g), torch.randn(cpu.P, 3, generator=g)
    expected = _device_workload(cpu, theta, V)
    with StubDevice() as stub:
        ob = small_objective(device=stub)
        assert all(t.device == stub.device for t in (ob.theta0, ob.X, ob.y))
        got = _device_workload(ob, stub.put(theta), stub.put(V))
        for name in expected:
            for a, b in zip(torch.utils._pytree.tree_leaves(got[name]), torch.utils._pytree.tree_leaves(expected[name]),
                            strict=True):
                if isinstance(b, torch.Tensor):
                    assert a.device == stub.device, f"{name}: a result came back on {a.device}"
                    assert torch.equal(stub.data(a), b), name  # the same CPU kernels: bit-identical
                else:
                    assert a == b, name
        assert stub.transfers == []  # nothing was copied to the CPU (only .item()/.tolist() host syncs)
        assert stub.syncs > 0

        # the stub can fail: a tensor created without device= is caught where it meets device tensors ...
        with pytest.raises(RuntimeError, match="created without device= or moved to the CPU"):
            ob.theta0 + torch.ones(ob.P)
        # ... and an explicit move to the CPU is recorded
        ob.theta0.cpu()
        assert stub.transfers == ["aten._to_copy.default"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_steps_match_cpu():
    """On a real accelerator: two exponential-Euler steps stay on it and match the CPU to float32 accuracy."""
    runs = []
    for device in ("cuda", "cpu"):
        ob, solver = small_objective(device=device), ExponentialEuler(dt_max=0.5, stiff_dim=3)
        theta = ob.theta0.clone()
        for _ in range(2):
            theta, _ = solver.step(ob, theta)
        assert theta.device.type == device and solver.tracker.vectors.device.type == device
        runs.append(theta.cpu())
    assert torch.allclose(*runs, atol=1e-4)  # float32 steps; different kernels sum in different orders


@pytest.mark.slow
def test_benchmark_quick_smoke(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    from benchmarks.run import main

    out = tmp_path / "bench.json"
    res = main(["--quick", "--out", str(out)])  # sets one thread; the fixture restores the count
    saved = json.loads(out.read_text())
    assert saved["meta"]["quick"] and saved["meta"]["threads"] == 1
    for section in ("hvp", "eigen", "step"):
        assert "digits" in saved[section]
    h = saved["hvp"]["digits"]
    for form in ("backward", "batched", "jvp"):
        assert h["block"][form]["max_rel_diff_vs_loop"] < 1e-4
    assert saved["eigen"]["digits"]["eoslib_warm"]["max_residual_rel"] <= 1e-3 * 1.01
    assert saved["eigen"]["digits"]["eigsh_cold"]["max_residual_rel"] <= 1e-3 * 1.01
    assert set(saved["scaling"]["fits"]) == {"N", "width"}
    assert res["table"] and saved["targets"]
