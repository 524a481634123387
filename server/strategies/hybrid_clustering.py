"""Cluster-based hybrids: CLUE, two-step and cluster-margin.

Each clusters the embeddings with k-means and spends the batch across the
clusters, guided by the model's uncertainty. The k-means seed is drawn from
the request's random generator, so the same request gets the same batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from alquery.server.registry import Ranking, Strategy, register
from alquery.server.selection import top_k
from alquery.server.strategies.clustering_tools import (
    fit_kmeans,
    kmeans_seed,
    nearest_distinct,
)
from alquery.server.strategies.hybrid_parameters import (
    N_CLUSTERS,
    PREFILTER_FACTOR,
    uncertainty_parameter,
    uncertainty_scores,
)
from alquery.server.strategies.uncertainty import margin
from numpy.typing import NDArray

_NEEDS = ("pool_probabilities", "pool_embeddings")


def clue(
    probabilities: NDArray,
    embeddings: NDArray,
    batch_size: int,
    seed: int,
    uncertainty: str = "entropy",
) -> Ranking:
    """CLUE: uncertainty-weighted k-means, then the sample nearest each centroid.

    k-means with batch_size clusters minimises sum_i u_i ||x_i - c_k(i)||^2,
    u_i the uncertainty (entropy by default); the cluster with the largest
    total uncertainty U_k = sum_{i in k} u_i picks first, taking the pool
    sample nearest its centroid, then the next cluster takes the nearest
    sample not yet picked. The score of a pick is its cluster's U_k, so
    scores do not increase.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities; passes are averaged first.
    embeddings : ndarray of shape (n_pool, n_features)
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    seed : int
        Seed of scikit-learn's ``KMeans`` (k-means++ init, one run).
    uncertainty : {"entropy", "least_confidence", "margin"}, default="entropy"

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions and their clusters' U_k.

    Notes
    -----
    Clusters with equal U_k go by their k-means label; equally near samples
    to the lower pool position. If every u_i is 0 the weights become 1.
    Entropy uses the natural log. Cost O(n_iter * n_pool * batch_size *
    n_features) for k-means.

    scikit-activeml's ``Clue`` runs the same weighted ``KMeans`` but lets the
    centroids choose in label order with random tie-breaks; on inputs
    without ties and where no two centroids share a nearest sample, it
    returns the same set of samples.

    References
    ----------
    Prabhu, Chandrasekaran, Saenko & Hoffman, "Active Domain Adaptation via
    Clustering Uncertainty-weighted Embeddings", ICCV 2021.
    """
    u = uncertainty_scores(probabilities, uncertainty)
    return _weighted_cluster_picks(embeddings, u, batch_size, seed)


def _weighted_cluster_picks(
    embeddings: NDArray, weights: NDArray, batch_size: int, seed: int
) -> Ranking:
    clustering = fit_kmeans(embeddings, batch_size, seed, sample_weight=weights)
    if not weights.sum() > 0:
        weights = np.ones_like(weights)  # as fit_kmeans does
    mass = np.bincount(clustering.labels, weights=weights, minlength=batch_size)
    order = np.argsort(-mass, kind="stable")
    picks = nearest_distinct(embeddings, clustering.centers[order])
    return Ranking(picks, mass[order], warnings=clustering.warnings)


def two_step(
    probabilities: NDArray,
    embeddings: NDArray,
    batch_size: int,
    seed: int,
    uncertainty: str = "margin",
    prefilter_factor: int = 10,
) -> Ranking:
    """Two-step: the most uncertain candidates, then weighted k-means on them.

    The candidates are the m = min(prefilter_factor * batch_size, n_pool)
    pool samples of highest uncertainty u (1 - margin by default; ties to
    the lower pool position). They are clustered as in ``clue``, weights
    u_i, batch_size clusters, and each cluster, largest total uncertainty
    first, takes its nearest candidate not yet picked. The score of a pick
    is its cluster's total uncertainty.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
    embeddings : ndarray of shape (n_pool, n_features)
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    seed : int
        Seed of scikit-learn's ``KMeans``.
    uncertainty : {"margin", "least_confidence", "entropy"}, default="margin"
    prefilter_factor : int, default=10
        At least 1.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions (candidates only).

    Notes
    -----
    Ties as in ``clue``. Cost O(n_pool * n_classes) for the uncertainty plus
    k-means on m samples. With prefilter_factor = 1 the batch is the top
    batch_size by uncertainty, reordered by cluster.

    References
    ----------
    Zhdanov, "Diverse mini-batch Active Learning", arXiv:1901.05954, 2019.
    """
    u = uncertainty_scores(probabilities, uncertainty)
    n_candidates = min(prefilter_factor * batch_size, len(u))
    candidates = top_k(u, n_candidates, higher_first=True).ranked_indices
    x = np.asarray(embeddings, dtype=np.float64)[candidates]
    ranking = _weighted_cluster_picks(x, u[candidates], batch_size, seed)
    return dataclasses.replace(
        ranking, ranked_indices=candidates[ranking.ranked_indices]
    )


def cluster_margin(
    probabilities: NDArray,
    embeddings: NDArray,
    batch_size: int,
    seed: int,
    prefilter_factor: int = 10,
    n_clusters: int | None = None,
) -> Ranking:
    """Cluster-margin: smallest-margin samples, spread round-robin over clusters.

    The pool is split into n_clusters k-means clusters (default batch_size).
    The candidates are the m = min(prefilter_factor * batch_size, n_pool)
    pool samples of smallest margin p_(1) - p_(2). Their clusters, counted
    over candidates only, are visited smallest first; each visit takes the
    cluster's smallest-margin candidate not yet taken, round after round,
    until batch_size are picked. The score of a pick is its margin; the
    smaller, the more uncertain.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
    embeddings : ndarray of shape (n_pool, n_features)
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    seed : int
        Seed of scikit-learn's ``KMeans`` (unweighted).
    prefilter_factor : int, default=10
        At least 1; the paper's k_m / k.
    n_clusters : int, optional
        Between 1 and n_pool; batch_size when None.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order.

    Notes
    -----
    Differences from the paper, all to keep a request stateless and bounded:
    the paper clusters the pool once with average-linkage agglomerative
    clustering (O(n_pool^2) memory) and reuses it across rounds; we run
    k-means per request. Within a cluster the paper samples at random; we
    take the smallest margin first. Clusters of equal size go by their
    smallest-margin candidate first; equal margins to the lower pool
    position. Cost O(n_iter * n_pool * n_clusters * n_features).

    References
    ----------
    Citovsky, DeSalvo, Gentile, Karydas, Rajagopalan, Rostamizadeh & Kumar,
    "Batch Active Learning at Scale", NeurIPS 2021.
    """
    margins = margin(probabilities)
    n_clusters = batch_size if n_clusters is None else n_clusters
    clustering = fit_kmeans(embeddings, n_clusters, seed)
    labels = clustering.labels
    n_candidates = min(prefilter_factor * batch_size, len(margins))
    candidates = top_k(margins, n_candidates, higher_first=False).ranked_indices

    # Group the candidates by cluster, each group smallest margin first; the
    # clusters in order of size, then of their first candidate's rank.
    candidate_labels = labels[candidates]
    first_rank = {}
    for rank, label in enumerate(candidate_labels.tolist()):
        first_rank.setdefault(label, rank)
    groups = [candidates[candidate_labels == label] for label in first_rank]
    groups.sort(key=lambda group: len(group))

    picks = []
    for round_index in range(max(len(group) for group in groups)):
        for group in groups:
            if round_index < len(group) and len(picks) < batch_size:
                picks.append(int(group[round_index]))
    picks = np.asarray(picks, dtype=np.int64)
    return Ranking(picks, margins[picks], warnings=clustering.warnings)


register(
    Strategy(
        family="hybrid",
        method="clue",
        description=(
            "k-means with batch_size clusters weighted by uncertainty u (entropy "
            "by default); each cluster, largest total u first, takes the nearest "
            "pool sample not yet picked; score = the cluster's total u; seeded."
        ),
        required_inputs=_NEEDS,
        higher_first=True,
        parameters=(uncertainty_parameter("entropy"),),
        pick=lambda query: clue(
            query.pool_probabilities,
            query.pool_embeddings,
            query.batch_size,
            kmeans_seed(query.random_generator()),
            query.params["uncertainty"],
        ),
    )
)

register(
    Strategy(
        family="hybrid",
        method="two_step",
        description=(
            "The prefilter_factor * batch_size most uncertain samples (1 - margin "
            "by default), then CLUE's weighted k-means on them; score = the "
            "cluster's total uncertainty; seeded."
        ),
        required_inputs=_NEEDS,
        higher_first=True,
        parameters=(uncertainty_parameter("margin"), PREFILTER_FACTOR),
        pick=lambda query: two_step(
            query.pool_probabilities,
            query.pool_embeddings,
            query.batch_size,
            kmeans_seed(query.random_generator()),
            query.params["uncertainty"],
            query.params["prefilter_factor"],
        ),
    )
)

register(
    Strategy(
        family="hybrid",
        method="cluster_margin",
        description=(
            "k-means splits the pool into n_clusters; the prefilter_factor * "
            "batch_size smallest-margin samples are taken round-robin over their "
            "clusters, smallest cluster first; score = margin; seeded."
        ),
        required_inputs=_NEEDS,
        higher_first=False,
        parameters=(PREFILTER_FACTOR, N_CLUSTERS),
        pick=lambda query: cluster_margin(
            query.pool_probabilities,
            query.pool_embeddings,
            query.batch_size,
            kmeans_seed(query.random_generator()),
            query.params["prefilter_factor"],
            query.params["n_clusters"],
        ),
    )
)
