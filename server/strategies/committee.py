"""Query-by-committee strategies: rank pool samples by how much members disagree.

Each takes the pool's probabilities of shape (n_pool, n_passes, n_classes),
where the n_passes axis holds the committee members (an ensemble, or any
set of models the client trained); at least 2 members are needed. The
consensus is the members' mean distribution, p_bar_ic = (1 / T) sum_t p_itc.
"""

from __future__ import annotations

import numpy as np
from alquery.server.strategies.information import xlogy
from alquery.server.strategies.uncertainty import entropy, register_measure
from numpy.typing import NDArray


def hard_votes(probabilities: NDArray) -> NDArray[np.float64]:
    """Return each sample's share of member votes per class.

    v_ic = (1 / T) * #{t : argmax_c' p_itc' = c}, shape (n_pool, n_classes).
    A member whose own top classes tie votes for the lowest class index
    among them (``argmax`` returns the first maximum), as a scikit-learn
    ``predict`` does.
    """
    n_pool, n_members, n_classes = probabilities.shape
    votes = probabilities.argmax(axis=2)
    flat = votes + n_classes * np.arange(n_pool)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n_pool * n_classes)
    return counts.reshape(n_pool, n_classes) / n_members


def vote_entropy(probabilities: NDArray) -> NDArray[np.float64]:
    """Vote-entropy scores: the entropy of the members' hard votes.

    score_i = -sum_c v_ic ln v_ic, where v_ic is the share of members whose
    most probable class for sample i is c, natural log, 0 ln 0 = 0; the
    highest score ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, n_passes, n_classes)
        Checked probabilities, one row per member; n_passes >= 2.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, ln min(n_passes, n_classes)].

    Notes
    -----
    A member's tie between its own top classes is a vote for the lowest
    class index among them, as in modAL (its ``Committee.vote`` calls each
    learner's ``predict``) and scikit-activeml (``QueryByCommittee`` with
    ``method="vote_entropy"``); both use the natural log too, so their
    scores equal ours. Score ties go to the lower pool position.
    O(n_pool * n_passes * n_classes).

    References
    ----------
    Dagan & Engelson, "Committee-based sampling for training probabilistic
    classifiers", ICML 1995.
    """
    return entropy(hard_votes(probabilities))


def consensus_entropy(probabilities: NDArray) -> NDArray[np.float64]:
    """Consensus-entropy scores: the entropy of the members' mean distribution.

    score_i = -sum_c p_bar_ic ln p_bar_ic, natural log, 0 ln 0 = 0; the
    highest score ranks first. The same number as ``uncertainty.entropy`` on
    the same three-axis input; registered under the committee's name too so
    that clients find it with the other committee measures.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, n_passes, n_classes)
        Checked probabilities, one row per member; n_passes >= 2.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, ln n_classes].

    Notes
    -----
    No epsilon. Ties go to the lower pool position. O(n_pool * n_passes *
    n_classes). modAL's ``consensus_entropy`` computes the same (scipy's
    entropy, natural log).

    References
    ----------
    Settles, "Active Learning Literature Survey", 2009, section 3.2.
    """
    return entropy(probabilities)


def member_divergences(probabilities: NDArray) -> NDArray[np.float64]:
    """Return KL(p_t || p_bar) for every sample and member, natural log.

    Shape (n_pool, n_passes). KL(p || q) = sum_c p_c ln(p_c / q_c) with
    0 ln(0 / q) = 0. Wherever a member gives class c a positive
    probability the consensus does too, so no epsilon is needed. Values a
    rounding error below 0 are clipped to 0.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    consensus = p.mean(axis=1, keepdims=True)
    divergences = (xlogy(p, p) - xlogy(p, consensus)).sum(axis=2)
    return np.maximum(divergences, 0.0)


def kl_mean(probabilities: NDArray) -> NDArray[np.float64]:
    """Mean-KL scores: the mean divergence of the members from the consensus.

    score_i = (1 / T) sum_t KL(p_it || p_bar_i), natural log; the highest
    score ranks first. This equals BALD's mutual information,
    H(p_bar_i) - (1 / T) sum_t H(p_it), computed another way.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, n_passes, n_classes)
        Checked probabilities, one row per member; n_passes >= 2.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values in [0, ln min(n_passes, n_classes)].

    Notes
    -----
    0 ln 0 = 0, no epsilon. scikit-activeml's ``average_kl_divergence`` first
    clips probabilities below at 1e-7 and renormalises each row, so its
    scores differ from ours where a probability is below about 1e-7; on
    other inputs they agree to rounding. Ties go to the lower pool position.
    O(n_pool * n_passes * n_classes).

    References
    ----------
    McCallum & Nigam, "Employing EM and pool-based active learning for text
    classification", ICML 1998.
    """
    return member_divergences(probabilities).mean(axis=1)


def kl_max(probabilities: NDArray) -> NDArray[np.float64]:
    """Max-KL scores: the divergence of the member farthest from the consensus.

    score_i = max_t KL(p_it || p_bar_i), natural log; the highest score
    ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, n_passes, n_classes)
        Checked probabilities, one row per member; n_passes >= 2.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values of at least 0.

    Notes
    -----
    0 ln 0 = 0, no epsilon. modAL's ``KL_max_disagreement`` computes the
    same with scipy's entropy (natural log). Ties go to the lower pool
    position. O(n_pool * n_passes * n_classes).

    References
    ----------
    McCallum & Nigam, "Employing EM and pool-based active learning for text
    classification", ICML 1998.
    """
    return member_divergences(probabilities).max(axis=1)


register_measure(
    "vote_entropy",
    vote_entropy,
    "score = -sum_c v_c ln v_c, v_c the share of committee members (passes) "
    "whose argmax is c (a member's own tie votes for the lower class); "
    "highest first; ties to the lower pool position.",
    min_passes=2,
)
register_measure(
    "consensus_entropy",
    consensus_entropy,
    "score = -sum_c p_c ln p_c of the members' mean distribution; highest "
    "first; ties to the lower pool position.",
    min_passes=2,
)
register_measure(
    "kl_mean",
    kl_mean,
    "score = mean over members t of KL(p_t || mean_t p_t), natural log; "
    "highest first; ties to the lower pool position.",
    min_passes=2,
)
register_measure(
    "kl_max",
    kl_max,
    "score = max over members t of KL(p_t || mean_t p_t), natural log; "
    "highest first; ties to the lower pool position.",
    min_passes=2,
)
