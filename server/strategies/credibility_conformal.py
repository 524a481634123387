"""Credibility of each prediction: conformal p-values calibrated on the
validation set, and the trust score against the labeled set."""

from __future__ import annotations

import numpy as np
from alquery.server.edge import Query
from alquery.server.errors import InvalidRequestError
from alquery.server.probabilities import predictive
from alquery.server.registry import Parameter, PoolScores, Strategy, register
from alquery.server.strategies.credibility import CREDIBILITY, enum_resolver
from alquery.server.strategies.diversity import nearest_center_distances
from alquery.server.strategies.neighbours import k_nearest
from numpy.typing import NDArray

TRUST_EPSILON = 1e-12
"""Added to the distance to the predicted class before dividing, so a pool
sample on top of a labeled sample of its predicted class gets a large finite
trust instead of a division by zero (the reference code's ``min_dist``)."""
DEFAULT_DENSITY_NEIGHBORS = 10


def nonconformity_scores(
    probabilities: NDArray, nonconformity: int, u: NDArray | None = None
) -> NDArray[np.float64]:
    """Nonconformity of every candidate class, shape (n_samples, n_classes).

    - ``NONCONFORMITY_ONE_MINUS_PROBABILITY``: s(x, c) = 1 - p_c.
    - ``NONCONFORMITY_APS``: s(x, c) = sum of p_c' over the classes with
      p_c' > p_c, plus p_c. Classes of equal probability get equal scores.
    - ``NONCONFORMITY_APS_RANDOMIZED``: the same with u * p_c in place of
      p_c, u of shape (n_samples,) uniform in [0, 1), one per sample.

    ``probabilities`` has shape (n_samples, n_classes).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if nonconformity == CREDIBILITY.NONCONFORMITY_ONE_MINUS_PROBABILITY:
        return 1.0 - p

    # Sum of the strictly larger probabilities: sort each row in descending
    # order and, for a run of equal values, take the sum before the run.
    n_classes = p.shape[1]
    order = np.argsort(-p, axis=1, kind="stable")
    descending = np.take_along_axis(p, order, axis=1)
    before = np.zeros_like(descending)
    np.cumsum(descending[:, :-1], axis=1, out=before[:, 1:])
    run_start = np.zeros(descending.shape, dtype=np.int64)
    run_start[:, 1:] = np.where(
        descending[:, 1:] != descending[:, :-1], np.arange(1, n_classes), 0
    )
    np.maximum.accumulate(run_start, axis=1, out=run_start)
    larger = np.empty_like(p)
    np.put_along_axis(
        larger, order, np.take_along_axis(before, run_start, axis=1), axis=1
    )
    share = p if u is None else u[:, None] * p
    return larger + share


def p_values(calibration_scores: NDArray, scores: NDArray) -> NDArray[np.float64]:
    """(#{j : calibration_scores_j >= scores} + 1) / (n_calibration + 1),
    elementwise over ``scores`` of any shape."""
    ordered = np.sort(calibration_scores)
    at_least = len(ordered) - np.searchsorted(ordered, scores, side="left")
    return (at_least + 1.0) / (len(ordered) + 1.0)


def conformal(
    pool_probabilities: NDArray,
    validation_probabilities: NDArray,
    validation_labels: NDArray,
    nonconformity: int,
    class_conditional: bool,
    rng: np.random.Generator,
) -> PoolScores:
    """Inductive conformal credibility: least credible pool samples first.

    The validation set is the calibration set. With s the nonconformity
    (``nonconformity_scores``), calibration scores a_j = s(x_j, y_j), and
    for pool sample i and class c

        p_ic = (#{j : a_j >= s(x_i, c)} + 1) / (n_calibration + 1),

    score_i = credibility_i = max_c p_ic, lowest first; the extra
    "confidence" is 1 - the second largest p_ic.

    Parameters
    ----------
    pool_probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Averaged over passes first, as are the validation probabilities.
    validation_probabilities : ndarray of shape (n_validation, [n_passes,] n_classes)
    validation_labels : ndarray of shape (n_validation,)
    nonconformity : int
        One of ``CredibilityStrategy.Nonconformity``'s values.
    class_conditional : bool
        Mondrian calibration: p_ic counts only the calibration samples of
        label c, and n_calibration is their number. A class with no
        validation sample falls back to the whole validation set.
    rng : numpy.random.Generator
        Draws u for the randomised APS: n_validation values, then n_pool.

    Returns
    -------
    PoolScores
        scores (n_pool,) in (0, 1] and extras "confidence" (n_pool,).

    Notes
    -----
    Ties go to the lower pool position; p-values take few distinct values
    (n_calibration + 1 at most), so ties are common. Not smoothed: the +1
    counts the test sample as at least as strange as itself, which makes the
    p-values conservative. The Mondrian fallback keeps a valid (marginal)
    p-value for a class the validation set lacks, rather than a p-value of 1
    that would make every pool sample look credible. crepes'
    ``ConformalClassifier.predict_p(..., smoothing=False)`` gives the same
    p-values for 1 - p_c. Cost O((n_pool + n_validation) * n_classes *
    log n_validation), plus a row sort for APS.

    References
    ----------
    Vovk, Gammerman & Shafer, "Algorithmic Learning in a Random World", 2005;
    Saunders, Gammerman & Vovk, "Transduction with confidence and
    credibility", IJCAI 1999; Romano, Sesia & Candes, "Classification with
    Valid and Adaptive Coverage", NeurIPS 2020 (APS).
    """
    pool = predictive(pool_probabilities)
    validation = predictive(validation_probabilities)
    u_validation = u_pool = None
    if nonconformity == CREDIBILITY.NONCONFORMITY_APS_RANDOMIZED:
        u_validation = rng.random(len(validation))
        u_pool = rng.random(len(pool))
    calibration = nonconformity_scores(validation, nonconformity, u_validation)
    calibration = calibration[np.arange(len(validation)), validation_labels]
    candidate = nonconformity_scores(pool, nonconformity, u_pool)

    values = p_values(calibration, candidate)
    if class_conditional:
        for label in np.unique(validation_labels):
            members = calibration[validation_labels == label]
            values[:, label] = p_values(members, candidate[:, label])

    top_two = np.partition(values, values.shape[1] - 2, axis=1)[:, -2:]
    return PoolScores(scores=top_two[:, 1], extras={"confidence": 1.0 - top_two[:, 0]})


def class_radii(embeddings: NDArray, n_neighbors: int) -> NDArray[np.float64]:
    """Distance from each row to its k-th nearest row, itself included.

    k = min(``n_neighbors``, n_rows); Euclidean. A row is its own nearest
    row, at distance exactly 0, so k = 1 gives 0 and otherwise the radius
    is the distance to the (k - 1)-th nearest other row, found by
    ``neighbours.k_nearest`` (exact, in chunks of bounded memory).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    k = min(n_neighbors, len(x))
    if k == 1:
        return np.zeros(len(x))
    nearest, _ = k_nearest(x, k - 1)
    return nearest[:, -1]


def trust_score(
    pool_probabilities: NDArray,
    pool_embeddings: NDArray,
    labeled_embeddings: NDArray,
    labeled_labels: NDArray,
    density_alpha: float,
    n_neighbors: int,
) -> NDArray[np.float64]:
    """Trust score: lowest first.

    With H_c the labeled embeddings of class c (after density filtering),
    d_c(i) the Euclidean distance from pool sample i to its nearest member
    of H_c, and yhat_i = argmax_c p_ic the predicted class,

        score_i = min_{c != yhat_i} d_c(i) / (d_yhat_i(i) + 1e-12).

    Density filtering (``density_alpha`` > 0): within each class, every
    labeled sample's radius is its distance to its k-th nearest sample of
    the class, itself included (k = ``n_neighbors``, at most the class
    size); samples whose radius is above the (1 - alpha) quantile of the
    class's radii (linear interpolation, ``numpy.percentile``) are dropped.

    Parameters
    ----------
    pool_probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Averaged over passes before the argmax (lowest class among ties).
    pool_embeddings : ndarray of shape (n_pool, n_features)
    labeled_embeddings : ndarray of shape (n_labeled, n_features)
    labeled_labels : ndarray of shape (n_labeled,)
        At least two distinct classes (checked at the edge).
    density_alpha : float
        In [0, 1); 0 keeps every labeled sample.
    n_neighbors : int
        k of the density radius; unused when ``density_alpha`` is 0.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64, at least 0

    Notes
    -----
    A pool sample predicted as a class with no labeled samples has
    d_yhat = inf and scores 0: its prediction has no support at all, so it
    ranks first. Ties go to the lower pool position. Cost
    O(n_pool * n_labeled * n_features), in chunks; the density filter adds
    O(sum_c n_c^2 * n_features). Jiang et al.'s reference code measures the
    distance to the second nearest member of each class in ``get_score``
    (built for scoring the training points themselves) and, when another
    class is exactly as near as the predicted one, may take the predicted
    class as the "other"; we use the nearest member, as the paper defines
    d(x, H), and exclude the predicted class by its index.

    References
    ----------
    Jiang, Kim, Guan & Gupta, "To Trust or Not to Trust a Classifier",
    NeurIPS 2018.
    """
    pool = predictive(pool_probabilities)
    predicted = pool.argmax(axis=1)
    distances = np.full(pool.shape, np.inf)
    for label in np.unique(labeled_labels):
        members = np.asarray(labeled_embeddings[labeled_labels == label])
        if density_alpha > 0:
            radii = class_radii(members, n_neighbors)
            cutoff = np.percentile(radii, (1 - density_alpha) * 100)
            members = members[radii <= cutoff]
        nearest = nearest_center_distances(pool_embeddings, members)
        distances[:, label] = np.sqrt(nearest)

    rows = np.arange(len(pool))
    to_predicted = distances[rows, predicted]
    distances[rows, predicted] = np.inf
    to_other = distances.min(axis=1)
    return to_other / (to_predicted + TRUST_EPSILON)


def _resolve_density_alpha(value: float | None, query: Query) -> float:
    # Also the one place a trust_score request meets the edge after its
    # inputs are decoded, so the labeled set's classes are checked here.
    classes = np.unique(query.labeled_labels)
    if len(classes) < 2:
        raise InvalidRequestError(
            f"labeled.labels: holds only class {classes[0]}; trust_score needs "
            "labeled samples of at least 2 classes"
        )
    if value is None:
        return 0.0
    if not 0.0 <= value < 1.0:
        raise InvalidRequestError(
            f"credibility.density_alpha: got {value}; it must be in [0, 1)"
        )
    return value


def _resolve_density_neighbors(value: int | None, query: Query) -> int:
    if value is None:
        return DEFAULT_DENSITY_NEIGHBORS
    if value < 1:
        raise InvalidRequestError(
            f"credibility.n_neighbors: got {value}; it must be at least 1"
        )
    return value


def _resolve_class_conditional(value: bool | None, query: Query) -> bool:
    return bool(value)


register(
    Strategy(
        family="credibility",
        method="conformal",
        description=(
            "Inductive conformal prediction calibrated on the validation set: "
            "score = credibility = max_c p-value; lowest first; ties to the "
            "lower pool position; extras: confidence = 1 - second largest "
            "p-value."
        ),
        required_inputs=(
            "pool_probabilities",
            "validation_probabilities",
            "validation_labels",
        ),
        higher_first=False,
        parameters=(
            Parameter(
                name="nonconformity",
                type="Nonconformity",
                default="NONCONFORMITY_ONE_MINUS_PROBABILITY",
                description="1 - p_c, APS, or randomised APS (seeded).",
                resolve=enum_resolver(
                    "nonconformity",
                    CREDIBILITY.Nonconformity,
                    CREDIBILITY.NONCONFORMITY_ONE_MINUS_PROBABILITY,
                ),
            ),
            Parameter(
                name="class_conditional",
                type="bool",
                default="false",
                description="Calibrate each class on its own validation samples.",
                resolve=_resolve_class_conditional,
            ),
        ),
        score=lambda query: conformal(
            query.pool_probabilities,
            query.validation_probabilities,
            query.validation_labels,
            query.params["nonconformity"],
            query.params["class_conditional"],
            query.random_generator(),
        ),
    )
)


register(
    Strategy(
        family="credibility",
        method="trust_score",
        description=(
            "score = distance to the nearest labeled sample of the nearest "
            "class other than the predicted one / (distance to the nearest "
            "labeled sample of the predicted class + 1e-12); lowest first; "
            "ties to the lower pool position."
        ),
        required_inputs=(
            "pool_probabilities",
            "pool_embeddings",
            "labeled_embeddings",
            "labeled_labels",
        ),
        higher_first=False,
        parameters=(
            Parameter(
                name="density_alpha",
                type="double",
                default="0 (no filtering)",
                description="Share of each class's least dense labeled samples "
                "to drop.",
                resolve=_resolve_density_alpha,
            ),
            Parameter(
                name="n_neighbors",
                type="int64",
                default="10",
                description="k of the k-nearest-neighbour density radius.",
                resolve=_resolve_density_neighbors,
            ),
        ),
        score=lambda query: trust_score(
            query.pool_probabilities,
            query.pool_embeddings,
            query.labeled_embeddings,
            query.labeled_labels,
            query.params["density_alpha"],
            query.params["n_neighbors"],
        ),
    )
)
