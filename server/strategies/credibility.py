"""Credibility strategies: rank pool samples by how poorly the model does near them.

They judge the model on the labelled validation set the client sends, so the
batch lands where the model is least credible. This module holds the
neighbourhood and per-class methods and the helpers the other credibility
modules share; ``credibility_clusters``, ``credibility_conformal`` and
``credibility_gradients`` hold the rest.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from alquery.server.edge import Query
from alquery.server.errors import InvalidRequestError
from alquery.server.probabilities import cross_entropy, predictive
from alquery.server.registry import Parameter, Ranking, Strategy, register
from alquery.server.strategies.diversity import never_cancelled
from alquery.server.strategies.neighbours import k_nearest
from alquery.server.strategies.uncertainty import entropy
from alquery.v1 import query_pb2
from numpy.typing import NDArray

DEFAULT_NEIGHBORS = 10
DEFAULT_MISSING_CLASS_WEAKNESS = 1.0

CREDIBILITY = query_pb2.CredibilityStrategy
VALIDATION_INPUTS = (
    "validation_probabilities",
    "validation_labels",
    "validation_embeddings",
)


def validation_knn(
    pool_embeddings: NDArray,
    validation_embeddings: NDArray,
    validation_probabilities: NDArray,
    validation_labels: NDArray,
    n_neighbors: int,
    check: Callable[[], None] = never_cancelled,
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
    validation_probabilities : ndarray of shape (n_validation, [n_passes,] n_classes)
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
    validation position is taken. Score ties go to the lower pool position.
    Natural log; probabilities are clipped below at 1e-12. Neighbours come
    from ``neighbours.k_nearest`` (exact, scikit-learn's brute-force search
    in small tiles), so no n_pool x n_validation matrix is held. Cost
    O(n_pool * n_validation * n_features).
    """
    losses = cross_entropy(predictive(validation_probabilities), validation_labels)
    _, nearest = k_nearest(
        validation_embeddings, n_neighbors, queries=pool_embeddings, check=check
    )
    return losses[nearest].mean(axis=1)


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
        required_inputs=("pool_embeddings", *VALIDATION_INPUTS),
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
            check=query.check_cancelled,
        ),
    )
)


def enum_resolver(
    field: str, enum: type, default: int
) -> Callable[[int | None, Query], int]:
    """Return a resolver for an enum parameter of ``CredibilityStrategy``.

    Unset, or set to the enum's UNSPECIFIED value (0), means ``default``; a
    number the enum does not define is refused, naming the valid values.
    """

    def resolve(value: int | None, query: Query) -> int:
        if not value:
            return default
        if value not in enum.values():
            valid = ", ".join(name for name, number in enum.items() if number)
            raise InvalidRequestError(
                f"credibility.{field}: unknown value {value}; expected one of {valid}"
            )
        return value

    return resolve


def sample_weakness(
    validation_probabilities: NDArray, validation_labels: NDArray, weakness: int
) -> NDArray[np.float64]:
    """Each validation sample's weakness: its loss, or 1.0 when misclassified.

    ``weakness`` is ``CredibilityStrategy.WEAKNESS_LOSS`` (the cross-entropy
    -ln max(p_y, 1e-12), natural log) or ``WEAKNESS_ERROR_RATE`` (1.0 when
    the argmax class, lowest class index among ties, is not the label, else
    0.0). Probabilities with a passes axis are averaged over it first.
    """
    p = predictive(validation_probabilities)
    if weakness == CREDIBILITY.WEAKNESS_ERROR_RATE:
        return (p.argmax(axis=1) != validation_labels).astype(np.float64)
    return cross_entropy(p, validation_labels)


def class_errors(
    validation_probabilities: NDArray,
    validation_labels: NDArray,
    class_error: int,
    missing_class_weakness: float,
) -> NDArray[np.float64]:
    """Per-class validation error, shape (n_classes,).

    With ``CLASS_ERROR_ONE_MINUS_PRECISION``, the error of class c is the
    share of the validation samples predicted (argmax) as c whose label is
    not c; with ``CLASS_ERROR_ONE_MINUS_RECALL``, the share of the validation
    samples labelled c predicted as another class. A class with no such
    samples gets ``missing_class_weakness``.
    """
    p = predictive(validation_probabilities)
    predicted = p.argmax(axis=1)
    wrong = (predicted != validation_labels).astype(np.float64)
    group = validation_labels
    if class_error == CREDIBILITY.CLASS_ERROR_ONE_MINUS_PRECISION:
        group = predicted
    n_classes = p.shape[1]
    counts = np.bincount(group, minlength=n_classes)
    errors = np.bincount(group, weights=wrong, minlength=n_classes)
    weakness = np.full(n_classes, missing_class_weakness, dtype=np.float64)
    weakness[counts > 0] = errors[counts > 0] / counts[counts > 0]
    return weakness


def class_weakness(
    pool_probabilities: NDArray,
    validation_probabilities: NDArray,
    validation_labels: NDArray,
    batch_size: int,
    class_error: int,
    missing_class_weakness: float,
) -> Ranking:
    """Pool samples predicted as the weakest classes first, most uncertain
    first within a class.

    score_i = e_(yhat_i), the validation error (``class_errors``) of the
    class yhat_i = argmax_c p_ic that the model predicts for pool sample i.
    Highest score first; among equal scores, highest entropy
    -sum_c p_ic ln p_ic first; then the lower pool position.

    Parameters
    ----------
    pool_probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Averaged over passes first.
    validation_probabilities : ndarray of shape (n_validation, [n_passes,] n_classes)
    validation_labels : ndarray of shape (n_validation,)
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    class_error : int
        ``CLASS_ERROR_ONE_MINUS_PRECISION`` (default) or
        ``CLASS_ERROR_ONE_MINUS_RECALL``.
    missing_class_weakness : float
        The error of a class the validation set says nothing about, in
        [0, 1]; default 1.0.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions, their class error as the
        score, and extras "entropy" (natural log).

    Notes
    -----
    1 - precision is the default because the pool is grouped by predicted
    class: it estimates how often the model is wrong on exactly these pool
    samples. 1 - recall instead points at classes the model misses, which it
    may rarely predict in the pool at all. A class with no evidence (never
    predicted on the validation set for precision, absent from its labels for
    recall) gets 1.0 by default, the worst possible error: the model's
    predictions there have never been checked, so they are the first to
    verify. The argmax takes the lowest class index among equal
    probabilities. O(n_pool * n_classes + n_pool log n_pool).

    References
    ----------
    No single paper defines this method; it ranks by per-class validation
    precision or recall (e.g. Sokolova & Lapalme, "A systematic analysis of
    performance measures for classification tasks", 2009) and breaks ties by
    entropy sampling (Settles, 2009, section 3.1).
    """
    pool = predictive(pool_probabilities)
    errors = class_errors(
        validation_probabilities,
        validation_labels,
        class_error,
        missing_class_weakness,
    )
    scores = errors[pool.argmax(axis=1)]
    uncertainty = entropy(pool)
    order = np.lexsort((np.arange(len(pool)), -uncertainty, -scores))[:batch_size]
    return Ranking(
        ranked_indices=order.astype(np.int64),
        scores=scores[order],
        extras={"entropy": uncertainty[order]},
    )


def _resolve_missing_weakness(value: float | None, query: Query) -> float:
    if value is None:
        return DEFAULT_MISSING_CLASS_WEAKNESS
    if not 0.0 <= value <= 1.0:
        raise InvalidRequestError(
            f"credibility.missing_class_weakness: got {value}; it must be "
            "between 0 and 1"
        )
    return value


register(
    Strategy(
        family="credibility",
        method="class_weakness",
        description=(
            "score = validation error (1 - precision, or 1 - recall) of the "
            "pool sample's predicted class; highest first; ties by entropy, "
            "highest first, then the lower pool position."
        ),
        required_inputs=(
            "pool_probabilities",
            "validation_probabilities",
            "validation_labels",
        ),
        higher_first=True,
        parameters=(
            Parameter(
                name="class_error",
                type="ClassError",
                default="CLASS_ERROR_ONE_MINUS_PRECISION",
                description="Per-class error: 1 - precision or 1 - recall.",
                resolve=enum_resolver(
                    "class_error",
                    CREDIBILITY.ClassError,
                    CREDIBILITY.CLASS_ERROR_ONE_MINUS_PRECISION,
                ),
            ),
            Parameter(
                name="missing_class_weakness",
                type="double",
                default="1.0",
                description="Error of a class with no validation evidence.",
                resolve=_resolve_missing_weakness,
            ),
        ),
        pick=lambda query: class_weakness(
            query.pool_probabilities,
            query.validation_probabilities,
            query.validation_labels,
            query.batch_size,
            query.params["class_error"],
            query.params["missing_class_weakness"],
        ),
    )
)
