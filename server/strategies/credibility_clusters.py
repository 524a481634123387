"""Credibility by region: cluster validation and pool together, and spend
the batch on the clusters where the model does worst on the validation set."""

from __future__ import annotations

import warnings

import numpy as np
from alquery.server.edge import Query
from alquery.server.errors import InvalidRequestError
from alquery.server.registry import Parameter, Ranking, Strategy, register
from alquery.server.strategies.credibility import (
    CREDIBILITY,
    VALIDATION_INPUTS,
    enum_resolver,
    sample_weakness,
)
from alquery.server.strategies.uncertainty import entropy
from numpy.typing import NDArray
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

DEFAULT_CLUSTERS = 10


def allocate_seats(
    weights: NDArray, capacity: NDArray, batch_size: int
) -> NDArray[np.int64]:
    """Share ``batch_size`` seats among groups in proportion to their weights.

    Largest-remainder (Hamilton) apportionment with caps: among the open
    groups (weight > 0 and seats below capacity), group g's quota is
    remaining * w_g / sum of open weights; each gets the integer part of its
    quota, and the seats left over go one each to the largest fractional
    parts (ties: larger weight first, then the lower group index). A group
    that would pass its capacity is held at it and closed, and the seats it
    could not take are shared again among the open groups by the same rule.

    Parameters
    ----------
    weights : ndarray of shape (n_groups,)
        Non-negative weights; groups with weight 0 get no seats.
    capacity : ndarray of shape (n_groups,), int
        The most seats each group can take.
    batch_size : int
        Seats to share, at least 1.

    Returns
    -------
    seats : ndarray of shape (n_groups,), int64
        Sums to ``min(batch_size, capacity of the positive-weight groups)``.
    """
    weights = np.asarray(weights, dtype=np.float64)
    capacity = np.asarray(capacity, dtype=np.int64)
    seats = np.zeros(len(weights), dtype=np.int64)
    remaining = batch_size
    open_ = (weights > 0) & (capacity > 0)
    tie_order = np.lexsort((np.arange(len(weights)), -weights))
    while remaining > 0 and open_.any():
        quota = remaining * np.where(open_, weights, 0.0) / weights[open_].sum()
        give = np.floor(quota).astype(np.int64)
        left_over = remaining - int(give.sum())
        if left_over > 0:
            # A stable sort of the fractions, visited in (weight, index)
            # order, breaks equal fractions by larger weight, lower index.
            fraction = (quota - give)[tie_order]
            by_fraction = tie_order[np.argsort(-fraction, kind="stable")]
            by_fraction = by_fraction[open_[by_fraction]]
            give[by_fraction[:left_over]] += 1
        give = np.minimum(give, capacity - seats)
        seats += give
        remaining -= int(give.sum())
        open_ &= seats < capacity
    return seats


def cluster_labels(
    embeddings: NDArray, n_clusters: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """k-means cluster of every row: scikit-learn's Lloyd k-means, one
    k-means++ start, its seed drawn from ``rng``."""
    kmeans = KMeans(
        n_clusters=n_clusters,
        init="k-means++",
        n_init=1,
        random_state=int(rng.integers(0, 2**31 - 1)),
    )
    with warnings.catch_warnings():
        # Fewer distinct points than clusters leaves some clusters empty;
        # they simply hold no samples.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return kmeans.fit_predict(np.asarray(embeddings, dtype=np.float64))


def weak_clusters(
    pool_probabilities: NDArray,
    pool_embeddings: NDArray,
    validation_probabilities: NDArray,
    validation_labels: NDArray,
    validation_embeddings: NDArray,
    batch_size: int,
    n_clusters: int,
    weakness: int,
    rng: np.random.Generator,
) -> Ranking:
    """Spend the batch on the clusters where the model does worst.

    1. Cluster the validation and pool embeddings together with k-means
       (``n_clusters`` clusters, seeded from ``rng``).
    2. A cluster's weakness w_g is the mean ``sample_weakness`` (loss or
       error rate) of its validation samples; a cluster with no validation
       samples gets the mean over the whole validation set, the best guess
       without local evidence.
    3. The batch is shared among the clusters holding pool samples in
       proportion to w_g, by ``allocate_seats`` (largest remainder, capped
       at each cluster's pool count). When the clusters with w_g > 0 hold
       fewer pool samples than the batch, the rest goes to the remaining
       pool samples of highest entropy.
    4. Within a cluster, the pool samples of highest entropy come first.

    Picks are ordered by cluster, weakest first (equal weakness: lower
    cluster number), then by entropy, highest first; the leftover picks of
    step 3 come last. A pick's score is its cluster's weakness, so scores
    do not increase.

    Parameters
    ----------
    pool_probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
    pool_embeddings : ndarray of shape (n_pool, n_features)
    validation_probabilities : ndarray of shape (n_validation, [n_passes,] n_classes)
        Averaged over passes first.
    validation_labels : ndarray of shape (n_validation,)
    validation_embeddings : ndarray of shape (n_validation, n_features)
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    n_clusters : int
        ``1 <= n_clusters <= n_validation + n_pool``.
    weakness : int
        ``WEAKNESS_LOSS`` or ``WEAKNESS_ERROR_RATE``.
    rng : numpy.random.Generator
        Seeds k-means.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order, their cluster's
        weakness as the score, and extras "cluster" (the k-means cluster
        number) and "entropy" (natural log).

    Notes
    -----
    Tie-break: equal entropies go to the lower pool position. Cluster numbers
    come from k-means and change with the seed. Entropy as in
    ``uncertainty.entropy`` (natural log, 0 ln 0 = 0). Cost: k-means,
    O(n_iter * (n_validation + n_pool) * n_clusters * n_features), plus a
    sort of the pool.

    References
    ----------
    No single paper defines this method: it is our combination of
    cluster-level validation error analysis with Hamilton's largest-remainder
    apportionment of the batch, and entropy sampling within clusters
    (Settles, "Active Learning Literature Survey", 2009, section 3.1).
    """
    n_validation = len(validation_labels)
    losses = sample_weakness(validation_probabilities, validation_labels, weakness)
    labels = cluster_labels(
        np.vstack([validation_embeddings, pool_embeddings]), n_clusters, rng
    )
    validation_cluster, pool_cluster = labels[:n_validation], labels[n_validation:]

    counts = np.bincount(validation_cluster, minlength=n_clusters)
    totals = np.bincount(validation_cluster, weights=losses, minlength=n_clusters)
    cluster_weakness = np.full(n_clusters, losses.mean())
    cluster_weakness[counts > 0] = totals[counts > 0] / counts[counts > 0]

    capacity = np.bincount(pool_cluster, minlength=n_clusters)
    seats = allocate_seats(cluster_weakness, capacity, batch_size)

    uncertainty = entropy(pool_probabilities)
    picks = []
    for cluster in np.lexsort((np.arange(n_clusters), -cluster_weakness)):
        if seats[cluster]:
            members = np.flatnonzero(pool_cluster == cluster)
            members = members[np.lexsort((members, -uncertainty[members]))]
            picks.append(members[: seats[cluster]])
    chosen = np.concatenate(picks) if picks else np.empty(0, dtype=np.int64)

    if len(chosen) < batch_size:
        rest = np.setdiff1d(np.arange(len(pool_cluster)), chosen)
        rest = rest[np.lexsort((rest, -uncertainty[rest]))]
        chosen = np.concatenate([chosen, rest[: batch_size - len(chosen)]])
    return Ranking(
        ranked_indices=chosen.astype(np.int64),
        scores=cluster_weakness[pool_cluster[chosen]],
        extras={
            "cluster": pool_cluster[chosen].astype(np.float64),
            "entropy": uncertainty[chosen],
        },
    )


def _resolve_clusters(value: int | None, query: Query) -> int:
    n_validation = len(query.validation_labels)
    if value is None:
        return min(DEFAULT_CLUSTERS, n_validation)
    most = n_validation + query.n_pool
    if not 1 <= value <= most:
        raise InvalidRequestError(
            f"credibility.n_clusters: got {value}; it must be between 1 and "
            f"n_validation + n_pool = {most}"
        )
    return value


register(
    Strategy(
        family="credibility",
        method="weak_clusters",
        description=(
            "k-means over validation and pool embeddings together; the batch "
            "is shared among clusters in proportion to their validation loss "
            "or error rate (largest remainder), highest entropy first within "
            "each; score = the pick's cluster weakness; ties to the lower pool "
            "position."
        ),
        required_inputs=("pool_probabilities", "pool_embeddings", *VALIDATION_INPUTS),
        higher_first=True,
        parameters=(
            Parameter(
                name="n_clusters",
                type="int64",
                default="min(10, n_validation)",
                description="How many k-means clusters to form.",
                resolve=_resolve_clusters,
            ),
            Parameter(
                name="weakness",
                type="Weakness",
                default="WEAKNESS_LOSS",
                description="Mean validation loss or error rate per cluster.",
                resolve=enum_resolver(
                    "weakness", CREDIBILITY.Weakness, CREDIBILITY.WEAKNESS_LOSS
                ),
            ),
        ),
        pick=lambda query: weak_clusters(
            query.pool_probabilities,
            query.pool_embeddings,
            query.validation_probabilities,
            query.validation_labels,
            query.validation_embeddings,
            query.batch_size,
            query.params["n_clusters"],
            query.params["weakness"],
            query.random_generator(),
        ),
    )
)
