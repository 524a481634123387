"""Clustering steps shared by the cluster-based strategies.

k-means fitting (the one place scikit-learn's ``KMeans`` runs), k-means++
style D^2 sampling over any squared distance, and two ways of taking the
nearest distinct pool sample to each centroid. Indices are pool positions
unless a docstring says otherwise.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
import warnings
from collections.abc import Callable
from typing import Protocol

import numpy as np
from alquery.server.registry import Ranking
from alquery.server.strategies.diversity import (
    CHUNK_ELEMENTS,
    never_cancelled,
    squared_distances,
    squared_norms,
)
from numpy.typing import NDArray
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

KMEANS_N_INIT = 1
"""k-means runs per clustering, best inertia kept; scikit-learn's "auto" is
also 1 for k-means++ initialisation."""

_CATCHING = threading.Lock()
"""``warnings.catch_warnings`` swaps process-wide state, so concurrent
requests take turns while a fit's warnings are caught."""


class UniformSource(Protocol):
    """What D^2 sampling needs from a generator: uniform draws in [0, 1).

    ``numpy.random.Generator`` in the server; the tests also pass a legacy
    ``RandomState`` to replay a peer's draws.
    """

    def random(self, size: int | None = None) -> float | NDArray[np.float64]: ...


@dataclasses.dataclass(frozen=True)
class Clustering:
    """A fitted k-means clustering.

    ``centers`` has shape (n_clusters, n_features); ``labels`` (n_samples,)
    holds each sample's cluster; ``warnings`` are for the response.
    """

    centers: NDArray[np.float64]
    labels: NDArray[np.int64]
    warnings: tuple[str, ...] = ()


def kmeans_seed(rng: np.random.Generator) -> int:
    """Draw the integer ``random_state`` of a k-means fit from ``rng``."""
    return int(rng.integers(0, 2**31 - 1))


def fit_kmeans(
    data: NDArray,
    n_clusters: int,
    seed: int,
    sample_weight: NDArray | None = None,
) -> Clustering:
    """k-means: Lloyd's algorithm from a k-means++ start, ``KMEANS_N_INIT`` runs.

    Minimises sum_i w_i ||x_i - c_{label_i}||^2 with scikit-learn's
    ``KMeans(n_clusters, n_init=KMEANS_N_INIT, random_state=seed)``; w_i = 1
    without ``sample_weight``. Weights that are all 0 are replaced by 1, so
    the clustering stays defined.

    Parameters
    ----------
    data : ndarray of shape (n_samples, n_features)
    n_clusters : int
        ``1 <= n_clusters <= n_samples``.
    seed : int
    sample_weight : ndarray of shape (n_samples,), optional
        At least 0.

    Returns
    -------
    Clustering

    Notes
    -----
    With fewer distinct samples (of positive weight) than clusters,
    scikit-learn leaves clusters empty and raises a ``ConvergenceWarning``.
    That warning is caught here and becomes one entry of
    ``Clustering.warnings``, which the strategy passes on to the client;
    other warnings are issued again unchanged. The nearest-sample steps
    below still return distinct samples for coinciding centroids.
    """
    data = np.asarray(data, dtype=np.float64)
    weights = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float64)
        if not weights.sum() > 0:
            weights = np.ones_like(weights)
    model = KMeans(n_clusters=n_clusters, n_init=KMEANS_N_INIT, random_state=seed)
    with _CATCHING, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(data, sample_weight=weights)

    notes = []
    for record in caught:
        if issubclass(record.category, ConvergenceWarning):
            if not notes:
                notes.append(_too_few_clusters(model.labels_, n_clusters))
        else:
            warnings.warn_explicit(
                record.message, record.category, record.filename, record.lineno
            )
    return Clustering(
        model.cluster_centers_, model.labels_.astype(np.int64), tuple(notes)
    )


def _too_few_clusters(labels: NDArray, n_clusters: int) -> str:
    found = len(np.unique(labels))
    return (
        f"k-means found {found} distinct clusters for n_clusters={n_clusters} "
        "(duplicate samples, or weights of 0); some centroids coincide, and "
        "the batch still holds distinct samples"
    )


def d2_sampling(
    first: int,
    squared_distances_to: Callable[[int], NDArray[np.float64]],
    batch_size: int,
    rng: UniformSource,
    initial: NDArray[np.float64] | None = None,
    check: Callable[[], None] = never_cancelled,
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
        check()
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


def nearest_distinct(embeddings: NDArray, centers: NDArray) -> NDArray[np.int64]:
    """The nearest not yet chosen sample to each center, centers in order.

    Center k takes argmin_i ||x_i - c_k|| over the samples not taken by
    centers 0..k-1; ties go to the lower sample position. The caller's
    center order decides who wins a shared sample (CLUE: heaviest cluster
    first); ``nearest_distinct_by_distance`` lets the closest pair win.

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


def nearest_distinct_by_distance(embeddings: NDArray, centers: NDArray) -> Ranking:
    """Match every center to its own nearest pool sample, no sample twice.

    Greedy matching by distance: repeatedly take the (center, sample) pair
    with the smallest Euclidean distance among unmatched centers and unused
    samples. Picks come in that order, so scores (the distances) do not
    decrease; equal distances go to the lower pool position, then the lower
    center index. Unlike ``nearest_distinct``, the order of the centers
    does not decide who wins a shared sample.

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
    centers : ndarray of shape (n_centers, n_features), n_centers <= n_pool

    Returns
    -------
    Ranking
        n_centers distinct pool positions and their distance to their center.

    Notes
    -----
    Each center's nearest sample is found in chunks (a 32 MiB block at
    most). A center whose nearest sample is already taken looks again among
    the unused ones, O(n_pool * n_features) each time; its new distance is
    no smaller, so a heap keyed by distance yields the global greedy order.
    Distances use the float64 expansion of ``diversity.squared_distances``:
    a sample lying on its centroid may score about 1e-7 times its norm
    rather than 0.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64)
    norms = squared_norms(x)
    chunk = max(1, CHUNK_ELEMENTS // len(x))
    heap = []
    for start in range(0, len(centers), chunk):
        block = squared_distances(x, centers[start : start + chunk], norms)
        nearest = block.argmin(axis=0)
        for offset, sample in enumerate(nearest):
            distance = block[sample, offset]
            heap.append((distance, int(sample), start + offset))
    heapq.heapify(heap)

    used = np.zeros(len(x), dtype=bool)
    picks, scores = [], []
    while heap:
        distance, sample, center = heapq.heappop(heap)
        if used[sample]:
            row = squared_distances(x, centers[center : center + 1], norms)[:, 0]
            row[used] = np.inf
            sample = int(row.argmin())
            heapq.heappush(heap, (row[sample], sample, center))
            continue
        used[sample] = True
        picks.append(sample)
        scores.append(np.sqrt(distance))
    return Ranking(
        ranked_indices=np.array(picks, dtype=np.int64), scores=np.array(scores)
    )
