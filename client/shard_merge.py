"""Split a pool into contiguous shards and merge the shards' answers.

Pure functions, no network: ``ShardedClient`` (``sharding.py``) calls the
servers, these say which rows each shard holds and how the answers combine.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import ArrayLike

from alquery.client.results import RankResult

DISTANCE_CHUNK_ELEMENTS = 1 << 22
"""Pool rows x centers held at once by ``covering_radius``."""


def shard_bounds(n_pool: int, n_shards: int) -> list[tuple[int, int]]:
    """Return the ``(start, stop)`` pool rows of each contiguous shard.

    Sizes differ by at most one, larger shards first; at most ``n_pool``
    shards, so none is empty (none at all when ``n_pool`` is 0).
    """
    n_shards = max(1, min(n_shards, n_pool))
    edges = [0]
    base, extra = divmod(n_pool, n_shards)
    for shard in range(n_shards):
        edges.append(edges[-1] + base + (1 if shard < extra else 0))
    return [(start, stop) for start, stop in itertools.pairwise(edges) if stop]


def merge_top_k(
    answers: list[RankResult],
    starts: list[int],
    batch_size: int,
    *,
    higher_first: bool,
) -> RankResult:
    """Merge each shard's top-k into the pool's top-k.

    Parameters
    ----------
    answers : list of RankResult
        Shard s's best ``min(batch_size, shard size)`` samples with scores,
        indices in shard positions.
    starts : list of int
        The pool position of each shard's first row.
    batch_size : int
        How many to return, ``1 <= batch_size``.
    higher_first : bool
        True when a higher score ranks first.

    Returns
    -------
    RankResult
        Pool positions, best first, with their scores and extras.

    Notes
    -----
    Sorted by score, then by pool position, so equal scores go to the lower
    pool position, as on one server. Exact when each sample's score depends
    only on its own row and the inputs every shard shares: the pool's top k
    then lie among the shards' top k, since a sample beaten by k others of
    its own shard is beaten by k others of the pool.
    """
    indices = np.concatenate(
        [answer.indices + start for answer, start in zip(answers, starts)]
    )
    scores = np.concatenate([answer.scores for answer in answers])
    keys = -scores if higher_first else scores
    order = np.lexsort((indices, keys))[:batch_size]
    extras = {
        name: np.concatenate([answer.extras[name] for answer in answers])[order]
        for name in answers[0].extras
    }
    warnings = dict.fromkeys(w for answer in answers for w in answer.warnings)
    return RankResult(
        indices=indices[order],
        scores=scores[order],
        strategy=answers[0].strategy,
        warnings=tuple(warnings),
        extras=extras,
    )


def covering_radius(
    embeddings: ArrayLike,
    picks: ArrayLike,
    labeled_embeddings: ArrayLike | None = None,
) -> float:
    """Return max over the pool of the distance to its nearest center.

    The k-center objective: centers are the picked pool rows and the labeled
    samples. Euclidean distance; computed in float64, in chunks of pool rows.

    Parameters
    ----------
    embeddings : array-like of shape (n_pool, n_features)
    picks : array-like of shape (n_picks,)
        Pool positions.
    labeled_embeddings : array-like of shape (n_labeled, n_features), optional
    """
    pool = np.asarray(embeddings, dtype=np.float64)
    centers = pool[np.asarray(picks, dtype=np.int64)]
    if labeled_embeddings is not None and len(labeled_embeddings):
        labeled = np.asarray(labeled_embeddings, dtype=np.float64)
        centers = np.concatenate([centers, labeled])
    center_norms = np.einsum("ij,ij->i", centers, centers)
    chunk = max(1, DISTANCE_CHUNK_ELEMENTS // max(1, len(centers)))
    radius = 0.0
    for start in range(0, len(pool), chunk):
        rows = pool[start : start + chunk]
        squared = (
            np.einsum("ij,ij->i", rows, rows)[:, None]
            - 2.0 * rows @ centers.T
            + center_norms[None, :]
        )
        radius = max(radius, float(np.maximum(squared.min(axis=1), 0.0).max()))
    return float(np.sqrt(radius))
