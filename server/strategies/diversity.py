"""Distance helpers the diversity strategies share (k-center lives in
``diversity_kcenter``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

CHUNK_ELEMENTS = 1 << 22
"""Distance blocks hold at most this many float64 values (32 MiB)."""


def squared_norms(rows: NDArray) -> NDArray[np.float64]:
    """Return ||r||^2 for every row, float64."""
    rows = np.asarray(rows, dtype=np.float64)
    return np.einsum("ij,ij->i", rows, rows)


def squared_distances(
    rows: NDArray, centers: NDArray, row_norms: NDArray | None = None
) -> NDArray[np.float64]:
    """Return ||r - c||^2 for every pair, shape (n_rows, n_centers), float64.

    Computed as ||r||^2 - 2 r.c + ||c||^2 and clipped below at 0, which the
    rounding of the expansion can cross for (near-)identical vectors.
    ``row_norms`` may carry ``squared_norms(rows)`` when the caller has it.
    """
    rows = np.asarray(rows, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    if row_norms is None:
        row_norms = squared_norms(rows)
    out = rows @ centers.T
    out *= -2.0
    out += row_norms[:, None]
    out += squared_norms(centers)[None, :]
    np.maximum(out, 0.0, out=out)
    return out


def never_cancelled() -> None:
    """The default cancellation check of long loops: nothing stops them."""


def nearest_center_distances(
    embeddings: NDArray,
    centers: NDArray,
    check: Callable[[], None] = never_cancelled,
) -> NDArray[np.float64]:
    """Return min_c ||x_i - c||^2 for every row, computed in bounded chunks.

    ``check`` runs before each chunk and may raise to stop the work (see
    ``edge.Query.check_cancelled``).
    """
    chunk = max(1, CHUNK_ELEMENTS // max(1, len(embeddings)))
    norms = squared_norms(embeddings)
    nearest = np.full(len(embeddings), np.inf)
    for start in range(0, len(centers), chunk):
        check()
        block = squared_distances(embeddings, centers[start : start + chunk], norms)
        np.minimum(nearest, block.min(axis=1), out=nearest)
    return nearest
