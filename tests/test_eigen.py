"""top_eigenpairs against torch.linalg.eigh on explicit symmetric matrices (float64)."""
import warnings

import pytest
import torch
from scipy.linalg import subspace_angles

from eoslib.eigen import EigenConvergenceWarning, top_eigenpairs


def sym(evals: torch.Tensor, seed: int = 0) -> torch.Tensor:
    n = len(evals)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return (Q * evals) @ Q.T


SPECTRA = {
    # outliers above a bulk, like a trained network's Hessian
    "outliers": torch.cat([torch.tensor([50.0, 30, 20, 12, 8]), torch.linspace(-1, 2, 295)]),
    # a tight cluster at the top: only the subspace is well defined
    "clustered": torch.cat([torch.tensor([10.0, 10.0 - 1e-9, 10.0 - 2e-9, 4.0]), torch.linspace(-3, 1, 196)]),
    # mostly negative: largest *algebraic*, not largest magnitude
    "negative": torch.cat([torch.tensor([-0.5, -1.0, -1.5]), torch.linspace(-60, -2, 197)]),
}


@pytest.mark.parametrize("name", SPECTRA)
def test_matches_eigh(name):
    ev = SPECTRA[name].double()
    A = sym(ev)
    k, tol = 4, 1e-8
    r = top_eigenpairs(lambda V: A @ V, len(ev), k, tol=tol)
    ref_vals, ref_vecs = torch.linalg.eigh(A)
    ref_vals, ref_vecs = ref_vals.flip(0)[:k], ref_vecs.flip(1)[:, :k]
    assert r.converged
    scale = ref_vals.abs().max()
    # Ritz values err by O(residual²/gap); residual ≤ tol·|λ₁| bounds them well below 1e-10·|λ₁|
    assert (r.values - ref_vals).abs().max() < 1e-10 * scale
    assert torch.allclose(r.vectors.T @ r.vectors, torch.eye(k, dtype=torch.float64), atol=1e-12)
    assert (r.residuals <= tol * scale).all()
    true_res = (A @ r.vectors - r.vectors * r.values).norm(dim=0)
    assert torch.allclose(true_res, r.residuals, atol=1e-9 * scale)
    # subspaces: for the cluster only span{top 3} is defined, so compare spans of the top-k block
    angles = subspace_angles(r.vectors.numpy(), ref_vecs.numpy())
    assert angles.max() < 1e-6


def test_warm_start_reduces_matvecs():
    ev = SPECTRA["outliers"].double()
    A = sym(ev)
    cold = top_eigenpairs(lambda V: A @ V, len(ev), 6, tol=1e-6)
    E = torch.randn(len(ev), len(ev), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    A2 = A + 1e-3 * (E + E.T)  # a small change, as between two training steps
    cold2 = top_eigenpairs(lambda V: A2 @ V, len(ev), 6, tol=1e-6)
    warm2 = top_eigenpairs(lambda V: A2 @ V, len(ev), 6, tol=1e-6, v0=cold.vectors)
    assert warm2.converged and cold2.converged
    assert torch.allclose(warm2.values, cold2.values, atol=1e-8)
    print(f"matvecs cold {cold2.matvecs}, warm {warm2.matvecs}")
    assert warm2.matvecs < cold2.matvecs / 2


def test_nonconvergence_warns_and_returns_estimate():
    A = sym(torch.linspace(0, 1, 300).double())  # no gap anywhere
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = top_eigenpairs(lambda V: A @ V, 300, 3, tol=1e-12, max_matvecs=12)
    assert not r.converged and any(issubclass(x.category, EigenConvergenceWarning) for x in w)
    assert r.values.shape == (3,) and torch.isfinite(r.values).all()
    assert r.values[0] <= 1 + 1e-12  # Ritz values never exceed λ₁


def test_input_validation_and_float32_operator():
    A = sym(SPECTRA["outliers"].double())
    with pytest.raises(ValueError):
        top_eigenpairs(lambda V: A @ V, 300, 0)
    A32 = A.float()
    r = top_eigenpairs(lambda V: A32 @ V, 300, 2, v0=torch.randn(300, 2), tol=1e-4)
    assert r.vectors.dtype == torch.float32
    assert torch.allclose(r.values, torch.tensor([50.0, 30.0], dtype=torch.float64), rtol=1e-4)


def test_column_major_products_equal_plain_products():
    from eoslib.eigen import _addmm, _cm, _combine

    g = torch.Generator().manual_seed(3)
    B = [torch.randn(500, c, generator=g, dtype=torch.float64) for c in (3, 2, 4)]
    C = torch.randn(9, 3, generator=g, dtype=torch.float64)
    V = torch.randn(500, 3, generator=g, dtype=torch.float64)
    for layout in (lambda T: T, _cm):  # row-major or column-major inputs: same numbers
        Bl = [layout(b) for b in B]
        ref = torch.cat(B, 1) @ C
        assert torch.allclose(_combine(Bl, C), ref, rtol=0, atol=1e-13)
        assert torch.allclose(_combine([layout(torch.cat(B, 1))], C), ref, rtol=0, atol=1e-13)
        assert torch.allclose(_addmm(layout(V), Bl[0], C[:3], -1.0), V - B[0] @ C[:3], rtol=0, atol=1e-13)
    assert _cm(V).stride(0) == 1 and torch.equal(_cm(V), V)
    assert _combine([_cm(b) for b in B], C).stride(0) == 1


def test_result_does_not_depend_on_operator_or_warm_start_layout():
    ev = SPECTRA["outliers"].double()
    A = sym(ev)
    v0 = torch.linalg.qr(torch.randn(len(ev), 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).Q
    row = top_eigenpairs(lambda V: (A @ V).contiguous(), len(ev), 4, v0=v0.contiguous(), tol=1e-8)
    col = top_eigenpairs(lambda V: (V.T @ A).T, len(ev), 4, v0=v0.T.contiguous().T, tol=1e-8)  # column-major
    assert row.matvecs == col.matvecs
    assert torch.allclose(row.values, col.values, rtol=0, atol=1e-12 * ev.abs().max())
    assert row.vectors.is_contiguous() and col.vectors.is_contiguous()
