"""Hybrid strategies without clustering: ranked batch and expected gradient length.

BADGE lives in ``badge.py``, the cluster-based hybrids (CLUE, two-step,
cluster-margin) in ``hybrid_clustering.py`` and density weighting in
``density.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from alquery.server.probabilities import predictive
from alquery.server.registry import Ranking, Strategy, register
from alquery.server.strategies.density import mean_over_pool
from alquery.server.strategies.diversity import (
    nearest_center_distances,
    never_cancelled,
    squared_distances,
    squared_norms,
)
from alquery.server.strategies.hybrid_parameters import (
    INCLUDE_BIAS,
    uncertainty_parameter,
    uncertainty_scores,
)
from numpy.typing import NDArray

_NEEDS = ("pool_probabilities", "pool_embeddings")


def ranked_batch(
    probabilities: NDArray,
    embeddings: NDArray,
    batch_size: int,
    labeled_embeddings: NDArray | None = None,
    uncertainty: str = "least_confidence",
    check: Callable[[], None] = never_cancelled,
) -> Ranking:
    """Ranked batch-mode sampling: uncertain samples unlike those already chosen.

    At step t (t samples picked so far) every unpicked pool sample i gets

        score_i = alpha_t (1 - s_i) + (1 - alpha_t) u_i,
        s_i = 1 / (1 + min_{c in D_t} ||x_i - c||),
        alpha_t = |U_t| / (|U_t| + |D_t|) = (n_pool - t) / (n_pool + n_labeled),

    where D_t is the labeled set plus the t picks, U_t the unpicked pool and
    u_i the uncertainty (least confidence by default); the highest score is
    picked. So alpha starts at n_pool / (n_pool + n_labeled) and shifts
    weight from dissimilarity to uncertainty as the batch grows.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities; passes are averaged first.
    embeddings : ndarray of shape (n_pool, n_features)
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    labeled_embeddings : ndarray of shape (n_labeled, n_features), optional
    uncertainty : {"least_confidence", "margin", "entropy"}, default="least_confidence"

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order; each score is
        the pick's score at its step, in [0, 1] for least confidence and
        margin.

    Notes
    -----
    Ties go to the lower pool position. Cold start: with no labeled set the
    first pick is the pool sample with the smallest mean Euclidean distance
    to the pool (ties to the lower position) and scores 1, the value every
    sample gets with D empty (s = 0, alpha = 1). Cost
    O(batch_size * n_pool * n_features), plus O(n_pool^2 * n_features) in
    32 MiB chunks for a cold start.

    modAL's ``uncertainty_batch_sampling`` uses the same similarity, least
    confidence and alpha, and picks the same samples when a labeled set is
    given. On a cold start modAL leaves its first pick in the pool (it may
    pick it again) and counts it in |U|; we remove it, so later picks may
    differ.

    References
    ----------
    Cardoso, Silva, Moreira & Cardoso, "Ranked batch-mode active learning",
    Information Sciences 379, 2017.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    u = uncertainty_scores(probabilities, uncertainty)
    n_pool = len(x)
    n_labeled = 0 if labeled_embeddings is None else len(labeled_embeddings)
    norms = squared_norms(x)
    picks = np.empty(batch_size, dtype=np.int64)
    scores = np.empty(batch_size)
    start = 0
    if labeled_embeddings is not None:
        nearest = nearest_center_distances(x, labeled_embeddings)
    else:
        picks[0] = int(np.argmin(mean_over_pool(x, lambda distances: distances)))
        scores[0] = 1.0
        nearest = squared_distances(x, x[picks[:1]], norms)[:, 0]
        start = 1
    available = np.ones(n_pool, dtype=bool)
    available[picks[:start]] = False

    for step in range(start, batch_size):
        check()
        alpha = (n_pool - step) / (n_pool + n_labeled)
        similarity = 1.0 / (1.0 + np.sqrt(nearest))
        combined = alpha * (1.0 - similarity) + (1.0 - alpha) * u
        combined[~available] = -np.inf
        pick = int(np.argmax(combined))
        picks[step], scores[step] = pick, combined[pick]
        available[pick] = False
        to_pick = squared_distances(x, x[pick : pick + 1], norms)[:, 0]
        np.minimum(nearest, to_pick, out=nearest)
    return Ranking(ranked_indices=picks, scores=scores)


def expected_gradient_length(
    probabilities: NDArray, embeddings: NDArray, include_bias: bool = False
) -> NDArray[np.float64]:
    """Expected gradient length of a softmax last layer, in closed form.

    For a last layer z = W h (+ b) with softmax output p, the gradient of
    the cross-entropy for label y with respect to W is (p - e_y) h^T, whose
    Frobenius norm is ||p - e_y|| ||h||; with the bias b included it is
    ||p - e_y|| sqrt(||h||^2 + 1). The expectation under the model's own
    predictive distribution is

        score_i = sum_y p_iy ||p_i - e_y|| ||h_i||,
        ||p_i - e_y||^2 = ||p_i||^2 - 2 p_iy + 1;

    the highest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities; passes are averaged first.
    embeddings : ndarray of shape (n_pool, n_features)
        The input h_i of the last (linear, softmax) layer.
    include_bias : bool, default=False
        Count the bias in the gradient (replaces ||h|| by sqrt(||h||^2 + 1)).

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        At least 0.

    Notes
    -----
    Only the last layer's parameters are counted, as in BADGE; the gradient
    through earlier layers is not. Ties go to the lower pool position. Cost
    O(n_pool * (n_classes + n_features)).

    References
    ----------
    Settles, Craven & Ray, "Multiple-Instance Active Learning", NIPS 2008.
    """
    p = predictive(probabilities)
    residual_norms = np.sqrt(
        np.maximum(squared_norms(p)[:, None] - 2.0 * p + 1.0, 0.0)
    )
    h_norms = squared_norms(embeddings) + (1.0 if include_bias else 0.0)
    return (p * residual_norms).sum(axis=1) * np.sqrt(h_norms)


register(
    Strategy(
        family="hybrid",
        method="ranked_batch",
        description=(
            "Greedy: pick argmax alpha (1 - 1 / (1 + distance to the nearest of "
            "labeled set and earlier picks)) + (1 - alpha) u, alpha = unpicked / "
            "(unpicked + labeled + picked); u least confidence by default; ties "
            "to the lower pool position."
        ),
        required_inputs=_NEEDS,
        higher_first=True,
        parameters=(uncertainty_parameter("least_confidence"),),
        pick=lambda query: ranked_batch(
            query.pool_probabilities,
            query.pool_embeddings,
            query.batch_size,
            query.labeled_embeddings,
            query.params["uncertainty"],
            check=query.check_cancelled,
        ),
    )
)

register(
    Strategy(
        family="hybrid",
        method="expected_gradient_length",
        description=(
            "score = sum_y p_y ||p - e_y|| ||h||, the expected norm of the "
            "last-layer weight gradient (sqrt(||h||^2 + 1) with include_bias); "
            "highest first; ties to the lower pool position."
        ),
        required_inputs=_NEEDS,
        higher_first=True,
        parameters=(INCLUDE_BIAS,),
        score=lambda query: expected_gradient_length(
            query.pool_probabilities,
            query.pool_embeddings,
            query.params["include_bias"],
        ),
    )
)
