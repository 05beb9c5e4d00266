"""The Krylov top singular pairs of eoslib.intervention (``_krylov_pair``, issue 17 case 2) against exact oracles:
matrices J = A·diag(d) built from a known SVD A = U diag(s) Vᵀ, or torch.linalg.svdvals in float64.

Warm-started at an exact eigenvector of JᵀJ that is not the top one (the second right singular vector: residual
0, a Krylov-invariant start), the single-vector method accepted σ₂ after one product while σ₁ was 1–6 % larger.
The block method must return σ₁: its guard rows explore from seeded random directions.

Tolerances (both dtypes at the default tol = √eps of the dtype, as ChainTerms uses): a Ritz value θ of JᵀJ
with relative residual ρ = ‖r‖/θ is within ‖r‖²/δ of the eigenvalue σ₁² when the rest of the spectrum lies
δ away (Kato–Temple), so |σ/σ₁ − 1| ≤ ρ²/(2g) with g = δ/σ₁² ≥ 1 − 1/1.01² ≈ 0.0197 here: 3·10⁻⁶ in float32
(ρ = 3.5·10⁻⁴), 6·10⁻¹⁵ in float64 (ρ = 1.5·10⁻⁸), plus rounding of the products (~10⁻⁶ / ~10⁻¹⁴ on n = 128).
Hence SIGMA_RTOL = 2·10⁻⁵ / 10⁻¹²: far below the 1 % by which σ₂ misses σ₁, far above the method's error. The
vector error is ≲ ρ/g (1.8·10⁻² / 7.6·10⁻⁷), so |⟨v, v₁⟩| ≥ 1 − (ρ/g)² ≈ 1 − 3·10⁻⁴ / 1 − 6·10⁻¹³.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from eoslib.intervention import DEFAULT_GUARD, ChainTerms, SingularPairs, _krylov_pair

F64 = torch.float64
DTYPES = [torch.float32, F64]
SIGMA_RTOL = {torch.float32: 2e-5, F64: 1e-12}
ALIGN_ATOL = {torch.float32: 1e-3, F64: 1e-11}


def tol_of(dtype: torch.dtype) -> float:
    return math.sqrt(torch.finfo(dtype).eps)


def known_svd(seed: int, ratio: float, n: int = 128) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A, V, s) in float64 with A = U diag(s) Vᵀ (n × n, U, V Haar-random): s₂ = 1, s₁ = ``ratio``, the rest
    the normalised singular values of a Gaussian matrix (a dense edge: s₃ is 1–3 % below s₂, where a loose
    guard is fooled)."""
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    bulk = torch.linalg.svdvals(torch.randn(n, n, generator=g, dtype=F64))
    s = torch.cat([torch.tensor([ratio], dtype=F64), bulk[:-1] / bulk[0]])
    return U @ torch.diag(s) @ V.T, V, s


def svd_oracle(A: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """σ₁ and v₁ of each A·diag(dᵢ), in float64, of the matrices as given (after any cast to float32)."""
    _, S, Vh = torch.linalg.svd(A.double() * d.double()[:, None, :])
    return S[:, 0], Vh[:, 0, :]


def check_top(sp: SingularPairs, A: torch.Tensor, d: torch.Tensor, dtype: torch.dtype) -> None:
    sigma, v1 = svd_oracle(A, d)
    assert sp.converged and float(sp.residuals.max()) <= tol_of(dtype)
    assert torch.allclose(sp.sigma.double(), sigma, rtol=SIGMA_RTOL[dtype], atol=0), (sp.sigma, sigma)
    align = (sp.v.double() * v1).sum(1).abs()
    assert torch.allclose(align, torch.ones_like(align), rtol=0, atol=ALIGN_ATOL[dtype])
    J = A.double() * d.double()[:, None, :]
    uJv = ((sp.u.double()[:, None, :] @ J).squeeze(1) * sp.v.double()).sum(1)  # the envelope value uᵀJv = σ₁
    assert torch.allclose(uJv, sigma, rtol=SIGMA_RTOL[dtype], atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("ratio", [1.01, 1.03, 1.06])
@pytest.mark.parametrize("seed", [3, 30, 50, 57])
def test_warm_start_at_the_second_singular_vector_finds_the_first(dtype, ratio, seed):
    """v0 = v₂ exactly (an eigenvector of JᵀJ: residual 0 after the first product) and σ₁ = ratio·σ₂: σ₁ with
    its vector, converged, after more than the first block product. Seeds 30, 50, 57 are spectra where the
    random guards at the loose 5 % tolerance alone accepted σ₂ (30: float32 at 1.01, 50: float64 at 1.01,
    57: float32 at 1.01 and 1.03; intervention.GUARD_TOL)."""
    A, V, _ = known_svd(seed, ratio)
    A, d = A.to(dtype), torch.ones(1, 128, dtype=dtype)
    sp = _krylov_pair(A, d, V[:, 1].to(dtype)[None], tol_of(dtype), max_matvecs=1000, seed=seed)
    check_top(sp, A, d, dtype)
    assert sp.warm and sp.matvecs > 1 + sp.guard


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_warm_start_near_the_second_singular_vector_finds_the_first(dtype, scale):
    """v0 = v₂ + scale·tol·g/‖g‖ (normalised, g Gaussian), σ₁/σ₂ = 1.01 and 1.06: σ₁. Below tol the start is
    accepted by a residual check after one product; at 100·tol single-vector Lanczos converges to v₂ (its v₁
    component, ~tol/√n, is not yet amplified when the residual meets tol) — the guards must refute both."""
    for seed, ratio in ((5, 1.01), (6, 1.06)):
        A, V, _ = known_svd(seed, ratio)
        g = torch.randn(128, generator=torch.Generator().manual_seed(100 + seed), dtype=F64)
        v0 = V[:, 1] + scale * tol_of(dtype) * g / g.norm()
        A, d = A.to(dtype), torch.ones(1, 128, dtype=dtype)
        sp = _krylov_pair(A, d, (v0 / v0.norm()).to(dtype)[None], tol_of(dtype), max_matvecs=1000, seed=seed)
        check_top(sp, A, d, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_a_batch_with_different_answers_and_starts(dtype):
    """One batch, four examples with different σ₁, each started at (or within tol of) an eigenvector of its
    JᵢᵀJᵢ: J₀ = A at v₂, J₁ = A/2 at v₁ (its answer), J₂ = 2A at v₂ + 0.3·tol·g, J₃ = A·diag(d₃), d₃ random,
    at its own second right singular vector (from a float64 SVD). Every example gets its own σ₁."""
    A, V, s = known_svd(7, 1.02)
    g = torch.Generator().manual_seed(8)
    d = torch.stack([torch.ones(128, dtype=F64), 0.5 * torch.ones(128, dtype=F64), 2 * torch.ones(128, dtype=F64),
                     0.5 + torch.rand(128, generator=g, dtype=F64)])
    v3 = torch.linalg.svd(A * d[3])[2][1]
    w = torch.randn(128, generator=g, dtype=F64)
    v0 = torch.stack([V[:, 1], V[:, 0], V[:, 1] + 0.3 * tol_of(dtype) * w / w.norm(), v3])
    A, d = A.to(dtype), d.to(dtype)
    sp = _krylov_pair(A, d, (v0 / v0.norm(dim=1, keepdim=True)).to(dtype), tol_of(dtype), max_matvecs=1000)
    check_top(sp, A, d, dtype)
    sigma, _ = svd_oracle(A, d)
    assert torch.allclose(sigma[:3], torch.tensor([1.0, 0.5, 2.0], dtype=F64) * s[0], rtol=1e-6)  # distinct
    assert sp.block.shape == (4, 1 + DEFAULT_GUARD, 128) and sp.residuals.shape == (4,)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("shape", [(128, 128), (50, 60), (90, 40), (20, 80), (7, 5), (1, 4)])
def test_cold_start_matches_svdvals(dtype, shape):
    """No warm start (seeded Gaussian block) on random A and d (one example with half its units dead, so JᵀJ
    is singular and the Krylov space breaks down early): σ₁ of every example as torch.linalg.svdvals in
    float64, with a converged certificate."""
    m, n = shape
    g = torch.Generator().manual_seed(m * n)
    A = torch.randn(m, n, generator=g, dtype=F64).to(dtype)
    d = (torch.rand(5, n, generator=g, dtype=F64) + 0.1).to(dtype)
    d[0, : n // 2] = 0
    sp = _krylov_pair(A, d, None, tol_of(dtype), max_matvecs=2000)
    ref = torch.linalg.svdvals(A.double() * d.double()[:, None, :])[:, 0]
    assert sp.converged and not sp.warm
    assert torch.allclose(sp.sigma.double(), ref, rtol=SIGMA_RTOL[dtype], atol=0)
    again = _krylov_pair(A, d, None, tol_of(dtype), max_matvecs=2000)
    assert torch.equal(again.sigma, sp.sigma) and again.matvecs == sp.matvecs  # seeded: deterministic


def test_unconverged_is_reported():
    """A budget too small for the tolerance: the best estimate, converged=False in the certificate, and a
    RuntimeWarning."""
    A, V, _ = known_svd(1, 1.01)
    with pytest.warns(RuntimeWarning, match="above their limits"):
        sp = _krylov_pair(A, torch.ones(2, 128, dtype=F64), V[:, 1].expand(2, -1), 1e-12, max_matvecs=12)
    cert = sp.certificate()
    assert cert["converged"] is False and cert["residual"] > 1e-12 and 12 <= cert["matvecs"] < 12 + 3
    assert set(cert) == {"converged", "residual", "matvecs", "warm", "guard"} and cert["warm"] and cert["guard"] == 2


def test_chain_terms_carry_blocks_and_certificates():
    """ChainTerms keeps each Krylov layer's Ritz block as the next warm start and the certificates of its last
    call; an old checkpoint's M × n vectors are still a valid warm start (the same values)."""
    from eoslib.models import mlp
    from eoslib.objective import Objective

    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(12, 6, generator=g, dtype=F64), torch.randint(0, 3, (12,), generator=g)
    ob = Objective(mlp(6, 40, 4, 3, activation="elu", init="default", seed=1, dtype=F64), X, y)
    terms = ChainTerms(ob, tol=1e-12, gram_max=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        a = terms.evaluate(ob.theta0).terms
    assert set(terms.certificates) == {0, 1, 2} and terms.converged and terms.residual <= 1e-12
    assert all(c["warm"] is False and c["guard"] == DEFAULT_GUARD for c in terms.certificates.values())
    assert all(v.shape == (12, 1 + DEFAULT_GUARD, 40) for v in terms.vectors.values())
    assert terms.matvecs == sum(c["matvecs"] for c in terms.certificates.values())
    theta = ob.theta0 + 1e-3 * torch.randn(ob.P, generator=g, dtype=F64)
    state = terms.state_dict()
    old = ChainTerms(ob, tol=1e-12, gram_max=0)
    old.load_state_dict({"vectors": {k: v[:, 0] for k, v in state["vectors"].items()}})  # a pre-block checkpoint
    b = terms.evaluate(theta).terms
    c = old.evaluate(theta).terms
    assert terms.converged and old.converged and all(cc["warm"] for cc in old.certificates.values())
    assert torch.allclose(b.log_norms, c.log_norms, rtol=0, atol=1e-13)
    assert not torch.allclose(a.log_norms, b.log_norms, rtol=0, atol=1e-13)
