"""Uncertainty strategies: rank pool samples by how unsure the model is.

Each takes the pool's probabilities, shape (n_pool, n_classes), or
(n_pool, n_passes, n_classes), which is first averaged over the passes into
one predictive distribution per sample (``probabilities.predictive``), or
logits of the same shapes. The pool is read in row chunks of a few MiB
(``uncertainty_chunks``), so scoring it holds no temporary larger than a
chunk besides the n_pool scores.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from alquery.server.edge import Query
from alquery.server.registry import Ranking, Strategy, register
from alquery.server.strategies import entropy_screen
from alquery.server.strategies import uncertainty_chunks as chunks

_NEEDS = ("pool_probabilities",)


def least_confidence(
    probabilities: NDArray, *, logits: bool = False
) -> NDArray[np.float64]:
    """Least-confidence scores: one minus the top class probability.

    score_i = 1 - max_c p_ic; the highest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities, or logits when ``logits`` is True.
    logits : bool, default=False
        Whether ``probabilities`` holds logits (softmax per chunk).

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, 1 - 1/n_classes].

    Notes
    -----
    Ties go to the lower pool position (``selection.top_k``). O(n_pool *
    n_classes). The score is exactly the float64 formula: the maximum is
    exact in any dtype, and 1 - max runs in float64 (logits go through the
    float64 softmax). Equals modAL's ``classifier_uncertainty`` and
    small-text's ``LeastConfidence`` up to their tie-breaks.

    References
    ----------
    Lewis & Gale, "A sequential algorithm for training text classifiers",
    SIGIR 1994.
    """
    scores = chunks.scores_by_chunk(probabilities, chunks.top_one, logits=logits)
    return np.subtract(1.0, scores, out=scores)


def margin(probabilities: NDArray, *, logits: bool = False) -> NDArray[np.float64]:
    """Margin scores: the gap between the two most probable classes.

    score_i = p_i,(1) - p_i,(2), the largest minus the second largest class
    probability of sample i; the smallest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities with at least 2 classes, or logits when
        ``logits`` is True.
    logits : bool, default=False
        Whether ``probabilities`` holds logits (softmax per chunk).

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, 1].

    Notes
    -----
    Ties go to the lower pool position. The top two are found in one pass
    per chunk (``uncertainty_chunks.top_two``), O(n_pool * n_classes); the
    gap is taken in float64, so the score is exactly the float64 formula.
    modAL's ``margin_sampling`` returns the same quantity negated (it ranks
    highest first), so its order is ours.

    References
    ----------
    Scheffer, Decomain & Wrobel, "Active hidden Markov models for information
    extraction", IDA 2001.
    """
    return chunks.scores_by_chunk(probabilities, chunks.margin_gap, logits=logits)


def entropy(probabilities: NDArray, *, logits: bool = False) -> NDArray[np.float64]:
    """Entropy scores: the Shannon entropy of the predictive distribution.

    score_i = -sum_c p_ic ln p_ic, natural log, with 0 ln 0 taken as 0; the
    highest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities, or logits when ``logits`` is True.
    logits : bool, default=False
        Whether ``probabilities`` holds logits (softmax per chunk).

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, ln n_classes].

    Notes
    -----
    No epsilon is added: zero probabilities contribute exactly 0, so a row
    with a zero never becomes NaN. The terms are snapped to a fixed grid and
    summed exactly (``information.snap_to_grid``), so rows holding the same
    values in another class order tie exactly, and ties go to the lower pool
    position. The terms are computed in float64 whatever the input dtype;
    the snapping moves a score by n_classes 2^-53 M at most (9e-13 for 1,000
    classes, ``uncertainty_chunks``). O(n_pool * n_classes). modAL's
    ``entropy_sampling`` uses the same natural log (via scipy's entropy),
    summed in class order; scores agree within rounding.

    A top-k request does not score every sample this way: the server takes
    ``entropy_screen.entropy_top_k``, which screens two-axis float32
    probabilities with an upper bound read from their bit patterns
    (``entropy_pattern``, no log), then a float32 entropy, both with proven
    error bounds, and scores exactly only the samples that can make the
    batch. Its batch and scores are bit for bit this function's followed by
    ``selection.top_k``. Logits, passes, float64 probabilities and the
    sampling modes score every sample here. Measured with
    ``bench/uncertainty_speed.py`` (batch 100, 2 shared cores,
    2026-12-05): 1,000,000 x 10 float32 in 0.012 s (numpy's float32
    one-liner 0.030 s; this function and top-k took 0.036 s on an idle
    machine); 1,000,000 x 1,000 in 0.222 s with 21 MiB extra (modAL
    11.0 s, scikit-activeml 4.2 s in the same run).
    When many samples have entropies within the bounds of the cut (all
    rows equal, near-ties), the screens give up and are paid on top of the
    full scoring: 1.3x to 1.8x its time on such pools of 1,000,000 x 10 and
    100,000 x 1,000 (``bench/entropy_screen.py``, 2026-12-05).

    References
    ----------
    Shannon, "A mathematical theory of communication", 1948; Settles,
    "Active Learning Literature Survey", 2009, section 3.1.
    """
    scores = chunks.scores_by_chunk(
        probabilities, chunks.entropy_sum, logits=logits
    )
    # 0.0 - x rather than -x, so that a certain sample scores 0.0, not -0.0.
    return np.subtract(0.0, scores, out=scores)


def ratio_of_confidence(
    probabilities: NDArray, *, logits: bool = False
) -> NDArray[np.float64]:
    """Ratio-of-confidence scores: the runner-up over the top class probability.

    score_i = p_i,(2) / p_i,(1), the second largest over the largest class
    probability of sample i; the highest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities with at least 2 classes, or logits when
        ``logits`` is True.
    logits : bool, default=False
        Whether ``probabilities`` holds logits (softmax per chunk).

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, 1]: 1 for an exact two-way tie at the top, 0 for a
        certain prediction.

    Notes
    -----
    The largest probability of a distribution is at least 1 / n_classes, so
    the division never meets 0 and no epsilon is needed. Ties go to the lower
    pool position. The top two are found in one pass per chunk, O(n_pool *
    n_classes), and divided in float64. The ranking is not margin's:
    (0.5, 0.3) and (0.25, 0.15) share the ratio 0.6 but not the gap. None of
    modAL, scikit-activeml and small-text offers this measure.

    References
    ----------
    Monarch, "Human-in-the-Loop Machine Learning", Manning 2021, chapter 3
    (uncertainty sampling).
    """
    return chunks.scores_by_chunk(
        probabilities, chunks.top_ratio, logits=logits
    )


def register_measure(
    method: str,
    function: Callable[[NDArray], NDArray[np.float64]],
    description: str,
    *,
    higher_first: bool = True,
    min_passes: int = 1,
    reads_predictions: bool = False,
    top: Callable[[Query], Ranking] | None = None,
) -> None:
    """Register ``uncertainty.<method>``, scored by ``function`` of the pool
    probabilities alone.

    ``min_passes=2`` for measures that need the n_passes axis (Bayesian and
    committee measures). With ``reads_predictions``, ``function`` gets the
    pool's predictions as sent (in their dtype, logits not yet through the
    softmax) and ``logits=``, and never makes the float64 copy. ``top``
    is the strategy's faster top-k route (``registry.Strategy``).
    """
    if reads_predictions:
        def score(query: Query) -> NDArray[np.float64]:
            return function(query.pool_predictions, logits=query.pool_logits)
    else:
        def score(query: Query) -> NDArray[np.float64]:
            return function(query.pool_probabilities)

    register(
        Strategy(
            family="uncertainty",
            method=method,
            description=description,
            required_inputs=_NEEDS,
            higher_first=higher_first,
            min_passes=min_passes,
            score=score,
            top=top,
        )
    )


register_measure(
    "least_confidence",
    least_confidence,
    "score = 1 - max_c p_c; highest first; ties to the lower pool position.",
    reads_predictions=True,
)
register_measure(
    "margin",
    margin,
    "score = p_(1) - p_(2), the gap between the two largest class "
    "probabilities; smallest first; ties to the lower pool position.",
    higher_first=False,
    reads_predictions=True,
)
register_measure(
    "entropy",
    entropy,
    "score = -sum_c p_c ln p_c (0 ln 0 = 0); highest first; ties to the "
    "lower pool position.",
    reads_predictions=True,
    top=lambda query: entropy_screen.entropy_top_k(
        query.pool_predictions, query.batch_size, logits=query.pool_logits
    ),
)
register_measure(
    "ratio_of_confidence",
    ratio_of_confidence,
    "score = p_(2) / p_(1), the second largest over the largest class "
    "probability; highest first; ties to the lower pool position.",
    reads_predictions=True,
)
