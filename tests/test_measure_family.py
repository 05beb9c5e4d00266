"""The alignment-measure family of claim C4 (issue 19): a₁, minₖ aₖ, the Frobenius ratio, the Haar baseline, the
task-weighted alignment, the GGN coherence, the input gain and the output-weight norm, each against an oracle
that does not use the formula it checks: dense ``jacrev`` Jacobians of each layer map and of the network,
``torch.linalg`` norms and singular values, dense per-example Gauss–Newton matrices (P × P), closed-form
expectations for the Haar baseline and hand-built networks with known answers (float64)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group
from torch.func import grad, jacrev

from conftest import dense_jacobian_and_criterion_hessian, oracle_loss, tiny_cnn_objective
from eoslib import alignment
from eoslib.alignment import full_alignment_stats, haar_alignment, haar_orthogonal
from eoslib.measures import MEASURES, library, measure_point, on_probe, probe_stats, source
from eoslib.measures.library import probe_objective
from eoslib.models import mlp
from eoslib.objective import Objective

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
D = torch.float64
NEW = ("a1_mean", "min_ak_mean", "alpha_frob_mean", "alpha_haar_ratio", "alpha_task_mean", "coherence",
       "input_gain", "output_weight_norm")
norm2 = lambda M: torch.linalg.matrix_norm(M, ord=2)  # noqa: E731


def _objective(loss="ce", n=7, act="elu", seed=3) -> Objective:
    """Depth 4, width 6, input 5, 3 classes, PyTorch's default init (a generic, unaligned net)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g, dtype=D)
    y = torch.randint(0, 3, (n,), generator=g)
    return Objective(mlp(5, 6, 4, 3, activation=act, init="default", seed=seed, dtype=D), X, y, loss=loss)


def _dense(model, x):
    """Oracle pieces for one example x of an MLP Sequential(Linear, σ, …, Linear), all by ``jacrev`` of the maps
    themselves: Jᵏ = ∂x̂ᵏ⁺¹/∂x̂ᵏ (k = 1..K−1), Pₖ = ∂f/∂x̂ᵏ (k = 1..K, of the map x̂ᵏ ↦ f) and ∂f/∂x."""
    K = (len(model) + 1) // 2
    pre = [model[: 2 * k - 1](x) for k in range(1, K + 1)]  # x̂¹ … x̂ᴷ
    J = [jacrev(model[2 * k - 1: 2 * k + 1])(pre[k - 1]) for k in range(1, K)]
    P = [jacrev(model[2 * k - 1:])(pre[k - 1]) for k in range(1, K + 1)]
    return [j.detach() for j in J], [p.detach() for p in P], jacrev(model)(x).detach()


def _oracle_factors(J, P):
    """aₖ = ‖vᵀPₖ‖ / (‖vᵀPₖ₊₁‖ ‖Jᵏ‖₂) with v the top left singular vector of P₁ (torch.linalg.svd): the
    telescoped form of the backpropagated factors (uₖ₊₁ ∝ Pₖ₊₁ᵀv), not the recursion the library runs."""
    v = torch.linalg.svd(P[0])[0][:, 0]
    return torch.stack([(v @ P[k]).norm() / ((v @ P[k + 1]).norm() * norm2(J[k])) for k in range(len(J))])


def _set(layer, W, b):
    with torch.no_grad():
        layer.weight.copy_(W)
        layer.bias.copy_(b)


def _positive_net(hidden, last, n=6):
    """ELU MLP 5 → 3 → 3 → 3 → 2 whose hidden preactivations are all > 0 (σ′ ≡ 1), so Jᵏ = Aᵏ⁺¹ exactly:
    x̂¹ = 0.05·A¹x + 5, the hidden weights are entrywise ≥ 0 and their biases 1."""
    model = mlp(5, 3, 4, 2, activation="elu", seed=0, dtype=D)
    lins = model[0::2]
    _set(lins[0], 0.05 * lins[0].weight, torch.full((3,), 5.0, dtype=D))
    for lin, W in zip(lins[1:3], hidden):
        _set(lin, W, torch.ones(3, dtype=D))
    _set(lins[3], last, torch.zeros(2, dtype=D))
    X = torch.randn(n, 5, generator=torch.Generator().manual_seed(4), dtype=D)
    assert all((model[: 2 * k - 1](X) > 0).all() for k in (1, 2, 3))
    return model, X


# ------------------------------------------------------------------------------------------ catalog


def test_the_new_names_are_catalogued():
    for name in NEW:
        assert name in MEASURES and "$" in MEASURES.label(name), name
    assert {n: source(n) for n in NEW} == {
        "a1_mean": "alignment", "min_ak_mean": "alignment", "alpha_frob_mean": "alignment",
        "alpha_haar_ratio": "alignment", "alpha_task_mean": "alignment", "input_gain": "alignment",
        "coherence": "curvature", "output_weight_norm": "curvature"}
    assert [n for n in MEASURES if on_probe(n)] == ["coherence"]


# ------------------------------------------------------------------------------------------ factors, gains


@pytest.mark.parametrize("act", ["elu", "tanh"])
def test_factor_frobenius_and_input_measures_match_dense_jacobians(act):
    ob = _objective(act=act)
    st = probe_stats(ob.model, ob.X)
    dense = [_dense(ob.model, x) for x in ob.X]
    a = torch.stack([_oracle_factors(J, P) for J, P, _ in dense])  # n × (K−1)
    frob = torch.stack([torch.linalg.matrix_norm(P[0]) / math.prod(torch.linalg.matrix_norm(j) for j in J)
                        for J, P, _ in dense])
    gain = torch.stack([norm2(dfdx) for _, _, dfdx in dense])
    assert MEASURES["a1_mean"](st) == pytest.approx(float(a[:, 0].mean()), rel=1e-10)
    assert MEASURES["min_ak_mean"](st) == pytest.approx(float(a.min(dim=1).values.mean()), rel=1e-10)
    assert MEASURES["alpha_frob_mean"](st) == pytest.approx(float(frob.mean()), rel=1e-12)
    assert MEASURES["input_gain"](st) == pytest.approx(float(gain.mean()), rel=1e-12)
    assert (st.factors.min(axis=1) >= st.alpha * (1 - 1e-12)).all()  # Πₖ aₖ = α with every aₖ ≤ 1


def test_factors_of_a_constructed_net():
    """J¹ = diag(1, 5, 1), J² = diag(2, 1, 1), J³ = [I₂ 0]: P₁ = [[2,0,0],[0,5,0]] has top left singular vector
    v = e₂, so a₃ = 1, a₂ = ‖e₂ᵀJ²‖/‖J²‖ = 1/2, a₁ = ‖e₂ᵀJ¹‖/‖J¹‖ = 1: a₁ = 1 but minₖ aₖ = α = 1/2; and
    ‖P₁‖_F / Πₖ‖Jᵏ‖_F = √29 / (√27·√6·√2) = √29/18."""
    e = torch.eye(3, dtype=D)
    model, X = _positive_net([torch.diag(torch.tensor([1.0, 5.0, 1.0], dtype=D)),
                              torch.diag(torch.tensor([2.0, 1.0, 1.0], dtype=D))], e[:2])
    st = probe_stats(model, X)
    assert MEASURES["a1_mean"](st) == pytest.approx(1.0, rel=1e-14)
    assert MEASURES["min_ak_mean"](st) == pytest.approx(0.5, rel=1e-14)
    assert MEASURES["alpha_mean"](st) == pytest.approx(0.5, rel=1e-14)
    assert MEASURES["alpha_frob_mean"](st) == pytest.approx(math.sqrt(29) / 18, rel=1e-14)


def test_frobenius_alignment_of_a_constructed_net():
    """J¹ = 2I₃, J² = 3e₁e₁ᵀ, J³ = [I₂ 0]: P₁ = 6e₁e₁ᵀ, so ‖P₁‖_F = 6 and Πₖ‖Jᵏ‖_F = 2√3·3·√2, α_F = 1/√6,
    while the spectral α = 6/(2·3·1) = 1 and a₁ = minₖ aₖ = 1."""
    e = torch.eye(3, dtype=D)
    model, X = _positive_net([2 * e, 3 * torch.outer(e[0], e[0])], e[:2])
    st = probe_stats(model, X)
    assert MEASURES["alpha_frob_mean"](st) == pytest.approx(1 / math.sqrt(6), rel=1e-14)
    assert MEASURES["alpha_mean"](st) == pytest.approx(1.0, rel=1e-14)
    assert MEASURES["a1_mean"](st) == pytest.approx(1.0, rel=1e-14)
    assert MEASURES["min_ak_mean"](st) == pytest.approx(1.0, rel=1e-14)


# ------------------------------------------------------------------------------------------ Haar baseline


def test_haar_orthogonal_is_orthogonal_and_unbiased():
    """Orthogonal; E Q₀₀ = 0 and E Q₀₀² = 1/n for a Haar matrix (without the sign fix of R's diagonal, QR of a
    Gaussian gives Q₀₀ < 0 always)."""
    n, m = 5, 4000
    Q = haar_orthogonal(n, m, torch.Generator().manual_seed(0))
    torch.testing.assert_close(Q.mT @ Q, torch.eye(n, dtype=D).expand(m, n, n), rtol=0, atol=1e-13)
    q = Q[:, 0, 0]
    assert abs(float(q.mean())) < 5 / math.sqrt(n * m)  # sd of Q₀₀ is 1/√n
    assert float(q.pow(2).mean()) == pytest.approx(1 / n, abs=5 * math.sqrt(2 / (n * (n + 2)) / m))


def _sphere_mean_abs(m: int) -> float:
    """E|u₁| for u uniform on the unit sphere of R^m: Γ(m/2) / (√π Γ((m+1)/2))."""
    return math.exp(math.lgamma(m / 2) - math.lgamma((m + 1) / 2)) / math.sqrt(math.pi)


def test_haar_baseline_of_rank_one_layers_has_its_closed_form():
    """Rank-one Jᵏ = sₖ uₖvₖᵀ with Haar singular vectors: ‖J³J²J¹‖ / Πₖ sₖ = |v₃ᵀu₂|·|v₂ᵀu₁|, independent
    inner products of uniform unit vectors in R⁶ and R⁵, so E α_rand = E|u₁|_{S⁵}·E|u₁|_{S⁴} ≈ 0.1273 — the same
    for every example (scale invariance; the draws are shared)."""
    shapes = [(5, 4), (6, 5), (3, 6)]
    svals = [torch.tensor([[2.0, 0, 0, 0], [0.5, 0, 0, 0]], dtype=D), torch.tensor([[3.0, 0, 0, 0, 0]] * 2, dtype=D),
             torch.tensor([[1.5, 0, 0], [7.0, 0, 0]], dtype=D)]
    draws = 20000
    got = haar_alignment(svals, shapes, draws=draws, seed=1)
    want = _sphere_mean_abs(6) * _sphere_mean_abs(5)
    se = math.sqrt((1 / 30 - want**2) / draws)  # E X² = (1/6)(1/5)
    assert float(got[0]) == pytest.approx(want, abs=5 * se)
    assert float(got[1]) == pytest.approx(float(got[0]), rel=1e-12)


def test_haar_baseline_matches_the_literal_monte_carlo():
    """General singular values (no closed form): the library's reduced chain Σ W Σ W Σ against the literal
    mean of ‖Πₖ UₖΣₖVₖᵀ‖₂ / Πₖσ₁ with Uₖ, Vₖ drawn independently (scipy's ``ortho_group``), within five
    standard errors of the difference."""
    shapes = [(4, 4), (4, 4), (3, 4)]
    s = [torch.tensor([[2.0, 1.0, 0.5, 0.1]], dtype=D), torch.tensor([[1.0, 0.9, 0.3, 0.2]], dtype=D),
         torch.tensor([[1.0, 0.6, 0.2]], dtype=D)]
    draws = 6000
    ours = haar_alignment(s, shapes, draws=draws, seed=2)
    rng = np.random.default_rng(0)
    U = [torch.from_numpy(ortho_group.rvs(m, size=draws, random_state=rng)) for m, _ in shapes]
    V = [torch.from_numpy(ortho_group.rvs(n, size=draws, random_state=rng)) for _, n in shapes]
    Js = [u[:, :, : sv.shape[1]] * sv[0] @ v[:, :, : sv.shape[1]].mT for u, sv, v in zip(U, s, V)]
    lit = norm2(Js[2] @ Js[1] @ Js[0]) / (2.0 * 1.0 * 1.0)
    one = torch.stack([haar_alignment(s, shapes, draws=1, seed=k) for k in range(300)]).std()  # per-draw sd
    assert float(ours[0]) == pytest.approx(float(lit.mean()), abs=5 * math.sqrt((lit.var() + one**2) / draws))
    assert 0 < float(ours[0]) < 1


def test_haar_baseline_in_the_stats_is_deterministic_and_uses_the_true_singular_values():
    ob = _objective(n=6)
    torch.manual_seed(123)
    s1 = full_alignment_stats(ob.model, ob.X)
    torch.manual_seed(456)
    s2 = full_alignment_stats(ob.model, ob.X, chunk_size=2)
    torch.testing.assert_close(s1["alpha_rand"], s2["alpha_rand"], rtol=1e-12, atol=0)  # seeds and chunks
    dense = [_dense(ob.model, x)[0] for x in ob.X]
    svals = [torch.stack([torch.linalg.svdvals(J[k]) for J in dense]) for k in range(3)]
    want = haar_alignment(svals, [(6, 6), (6, 6), (3, 6)])
    torch.testing.assert_close(s1["alpha_rand"], want, rtol=1e-10, atol=0)
    st = probe_stats(ob.model, ob.X)
    assert MEASURES["alpha_haar_ratio"](st) == pytest.approx(float((st.alpha / want.numpy()).mean()), rel=1e-10)


def test_haar_baseline_is_one_when_the_hidden_layers_are_scaled_orthogonal():
    """J¹ = 2·(permutation), J² = 3I: Πₖ UₖΣₖVₖᵀ = 6·O·U₃Σ₃V₃ᵀ·O′ for every draw, so α_rand = 1 exactly (and
    α = 1); a depth-2 net (one layer Jacobian) has α_rand = 1 too."""
    e = torch.eye(3, dtype=D)
    model, X = _positive_net([2 * e[[1, 2, 0]], 3 * e], torch.tensor([[1.0, 2.0, 0.5], [0.3, 0.0, 1.0]], dtype=D))
    st = probe_stats(model, X)
    np.testing.assert_allclose(st.extra["alpha_rand"], 1.0, rtol=1e-13)
    assert MEASURES["alpha_haar_ratio"](st) == pytest.approx(1.0, rel=1e-13)
    shallow = mlp(5, 6, 2, 3, init="default", seed=0, dtype=D)
    np.testing.assert_allclose(probe_stats(shallow, X).extra["alpha_rand"], 1.0, rtol=1e-13)


# ------------------------------------------------------------------------------------------ task alignment


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_task_alignment_matches_the_backpropagated_loss_error(loss):
    """α_task(x) = ‖eᵀP₁‖ / (‖e‖ Πₖ‖Jᵏ‖) with e = ∂l/∂z from the oracle loss (grad of logsumexp − z_y or
    ½‖z − onehot‖²) and P₁ (Q × width) by jacrev of x̂¹ ↦ f; α_task ≤ α."""
    ob = _objective(loss)
    st = probe_stats(ob.model, ob.X, ob.y, loss)
    z, l = ob.model(ob.X).detach(), oracle_loss(ob.criterion)
    want = []
    for i, x in enumerate(ob.X):
        J, P, _ = _dense(ob.model, x)
        e = grad(l)(z[i], ob.y[i])
        want.append((e @ P[0]).norm() / (e.norm() * math.prod(norm2(j) for j in J)))
    want = torch.stack(want)
    np.testing.assert_allclose(st.extra["task_gain"] / st.norms.prod(axis=1), want.numpy(), rtol=1e-10)
    assert MEASURES["alpha_task_mean"](st) == pytest.approx(float(want.mean()), rel=1e-10)
    assert (want.numpy() <= st.alpha * (1 + 1e-12)).all()
    assert (want.numpy() < 0.99 * st.alpha).any()  # a real restriction, not α itself


def test_task_alignment_skips_fitted_examples_and_needs_labels():
    ob = _objective()
    E = torch.randn(ob.N, 3, generator=torch.Generator().manual_seed(0), dtype=D)
    E[[1, 4]] = 0.0
    s = full_alignment_stats(ob.model, ob.X, errors=E)
    assert s["error_norm"][[1, 4]].eq(0).all() and s["task_gain"][[1, 4]].eq(0).all()
    st = probe_stats(ob.model, ob.X)  # no labels: no task statistics (as the measurement hook calls it)
    assert math.isnan(MEASURES["alpha_task_mean"](st))
    st = library.ProbeStats(st.norms, st.chain, st.factors, {k: v.numpy() for k, v in s.items()
                                                            if k in ("task_gain", "error_norm")})
    keep = [0, 2, 3, 5, 6]
    want = (s["task_gain"][keep] / torch.from_numpy(st.norms[keep]).prod(dim=1)).mean()
    assert MEASURES["alpha_task_mean"](st) == pytest.approx(float(want), rel=1e-14)
    none = library.ProbeStats(st.norms, st.chain, st.factors, {"task_gain": 0 * st.chain, "error_norm": 0 * st.chain})
    assert math.isnan(MEASURES["alpha_task_mean"](none))


def test_task_gain_on_a_cnn_by_vjp():
    """Matrix-free networks: ‖êᵀP₁‖ by one VJP, against jacrev of x̂¹ ↦ f (the layers after the first conv); the
    closed-form-only statistics are NaN there."""
    ob = tiny_cnn_objective(n=4)
    E = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=D)
    s = full_alignment_stats(ob.model, ob.X, errors=E, tol=1e-12, max_iter=5000)
    rest = ob.model[2:]
    want = []
    for x, e in zip(ob.X, E):
        z1 = ob.model[:2](x[None])[0]
        P1 = jacrev(lambda z: rest(z[None])[0])(z1).detach().reshape(3, -1)
        want.append((e / e.norm() @ P1).norm())
    torch.testing.assert_close(s["task_gain"], torch.stack(want), rtol=1e-12, atol=0)
    assert s["alpha_rand"].isnan().all() and s["frob_chain"].isnan().all()


# ------------------------------------------------------------------------------------------ coherence


def _oracle_coherence(ob: Objective, theta) -> float:
    """Dense per-example GGNs Gᵢ = JᵢᵀDᵢJᵢ (P × P) from jacrev and torch.func.hessian of the oracle loss."""
    J, Dl = dense_jacobian_and_criterion_hessian(ob, theta)
    G = torch.einsum("nqp,nqr,nrs->nps", J, Dl, J)
    lam = torch.linalg.eigvalsh(G)[:, -1]
    return float(torch.linalg.eigvalsh(G.mean(0))[-1] / lam.mean())


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_coherence_matches_dense_per_example_ggns(loss, monkeypatch):
    ob = _objective(loss)
    theta = ob.theta0 + 0.2 * torch.randn(ob.P, generator=torch.Generator().manual_seed(5), dtype=D)
    want = _oracle_coherence(ob, theta)
    assert 1 / ob.N < want < 1
    assert MEASURES["coherence"](ob, theta, {}) == pytest.approx(want, rel=1e-10)
    monkeypatch.setattr(library, "COHERENCE_GRAM_MAX", 0)  # the eigensolver route
    cache: dict = {}
    assert MEASURES["coherence"](ob, theta, cache) == pytest.approx(want, rel=1e-6)
    assert cache["certificates"]["coherence"]["converged"]


def test_coherence_on_a_cnn_by_dense_output_jacobians():
    ob = tiny_cnn_objective(n=5)
    assert not alignment.is_mlp(ob.model)
    assert MEASURES["coherence"](ob, ob.theta0, {}) == pytest.approx(_oracle_coherence(ob, ob.theta0), rel=1e-10)


def test_coherence_bounds_are_attained():
    """1 when every example is the same; 1/n for a bias-free linear model under MSE on orthonormal inputs
    (Gᵢ = I_Q ⊗ xᵢxᵢᵀ: λ_max(Gᵢ) = 1, Ḡ = I_Q ⊗ I_n/n)."""
    ob = _objective()
    same = Objective(ob.model, ob.X[:1].expand(5, -1), ob.y[:1].expand(5))
    assert MEASURES["coherence"](same, same.theta0, {}) == pytest.approx(1.0, rel=1e-12)
    lin = torch.nn.Sequential(torch.nn.Linear(6, 3, bias=False, dtype=D))
    orth = Objective(lin, torch.eye(6, dtype=D)[:4], torch.tensor([0, 1, 2, 0]), loss="mse")
    assert MEASURES["coherence"](orth, orth.theta0, {}) == pytest.approx(1 / 4, rel=1e-12)


# ------------------------------------------------------------------------------------------ output weights


def test_output_weight_norm_reads_theta():
    ob = _objective()
    W = torch.zeros(3, 6, dtype=D)
    W[0, 0], W[1, 1], W[2, 2] = 3.0, 4.0, 12.0
    with torch.no_grad():
        ob.model[-1].weight.copy_(W)
    ob = Objective(ob.model, ob.X, ob.y)
    assert MEASURES["output_weight_norm"](ob, ob.theta0, {}) == pytest.approx(13.0, rel=1e-15)
    theta = ob.theta0.clone()
    theta[ob.param_slices()[f"{len(ob.model) - 1}.weight"]] = 2 * W.reshape(-1)
    assert MEASURES["output_weight_norm"](ob, theta, {}) == pytest.approx(26.0, rel=1e-15)


# ------------------------------------------------------------------------------------------ measure_point


def test_measure_point_evaluates_the_family_in_float32_on_the_probe():
    """All new names at once on a float32 objective with a probe of 6 of 9 examples: finite, and equal to
    the float64 oracles on the same probe rows to float32 accuracy (coherence on the probe, not all of X)."""
    ob64 = _objective(n=9)
    ob = Objective(copy.deepcopy(ob64.model).float(), ob64.X.float(), ob64.y)
    row = measure_point(ob, ob.theta0, NEW, probe=6, seed=1)
    assert set(NEW) <= set(row) and all(math.isfinite(row[n]) for n in NEW), row
    sub = probe_objective(ob64, 6, 1)
    assert sub.N == 6 and sub.X.shape == (6, 5)
    assert row["coherence"] == pytest.approx(_oracle_coherence(sub, sub.theta0), rel=1e-4)
    assert row["coherence"] != pytest.approx(_oracle_coherence(ob64, ob64.theta0), rel=1e-3)
    st = probe_stats(sub.model, sub.X, sub.y, sub.criterion)
    for n in NEW:
        want = MEASURES[n](st) if source(n) == "alignment" else MEASURES[n](sub, sub.theta0, {})
        assert row[n] == pytest.approx(want, rel=1e-4), n


def test_the_trajectory_measurement_records_the_task_alignment():
    """Along a run, the measurement hook passes the probe's labels: α_task is finite and ≤ α at every row."""
    from conftest import tiny_objective

    from eoslib.measurement import Measurement

    ob = tiny_objective("ce", n=7)
    m = Measurement(every=1, tol=1e-6, operators=(), shares=False, alignment=True)
    row = m(ob, ob.theta0, step=0, t=0.0, final=False)
    assert np.isfinite(row["alpha_task_mean"]) and 0 < row["alpha_task_mean"] <= row["alpha_mean"] + 1e-12
