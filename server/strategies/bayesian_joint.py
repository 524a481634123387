"""Bayesian strategies over joint predictive distributions: BatchBALD and EPIG.

Both take the pool's probabilities of shape (n_pool, n_passes, n_classes),
the passes being samples of the model's parameters w_1..w_T (at least 2),
and measure mutual information through p(y_a, y_b) = (1 / T) sum_t
p(y_a | w_t) p(y_b | w_t). Natural log throughout, 0 ln 0 = 0
(``information.xlogy``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from alquery.server.edge import Query
from alquery.server.registry import (
    Parameter,
    PoolScores,
    Ranking,
    Strategy,
    register,
)
from alquery.server.strategies.diversity import CHUNK_ELEMENTS, never_cancelled
from alquery.server.strategies.information import expected_entropy, xlogy
from alquery.server.strategies.parameters import int_at_least, int_up_to
from alquery.server.strategies.uncertainty import entropy
from numpy.typing import NDArray

DEFAULT_CONFIGURATIONS = 1000
"""BatchBALD's default bound on label configurations, exact or drawn."""

DEFAULT_TARGET_SAMPLES = 100
"""EPIG's default cap on the number of target samples; the cost grows as
n_pool * max_target_samples * n_classes^2."""

_NEEDS = ("pool_probabilities",)


@dataclasses.dataclass(frozen=True)
class _Configurations:
    """Label configurations of the batch so far, for BatchBALD.

    Row m is a configuration y_1..y_k of the k picks. ``weights[m, t]`` is
    p(y_1..y_k | w_t) divided by exp(``offsets[m]``), the scale that keeps
    the products from underflowing; ``importance[m]`` weighs row m's term in
    the joint entropy. Exact rows enumerate all n_classes^k configurations
    with offset 0 and importance 1. Drawn rows come from the predictive
    mixture, with importance 1 / (M q_m), where q_m is the scaled mixture
    probability of the row, so the sum over rows estimates the expectation.
    """

    weights: NDArray[np.float64]
    offsets: NDArray[np.float64]
    importance: NDArray[np.float64]
    passes: NDArray[np.int64] | None = None
    log_weights: NDArray[np.float64] | None = None

    @classmethod
    def empty(cls, n_passes: int) -> _Configurations:
        return cls(np.ones((1, n_passes)), np.zeros(1), np.ones(1))

    def joint_entropies(self, probabilities: NDArray) -> NDArray[np.float64]:
        """H(y_1..y_k, y_i) for every pool sample i, in bounded chunks."""
        n_pool, n_passes, n_classes = probabilities.shape
        n_rows = len(self.weights)
        chunk = max(1, CHUNK_ELEMENTS // (n_rows * n_classes))
        out = np.empty(n_pool)
        for start in range(0, n_pool, chunk):
            block = probabilities[start : start + chunk]
            size = len(block)
            flat = block.transpose(1, 0, 2).reshape(n_passes, size * n_classes)
            # joint[m, i, c] = (1 / T) sum_t weights[m, t] p(y_i = c | w_t).
            joint = (self.weights @ flat).reshape(n_rows, size, n_classes)
            joint /= n_passes
            terms = xlogy(joint, joint).sum(axis=2)
            terms += self.offsets[:, None] * joint.sum(axis=2)
            out[start : start + size] = 0.0 - self.importance @ terms
        return out

    def extended(
        self,
        picked: NDArray,
        n_configurations: int,
        rng: np.random.Generator,
    ) -> _Configurations:
        """Add the newest pick; ``picked`` holds every pick's (n_passes, n_classes).

        Enumerate exactly while n_classes^k <= ``n_configurations``; past that,
        draw configurations (all picks on the first draw, then only the new
        one, keeping each row's pass).
        """
        n_passes, n_classes = picked[-1].shape
        if self.passes is None and len(self.weights) * n_classes <= n_configurations:
            newest = picked[-1].T  # (n_classes, n_passes)
            weights = self.weights[:, None, :] * newest[None, :, :]
            n_rows = len(weights) * n_classes
            return _Configurations(
                weights.reshape(n_rows, n_passes), np.zeros(n_rows), np.ones(n_rows)
            )
        if self.passes is None:
            per_pass = max(1, n_configurations // n_passes)
            return _Configurations.sampled(picked, per_pass, rng)
        log_weights = self.log_weights.copy()
        log_weights += _log_likelihoods(picked[-1], self.passes, rng)
        return _Configurations.drawn(self.passes, log_weights)

    @classmethod
    def sampled(
        cls, picked: NDArray, per_pass: int, rng: np.random.Generator
    ) -> _Configurations:
        """Draw ``per_pass`` configurations of all picks from each pass."""
        n_passes = picked.shape[1]
        passes = np.repeat(np.arange(n_passes), per_pass)
        log_weights = np.zeros((len(passes), n_passes))
        for distribution in picked:
            log_weights += _log_likelihoods(distribution, passes, rng)
        return cls.drawn(passes, log_weights)

    @classmethod
    def drawn(cls, passes: NDArray, log_weights: NDArray) -> _Configurations:
        offsets = log_weights.max(axis=1)
        weights = np.exp(log_weights - offsets[:, None])
        importance = 1.0 / (len(passes) * weights.mean(axis=1))
        return cls(weights, offsets, importance, passes, log_weights)


def _log_likelihoods(
    distribution: NDArray, passes: NDArray, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Draw a label per row from its pass; return ln p(label | w_t) for all t.

    ``distribution`` has shape (n_passes, n_classes); the result has shape
    (len(passes), n_passes), -inf where a pass gives the label probability 0.
    """
    labels = _draw_labels(distribution, passes, rng)
    with np.errstate(divide="ignore"):
        return np.log(distribution[:, labels].T)


def _draw_labels(
    distribution: NDArray, passes: NDArray, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Draw one label per row from ``distribution[passes[row]]``, by inverse CDF.

    Scaling the uniform draw by each row's total keeps a zero-probability
    class from being drawn even when a row sums to slightly under 1.
    """
    cumulative = np.cumsum(distribution, axis=1)[passes]
    uniform = rng.random(len(passes)) * cumulative[:, -1]
    return (uniform[:, None] >= cumulative).sum(axis=1)


def batchbald(
    probabilities: NDArray,
    batch_size: int,
    n_configurations: int,
    rng: np.random.Generator,
    check: Callable[[], None] = never_cancelled,
) -> Ranking:
    """Greedy BatchBALD: grow the batch with the largest joint mutual information.

    With A the picks so far, step k picks
    i* = argmax_i H(y_A, y_i) - sum_{j in A + i} (1 / T) sum_t H(p_jt),
    the mutual information between the labels of A + i and the model. The
    joint entropy uses p(y_A, y_i) = (1 / T) sum_t prod_j p(y_j | w_t). A
    pick's score is its gain, the batch's mutual information after the pick
    minus before; the first score is that sample's BALD score.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, n_passes, n_classes)
        Checked probabilities; n_passes >= 2.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    n_configurations : int
        The bound M: configurations of A are enumerated exactly while
        n_classes^|A| <= M, and drawn (M // n_passes per pass, at least 1)
        beyond.
    rng : numpy.random.Generator
        Draws the configurations; unused while everything is exact.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order, with their
        gains.

    Notes
    -----
    Tie-break: equal values go to the lower pool position. Natural log,
    0 ln 0 = 0, no epsilon. In the exact regime the gains do not increase
    (the mutual information is submodular); once configurations are drawn
    they carry Monte Carlo error, and are reproducible from the seed.
    Drawing follows Kirsch et al.: a configuration is drawn from one pass,
    and its term is weighed by the inverse of its mixture probability. The
    first draw covers every pick; later steps extend the same rows by the
    newest pick, which keeps them draws from the mixture.

    The same switching rule as batchbald_redux and scikit-activeml
    (``n_MC_samples`` there), so where both enumerate exactly the picks and
    values match; scikit-activeml clips probabilities below at 1e-7 and
    breaks ties at random. Cost per step O(n_pool * M * n_passes *
    n_classes) with M the rows in use, so O(batch_size * n_pool * M *
    n_passes * n_classes) in all: large batches from large pools are slow,
    and no limit refuses them yet. Memory O(M * n_passes) plus a 32 MiB
    block, never n_pool x n_pool.

    References
    ----------
    Kirsch, van Amersfoort & Gal, "BatchBALD: Efficient and Diverse Batch
    Acquisition for Deep Bayesian Active Learning", NeurIPS 2019.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    conditional = expected_entropy(p)
    configurations = _Configurations.empty(p.shape[1])
    available = np.ones(len(p), dtype=bool)
    picks = np.empty(batch_size, dtype=np.int64)
    scores = np.empty(batch_size)
    batch_value, batch_conditional = 0.0, 0.0

    for step in range(batch_size):
        check()
        values = configurations.joint_entropies(p) - conditional - batch_conditional
        values[~available] = -np.inf
        pick = int(np.argmax(values))
        picks[step], scores[step] = pick, values[pick] - batch_value
        batch_value = values[pick]
        batch_conditional += conditional[pick]
        available[pick] = False
        if step + 1 < batch_size:
            configurations = configurations.extended(
                p[picks[: step + 1]], n_configurations, rng
            )
    return Ranking(ranked_indices=picks, scores=scores)


def epig(
    probabilities: NDArray,
    target_probabilities: NDArray | None,
    max_target_samples: int,
    rng: np.random.Generator,
    check: Callable[[], None] = never_cancelled,
) -> NDArray[np.float64]:
    """EPIG scores: expected information gained about the target's labels.

    score_i = (1 / S) sum_s I(y_i; y_s), over target samples s, where
    I(y_i; y_s) = H(y_i) + H(y_s) - H(y_i, y_s) and the joint predictive is
    p(y_i, y_s) = (1 / T) sum_t p(y_i | w_t) p(y_s | w_t); the highest score
    ranks first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, n_passes, n_classes)
        Checked pool probabilities; n_passes >= 2.
    target_probabilities : ndarray of shape (n_target, n_passes, n_classes) or None
        The target set, with the pool's passes; None uses the pool itself.
    max_target_samples : int
        S at most; a larger target set is subsampled without replacement.
    rng : numpy.random.Generator
        Draws that subsample; unused when every target sample is kept.

    Returns
    -------
    scores : ndarray of shape (n_pool,), float64
        Values of at least 0 (rounding below 0 is clipped).

    Notes
    -----
    Natural log, 0 ln 0 = 0, no epsilon. The pool is processed in chunks so
    that a joint block holds at most 32 MiB; cost O(n_pool * S * n_passes *
    n_classes^2). When the pool is the target, a pool sample may be among
    the targets, as in the paper's pool-as-target setting. Ties go to the
    lower pool position. baal's ``EPIG`` computes the same formula but needs
    torch, which alquery does not install, so it was not compared.

    References
    ----------
    Bickford Smith, Kirsch, Farquhar, Gal, Foster & Rainforth, "Prediction-
    Oriented Bayesian Active Learning", AISTATS 2023.
    """
    pool = np.asarray(probabilities, dtype=np.float64)
    target = pool if target_probabilities is None else target_probabilities
    if len(target) > max_target_samples:
        rows = rng.choice(len(target), size=max_target_samples, replace=False)
        target = target[np.sort(rows)]
    target = np.asarray(target, dtype=np.float64)
    n_target, n_passes, n_classes = target.shape

    # flat_target[t, s * C + c] = p(y_s = c | w_t).
    flat_target = target.transpose(1, 0, 2).reshape(n_passes, n_target * n_classes)
    joint_entropy = np.empty(len(pool))
    chunk = max(1, CHUNK_ELEMENTS // (n_target * n_classes * n_classes))
    for start in range(0, len(pool), chunk):
        check()
        block = pool[start : start + chunk]
        size = len(block)
        left = block.transpose(0, 2, 1).reshape(size * n_classes, n_passes)
        joint = (left @ flat_target) / n_passes
        joint_entropy[start : start + size] = 0.0 - xlogy(joint, joint).reshape(
            size, -1
        ).sum(axis=1)
    joint_entropy /= n_target

    scores = entropy(pool) + entropy(target).mean() - joint_entropy
    return np.maximum(scores, 0.0)


def _configurations_limit(query: Query) -> tuple[int, str]:
    # The exact enumeration's weights hold n_configurations x n_passes values.
    limit = max(1, CHUNK_ELEMENTS // query.pool_probabilities.shape[1])
    return limit, f"{CHUNK_ELEMENTS} // n_passes = {limit}"


def _default_configurations(query: Query) -> int:
    return min(DEFAULT_CONFIGURATIONS, _configurations_limit(query)[0])


def _epig_scores(query: Query) -> PoolScores:
    """EPIG's scores, with a warning when the target set was subsampled."""
    limit = query.params["max_target_samples"]
    target = query.target_probabilities
    scores = epig(
        query.pool_probabilities,
        target,
        limit,
        query.random_generator(),
        check=query.check_cancelled,
    )
    n_target = query.n_pool if target is None else len(target)
    if n_target <= limit:
        return PoolScores(scores)
    where = "target.probabilities" if target is not None else "the pool (as target)"
    return PoolScores(
        scores,
        warnings=(
            f"uncertainty.max_target_samples={limit}: EPIG averaged over a "
            f"seeded random subset of {limit} of the {n_target} samples in "
            f"{where}",
        ),
    )


register(
    Strategy(
        family="uncertainty",
        method="batchbald",
        description=(
            "Greedy BatchBALD: each step adds the pool sample that maximises the "
            "mutual information between the batch's joint labels and the model "
            "(exact while n_classes^k <= n_configurations, drawn beyond); score "
            "= that step's gain; ties to the lower pool position."
        ),
        required_inputs=_NEEDS,
        higher_first=True,
        min_passes=2,
        parameters=(
            Parameter(
                name="n_configurations",
                type="int64",
                default=f"min({DEFAULT_CONFIGURATIONS}, {CHUNK_ELEMENTS} // n_passes)",
                description=(
                    "Label configurations enumerated exactly, or drawn once "
                    "n_classes^k exceeds it."
                ),
                resolve=int_up_to(
                    "uncertainty.n_configurations",
                    _default_configurations,
                    _configurations_limit,
                ),
            ),
        ),
        pick=lambda query: batchbald(
            query.pool_probabilities,
            query.batch_size,
            query.params["n_configurations"],
            query.random_generator(),
            check=query.check_cancelled,
        ),
    )
)
register(
    Strategy(
        family="uncertainty",
        method="epig",
        description=(
            "score = mean over target samples s of the mutual information "
            "I(y_i; y_s) under the passes, natural log; the target set is "
            "target.probabilities or the pool; highest first; ties to the lower "
            "pool position."
        ),
        required_inputs=_NEEDS,
        higher_first=True,
        min_passes=2,
        parameters=(
            Parameter(
                name="max_target_samples",
                type="int64",
                default=str(DEFAULT_TARGET_SAMPLES),
                description=(
                    "Target samples used at most; a larger target set is "
                    "subsampled without replacement, seeded."
                ),
                resolve=int_at_least(
                    "uncertainty.max_target_samples", DEFAULT_TARGET_SAMPLES
                ),
            ),
        ),
        score=_epig_scores,
    )
)
