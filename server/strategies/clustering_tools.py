"""Clustering steps shared by the cluster-based strategies.

k-means++ style D^2 sampling over any squared distance, weighted k-means, and
the nearest distinct pool sample to each centroid. Indices are pool
positions unless a docstring says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from sklearn.cluster import KMeans

from alquery.server.strategies.diversity import CHUNK_ELEMENTS, squared_distances


class UniformSource(Protocol):
    """Anything with ``random()`` returning a float in [0, 1).

    ``numpy.random.Generator`` in the server; the tests also pass a legacy
    ``RandomState`` to replay a peer's draws.
    """

    def random(self) -> float: ...


def d2_sampling(
    first: int,
    squared_distances_to: Callable[[int], NDArray[np.float64]],
    batch_size: int,
    rng: UniformSource,
    initial: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """k-means++ seeding: pick ``first``, then draw each next pick by D^2.

    After each pick, D_i^2 is the squared distance from sample i to its
    nearest pick (or to a center in ``initial`` if that is nearer); the next
    pick is drawn with probability D_i^2 / sum_j D_j^2 by inverse-CDF
    sampling with one ``rng.random()`` draw, so the draw sequence is that of
    ``numpy.random.RandomState.choice(n, 1, p=...)``.

    Parameters
    ----------
    first : int
        The first pick, chosen by the caller.
    squared_distances_to : callable
        ``squared_distances_to(j)`` returns the squared distance of every
        sample to sample j, shape (n_samples,), float64, at least 0.
    batch_size : int
        How many distinct picks, ``1 <= batch_size <= n_samples``.
    rng : Generator or RandomState
    initial : ndarray of shape (n_samples,), optional
        Squared distances to centers that exist before the first pick; none
        by default (infinity).

    Returns
    -------
    picks : ndarray of shape (batch_size,), int64
        Distinct sample positions in pick order.
    distances : ndarray of shape (batch_size,), float64
        D^2 of each pick at the moment it was drawn; ``inf`` for ``first``
        unless ``initial`` gives it a value.

    Notes
    -----
    A picked sample's D^2 is set to exactly 0, so it is never drawn again,
    even when rounding leaves its distance to itself slightly above 0. When
    every unpicked sample has D^2 = 0 (duplicates), the next pick is drawn
    uniformly among the unpicked ones. Cost O(batch_size) calls of
    ``squared_distances_to`` plus O(batch_size * n_samples).
    """
    nearest = squared_distances_to(first)
    n_samples = len(nearest)
    if initial is not None:
        np.minimum(nearest, initial, out=nearest)
    picks = np.empty(batch_size, dtype=np.int64)
    distances = np.empty(batch_size)
    picks[0] = first
    distances[0] = np.inf if initial is None else initial[first]
    nearest[first] = 0.0
    picked = np.zeros(n_samples, dtype=bool)
    picked[first] = True

    for step in range(1, batch_size):
        weights = nearest if nearest.sum() > 0 else (~picked).astype(np.float64)
        cdf = np.cumsum(weights / weights.sum())
        cdf /= cdf[-1]
        pick = int(np.searchsorted(cdf, rng.random(), side="right"))
        picks[step] = pick
        distances[step] = nearest[pick]
        np.minimum(nearest, squared_distances_to(pick), out=nearest)
        nearest[picks[: step + 1]] = 0.0
        picked[pick] = True
    return picks, distances


def weighted_kmeans(
    embeddings: NDArray,
    n_clusters: int,
    sample_weight: NDArray,
    seed: int,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Weighted k-means (Lloyd's algorithm, k-means++ init, one run).

    Minimises sum_i w_i ||x_i - c_{label_i}||^2 with scikit-learn's
    ``KMeans(n_clusters, random_state=seed, n_init="auto")``. Weights that
    are all 0 are replaced by 1, so the clustering stays defined. With fewer
    distinct samples than clusters, scikit-learn warns (ConvergenceWarning)
    and some centroids coincide; ``nearest_distinct`` still returns distinct
    samples for them.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
    labels : ndarray of shape (n_samples,), int64
        The cluster of each sample.
    """
    weights = np.asarray(sample_weight, dtype=np.float64)
    if not weights.sum() > 0:
        weights = np.ones_like(weights)
    model = KMeans(n_clusters=n_clusters, random_state=seed, n_init="auto")
    model.fit(np.asarray(embeddings, dtype=np.float64), sample_weight=weights)
    return model.cluster_centers_, model.labels_.astype(np.int64)


def nearest_distinct(embeddings: NDArray, centers: NDArray) -> NDArray[np.int64]:
    """The nearest not yet chosen sample to each center, centers in order.

    Center k takes argmin_i ||x_i - c_k|| over the samples not taken by
    centers 0..k-1; ties go to the lower sample position.

    Parameters
    ----------
    embeddings : ndarray of shape (n_samples, n_features)
    centers : ndarray of shape (n_centers, n_features)
        ``n_centers <= n_samples``.

    Returns
    -------
    ndarray of shape (n_centers,), int64
        Distinct sample positions, one per center.

    Notes
    -----
    Distances are computed for a block of centers at a time (at most 32 MiB),
    so no n_samples x n_centers matrix is held. Cost
    O(n_samples * n_centers * n_features).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    chosen = np.empty(len(centers), dtype=np.int64)
    taken = np.zeros(len(x), dtype=bool)
    chunk = max(1, CHUNK_ELEMENTS // len(x))
    for start in range(0, len(centers), chunk):
        block = squared_distances(x, centers[start : start + chunk])
        block[taken] = np.inf
        for offset in range(block.shape[1]):
            column = block[:, offset]
            pick = int(np.argmin(column))
            chosen[start + offset] = pick
            taken[pick] = True
            block[pick] = np.inf
    return chosen
