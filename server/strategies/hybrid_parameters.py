"""Parameters shared by the hybrid strategies, and the uncertainty they mix in.

A hybrid strategy combines an uncertainty measure with the geometry of the
embeddings. The measure is chosen with the ``uncertainty`` field of
``HybridStrategy`` and always enters oriented so that higher means more
uncertain: margin enters as 1 - margin.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from alquery.server.edge import Query
from alquery.server.errors import InvalidRequestError
from alquery.server.registry import Parameter
from alquery.server.strategies.parameters import (
    finite_float,
    int_at_least,
    int_up_to,
    pool_size,
)
from alquery.server.strategies.uncertainty import entropy, least_confidence, margin
from alquery.v1 import query_pb2
from numpy.typing import NDArray

_METHODS = query_pb2.UncertaintyStrategy.Method
_SIMILARITIES = {
    query_pb2.SIMILARITY_COSINE: "cosine",
    query_pb2.SIMILARITY_EUCLIDEAN: "euclidean",
}

UNCERTAINTY_MEASURES: dict[str, Callable[[NDArray], NDArray[np.float64]]] = {
    "least_confidence": least_confidence,
    "margin": lambda probabilities: 1.0 - margin(probabilities),
    "entropy": entropy,
}
"""The measures a hybrid strategy can mix in, higher = more uncertain."""

DEFAULT_PREFILTER_FACTOR = 10


def uncertainty_scores(probabilities: NDArray, measure: str) -> NDArray[np.float64]:
    """Return the named uncertainty of each pool sample, higher = more uncertain.

    ``measure`` is a key of ``UNCERTAINTY_MEASURES``: least_confidence
    (1 - max_c p_c), margin (1 - (p_(1) - p_(2))) or entropy (natural log).
    Passes are averaged first.
    """
    return UNCERTAINTY_MEASURES[measure](probabilities)


def uncertainty_parameter(default: str) -> Parameter:
    """The ``uncertainty`` parameter of a hybrid strategy, with its default."""

    def resolve(value: int | None, query: Query) -> str:
        if value is None or value == _METHODS.METHOD_UNSPECIFIED:
            return default
        name = _METHODS.Name(value) if value in _METHODS.values() else str(value)
        measure = name.removeprefix("METHOD_").lower()
        if measure not in UNCERTAINTY_MEASURES:
            allowed = ", ".join(
                "METHOD_" + key.upper() for key in UNCERTAINTY_MEASURES
            )
            raise InvalidRequestError(
                f"hybrid.uncertainty: got {name}; it must be one of {allowed}"
            )
        return measure

    return Parameter(
        name="uncertainty",
        type="UncertaintyStrategy.Method",
        default=default,
        description=(
            "The uncertainty measure mixed in: least_confidence, margin "
            "(as 1 - margin) or entropy."
        ),
        resolve=resolve,
    )


def similarity_parameter(family: str) -> Parameter:
    """The ``density_similarity`` parameter of ``family``'s message."""

    def resolve(value: int | None, query: Query) -> str:
        if value is None or value == query_pb2.SIMILARITY_UNSPECIFIED:
            return "cosine"
        if value not in _SIMILARITIES:
            raise InvalidRequestError(
                f"{family}.density_similarity: got {value}; it must be "
                "SIMILARITY_COSINE or SIMILARITY_EUCLIDEAN"
            )
        return _SIMILARITIES[value]

    return Parameter(
        name="density_similarity",
        type="Similarity",
        default="cosine",
        description=(
            "Similarity averaged over the pool: cosine, or euclidean "
            "1 / (1 + distance)."
        ),
        resolve=resolve,
    )


BETA = Parameter(
    name="beta",
    type="double",
    default="1",
    description="Exponent of the information density in u * density^beta.",
    resolve=finite_float("hybrid.beta", 1.0, above_zero=False),
)


PREFILTER_FACTOR = Parameter(
    name="prefilter_factor",
    type="int64",
    default=str(DEFAULT_PREFILTER_FACTOR),
    description=(
        "Keep the prefilter_factor * batch_size most uncertain pool samples "
        "(at most n_pool) as candidates."
    ),
    resolve=int_at_least("hybrid.prefilter_factor", DEFAULT_PREFILTER_FACTOR),
)


N_CLUSTERS = Parameter(
    name="n_clusters",
    type="int64",
    default="batch_size",
    description="How many k-means clusters the pool is split into.",
    resolve=int_up_to(
        "hybrid.n_clusters", lambda query: query.batch_size, pool_size
    ),
)

INCLUDE_BIAS = Parameter(
    name="include_bias",
    type="bool",
    default="false",
    description="Count the last layer's bias: ||h|| becomes sqrt(||h||^2 + 1).",
    resolve=lambda value, query: bool(value),
)
