"""Diversity strategies built on k-means: the pool samples nearest k-means
centroids, and k-means++ seeding. TypiClust is in ``diversity_typiclust``.

Randomness comes from ``query.random_generator()``: k-means++ draws from it
directly; scikit-learn's ``KMeans`` gets an integer seed drawn from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from alquery.server.registry import Parameter, Ranking, Strategy, register
from alquery.server.strategies.clustering_tools import (
    UniformSource,
    fit_kmeans,
    kmeans_seed,
    nearest_distinct_by_distance,
)
from alquery.server.strategies.diversity import (
    nearest_center_distances,
    never_cancelled,
    squared_distances,
    squared_norms,
)
from alquery.server.strategies.parameters import int_up_to, pool_size
from numpy.typing import NDArray


def kmeans_representatives(embeddings: NDArray, batch_size: int, seed: int) -> Ranking:
    """The pool samples nearest the centroids of a k-means clustering.

    k-means (``clustering_tools.fit_kmeans``: Lloyd, k-means++ init)
    splits the pool into k = ``batch_size`` clusters; each centroid is then
    matched to its nearest pool sample, never the same sample twice (see
    ``clustering_tools.nearest_distinct_by_distance``). score = Euclidean
    distance from the sample to its centroid; the smallest first.

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        Checked, finite pool embeddings.
    batch_size : int
        ``1 <= batch_size <= n_pool``; the number of clusters.
    seed : int
        ``random_state`` for ``KMeans``.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions, nearest to its centroid first.

    Notes
    -----
    Tie-break: equal distances go to the lower pool position, then to the
    lower centroid index. With fewer distinct embeddings than clusters,
    k-means repeats centroids and the response carries a warning; the
    matching still returns distinct samples. Cost O(n_iter * n_pool *
    batch_size * n_features) for k-means (scikit-learn works in chunks)
    plus the matching.

    small-text's ``EmbeddingKMeans`` L2-normalises the embeddings by default
    and matches by cosine similarity in centroid order; on unit-norm
    embeddings its nearest samples are ours, as a set.

    References
    ----------
    Yuan, Lin & Boyd-Graber, "Cold-start Active Learning through
    Self-supervised Language Modeling", EMNLP 2020 (BERT-KM).
    """
    clustering = fit_kmeans(embeddings, batch_size, seed)
    ranking = nearest_distinct_by_distance(embeddings, clustering.centers)
    return dataclasses.replace(ranking, warnings=clustering.warnings)


def kmeans_plusplus(
    embeddings: NDArray,
    batch_size: int,
    rng: UniformSource,
    labeled_embeddings: NDArray | None = None,
    n_local_trials: int = 1,
    check: Callable[[], None] = never_cancelled,
) -> Ranking:
    """k-means++ seeding (D^2 sampling) over the pool.

    With D(x) the Euclidean distance from x to its nearest center, each step
    draws ``n_local_trials`` candidates, each with probability
    D(x)^2 / sum_y D(y)^2, keeps the one that leaves the smallest potential
    sum_y min(D(y), ||y - candidate||)^2, and makes it a center. The centers
    start as the labeled embeddings; with no labeled set the first pick is
    uniform over the pool. score = the pick's D^2 share, D(x)^2 / sum D^2,
    when it was picked (1 / n_pool for a uniform first pick).

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        Checked, finite pool embeddings.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    rng : numpy.random.Generator or numpy.random.RandomState
        Uniform draws only: one for a uniform first pick, then
        ``n_local_trials`` per step.
    labeled_embeddings : ndarray of shape (n_labeled, n_features), optional
        The initial centers.
    n_local_trials : int, default=1
        Plain D^2 sampling (Arthur & Vassilvitskii) with 1.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order and their D^2
        shares.

    Notes
    -----
    A draw u * P (u uniform, P the potential) becomes the first sample whose
    cumulative D^2 reaches it. A picked sample's D is set to exactly 0, so it
    is never drawn again. When every unpicked sample lies on a center (P = 0),
    the next pick is the lowest unpicked pool position, with score 0.

    Given the same uniform draws (a ``RandomState`` seeded alike),
    ``sklearn.cluster.kmeans_plusplus`` with the same ``n_local_trials``
    picks the same samples; its default is 2 + floor(ln k) trials, and it
    cannot start from a labeled set. Cost O(batch_size * n_local_trials *
    n_pool * n_features), memory O(n_pool * n_local_trials).

    References
    ----------
    Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding",
    SODA 2007.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    n_pool = len(x)
    norms = squared_norms(x)
    picked = np.zeros(n_pool, dtype=bool)
    picks = np.empty(batch_size, dtype=np.int64)
    scores = np.empty(batch_size)

    start = 0
    if labeled_embeddings is not None:
        closest = nearest_center_distances(x, labeled_embeddings)
    else:
        # Uniform first pick, by the inverse of the uniform distribution's
        # cumulative sum (the way numpy's legacy choice draws).
        cdf = np.cumsum(np.full(n_pool, 1.0 / n_pool))
        cdf /= cdf[-1]
        first = int(np.searchsorted(cdf, rng.random(), side="right"))
        picks[0], scores[0], start = first, 1.0 / n_pool, 1
        closest = squared_distances(x, x[first : first + 1], norms)[:, 0]
        picked[first] = True
    closest[picked] = 0.0

    for step in range(start, batch_size):
        check()
        cumulative = np.cumsum(closest)
        potential = cumulative[-1]
        if potential == 0.0:
            pick, score = int(np.argmin(picked)), 0.0
        else:
            targets = np.asarray(rng.random(n_local_trials)) * potential
            # A target of exactly 0 would land on a sample with D = 0.
            targets = np.maximum(targets, np.finfo(np.float64).tiny)
            candidates = np.searchsorted(cumulative, targets)
            reach = squared_distances(x, x[candidates], norms)
            np.minimum(reach, closest[:, None], out=reach)
            best = int(np.argmin(reach.sum(axis=0)))
            pick, score = int(candidates[best]), closest[candidates[best]] / potential
            closest = reach[:, best]
        picks[step], scores[step] = pick, score
        picked[pick] = True
        closest[pick] = 0.0
    return Ranking(ranked_indices=picks, scores=scores)


register(
    Strategy(
        family="diversity",
        method="kmeans",
        description=(
            "k-means with batch_size clusters (scikit-learn, k-means++ init, "
            "seeded); the pool sample nearest each centroid, never one twice; "
            "score = Euclidean distance to the centroid; smallest first; ties "
            "to the lower pool position."
        ),
        required_inputs=("pool_embeddings",),
        higher_first=False,
        pick=lambda query: kmeans_representatives(
            query.pool_embeddings,
            query.batch_size,
            kmeans_seed(query.random_generator()),
        ),
    )
)

register(
    Strategy(
        family="diversity",
        method="kmeans_plusplus",
        description=(
            "k-means++ seeding: draw pool samples with probability D^2 / sum D^2, "
            "D = distance to the nearest center, starting from labeled.embeddings "
            "(else a uniform first pick); seeded; score = the pick's D^2 share."
        ),
        required_inputs=("pool_embeddings",),
        higher_first=True,
        parameters=(
            Parameter(
                name="n_local_trials",
                type="int64",
                default="1",
                description=(
                    "Candidates per step; the one lowering the potential most "
                    "is kept."
                ),
                resolve=int_up_to("diversity.n_local_trials", 1, pool_size),
            ),
        ),
        pick=lambda query: kmeans_plusplus(
            query.pool_embeddings,
            query.batch_size,
            query.random_generator(),
            query.labeled_embeddings,
            query.params["n_local_trials"],
            check=query.check_cancelled,
        ),
    )
)
