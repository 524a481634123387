"""Information density, alone and as the weight of an uncertainty measure.

A sample in a dense region of the pool stands for many others, so labelling
it teaches the model about more of the pool than labelling an outlier.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from alquery.server.registry import Strategy, register
from alquery.server.strategies.diversity import (
    CHUNK_ELEMENTS,
    squared_distances,
    squared_norms,
)
from alquery.server.strategies.hybrid_parameters import (
    BETA,
    similarity_parameter,
    uncertainty_parameter,
    uncertainty_scores,
)
from numpy.typing import NDArray


def information_density(
    embeddings: NDArray, similarity: str = "cosine"
) -> NDArray[np.float64]:
    """Mean similarity of each pool sample to the whole pool.

    score_i = (1 / n_pool) sum_j sim(x_i, x_j), the sum running over every
    pool sample, i itself included; the highest score ranks first. ``sim``
    is the cosine similarity x.y / (||x|| ||y||) (default), or the Euclidean
    similarity 1 / (1 + ||x - y||).

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        Checked, finite pool embeddings.
    similarity : {"cosine", "euclidean"}, default="cosine"

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        In [-1, 1] for cosine, in (0, 1] for Euclidean.

    Notes
    -----
    Ties go to the lower pool position (``selection.top_k``). A zero vector
    has cosine similarity 0 to every sample, itself included, so it scores 0.

    Cosine costs O(n_pool * n_features): the mean of cosines equals
    u_i . mean_j u_j with u = x / ||x||. Euclidean costs
    O(n_pool^2 * n_features) in row chunks of at most 32 MiB; the distance of
    a sample to itself is exactly 0.

    modAL's ``information_density`` computes 1 / (1 + d) for any metric d. With
    its default Euclidean metric it equals ours; with ``metric="cosine"`` it
    averages 1 / (2 - cos), not the cosine itself, so those scores and
    occasionally their order differ from ours.

    References
    ----------
    Settles & Craven, "An Analysis of Active Learning Strategies for Sequence
    Labeling Tasks", EMNLP 2008, section 3.3 (information density).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if similarity == "cosine":
        return _mean_cosine_similarity(x)
    if similarity == "euclidean":
        return _mean_euclidean_similarity(x)
    raise ValueError(f"unknown similarity {similarity!r}")


def _mean_cosine_similarity(x: NDArray[np.float64]) -> NDArray[np.float64]:
    norms = np.sqrt(squared_norms(x))
    units = np.zeros_like(x)
    np.divide(x, norms[:, None], out=units, where=norms[:, None] > 0)
    return units @ units.mean(axis=0)


def _mean_euclidean_similarity(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return mean_over_pool(x, lambda distances: 1.0 / (1.0 + distances))


def mean_over_pool(
    embeddings: NDArray, function: Callable[[NDArray], NDArray]
) -> NDArray[np.float64]:
    """Return (1 / n_pool) sum_j f(||x_i - x_j||) for every pool sample i.

    ``function`` maps an array of Euclidean distances to values elementwise.
    The sum includes j = i, whose distance is exactly 0. Rows are processed
    in chunks of at most 32 MiB, so no n_pool x n_pool matrix is held; cost
    O(n_pool^2 * n_features).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    n_pool = len(x)
    norms = squared_norms(x)
    chunk = max(1, CHUNK_ELEMENTS // n_pool)
    means = np.empty(n_pool)
    for start in range(0, n_pool, chunk):
        stop = min(start + chunk, n_pool)
        block = squared_distances(x[start:stop], x, norms[start:stop])
        rows = np.arange(stop - start)
        block[rows, start + rows] = 0.0
        means[start:stop] = function(np.sqrt(block, out=block)).mean(axis=1)
    return means


def density_weighted(
    probabilities: NDArray,
    embeddings: NDArray,
    uncertainty: str = "entropy",
    similarity: str = "cosine",
    beta: float = 1.0,
) -> NDArray[np.float64]:
    """Uncertainty weighted by information density.

    score_i = u_i * max(0, d_i)^beta, where u_i is the chosen uncertainty
    (higher = more uncertain; margin enters as 1 - margin) and d_i the
    ``information_density`` of sample i; the highest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities; passes are averaged first.
    embeddings : ndarray of shape (n_pool, n_features)
    uncertainty : {"entropy", "least_confidence", "margin"}, default="entropy"
    similarity : {"cosine", "euclidean"}, default="cosine"
    beta : float, default=1
        At least 0; 0 gives plain uncertainty (0^0 is taken as 1).

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64

    Notes
    -----
    A mean cosine similarity can be negative for embeddings that are not
    non-negative; it is clipped to 0 so that the power stays real, and such a
    sample scores 0. Ties go to the lower pool position. Entropy uses the
    natural log. Cost as ``information_density`` plus O(n_pool * n_classes).

    References
    ----------
    Settles & Craven, "An Analysis of Active Learning Strategies for Sequence
    Labeling Tasks", EMNLP 2008, equation (5).
    """
    density = np.maximum(information_density(embeddings, similarity), 0.0)
    return uncertainty_scores(probabilities, uncertainty) * density**beta


register(
    Strategy(
        family="diversity",
        method="information_density",
        description=(
            "score = mean similarity of the sample to every pool sample (itself "
            "included): cosine, or euclidean 1 / (1 + distance); highest first; "
            "ties to the lower pool position."
        ),
        required_inputs=("pool_embeddings",),
        higher_first=True,
        parameters=(similarity_parameter("diversity"),),
        score=lambda query: information_density(
            query.pool_embeddings, query.params["density_similarity"]
        ),
    )
)

register(
    Strategy(
        family="hybrid",
        method="density_weighted",
        description=(
            "score = u * max(0, density)^beta, u the chosen uncertainty (margin "
            "as 1 - margin), density the mean similarity to the pool; highest "
            "first; ties to the lower pool position."
        ),
        required_inputs=("pool_probabilities", "pool_embeddings"),
        higher_first=True,
        parameters=(
            uncertainty_parameter("entropy"),
            similarity_parameter("hybrid"),
            BETA,
        ),
        score=lambda query: density_weighted(
            query.pool_probabilities,
            query.pool_embeddings,
            query.params["uncertainty"],
            query.params["density_similarity"],
            query.params["beta"],
        ),
    )
)
