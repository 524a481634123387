"""The principal basis is orthonormal, seeded, follows the pool's spread,
and its projection bound never exceeds a true distance."""

import numpy as np
import pytest
from alquery.server.strategies.kcenter_basis import principal_basis


def low_rank_pool(rng, n_pool, n_features, rank, noise):
    # Rows near a random ``rank``-dimensional subspace, off the origin.
    directions = np.linalg.qr(rng.normal(size=(n_features, rank)))[0]
    spread = rng.normal(scale=5.0, size=(n_pool, rank)) @ directions.T
    offset = rng.normal(size=n_features)
    return spread + offset + rng.normal(scale=noise, size=(n_pool, n_features))


def lower_bound(x, c, basis):
    # ||x||^2 + ||c||^2 - 2 (z_x.z_c + rho_x rho_c), as the greedy uses it.
    zx, zc = x @ basis, c @ basis
    rx = np.sqrt(np.maximum(x @ x - zx @ zx, 0.0))
    rc = np.sqrt(np.maximum(c @ c - zc @ zc, 0.0))
    return x @ x + c @ c - 2.0 * (zx @ zc + rx * rc)


@pytest.mark.parametrize("n_pool", [5, 300, 5_000])
def test_basis_is_orthonormal_and_its_departure_bounds_the_error(n_pool):
    rng = np.random.default_rng(0)
    pool = low_rank_pool(rng, n_pool, 40, 6, 0.1).astype(np.float32)
    shift = pool.mean(axis=0, dtype=np.float64)
    basis, departure = principal_basis(pool, shift, 8)
    assert basis.shape == (40, 8)
    error = np.linalg.norm(basis.T @ basis - np.eye(8), ord=2)
    assert error <= departure < 1e-9


def test_basis_is_seeded():
    rng = np.random.default_rng(1)
    pool = low_rank_pool(rng, 3_000, 30, 4, 0.2)
    shift = pool.mean(axis=0)
    first = principal_basis(pool, shift, 5, seed=3)[0]
    again = principal_basis(pool, shift, 5, seed=3)[0]
    assert first.tolist() == again.tolist()


def test_basis_spans_the_leading_directions():
    # The pool spreads over 6 directions with a little noise: a basis of
    # 6 keeps nearly all of its variance about the mean.
    rng = np.random.default_rng(2)
    pool = low_rank_pool(rng, 4_000, 50, 6, 0.05)
    shift = pool.mean(axis=0)
    basis = principal_basis(pool, shift, 6)[0]
    centered = pool - shift
    kept = np.sum((centered @ basis) ** 2) / np.sum(centered**2)
    assert kept > 0.99


def test_projection_bound_never_exceeds_the_distance():
    rng = np.random.default_rng(3)
    pool = low_rank_pool(rng, 2_000, 64, 5, 1.0)
    shift = pool.mean(axis=0)
    basis = principal_basis(pool, shift, 8)[0]
    x = pool - shift
    pairs = rng.integers(len(x), size=(500, 2))
    for i, j in pairs:
        distance = np.sum((x[i] - x[j]) ** 2)
        assert lower_bound(x[i], x[j], basis) <= distance * (1 + 1e-12) + 1e-9


def test_projection_bound_is_the_distance_inside_the_span():
    rng = np.random.default_rng(4)
    pool = low_rank_pool(rng, 1_000, 32, 3, 0.0)
    shift = pool.mean(axis=0)
    basis = principal_basis(pool, shift, 4)[0]
    x = pool - shift
    distance = np.sum((x[0] - x[1]) ** 2)
    assert lower_bound(x[0], x[1], basis) == pytest.approx(distance, rel=1e-9)


def test_a_pool_of_copies_still_gets_an_orthonormal_basis():
    pool = np.ones((50, 20))
    basis, departure = principal_basis(pool, pool.mean(axis=0), 4)
    assert np.allclose(basis.T @ basis, np.eye(4), atol=1e-12)
    assert departure < 1e-9
