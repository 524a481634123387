"""Top-k entropy that scores exactly only the samples that can make the batch.

``entropy_top_k`` screens the pool with a float32 entropy of every sample,
whose error against the exact score has a proven bound
(``screen_bound``), drops the samples whose upper bound cannot reach the
batch_size-th best lower bound, and scores the rest exactly, the way
``uncertainty.entropy`` scores every sample. The batch and its scores are
bit for bit those of ``selection.top_k`` on the exact scores of the whole
pool: every sample of the exact top-k survives the screen (its exact score
is at least the cut), and the survivors keep their pool order, so the
tie-break is the same.

Only two-axis float32 probabilities are screened: they are read as sent.
Logits, passes and float64 probabilities need a float64 pass over every
value before any float32 screen could start, so they take the exact path.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from alquery.server.chunks import CHUNK_BYTES, chunk_rows
from alquery.server.registry import Ranking
from alquery.server.selection import top_k
from alquery.server.strategies import uncertainty_chunks as chunks
from alquery.server.strategies.information import grid_offset

LOG_ERROR = 16 * 2.0**-24
"""Bound on the relative error of numpy's float32 log on [2^-126, 1].

numpy's own accuracy tests (umath-validation-set-log.csv) allow its float32
log 4 ulp, at most 9 x 2^-24 relative with the reference's rounding; an
exhaustive check of every float32 in the range against the float64 log
measured 4.58 x 2^-24 here (numpy 2.4, AVX-512). The bound allows 16 x
2^-24. The server checks a sample of the range once, on its first
screenable request (``log_is_accurate``), and scores exactly, with a
warning, where the log misses the bound;
tests/server/strategies/test_entropy_screen.py checks every value under
the ``large`` mark."""

MAX_SCREEN_CLASSES = 2**16
"""Wider rows are scored exactly: the float32 sum's error bound grows with
n_classes 2^-24 and would let most of the pool through."""

MAX_SURVIVOR_SHARE = 0.25
"""When more of the pool than this survives the screen (many samples with
close entropies, e.g. all rows equal), the whole pool is scored exactly
instead: that is then cheaper than gathering the survivors."""

SAMPLE_STRIDE = 16
"""When the batch is at most 1/256 of the pool, the cut is first placed
from every 16th screened sample, so that only the samples above it go
through the exact selection of the cut."""

_TINY32 = np.float32(np.finfo(np.float32).tiny)

logger = logging.getLogger("alquery.strategies.entropy")


def float32_log_error(
    bits: NDArray[np.uint32], log: Callable[[NDArray], NDArray] = np.log
) -> float:
    """Return the largest relative error of ``log`` on the float32 values
    whose bit patterns are ``bits`` (positive, at most 1), against numpy's
    float64 log; infinite when log(1) is not exactly 0, which the bound's
    terms of p = 1 rely on."""
    x = bits.view(np.float32)
    reference = np.log(x.astype(np.float64))
    error = np.abs(log(x).astype(np.float64) - reference)
    if np.any((reference == 0) & (error != 0)):
        return math.inf
    return float(np.max(error / np.where(reference == 0, 1.0, np.abs(reference))))


def log_sample() -> NDArray[np.uint32]:
    """About 1.1 million float32 bit patterns: every 1,021st in [2^-126, 1]
    and the last 2^16 below 1 (where the log is near 0)."""
    return np.concatenate(
        [
            np.arange(0x00800000, 0x3F800001, 1021, dtype=np.uint32),
            np.arange(0x3F800000 - 2**16, 0x3F800001, dtype=np.uint32),
        ]
    )


@functools.cache
def log_is_accurate(log: Callable[[NDArray], NDArray] = np.log) -> bool:
    """Whether ``log`` stays within ``LOG_ERROR`` on ``log_sample()``.

    Checked once per process (about 20 ms); when it fails, a warning is
    logged and entropy is scored exactly for every sample from then on.
    A sample cannot prove the bound: the exhaustive check is a test.
    """
    error = float32_log_error(log_sample(), log)
    if error <= LOG_ERROR:
        return True
    logger.warning(
        "float32 log error %.3g x 2^-24 exceeds the screen's bound of %.0f x "
        "2^-24 on this numpy/CPU; entropy is scored exactly for every sample",
        error / 2.0**-24, LOG_ERROR / 2.0**-24,
    )
    return False


def screenable(values: NDArray, *, logits: bool = False) -> bool:
    """Whether ``entropy_top_k`` screens ``values`` (else it scores all)."""
    return (
        values.ndim == 2
        and values.dtype == np.float32
        and not logits
        and values.shape[1] <= MAX_SCREEN_CLASSES
        and log_is_accurate()
    )


def screen_bound(n_classes: int) -> tuple[float, float]:
    """Return (c, a): |H_exact - H_screen| <= c H_screen + a for every row.

    H_screen = -fl32(sum_c fl32(x_c fl32(ln fl32(x_c + t)))), t = 2^-126
    (float32's smallest normal number), is the float32 entropy of a row x
    of ``n_classes`` float32 values in [0, 1]; H_exact is
    ``uncertainty.entropy``'s float64 score of the same row.

    Notes
    -----
    With u = 2^-24, L = ``LOG_ERROR``, H the real entropy of x:

    - x_c + t rounds to x_c when x_c >= 2^-101, so such a term is
      x_c ln x_c (1 + e), |e| <= e1 = L + u + L u (the log, then the
      product, which stays normal); x_c = 0 and x_c = 1 give exactly 0.
      Below 2^-101, x_c + t lies in [x_c, x_c + 2 t] and the term is within
      e1 |x_c ln x_c| + 3 t of x_c ln x_c; a subnormal x_c gives a term
      within 191 t, also when subnormals are flushed to zero. So every term
      is within e1 |x_c ln x_c| + A, A = 2^-118 (256 t).
    - the terms have one sign, so adding them in any order, fused or not,
      is within g |sum| of their sum, g = (n + 1) u / (1 - (n + 1) u).

    So |H_screen - H| <= c0 H + a0, c0 = g (1 + e1) + e1, a0 = (1 + g) n A,
    and H <= (H_screen + a0) / (1 - c0), which gives the bound with
    c = 2 c0 and a = 2 a0 while c0 <= 1/2. The exact score is within
    n 2^-53 M of H from its snapping (``information.snap_to_grid``), plus
    a relative 2^-46, generous for the float64 log and products; both are
    added.
    """
    u = 2.0**-24
    e1 = LOG_ERROR + u + LOG_ERROR * u
    g = (n_classes + 1) * u / (1.0 - (n_classes + 1) * u)
    c0 = g * (1.0 + e1) + e1
    a0 = (1.0 + g) * n_classes * 2.0**-118
    snapping = n_classes * 2.0**-53 * grid_offset(n_classes)
    return 2.0 * c0 + 2.0**-46, 2.0 * a0 + snapping


def screen_sum(p: NDArray, out: NDArray[np.float64], scratch: chunks.Scratch) -> None:
    """Write the float32 sum_c p_ic ln(p_ic + 2^-126) of each row into ``out``.

    ``p`` is float32 in [0, 1]; ``scratch.wide`` receives the terms,
    ``scratch.first`` their float32 sums. Adding 2^-126 keeps the log of a
    zero finite, and is 4 times faster here than np.maximum. The sums go
    through a matrix-vector product with a vector of ones, several times
    faster than numpy's row reductions; ``screen_bound`` holds for any
    order of the additions.
    """
    n = len(p)
    terms, sums = scratch.wide[:n], scratch.first[:n]
    np.add(p, _TINY32, out=terms)
    np.log(terms, out=terms)
    terms *= p
    np.matmul(terms, np.ones(p.shape[1], np.float32), out=sums)
    np.copyto(out, sums)


def entropy_top_k(
    values: NDArray,
    batch_size: int,
    *,
    logits: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
) -> Ranking:
    """Return the ``batch_size`` highest-entropy pool positions, best first.

    Parameters
    ----------
    values : ndarray of shape (n_pool, [n_passes,] n_classes)
        Checked probabilities, or logits when ``logits`` is True.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    logits : bool, default=False
        Whether ``values`` holds logits.
    chunk_bytes : int, default=CHUNK_BYTES
        Working bytes per chunk of the screen and of the exact scoring.

    Returns
    -------
    Ranking
        Pool positions and their exact entropies, equal to
        ``selection.top_k(uncertainty.entropy(values, logits=logits),
        batch_size, higher_first=True)``.

    Notes
    -----
    With h_i the screened entropies, (c, a) = ``screen_bound``, and h_k the
    batch_size-th largest h_i, at least batch_size samples score
    h_k (1 - c) - a or more, so a sample with h_i (1 + c) + a below that
    cannot be chosen, not even by a tie. The screen costs a float32 log and
    a row dot per value, O(n_pool n_classes); the survivors, usually not
    many more than batch_size, are scored exactly. Input that is not
    ``screenable``, or a screen that keeps more than
    ``MAX_SURVIVOR_SHARE`` of the pool, has every sample scored exactly.
    Ties go to the lower pool position.
    """
    survivors = None
    if screenable(values, logits=logits):
        survivors = _screen(values, batch_size, chunk_bytes)
    if survivors is None:
        survivors = np.arange(len(values))
        exact = chunks.scores_by_chunk(
            values, chunks.entropy_sum, logits=logits, chunk_bytes=chunk_bytes
        )
    else:
        exact = _exact_sums(values, survivors, chunk_bytes)
    # 0.0 - x rather than -x, so that a certain sample scores 0.0, not -0.0.
    exact = np.subtract(0.0, exact, out=exact)
    ranking = top_k(exact, batch_size, higher_first=True)
    return Ranking(
        ranked_indices=survivors[ranking.ranked_indices].astype(np.int64),
        scores=ranking.scores,
    )


def _screen(
    probabilities: NDArray, batch_size: int, chunk_bytes: int
) -> NDArray[np.intp] | None:
    # Pool positions, ascending, whose upper bound reaches the cut; None
    # when more than MAX_SURVIVOR_SHARE of the pool would be kept.
    screened = chunks.scores_by_chunk(
        probabilities, screen_sum, chunk_bytes=chunk_bytes
    )
    screened = np.negative(screened, out=screened)
    c, a = screen_bound(probabilities.shape[1])
    most = MAX_SURVIVOR_SHARE * len(screened)
    candidates = np.arange(len(screened))
    sample = screened[::SAMPLE_STRIDE]
    if len(sample) >= SAMPLE_STRIDE * batch_size:
        # The sample's batch_size-th largest is at most the pool's, so every
        # survivor of the pool's cut is above this first, cheaper cut; and
        # when too many are, the pool is too close to call (selecting in
        # a crowd of near-equal values is slow, too).
        candidates = np.flatnonzero(
            screened >= _lowest_survivor(_kth_largest(sample, batch_size), c, a)
        )
        if len(candidates) > most:
            return None
        screened = screened[candidates]
    kth = _kth_largest(screened, batch_size)
    survivors = candidates[screened >= _lowest_survivor(kth, c, a)]
    return None if len(survivors) > most else survivors


def _kth_largest(values: NDArray[np.float64], k: int) -> float:
    return float(np.partition(values, len(values) - k)[-k])


def _lowest_survivor(kth: float, c: float, a: float) -> float:
    # At least k samples score kth (1 - c) - a or more exactly; a sample
    # whose h (1 + c) + a is below that is out. Solved for h, and lowered a
    # little more, so float64 rounding here (a few 2^-53 of kth + 2 a, the
    # operands, even when they nearly cancel) keeps a sample, never drops one.
    lowest = (kth * (1.0 - c) - 2.0 * a) / (1.0 + c)
    return lowest - 2.0**-40 * (abs(kth) + 2.0 * a) - math.ulp(0.0)


def _exact_sums(
    probabilities: NDArray, positions: NDArray[np.intp], chunk_bytes: int
) -> NDArray[np.float64]:
    # entropy_sum of the rows at ``positions``, gathered a chunk at a time.
    rows = chunk_rows(probabilities, chunk_bytes=chunk_bytes)
    scratch = chunks.Scratch.allocate(
        rows, probabilities.shape[1], probabilities.dtype
    )
    sums = np.empty(len(positions))
    for start in range(0, len(positions), rows):
        chosen = positions[start : start + rows]
        block = scratch.wide[: len(chosen)]
        np.take(probabilities, chosen, axis=0, out=block)
        chunks.entropy_sum(block, sums[start : start + len(chosen)], scratch)
    return sums
