"""Credibility strategies: rank pool samples by how poorly the model does near them.

They judge the model on the labelled validation set the client sends, so the
batch lands where the model is least credible.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from alquery.server.edge import Query
from alquery.server.errors import InvalidRequestError
from alquery.server.probabilities import cross_entropy, predictive
from alquery.server.registry import Parameter, Strategy, register
from alquery.server.strategies.diversity import (
    CHUNK_ELEMENTS,
    squared_distances,
    squared_norms,
)

DEFAULT_NEIGHBORS = 10


def validation_knn(
    pool_embeddings: NDArray,
    validation_embeddings: NDArray,
    validation_probabilities: NDArray,
    validation_labels: NDArray,
    n_neighbors: int,
) -> NDArray[np.float64]:
    """Mean validation loss of each pool sample's nearest validation neighbours.

    score_i = (1 / k) sum_{j in N_k(i)} -ln max(p_j,y_j, 1e-12), where N_k(i)
    holds the k validation samples nearest pool sample i (Euclidean distance
    between embeddings), p_j is the model's predictive distribution on
    validation sample j and y_j its label. The highest score ranks first.

    Parameters
    ----------
    pool_embeddings : ndarray of shape (n_pool, n_features)
    validation_embeddings : ndarray of shape (n_validation, n_features)
    validation_probabilities : ndarray of shape (n_validation, n_classes) or (n_validation, n_passes, n_classes)
        Averaged over passes first.
    validation_labels : ndarray of shape (n_validation,)
        Class indices in [0, n_classes).
    n_neighbors : int
        k, with ``1 <= k <= n_validation``.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64

    Notes
    -----
    Neighbour ties: among validation samples at equal distance, the lower
    validation position is taken (stable sort). Score ties go to the lower
    pool position. Natural log; probabilities are clipped below at 1e-12.
    Distances use the float64 expansion of ``diversity.squared_distances``.
    Cost O(n_pool * n_validation * (n_features + log n_validation)); the pool
    is processed in chunks, so memory stays at a 32 MiB distance block and
    no n_pool x n_pool matrix is built.
    """
    losses = cross_entropy(predictive(validation_probabilities), validation_labels)
    validation = np.asarray(validation_embeddings, dtype=np.float64)
    scores = np.empty(len(pool_embeddings))
    chunk = max(1, CHUNK_ELEMENTS // len(validation))
    validation_norms = squared_norms(validation)
    for start in range(0, len(pool_embeddings), chunk):
        block = squared_distances(
            validation, pool_embeddings[start : start + chunk], validation_norms
        ).T
        nearest = np.argsort(block, axis=1, kind="stable")[:, :n_neighbors]
        scores[start : start + chunk] = losses[nearest].mean(axis=1)
    return scores


def _resolve_neighbors(value: int | None, query: Query) -> int:
    n_validation = len(query.validation_labels)
    if value is None:
        return min(DEFAULT_NEIGHBORS, n_validation)
    if not 1 <= value <= n_validation:
        raise InvalidRequestError(
            f"credibility.n_neighbors: got {value}; it must be between 1 and "
            f"the validation set size n_validation={n_validation}"
        )
    return value


register(
    Strategy(
        family="credibility",
        method="validation_knn",
        description=(
            "score = mean cross-entropy loss -ln max(p_y, 1e-12) of the model on "
            "the n_neighbors validation samples nearest the pool sample "
            "(Euclidean, embeddings); highest first; ties to the lower pool "
            "position."
        ),
        required_inputs=(
            "pool_embeddings",
            "validation_probabilities",
            "validation_labels",
            "validation_embeddings",
        ),
        higher_first=True,
        parameters=(
            Parameter(
                name="n_neighbors",
                type="int64",
                default="min(10, n_validation)",
                description="How many nearest validation samples to average.",
                resolve=_resolve_neighbors,
            ),
        ),
        score=lambda query: validation_knn(
            query.pool_embeddings,
            query.validation_embeddings,
            query.validation_probabilities,
            query.validation_labels,
            query.params["n_neighbors"],
        ),
    )
)
