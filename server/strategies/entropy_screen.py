"""Top-k entropy that scores exactly only the samples that can make the batch.

``entropy_top_k`` screens the pool in two steps, each with a proven bound
on the exact score: an upper bound read from the float32 bit patterns
without a log (``entropy_pattern``), then, for the samples that pass it, a
float32 entropy (``screen_sum``, ``screen_bound``). The cut both are held
against is the exact score of the batch_size-th best sample of a probe,
the samples the first bound rates highest. The samples left are scored
exactly, the way ``uncertainty.entropy`` scores every sample. The batch and
its scores are bit for bit those of ``selection.top_k`` on the exact
scores of the whole pool: every sample of the exact top-k survives both
screens (its exact score is at least the cut), and the survivors keep their
pool order, so the tie-break is the same.

Only two-axis float32 probabilities are screened: they are read as sent.
Logits, passes and float64 probabilities need a float64 pass over every
value before any float32 screen could start, so they take the exact path.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from alquery.server.chunks import CHUNK_BYTES
from alquery.server.registry import Ranking
from alquery.server.selection import top_k
from alquery.server.strategies import uncertainty_chunks as chunks
from alquery.server.strategies.entropy_pattern import pattern_bound, pattern_sum
from alquery.server.strategies.information import grid_offset

LOG_ERROR = 16 * 2.0**-24
"""Bound on the relative error of numpy's float32 log on [2^-126, 1].

numpy's own accuracy tests (umath-validation-set-log.csv) allow its float32
log 4 ulp, at most 9 x 2^-24 relative with the reference's rounding; an
exhaustive check of every float32 in the range against the float64 log
measured 4.58 x 2^-24 here (numpy 2.4, AVX-512). The bound allows 16 x
2^-24. The server checks a sample of the range once, the first time the
float32 screen is needed (``log_is_accurate``), and skips that screen,
with a warning, where the log misses the bound;
tests/server/strategies/test_entropy_screen.py checks every value under
the ``large`` mark."""

MAX_SCREEN_CLASSES = 2**16
"""Wider rows are scored exactly: the float32 sums' error bounds grow with
n_classes 2^-24 and would let most of the pool through."""

MAX_SURVIVOR_SHARE = 0.25
"""When more of the pool than this survives the screens (many samples with
close entropies, e.g. all rows equal), or the batch is larger, the whole
pool is scored exactly instead: that is then cheaper than gathering the
survivors."""

SAMPLE_STRIDE = 16
"""When the batch is at most 1/256 of the pool, the probe's selection is
first narrowed by the batch_size-th largest of every 16th bound, so that
only the bounds above it go through the selection. When the pattern bound
keeps more than ``MAX_SURVIVOR_SHARE``, every 16th of those goes through
the float32 screen first, to tell whether the rest is worth screening."""

PATTERN_CHUNK_SCALE = 2
"""The pattern pass reads chunks of twice ``chunk_bytes``: its kernel is so
light that per-chunk overhead shows; at 1,000,000 x 1,000 on 2 loaded
cores it took 0.23 s in 2 MiB chunks, 0.29 s in 1 MiB and 0.24 s in 4 MiB.
Its buffers (one float32 copy of a chunk) stay within the scratch that
``footprints`` counts for 1 MiB chunks."""

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

    Checked once per process (about 20 ms and 40 MB, freed after): the
    server calls it at start (``app.start``), so that no request pays for
    it. When it fails, a warning is logged and the float32 screen is
    skipped from then on: the samples that pass the pattern bound are all
    scored exactly.
    A sample cannot prove the bound: the exhaustive check is a test.
    """
    error = float32_log_error(log_sample(), log)
    if error <= LOG_ERROR:
        return True
    logger.warning(
        "float32 log error %.3g x 2^-24 exceeds the screen's bound of %.0f x "
        "2^-24 on this numpy/CPU; entropy skips it, and every sample that "
        "passes the pattern bound is scored exactly",
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


@dataclasses.dataclass(frozen=True)
class Survivors:
    """The samples that can make the batch, and their exact entropies.

    ``positions`` are pool positions, ascending; ``scores`` their
    ``uncertainty.entropy`` scores. ``after_pattern`` counts the samples
    that passed the pattern bound (the probe included), before the float32
    log screen.
    """

    positions: NDArray[np.intp]
    scores: NDArray[np.float64]
    after_pattern: int


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
        Working bytes per chunk of the screens and of the exact scoring.

    Returns
    -------
    Ranking
        Pool positions and their exact entropies, equal to
        ``selection.top_k(uncertainty.entropy(values, logits=logits),
        batch_size, higher_first=True)``.

    Notes
    -----
    score_i = -sum_c p_ic ln p_ic, natural log, 0 ln 0 = 0, highest first;
    ties go to the lower pool position. Every returned score is
    ``uncertainty.entropy``'s, bit for bit, and so is the batch: ``screen``
    drops only samples it proves score below the batch. Input that is not
    ``screenable``, or a pool that ``screen`` cannot narrow to
    ``MAX_SURVIVOR_SHARE``, has every sample scored exactly.

    Cost: one light pass over every value (the pattern bound), then work in
    the samples that pass it. Measured at 1,000,000 x 1,000 (batch 100,
    ``bench/uncertainty_speed.py``, 2 shared cores, 2026-12-05): 0.222 s
    and 21 MiB extra, against 0.383 s with the float32 screen alone; on
    that pool (softmax of N(0, 3^2) logits) a few hundred samples pass the
    pattern bound.
    """
    survivors = None
    if screenable(values, logits=logits):
        survivors = screen(values, batch_size, chunk_bytes=chunk_bytes)
    if survivors is None:
        positions = np.arange(len(values))
        exact = chunks.scores_by_chunk(
            values, chunks.entropy_sum, logits=logits, chunk_bytes=chunk_bytes
        )
        # 0.0 - x rather than -x: a certain sample scores 0.0, not -0.0.
        exact = np.subtract(0.0, exact, out=exact)
    else:
        positions, exact = survivors.positions, survivors.scores
    ranking = top_k(exact, batch_size, higher_first=True)
    return Ranking(
        ranked_indices=positions[ranking.ranked_indices].astype(np.int64),
        scores=ranking.scores,
    )


def screen(
    probabilities: NDArray, batch_size: int, *, chunk_bytes: int = CHUNK_BYTES
) -> Survivors | None:
    """Return the samples that can make the batch, scored exactly.

    Parameters
    ----------
    probabilities : ndarray of shape (n_pool, n_classes)
        ``screenable`` probabilities.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    chunk_bytes : int, default=CHUNK_BYTES
        Working bytes per chunk.

    Returns
    -------
    Survivors or None
        None when more than ``MAX_SURVIVOR_SHARE`` of the pool would be
        scored exactly.

    Notes
    -----
    1. Every sample gets the pattern bound U_i >= its exact score
       (``entropy_pattern``; one pass without a log).
    2. The probe, the batch_size samples with the largest U_i (any
       batch_size of a crowd of equal bounds at the top), is scored
       exactly; the lowest of those scores, v, is reached by at least
       batch_size samples, so no sample scoring below v can be chosen,
       not even by a tie. Any probe gives a valid v; a good one a high v.
    3. A sample other than the probe goes on when U_i >= v, and then when
       its float32 entropy's bound h_i (1 + c) + a >= v (``screen_bound``;
       skipped when ``log_is_accurate`` fails).
    4. The probe and the samples left are scored exactly, in pool order,
       so ``selection.top_k`` breaks ties among them as among all.

    Every sample of the exact top-k has a score of at least v and passes
    both bounds, so the batch and its scores are those of the full exact
    path. The pattern bound is at most 0.06 nats loose, so on pools whose
    entropies spread wider than that near the cut few samples pass it.
    """
    n_pool, n_classes = probabilities.shape
    most = MAX_SURVIVOR_SHARE * n_pool
    if batch_size > most:
        return None
    bounds = chunks.scores_by_chunk(
        probabilities, pattern_sum, chunk_bytes=PATTERN_CHUNK_SCALE * chunk_bytes
    )
    bounds = np.negative(bounds, out=bounds)

    probe = np.sort(_largest(bounds, batch_size, most))
    probe_scores = _exact(probabilities, probe, chunk_bytes)
    cut = float(probe_scores.min())

    kept = bounds >= _lowest_kept(cut, *pattern_bound(n_classes))
    kept[probe] = False
    rest = np.flatnonzero(kept)
    after_pattern = len(rest) + batch_size
    if len(rest) and log_is_accurate():
        rest = _log_screen(probabilities, rest, cut, most - batch_size, chunk_bytes)
    logger.debug(
        "entropy screen: n_pool=%d pattern_kept=%d log_kept=%s",
        n_pool, after_pattern, "many" if rest is None else len(rest) + batch_size,
    )
    if rest is None or len(rest) + batch_size > most:
        return None

    positions = np.concatenate([probe, rest])
    scores = np.concatenate([probe_scores, _exact(probabilities, rest, chunk_bytes)])
    order = np.argsort(positions, kind="stable")
    return Survivors(positions[order], scores[order], after_pattern)


def _largest(bounds: NDArray[np.float64], k: int, most: float) -> NDArray[np.intp]:
    # Positions of k of the largest bounds. On a large pool, a cut from
    # every SAMPLE_STRIDE-th bound first narrows the selection: at least k
    # bounds of the pool reach the sample's k-th largest. When more than
    # ``most`` do, the top is a crowd of near-equal bounds (selecting in it
    # is slow) and its first k serve: any k samples give a valid cut.
    sample = bounds[::SAMPLE_STRIDE]
    if len(sample) < SAMPLE_STRIDE * k:
        return np.argpartition(bounds, len(bounds) - k)[len(bounds) - k :]
    candidates = np.flatnonzero(bounds >= _kth_largest(sample, k))
    if len(candidates) > most:
        return candidates[:k]
    values = bounds[candidates]
    return candidates[np.argpartition(values, len(values) - k)[len(values) - k :]]


def _log_screen(
    probabilities: NDArray,
    rest: NDArray[np.intp],
    cut: float,
    most: float,
    chunk_bytes: int,
) -> NDArray[np.intp] | None:
    # The positions of ``rest`` whose float32 entropy's bound reaches cut.
    # None when more than ``most`` would: when ``rest`` is larger than that,
    # every SAMPLE_STRIDE-th of it is screened first, and the screen stops
    # there if the share it keeps would keep more than ``most``.
    if len(rest) > most:
        sample = rest[::SAMPLE_STRIDE]
        share = len(_log_kept(probabilities, sample, cut, chunk_bytes)) / len(sample)
        if share * len(rest) > most:
            return None
    return _log_kept(probabilities, rest, cut, chunk_bytes)


def _log_kept(
    probabilities: NDArray, rest: NDArray[np.intp], cut: float, chunk_bytes: int
) -> NDArray[np.intp]:
    # The positions of ``rest`` whose float32 entropy's bound reaches cut.
    if len(rest) > len(probabilities) // 2:
        sums = chunks.scores_by_chunk(
            probabilities, screen_sum, chunk_bytes=chunk_bytes
        )[rest]
    else:
        sums = chunks.scores_at(
            probabilities, rest, screen_sum, chunk_bytes=chunk_bytes
        )
    c, a = screen_bound(probabilities.shape[1])
    return rest[np.negative(sums, out=sums) >= _lowest_kept(cut, 1.0 + c, a)]


def _kth_largest(values: NDArray[np.float64], k: int) -> float:
    return float(np.partition(values, len(values) - k)[-k])


def _lowest_kept(cut: float, scale: float, offset: float) -> float:
    # A sample whose bound scale h + offset reaches cut is kept: solved for
    # h, and lowered a little more, so float64 rounding here and in scale
    # and offset (a few 2^-53 of the operands, even when they nearly
    # cancel) keeps a sample, never drops one.
    lowest = (cut - offset) / scale
    return lowest - 2.0**-40 * (abs(cut) + offset) / scale - math.ulp(0.0)


def _exact(
    probabilities: NDArray, positions: NDArray[np.intp], chunk_bytes: int
) -> NDArray[np.float64]:
    # uncertainty.entropy's scores of the rows at ``positions``.
    sums = chunks.scores_at(
        probabilities, positions, chunks.entropy_sum, chunk_bytes=chunk_bytes
    )
    # 0.0 - x rather than -x: a certain sample scores 0.0, not -0.0.
    return np.subtract(0.0, sums, out=sums)
