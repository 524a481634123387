"""Uncertainty strategies: rank pool samples by how unsure the model is.

Each takes the pool's probabilities, shape (n_pool, n_classes), or
(n_pool, n_passes, n_classes), which is first averaged over the passes into
one predictive distribution per sample (``probabilities.predictive``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from alquery.server.probabilities import predictive
from alquery.server.registry import Strategy, register
from alquery.server.strategies.information import entropy_along_classes
from numpy.typing import NDArray

_NEEDS = ("pool_probabilities",)


def least_confidence(probabilities: NDArray) -> NDArray[np.float64]:
    """Least-confidence scores: one minus the top class probability.

    score_i = 1 - max_c p_ic; the highest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, 1 - 1/n_classes].

    Notes
    -----
    Ties go to the lower pool position (``selection.top_k``). O(n_pool *
    n_classes). Equals modAL's ``classifier_uncertainty`` and small-text's
    ``LeastConfidence`` up to their tie-breaks.

    References
    ----------
    Lewis & Gale, "A sequential algorithm for training text classifiers",
    SIGIR 1994.
    """
    return 1.0 - predictive(probabilities).max(axis=1)


def margin(probabilities: NDArray) -> NDArray[np.float64]:
    """Margin scores: the gap between the two most probable classes.

    score_i = p_i,(1) - p_i,(2), the largest minus the second largest class
    probability of sample i; the smallest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities with at least 2 classes.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, 1].

    Notes
    -----
    Ties go to the lower pool position. The top two are found by partial
    selection, O(n_pool * n_classes). modAL's ``margin_sampling`` returns the
    same quantity negated (it ranks highest first), so its order is ours.

    References
    ----------
    Scheffer, Decomain & Wrobel, "Active hidden Markov models for information
    extraction", IDA 2001.
    """
    p = predictive(probabilities)
    top_two = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def entropy(probabilities: NDArray) -> NDArray[np.float64]:
    """Entropy scores: the Shannon entropy of the predictive distribution.

    score_i = -sum_c p_ic ln p_ic, natural log, with 0 ln 0 taken as 0; the
    highest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, ln n_classes].

    Notes
    -----
    No epsilon is added: zero probabilities contribute exactly 0, so a row
    with a zero never becomes NaN. Terms are summed smallest first
    (``information.entropy_along_classes``), so rows holding the same values
    in another class order tie exactly, and ties go to the lower pool
    position. O(n_pool * n_classes log n_classes). modAL's
    ``entropy_sampling`` uses the same natural log (via scipy's entropy),
    summed in class order; scores agree within rounding.

    References
    ----------
    Shannon, "A mathematical theory of communication", 1948; Settles,
    "Active Learning Literature Survey", 2009, section 3.1.
    """
    return entropy_along_classes(predictive(probabilities))


def ratio_of_confidence(probabilities: NDArray) -> NDArray[np.float64]:
    """Ratio-of-confidence scores: the runner-up over the top class probability.

    score_i = p_i,(2) / p_i,(1), the second largest over the largest class
    probability of sample i; the highest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities with at least 2 classes.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, 1]: 1 for an exact two-way tie at the top, 0 for a
        certain prediction.

    Notes
    -----
    The largest probability of a distribution is at least 1 / n_classes, so
    the division never meets 0 and no epsilon is needed. Ties go to the lower
    pool position. The top two are found by partial selection, O(n_pool *
    n_classes). The ranking is not margin's: (0.5, 0.3) and (0.25, 0.15)
    share the ratio 0.6 but not the gap. None of modAL, scikit-activeml and
    small-text offers this measure.

    References
    ----------
    Monarch, "Human-in-the-Loop Machine Learning", Manning 2021, chapter 3
    (uncertainty sampling).
    """
    p = predictive(probabilities)
    top_two = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return top_two[:, 0] / top_two[:, 1]


def register_measure(
    method: str,
    function: Callable[[NDArray], NDArray[np.float64]],
    description: str,
    *,
    higher_first: bool = True,
    min_passes: int = 1,
) -> None:
    """Register ``uncertainty.<method>``, scored by ``function`` of the pool
    probabilities alone.

    ``min_passes=2`` for measures that need the n_passes axis (Bayesian and
    committee measures).
    """
    register(
        Strategy(
            family="uncertainty",
            method=method,
            description=description,
            required_inputs=_NEEDS,
            higher_first=higher_first,
            min_passes=min_passes,
            score=lambda query: function(query.pool_probabilities),
        )
    )


register_measure(
    "least_confidence",
    least_confidence,
    "score = 1 - max_c p_c; highest first; ties to the lower pool position.",
)
register_measure(
    "margin",
    margin,
    "score = p_(1) - p_(2), the gap between the two largest class "
    "probabilities; smallest first; ties to the lower pool position.",
    higher_first=False,
)
register_measure(
    "entropy",
    entropy,
    "score = -sum_c p_c ln p_c (0 ln 0 = 0); highest first; ties to the "
    "lower pool position.",
)
register_measure(
    "ratio_of_confidence",
    ratio_of_confidence,
    "score = p_(2) / p_(1), the second largest over the largest class "
    "probability; highest first; ties to the lower pool position.",
)
