"""TypiClust: the most typical pool sample of each large uncovered k-means
cluster.

scikit-learn's ``KMeans`` gets an integer seed drawn from
``query.random_generator()``, so the same request gets the same batch.
"""

from __future__ import annotations

import numpy as np
from alquery.server.registry import Parameter, Ranking, Strategy, register
from alquery.server.strategies.clustering_tools import fit_kmeans, kmeans_seed
from alquery.server.strategies.neighbours import k_nearest
from alquery.server.strategies.parameters import int_at_least
from numpy.typing import NDArray

DEFAULT_TYPICALITY_NEIGHBORS = 20
TYPICALITY_EPSILON = 1e-12
"""Added to the mean neighbour distance, so duplicates get a finite
typicality (1e12)."""


def typicality(members: NDArray, n_neighbors: int) -> NDArray[np.float64]:
    """Typicality of each sample within a set of samples.

    t_i = 1 / (mean_{j in N_k(i)} ||x_i - x_j|| + 1e-12), N_k(i) the
    k = min(``n_neighbors``, m - 1) nearest other members (Euclidean). A
    single member has no neighbours and gets t = 0.

    Parameters
    ----------
    members : ndarray of shape (m, n_features)
    n_neighbors : int
        At least 1.

    Returns
    -------
    ndarray of shape (m,), float64

    Notes
    -----
    Neighbours come from ``neighbours.k_nearest`` (exact, in chunks), so
    memory stays bounded for any m; time O(m^2 * n_features).
    """
    x = np.asarray(members, dtype=np.float64)
    if len(x) == 1:
        return np.zeros(1)
    nearest, _ = k_nearest(x, min(n_neighbors, len(x) - 1))
    mean_distance = nearest.mean(axis=1)
    return 1.0 / (mean_distance + TYPICALITY_EPSILON)


def typiclust(
    embeddings: NDArray,
    batch_size: int,
    seed: int,
    labeled_embeddings: NDArray | None = None,
    n_neighbors: int = DEFAULT_TYPICALITY_NEIGHBORS,
) -> Ranking:
    """TypiClust: the most typical pool sample of each large uncovered cluster.

    k-means (scikit-learn, ``seed``) splits the pool and the labeled set
    together into n_labeled + ``batch_size`` clusters. Clusters are visited
    by (samples already in them: labeled plus picked) ascending, then size
    descending, then cluster index; from each, the unpicked pool sample with
    the highest typicality (see ``typicality``, computed over all of the
    cluster's members) is picked. score = that typicality; picks come in
    visiting order.

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        Checked, finite pool embeddings.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    seed : int
        ``random_state`` for ``KMeans``.
    labeled_embeddings : ndarray of shape (n_labeled, n_features), optional
    n_neighbors : int, default=20
        k of the typicality.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order and their
        typicality.

    Notes
    -----
    Every uncovered cluster (no labeled sample) is visited before any
    covered one, largest first. There are at least ``batch_size`` uncovered
    clusters unless k-means leaves clusters empty (fewer distinct embeddings
    than clusters); then the visit order above goes on to clusters with the
    fewest samples taken, as the authors' code does. Tie-break: equal sizes
    to the lower cluster index, equal typicality to the lower pool position.

    Cost: k-means O(n_iter * (n_pool + n_labeled) * (n_labeled + batch_size)
    * n_features), then O(m^2 * n_features) per visited cluster of m
    samples, in bounded memory. The authors cap the clusters at 500 and drop
    clusters of 5 samples or fewer; we do neither. They measure typicality
    with squared distances (faiss) and k = min(20, m // 2); scikit-activeml's
    ``TypiClust`` uses Euclidean distances, k = min(5, m - 1) by default, an
    epsilon of 1e-7 on the distance sum, and random tie-breaks; it skips
    covered clusters once the uncovered ones run out and picks at random.

    References
    ----------
    Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite
    Strategies Suit High and Low Budgets", ICML 2022.
    """
    pool = np.asarray(embeddings, dtype=np.float64)
    n_pool = len(pool)
    data = pool
    if labeled_embeddings is not None:
        data = np.vstack([pool, np.asarray(labeled_embeddings, dtype=np.float64)])
    n_clusters = len(data) - n_pool + batch_size
    clustering = fit_kmeans(data, n_clusters, seed)
    labels = clustering.labels

    sizes = np.bincount(labels, minlength=n_clusters)
    taken = np.bincount(labels[n_pool:], minlength=n_clusters)
    picked = np.zeros(n_pool, dtype=bool)
    picks = np.empty(batch_size, dtype=np.int64)
    scores = np.empty(batch_size)
    cache: dict[int, tuple[NDArray, NDArray]] = {}
    for step in range(batch_size):
        open_clusters = np.bincount(labels[:n_pool][~picked], minlength=n_clusters) > 0
        order = np.lexsort((np.arange(n_clusters), -sizes, taken))
        cluster = int(order[open_clusters[order]][0])
        if cluster not in cache:
            members = np.flatnonzero(labels == cluster)
            cache[cluster] = (members, typicality(data[members], n_neighbors))
        members, values = cache[cluster]
        # Labeled members and earlier picks cannot be picked.
        eligible = members < n_pool
        eligible[eligible] = ~picked[members[eligible]]
        best = int(np.argmax(np.where(eligible, values, -np.inf)))
        picks[step], scores[step] = members[best], values[best]
        picked[members[best]] = True
        taken[cluster] += 1
    return Ranking(picks, scores, warnings=clustering.warnings)


register(
    Strategy(
        family="diversity",
        method="typiclust",
        description=(
            "TypiClust (Hacohen et al. 2022): k-means on pool and labeled set "
            "into n_labeled + batch_size clusters; from the largest clusters "
            "without labeled samples, the most typical pool sample; score = "
            "typicality 1 / mean distance to its k nearest cluster members."
        ),
        required_inputs=("pool_embeddings",),
        higher_first=True,
        parameters=(
            Parameter(
                name="typicality_neighbors",
                type="int64",
                default="20",
                description="k nearest neighbours in the typicality.",
                resolve=int_at_least(
                    "diversity.typicality_neighbors", DEFAULT_TYPICALITY_NEIGHBORS
                ),
            ),
        ),
        pick=lambda query: typiclust(
            query.pool_embeddings,
            query.batch_size,
            kmeans_seed(query.random_generator()),
            query.labeled_embeddings,
            query.params["typicality_neighbors"],
        ),
    )
)
