"""An orthonormal basis of the pool's leading directions for k-center bounds.

Projected onto an orthonormal basis P (columns), a vector x splits into
z = P^T x and a residual orthogonal to every column, of norm rho with
rho^2 = ||x||^2 - ||z||^2. For two vectors, x.c = z_x.z_c + r_x.r_c <=
z_x.z_c + rho_x rho_c (Cauchy-Schwarz on the residuals), so

    ||x - c||^2 >= ||x||^2 + ||c||^2 - 2 (z_x.z_c + rho_x rho_c),

a lower bound of the full distance from a product in len(z) + 1
dimensions. It is tight when the pool's spread lies mostly in the span of
P, which is why P holds the pool's leading principal directions (estimated
on a sample). Any orthonormal P gives a valid bound; only its strength
depends on the sample.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

SAMPLE_ROWS = 2048
"""Rows of the pool the principal directions are estimated on."""

OVERSAMPLE = 8
"""Extra random directions of the range finder beyond the basis width."""


def principal_basis(
    embeddings: NDArray,
    shift: NDArray[np.float64],
    width: int,
    seed: int = 0,
) -> tuple[NDArray[np.float64], float]:
    """Return an orthonormal basis of ``width`` leading principal directions
    of the shifted pool, and a bound on how far it is from orthonormal.

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        The pool; ``width < n_features``.
    shift : ndarray of shape (n_features,)
        The pool mean, subtracted from every row.
    width : int
        Columns of the basis.
    seed : int, default=0
        Seeds the sample and the range finder's random directions.

    Returns
    -------
    basis : ndarray of shape (n_features, width), float64
        Orthonormal columns (Householder QR in float64).
    departure : float
        ||P^T P - I||_F as computed, plus a bound on that sum's rounding:
        an upper bound on ||P^T P - I||_2.

    Notes
    -----
    A randomized range finder with one power iteration on at most
    SAMPLE_ROWS rows: O(SAMPLE_ROWS * n_features * (width + OVERSAMPLE)).
    """
    n_pool, n_features = embeddings.shape
    rng = np.random.default_rng(seed)
    size = min(n_pool, SAMPLE_ROWS)
    rows = np.sort(rng.choice(n_pool, size=size, replace=False))
    sample = np.asarray(embeddings[rows], dtype=np.float64) - shift
    probes = min(n_features, width + OVERSAMPLE)
    directions = rng.standard_normal((n_features, probes))
    for _ in range(2):
        # The range of sample^T sample, probed and orthonormalized.
        directions = np.linalg.qr(sample.T @ (sample @ directions))[0]
    # The sample's leading directions within that range: eigenvectors of
    # a (probes, probes) matrix, largest eigenvalue first.
    inside = sample @ directions
    leading = np.linalg.eigh(inside.T @ inside)[1][:, ::-1]
    basis = np.linalg.qr(directions @ leading[:, :width])[0]
    gram = basis.T @ basis
    gram[np.diag_indices(width)] -= 1.0
    eps = float(np.finfo(np.float64).eps)
    # Each entry of the computed gram is off by at most n_features * eps.
    departure = float(np.linalg.norm(gram)) + 2.0 * width * n_features * eps
    return basis, departure
