"""Tangent projections for several constraints and the matched placebo (eoslib.constraints), float64.

Oracles: coordinate-axis constraints (the projection zeroes those coordinates), the pseudo-inverse projector
I − A·pinv(A) from torch.linalg, the affine flow of a quadratic on {Aᵀθ = Aᵀθ₀} in closed form (eigh of the
projected Hessian), and for the placebo the plane span{u, v} searched with a QR basis (torch.linalg.qr) over the
four unit vectors that remove the fraction ρ.
"""
from __future__ import annotations

import math

import pytest
import torch

from eoslib.constraints import (matched_placebo, orthonormal_constraints, placebo_direction, project_tangent,
                                random_direction, removed_fraction)

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_coordinate_axis_constraints_zero_those_coordinates():
    """A = [e₁, e₃] (scaled): Pv is v with coordinates 1 and 3 set to 0, and ρ = (v₁² + v₃²)/‖v‖²."""
    v = torch.tensor([3.0, -1.0, 2.0, 0.5, 4.0], dtype=F64)
    A = torch.zeros(5, 2, dtype=F64)
    A[1, 0], A[3, 1] = 7.0, -0.01  # scale and sign do not matter
    pr = project_tangent(v, A)
    assert torch.equal(pr.velocity, torch.tensor([3.0, 0.0, 2.0, 0.0, 4.0], dtype=F64))
    assert pr.removed == pytest.approx((1.0 + 0.25) / float(v @ v), rel=1e-15)
    assert pr.rank == 2 and pr.kept == (0, 1)


def test_dependent_constraints_are_dropped_and_the_rank_reported():
    """Columns a₁, a₂, 3a₁ − 2a₂ (dependent), 0 (dropped), a₄ (independent): rank 3, kept (0, 1, 4); the
    projection equals I − A·pinv(A) applied to v (pinv of the full, rank-deficient A) and the one with the
    redundant columns left out."""
    g = gen(1)
    P = 12
    a1, a2, a4 = (torch.randn(P, generator=g, dtype=F64) for _ in range(3))
    A = torch.stack([a1, a2, 3 * a1 - 2 * a2, torch.zeros(P, dtype=F64), a4], dim=1)
    v = torch.randn(P, generator=g, dtype=F64)
    pr = project_tangent(v, A)
    assert pr.rank == 3 and pr.kept == (0, 1, 4)
    oracle = v - A @ (torch.linalg.pinv(A) @ v)
    assert torch.allclose(pr.velocity, oracle, atol=1e-13, rtol=0)
    assert torch.allclose(project_tangent(v, [a1, a2, a4]).velocity, pr.velocity, atol=1e-14, rtol=0)
    assert pr.removed == pytest.approx(float((v - oracle) @ (v - oracle)) / float(v @ v), rel=1e-12)
    assert torch.allclose(pr.basis.T @ pr.basis, torch.eye(3, dtype=F64), atol=1e-15, rtol=0)


@pytest.mark.parametrize("m", [1, 3, 8])
def test_projected_velocity_is_tangent_to_every_constraint(m):
    """∇cⱼ·Pv = 0 to 1e-12 (relative to ‖∇cⱼ‖‖v‖) for gradients of very different scales, including two nearly
    parallel ones (angle 1e-6, still independent), and P is idempotent and orthogonal: P(Pv) = Pv, ‖Pv‖² =
    (1 − ρ)‖v‖²."""
    g = gen(m)
    P = 40
    A = torch.randn(P, m, generator=g, dtype=F64) * torch.logspace(-4, 4, m, dtype=F64)
    if m > 1:
        A[:, -1] = A[:, 0] + 1e-6 * A[:, 0].norm() * torch.randn(P, generator=g, dtype=F64) / math.sqrt(P)
    v = torch.randn(P, generator=g, dtype=F64)
    pr = project_tangent(v, A)
    assert pr.rank == m
    dots = (A.T @ pr.velocity) / (A.norm(dim=0) * v.norm())
    assert dots.abs().max() < 1e-12
    assert torch.allclose(project_tangent(pr.velocity, A).velocity, pr.velocity, atol=1e-12, rtol=0)
    assert float(pr.velocity @ pr.velocity) == pytest.approx((1 - pr.removed) * float(v @ v), rel=1e-12)
    assert removed_fraction(v, pr.velocity) == pytest.approx(pr.removed, rel=1e-12)


def test_a_rescaled_constraint_gives_the_same_projection():
    """The rank tolerance is relative to each column's own norm: a constraint scaled by 1e-20 is still kept."""
    g = gen(2)
    A = torch.randn(10, 2, generator=g, dtype=F64)
    v = torch.randn(10, generator=g, dtype=F64)
    scaled = A * torch.tensor([1.0, 1e-20], dtype=F64)
    assert project_tangent(v, scaled).rank == 2
    assert torch.allclose(project_tangent(v, scaled).velocity, project_tangent(v, A).velocity, atol=1e-14, rtol=0)


def test_orthonormal_constraints_in_float32_drop_a_rounded_repeat():
    """A float32 column that is the sum of two others up to float32 rounding is dependent at the float32 default
    tolerance, not at a float64 one."""
    g = gen(3)
    a, b = torch.randn(30, generator=g), torch.randn(30, generator=g)
    A = torch.stack([a, b, (a.double() + b.double() + 1e-7 * torch.randn(30, generator=g, dtype=F64)).float()], 1)
    assert project_tangent(torch.randn(30, generator=g), A).rank == 2
    assert orthonormal_constraints(A, 1e-12)[1] == (0, 1, 2)


def test_no_constraints_leave_v_unchanged():
    v = torch.randn(6, generator=gen(4), dtype=F64)
    pr = project_tangent(v, torch.zeros(6, 0, dtype=F64))
    assert torch.equal(pr.velocity, v) and pr.removed == 0.0 and pr.rank == 0


def test_projected_flow_of_a_quadratic_holds_linear_constraints_and_follows_the_closed_form():
    """L = ½θᵀHθ − bᵀθ with three linear constraints cⱼ = aⱼᵀθ (one of them dependent): RK4 on θ' = P(−∇L)
    keeps every cⱼ constant to 1e-12 at every step, and ends at the closed form of the flow on the affine set:
    θ(t) = θ₀ − V φ(Λ, t) Vᵀ Π(Hθ₀ − b), Π = I − A·pinv(A), ΠHΠ = VΛVᵀ, φ = (1 − e^{−λt})/λ (t at λ = 0)."""
    g = gen(5)
    P = 8
    Qm, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=F64))
    H = Qm @ torch.diag(torch.linspace(0.3, 4.0, P, dtype=F64)) @ Qm.T
    b = torch.randn(P, generator=g, dtype=F64)
    a1, a2 = torch.randn(P, generator=g, dtype=F64), torch.randn(P, generator=g, dtype=F64)
    A = torch.stack([a1, a2, a1 + a2], dim=1)
    theta0 = torch.randn(P, generator=g, dtype=F64)
    c0 = A.T @ theta0

    def vel(th):
        return project_tangent(-(H @ th - b), A).velocity

    th, h, T = theta0.clone(), 0.01, 2.0
    for _ in range(round(T / h)):
        k1 = vel(th)
        k2 = vel(th + h / 2 * k1)
        k3 = vel(th + h / 2 * k2)
        k4 = vel(th + h * k3)
        th = th + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        assert (A.T @ th - c0).abs().max() < 1e-12
    Pi = torch.eye(P, dtype=F64) - A @ torch.linalg.pinv(A)
    lam, V = torch.linalg.eigh(Pi @ H @ Pi)
    lam = torch.where(lam.abs() < 1e-12, torch.zeros_like(lam), lam)
    phi = torch.where(lam == 0, torch.full_like(lam, T), -torch.expm1(-lam * T) / torch.where(lam == 0, 1, lam))
    exact = theta0 - V @ (phi * (V.T @ (Pi @ (H @ theta0 - b))))
    assert float((th - exact).norm()) < 1e-8  # RK4 at h = 0.01: error ~h⁴
    assert float((th - theta0).norm()) > 0.1  # the flow moved


# ---------------------------------------------------------------------------------------------- the placebo


def plane_oracle(v, u, rho):
    """The unit vector n in span{u, v} with (n·v̂)² = ρ nearest u, by searching the four candidates
    ±√ρ q₁ ± √(1 − ρ) q₂ in the QR basis (q₁ ∥ v) of [v u]."""
    Qb, _ = torch.linalg.qr(torch.stack([v, u], dim=1))
    q1, q2 = Qb[:, 0], Qb[:, 1]
    cands = [s1 * math.sqrt(rho) * q1 + s2 * math.sqrt(1 - rho) * q2 for s1 in (1, -1) for s2 in (1, -1)]
    return max(cands, key=lambda n: float(n @ u) / float(u.norm()))


@pytest.mark.parametrize("rho", [0.0, 1e-6, 0.05, 0.3, 0.9, 0.999])
def test_placebo_removes_exactly_rho_along_the_direction_nearest_u(rho):
    g = gen(6)
    P = 50
    v = torch.randn(P, generator=g, dtype=F64)
    u = random_direction(P, seed=11)
    pl = matched_placebo(v, u, rho)
    assert pl.removed == pytest.approx(rho, abs=1e-13)
    assert float(pl.velocity @ pl.velocity) == pytest.approx((1 - rho) * float(v @ v), rel=1e-12)
    assert float(pl.velocity @ v) == pytest.approx(float(pl.velocity @ pl.velocity), rel=1e-12)
    assert abs(float(pl.velocity @ pl.direction)) < 1e-12 * float(v.norm())
    assert float(pl.direction.norm()) == pytest.approx(1.0, abs=1e-15)
    assert torch.allclose(pl.direction, plane_oracle(v, u, rho), atol=1e-12, rtol=0)
    a = float(u @ v) / float(v.norm())
    assert pl.cos_u == pytest.approx(math.sqrt(rho) * abs(a) + math.sqrt(1 - rho) * math.sqrt(1 - a * a), abs=1e-12)


def test_placebo_removes_along_u_itself_when_u_removes_exactly_rho():
    """ρ = (u·v̂)² (with u·v < 0 too): n = u, and w = v − (u·v)u."""
    g = gen(7)
    v = torch.randn(20, generator=g, dtype=F64)
    for sign in (1.0, -1.0):
        u = random_direction(20, seed=3)
        u = sign * u * (1.0 if float(u @ v) > 0 else -1.0)
        rho = float(u @ v) ** 2 / float(v @ v)
        pl = matched_placebo(v, u, rho)
        assert torch.allclose(pl.direction, u, atol=1e-12, rtol=0)
        assert torch.allclose(pl.velocity, v - float(u @ v) * u, atol=1e-12, rtol=0)
        assert pl.cos_u == pytest.approx(1.0, abs=1e-12)


def test_placebo_refuses_what_it_cannot_do():
    v = torch.randn(5, generator=gen(8), dtype=F64)
    with pytest.raises(ValueError, match="parallel"):
        placebo_direction(v, -3 * v, 0.2)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        matched_placebo(v, random_direction(5), 1.0)
    with pytest.raises(ValueError, match="non-zero"):
        matched_placebo(torch.zeros(5, dtype=F64), random_direction(5), 0.2)


def test_random_direction_is_seeded_and_unit():
    u, w = random_direction(100, seed=4), random_direction(100, seed=4)
    assert torch.equal(u, w) and float(u.norm()) == pytest.approx(1.0, abs=1e-15)
    assert not torch.equal(u, random_direction(100, seed=5))
    assert random_direction(7, seed=1, dtype=torch.float32).dtype == torch.float32
