"""Diversity strategies: pick a batch spread over the embedding space."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from alquery.server.registry import Ranking, Strategy, register
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


def kcenter_greedy(
    embeddings: NDArray,
    batch_size: int,
    labeled_embeddings: NDArray | None = None,
    check: Callable[[], None] = never_cancelled,
) -> Ranking:
    """Greedy k-center (core-set) selection.

    Each step picks the unselected pool sample farthest from its nearest
    center: i* = argmax_i min_{c in C} ||x_i - c||, then adds x_i* to C. C
    starts as the labeled embeddings. The score of a pick is that distance
    (Euclidean) at the moment it was picked, so scores do not increase.

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        Checked, finite pool embeddings.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    labeled_embeddings : ndarray of shape (n_labeled, n_features), optional
        The initial centers.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order and their scores.

    Notes
    -----
    Tie-break: among equal distances, the lower pool position (``argmax``
    returns the first maximum). A selected sample is never picked again, even
    when duplicates leave every remaining distance at 0.

    With no labeled set, the first pick is the pool sample nearest the pool
    mean (ties to the lower position), and its score is its distance to that
    mean; the greedy steps follow from there.

    Distances use the expansion ||x||^2 - 2 x.c + ||c||^2 in float64, clipped
    at 0, after every vector is shifted by the pool mean (distances do not
    change); two vectors closer than about 1e-7 times their norm about that
    mean may be seen at distance 0. Cost O(batch_size * n_pool * n_features)
    plus O(n_labeled * n_pool * n_features); memory O(n_pool + n_pool *
    n_features) beyond the input (the shifted float64 copy) and a 32 MiB
    distance block. ``check`` runs before each pick and may raise to stop.

    References
    ----------
    Sener & Savarese, "Active Learning for Convolutional Neural Networks: A
    Core-Set Approach", ICLR 2018.
    """
    # Distances do not change under a shift. Centring on the pool mean keeps
    # the expansion's rounding relative to the spread, not to the offset.
    x = np.asarray(embeddings, dtype=np.float64)
    shift = x.mean(axis=0)
    x = x - shift
    norms = squared_norms(x)

    def distances_to(pick: int) -> NDArray[np.float64]:
        return squared_distances(x, x[pick : pick + 1], norms)[:, 0]

    picks = np.empty(batch_size, dtype=np.int64)
    scores = np.empty(batch_size)

    if labeled_embeddings is not None:
        nearest = nearest_center_distances(x, labeled_embeddings - shift, check)
        start = 0
    else:
        # The pool mean is now the origin.
        picks[0] = int(np.argmin(norms))
        scores[0] = np.sqrt(norms[picks[0]])
        nearest = distances_to(picks[0])
        nearest[picks[0]] = -1.0
        start = 1

    for step in range(start, batch_size):
        check()
        pick = int(np.argmax(nearest))
        picks[step] = pick
        scores[step] = np.sqrt(nearest[pick])
        np.minimum(nearest, distances_to(pick), out=nearest)
        # A picked sample is out of the running for good: -1 is below every
        # distance, and np.minimum keeps it there.
        nearest[pick] = -1.0
    return Ranking(ranked_indices=picks, scores=scores)


register(
    Strategy(
        family="diversity",
        method="kcenter",
        description=(
            "Greedy k-center: repeatedly pick the pool sample farthest (Euclidean) "
            "from its nearest center, starting from labeled.embeddings; score = "
            "that distance when picked; ties to the lower pool position."
        ),
        required_inputs=("pool_embeddings",),
        higher_first=True,
        pick=lambda query: kcenter_greedy(
            query.pool_embeddings,
            query.batch_size,
            query.labeled_embeddings,
            check=query.check_cancelled,
        ),
    )
)
