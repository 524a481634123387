"""Turn per-sample scores into ranked pool positions, in one shared place."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from alquery.server.registry import Ranking


def top_k(scores: NDArray, batch_size: int, *, higher_first: bool) -> Ranking:
    """Return the ``batch_size`` best pool positions, best first.

    Parameters
    ----------
    scores : ndarray of shape (n_pool,)
        Finite scores; the strategy says which end ranks first.
    batch_size : int
        How many to return, ``1 <= batch_size <= n_pool``.
    higher_first : bool
        True when a higher score ranks first.

    Notes
    -----
    Tie-break: equal scores go to the lower pool position first, so results
    are deterministic. The k-th best key is found by partial selection
    (O(n_pool)); every sample whose key is at least that good is kept, and only
    those are sorted with a stable sort (O(m log m), m >= batch_size, m larger
    only when ties straddle the cut).
    """
    keys = -scores if higher_first else scores
    n_pool = len(keys)
    if batch_size < n_pool:
        kth = np.partition(keys, batch_size - 1)[batch_size - 1]
        candidates = np.flatnonzero(keys <= kth)
    else:
        candidates = np.arange(n_pool)
    order = candidates[np.argsort(keys[candidates], kind="stable")][:batch_size]
    return Ranking(ranked_indices=order.astype(np.int64), scores=scores[order])
