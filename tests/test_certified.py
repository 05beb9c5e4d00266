"""Certified measurements (issue 17): warm solves that cannot lock onto the wrong pair.

Oracles: constructed symmetric matrices with a known spectrum (QΛQᵀ, Q Haar from a seeded QR) and
``torch.linalg.eigh`` in float64; every case below returned a wrong value marked converged before the guard,
the per-pair tolerance and the tracker's cold checks (checked against the code of main at 4bad927).
"""
from __future__ import annotations

import pytest
import torch

from eoslib.eigen import EigenResult, top_eigenpairs

DTYPES = [torch.float64, torch.float32]


def spectrum_matrix(top: list[float], dim: int = 200, rest: tuple[float, float] = (0.0, 1.0), seed: int = 0):
    """A = QΛQᵀ with the leading eigenvalues ``top`` and the rest uniform in ``rest``; returns (A, Q, Λ)."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64)).Q
    lo, hi = rest
    ev = lo + (hi - lo) * torch.rand(dim, generator=g, dtype=torch.float64)
    ev[: len(top)] = torch.tensor(top, dtype=torch.float64)
    return (Q * ev) @ Q.T, Q, ev


def near(v: torch.Tensor, eps: float = 1e-3, seed: int = 1) -> torch.Tensor:
    """v slightly perturbed (a previous step's vector)."""
    return v + eps * torch.randn(v.shape, generator=torch.Generator().manual_seed(seed), dtype=v.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_case1_warm_start_at_the_second_eigenvector_returns_the_top(dtype):
    # The case 1: eigenvalues {10, 9, rest ≤ 1}, k = 1, tol 1e-3, warm at (a perturbed) v₂. Before: 9.0,
    # converged, 2 products. The tolerance on the value: a residual r gives |θ − λ| ≤ r²/gap, far below 1e-3·λ.
    A, Q, _ = spectrum_matrix([10.0, 9.0])
    A = A.to(dtype)
    for v0 in (Q[:, 1:2].to(dtype), near(Q[:, 1:2]).to(dtype)):
        r = top_eigenpairs(lambda V: A @ V, 200, 1, v0=v0, tol=1e-3)
        assert r.converged and r.warm and r.guard >= 2
        assert r.values[0].item() == pytest.approx(10.0, rel=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_warm_start_after_a_crossing_k3(dtype):
    # k = 3 warm at the pairs 2..4 of {10, 9, 8.5, 8, rest ≤ 1} (the top pair crossed in from below): the true top 3
    A, Q, ev = spectrum_matrix([10.0, 9.0, 8.5, 8.0])
    A = A.to(dtype)
    r = top_eigenpairs(lambda V: A @ V, 200, 3, v0=near(Q[:, 1:4]).to(dtype), tol=1e-3)
    assert r.converged
    torch.testing.assert_close(r.values, torch.tensor([10.0, 9.0, 8.5], dtype=torch.float64), rtol=1e-3, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_warm_start_after_a_crossing_negative_spectrum(dtype):
    # An indefinite/negative operator (H can be): top algebraic eigenvalues {−1, −1.1}, the rest in [−12, −2].
    # Warm at the second one.
    A, Q, _ = spectrum_matrix([-1.0, -1.1], rest=(-12.0, -2.0))
    A = A.to(dtype)
    r = top_eigenpairs(lambda V: A @ V, 200, 1, v0=near(Q[:, 1:2]).to(dtype), tol=1e-3)
    assert r.converged
    assert r.values[0].item() == pytest.approx(-1.0, rel=1e-3)


def test_each_pair_is_accurate_relative_to_itself():
    # λ_(k+1) sets exponential Euler's Δt = 1/λ_(k+1): it must be accurate relative to itself, not to λ₁.
    # Spectrum {1000, 3, rest ≤ 1}: before, the second pair was converged at a residual of tol·1000 = 1 (a third of
    # its value); now its residual is ≤ tol·3 and the value within (tol·3)²/gap of the truth.
    A, _, _ = spectrum_matrix([1000.0, 3.0])
    r = top_eigenpairs(lambda V: A @ V, 200, 2, tol=1e-3)
    assert r.converged
    assert (r.residuals <= 1e-3 * r.values.abs()).all()
    assert r.rel_residuals.max() <= 1e-3
    assert r.values[1].item() == pytest.approx(3.0, rel=1e-5)


def test_certificate_fields():
    A, Q, _ = spectrum_matrix([10.0, 9.0])
    r = top_eigenpairs(lambda V: A @ V, 200, 1, tol=1e-3)
    c = r.certificate()
    assert c["converged"] and not c["warm"] and c["guard"] == 2 and c["matvecs"] == r.matvecs
    assert 0 <= c["residual"] <= 1e-3
    assert isinstance(r, EigenResult) and r.block is not None and r.block.shape == (200, 3)
    # the true residual of the returned vector, recomputed here (not copied from the solver)
    v = r.vectors[:, 0]
    assert ((A @ v - r.values[0] * v).norm() / r.values[0]).item() == pytest.approx(c["residual"], rel=1e-6, abs=1e-12)
