"""The plain k-center greedy, one distance row per pick: the test reference.

This is the implementation ``diversity.kcenter_greedy`` had before the
triangle-inequality bounds; the accelerated one must pick the same samples.
"""

from __future__ import annotations

import numpy as np
from alquery.server.registry import Ranking
from alquery.server.strategies.diversity import (
    nearest_center_distances,
    squared_distances,
    squared_norms,
)
from numpy.typing import NDArray


def kcenter_greedy_reference(
    embeddings: NDArray,
    batch_size: int,
    labeled_embeddings: NDArray | None = None,
) -> Ranking:
    """Greedy k-center by a full distance row per pick (see the module)."""
    x = np.asarray(embeddings, dtype=np.float64)
    shift = x.mean(axis=0)
    x = x - shift
    norms = squared_norms(x)

    def distances_to(pick: int) -> NDArray[np.float64]:
        return squared_distances(x, x[pick : pick + 1], norms)[:, 0]

    picks = np.empty(batch_size, dtype=np.int64)
    scores = np.empty(batch_size)
    if labeled_embeddings is not None:
        nearest = nearest_center_distances(x, labeled_embeddings - shift)
        start = 0
    else:
        picks[0] = int(np.argmin(norms))
        scores[0] = np.sqrt(norms[picks[0]])
        nearest = distances_to(picks[0])
        nearest[picks[0]] = -1.0
        start = 1
    for step in range(start, batch_size):
        pick = int(np.argmax(nearest))
        picks[step] = pick
        scores[step] = np.sqrt(nearest[pick])
        np.minimum(nearest, distances_to(pick), out=nearest)
        nearest[pick] = -1.0
    return Ranking(ranked_indices=picks, scores=scores)
