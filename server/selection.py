"""Turn per-sample scores into ranked pool positions, in one shared place."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from alquery.server.registry import Ranking
from alquery.v1 import query_pb2


def top_k(scores: NDArray, batch_size: int, *, higher_first: bool) -> Ranking:
    """Return the ``batch_size`` best pool positions, best first.

    Parameters
    ----------
    scores : ndarray of shape (n_pool,)
        Finite scores; the strategy says which end ranks first.
    batch_size : int
        How many to return, ``1 <= batch_size <= n_pool``.
    higher_first : bool
        True when a higher score ranks first.

    Notes
    -----
    Tie-break: equal scores go to the lower pool position first, so results
    are deterministic; the answer is exactly that of a full stable sort.
    ``np.argpartition`` finds a set of ``batch_size`` best keys in O(n_pool);
    if the cut falls inside a run of equal keys (more keys equal the cut's
    than it kept), the tied samples it kept are replaced by the lowest tied
    positions. Only the chosen ``batch_size`` are then sorted, by key and
    equal keys by position: O(n_pool + k log k) for k = ``batch_size``,
    whatever the ties.
    """
    keys = -scores if higher_first else scores
    if batch_size < len(keys):
        order = _best_in_order(keys, batch_size)
    else:
        order = np.argsort(keys, kind="stable")
    return Ranking(ranked_indices=order.astype(np.int64), scores=scores[order])


def _best_in_order(keys: NDArray, batch_size: int) -> NDArray[np.intp]:
    # The positions of the batch_size smallest keys, smallest first, equal
    # keys by lower position.
    picked = np.argpartition(keys, batch_size - 1)[:batch_size]
    values = keys[picked]
    kth = values.max()
    if np.count_nonzero(keys == kth) == np.count_nonzero(values == kth):
        # No key equal to the cut's was left out (the usual case): order
        # the picked by key, then by position.
        return picked[np.lexsort((picked, values))]
    # The cut fell inside a run of equal keys: keep the lowest tied
    # positions instead of those argpartition happened to keep.
    better = picked[values < kth]
    tied = np.flatnonzero(keys == kth)[: batch_size - len(better)]
    chosen = np.concatenate([better, tied])
    chosen.sort()
    return chosen[np.argsort(keys[chosen], kind="stable")]


def sample(
    scores: NDArray,
    batch_size: int,
    *,
    higher_first: bool,
    mode: int,
    temperature: float,
    rng: np.random.Generator,
) -> Ranking:
    """Draw ``batch_size`` pool positions without replacement, weighted by score.

    The stochastic batch modes of Kirsch et al. (2023). With the utility
    u_i = s_i when higher scores rank first and u_i = -s_i otherwise, and
    T = ``temperature``:

    - ``MODE_SOFTMAX``: w_i = exp(u_i / T).
    - ``MODE_POWER``: w_i = v_i ^ (1 / T), where v_i = s_i when higher ranks
      first and every score is at least 0 (entropy, BALD, ...), and
      v_i = u_i - min_j u_j otherwise, so the worst sample gets weight 0.
    - ``MODE_RANK``: w_i = r_i ^ (-1 / T), where r_i is the 1-based position
      of sample i in the top-k order (ties to the lower position).

    Returns the draws in draw order with their strategy scores.

    Notes
    -----
    Sampling without replacement uses the Gumbel-top-k trick: the batch is
    the top ``batch_size`` of log w_i + G_i with G_i ~ Gumbel(0, 1) drawn
    from ``rng``, which equals drawing one sample at a time with probability
    proportional to w among those not yet drawn. Weight-0 samples come last,
    lower position first. Reproducible from the seed that made ``rng``. The
    draw is O(n_pool) plus O(n_pool log n_pool) for the rank mode.

    References
    ----------
    Kirsch, Farquhar, Atighehchian, Jesson, Branchaud-Charron & Gal,
    "Stochastic Batch Acquisition: A Simple Baseline for Deep Active
    Learning", TMLR 2023.
    """
    modes = query_pb2.Selection
    utility = np.asarray(scores if higher_first else -scores, dtype=np.float64)
    with np.errstate(divide="ignore"):
        if mode == modes.MODE_SOFTMAX:
            log_weight = utility / temperature
        elif mode == modes.MODE_POWER:
            base = utility if higher_first and utility.min() >= 0 else (
                utility - utility.min()
            )
            log_weight = np.log(base) / temperature
        elif mode == modes.MODE_RANK:
            order = np.argsort(-utility, kind="stable")
            ranks = np.empty(len(utility))
            ranks[order] = np.arange(1, len(utility) + 1)
            log_weight = -np.log(ranks) / temperature
        else:
            raise ValueError(f"not a sampling mode: {mode}")
    keys = log_weight + rng.gumbel(size=len(utility))
    drawn = top_k(keys, batch_size, higher_first=True).ranked_indices
    return Ranking(ranked_indices=drawn, scores=scores[drawn])
