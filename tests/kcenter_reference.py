"""The plain k-center greedy, one distance row per pick: the test reference.

Every pick computes the distance from the new center to every pool sample,
with the exact distance ``exact_distances`` defines, and keeps a
running minimum. The accelerated ``kcenter_greedy`` must pick the same
samples with the same scores, to the bit.
"""

from __future__ import annotations

import numpy as np
from alquery.server.registry import Ranking
from alquery.server.strategies.kcenter_cover import pool_shift, shifted
from alquery.server.strategies.kcenter_native import exact_distances, exact_norms
from numpy.typing import NDArray


def kcenter_greedy_reference(
    embeddings: NDArray,
    batch_size: int,
    labeled_embeddings: NDArray | None = None,
) -> Ranking:
    """Greedy k-center by a full distance row per pick (see the module)."""
    shift = pool_shift(embeddings)
    x = shifted(embeddings, shift)
    norms = exact_norms(x)

    def distances_to(center: NDArray[np.float64]) -> NDArray[np.float64]:
        center_norm = exact_norms(center[None, :])
        return exact_distances(embeddings, shift, norms, center[None, :], center_norm)

    picks = np.empty(batch_size, dtype=np.int64)
    scores = np.empty(batch_size)
    nearest = np.full(len(x), np.inf)
    start = 0
    if labeled_embeddings is not None:
        for center in shifted(labeled_embeddings, shift):
            np.minimum(nearest, distances_to(center), out=nearest)
    else:
        picks[0] = int(np.argmin(norms))
        scores[0] = np.sqrt(norms[picks[0]])
        nearest = distances_to(x[picks[0]])
        nearest[picks[0]] = -1.0
        start = 1
    for step in range(start, batch_size):
        pick = int(np.argmax(nearest))
        picks[step] = pick
        scores[step] = np.sqrt(nearest[pick])
        np.minimum(nearest, distances_to(x[pick]), out=nearest)
        nearest[pick] = -1.0
    return Ranking(ranked_indices=picks, scores=scores)
