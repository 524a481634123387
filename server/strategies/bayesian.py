"""Bayesian uncertainty strategies: rank pool samples by what the passes disagree on.

Each takes the pool's probabilities of shape (n_pool, n_passes, n_classes),
where the n_passes axis holds stochastic forward passes (MC dropout) or
samples of the model's parameters w_1..w_T; at least 2 are needed. Natural
log throughout, 0 ln 0 = 0 (``information.xlogy``). BatchBALD and EPIG,
which work with joint predictive distributions, are in ``bayesian_joint``.
"""

from __future__ import annotations

import numpy as np
from alquery.server.strategies.committee import hard_votes
from alquery.server.strategies.information import expected_entropy
from alquery.server.strategies.uncertainty import entropy, register_measure
from numpy.typing import NDArray


def bald(probabilities: NDArray) -> NDArray[np.float64]:
    """BALD scores: the mutual information between the label and the model.

    score_i = H(p_bar_i) - (1 / T) sum_t H(p_it), where p_it is pass t's
    distribution for sample i, p_bar_i = (1 / T) sum_t p_it and
    H(p) = -sum_c p_c ln p_c; the highest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, n_passes, n_classes)
        Checked probabilities; n_passes >= 2.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, ln min(n_passes, n_classes)].

    Notes
    -----
    Natural log, 0 ln 0 = 0, no epsilon. The difference can fall a rounding
    error below 0 where every pass agrees; such scores are clipped to 0.
    small-text's ``_bald`` uses log base 2 and adds 1e-8 inside each log,
    so its scores are ours / ln 2 up to about 1e-8; scikit-activeml's
    ``BALD`` clips probabilities below at 1e-7 first. Ties go to the lower
    pool position. O(n_pool * n_passes * n_classes).

    References
    ----------
    Houlsby, Huszar, Ghahramani & Lengyel, "Bayesian Active Learning for
    Classification and Preference Learning", arXiv:1112.5745, 2011; Gal,
    Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data",
    ICML 2017.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    return np.maximum(entropy(p) - expected_entropy(p), 0.0)


def variation_ratios(probabilities: NDArray) -> NDArray[np.float64]:
    """Variation-ratio scores: the share of passes that outvote the mode.

    score_i = 1 - f_i / T, where each pass votes for its most probable class
    and f_i counts the votes of the modal class (the class with the most
    votes); the highest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, n_passes, n_classes)
        Checked probabilities; n_passes >= 2.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, 1 - 1 / min(n_passes, n_classes)], in steps of 1 / T.

    Notes
    -----
    A pass whose own top classes tie votes for the lowest class index among
    them. When two classes share the most votes, the modal class is the
    lower class index; the score only needs the count, which they share,
    so this choice never changes a score. Scores take few values, so ties
    between samples are common; they go to the lower pool position.
    scikit-activeml's ``variation_ratios`` on the passes' argmax votes
    gives the same numbers. O(n_pool * n_passes * n_classes).

    References
    ----------
    Freeman, "Elementary Applied Statistics", 1965; Gal, Islam & Ghahramani,
    "Deep Bayesian Active Learning with Image Data", ICML 2017.
    """
    return 1.0 - hard_votes(probabilities).max(axis=1)


def mean_std(probabilities: NDArray) -> NDArray[np.float64]:
    """Mean-STD scores: the spread of the passes, averaged over classes.

    score_i = (1 / C) sum_c sqrt((1 / T) sum_t (p_itc - p_bar_ic)^2), the
    population standard deviation over passes (divisor T, not T - 1) of
    each class probability, averaged over the C classes; the highest score
    ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, n_passes, n_classes)
        Checked probabilities; n_passes >= 2.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, 1 / 2].

    Notes
    -----
    The population form is the one of Kampffmeyer et al. (sqrt(E[p^2] -
    E[p]^2)) and of numpy's and scikit-activeml's default ``np.std``. None
    of modAL, scikit-activeml and small-text offers this measure for
    classifiers, so it is checked against hand-computed answers only. Ties
    go to the lower pool position. O(n_pool * n_passes * n_classes).

    References
    ----------
    Kampffmeyer, Salberg & Jenssen, "Semantic Segmentation of Small Objects
    and Modeling of Uncertainty in Urban Remote Sensing Images Using Deep
    Convolutional Neural Networks", CVPR Workshops 2016.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    return p.std(axis=1).mean(axis=1)


register_measure(
    "bald",
    bald,
    "score = H(mean_t p_t) - mean_t H(p_t) over the passes, natural log, "
    "0 ln 0 = 0; highest first; ties to the lower pool position.",
    min_passes=2,
)
register_measure(
    "variation_ratios",
    variation_ratios,
    "score = 1 - (share of passes whose argmax is the modal class); highest "
    "first; ties to the lower pool position.",
    min_passes=2,
)
register_measure(
    "mean_std",
    mean_std,
    "score = mean over classes of the population standard deviation of p_c "
    "over the passes; highest first; ties to the lower pool position.",
    min_passes=2,
)
