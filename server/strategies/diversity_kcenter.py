"""Greedy k-center (core-set) selection: exact, or on a random projection."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from alquery.server.blas_threads import one_blas_thread
from alquery.server.registry import Parameter, Ranking, Strategy, register
from alquery.server.strategies.diversity import CHUNK_ELEMENTS, never_cancelled
from alquery.server.strategies.kcenter_cover import (
    WORKERS,
    LazyCover,
    pool_shift,
    shifted,
)
from alquery.server.strategies.parameters import int_at_least

if TYPE_CHECKING:
    from alquery.server.edge import Query


THREADED_VALUES = 1 << 20
"""Pools with fewer values (n_pool x n_features) run on the calling thread,
without worker threads or a BLAS limit."""


def kcenter_greedy(
    embeddings: NDArray,
    batch_size: int,
    labeled_embeddings: NDArray | None = None,
    check: Callable[[], None] = never_cancelled,
) -> Ranking:
    """Greedy k-center (core-set) selection.

    Each step picks the unselected pool sample farthest from its nearest
    center: i* = argmax_i min_{c in C} ||x_i - c||, then adds x_i* to C. C
    starts as the labeled embeddings. The score of a pick is that distance
    (Euclidean) at the moment it was picked, so scores do not increase.

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        Checked, finite pool embeddings.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    labeled_embeddings : ndarray of shape (n_labeled, n_features), optional
        The initial centers.
    check : callable, optional
        Runs before each pick and may raise to stop the work.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order and their scores.

    Notes
    -----
    Tie-break: among equal distances, the lower pool position. A selected
    sample is never picked again, even when duplicates leave every remaining
    distance at 0.

    With no labeled set, the first pick is the pool sample nearest the pool
    mean (ties to the lower position), and its score is its distance to that
    mean; the greedy steps follow from there.

    Distances: every vector is shifted by the pool mean (distances do not
    change), then (-2 x.c + ||x||^2) + ||c||^2 in float64, clipped at 0,
    with every dot product and squared norm summed in one fixed order
    (``kcenter_native.exact_distances``: eight running partial sums, a
    fixed tree, the tail; no fused multiply-add), so the bits are the same
    on every machine, compiled or not, and a sample is at distance 0 from
    itself; two vectors closer than about 1e-7 times their norm about the
    mean may be seen at distance 0.

    The picks and scores are, to the bit, those of the plain greedy that
    computes this distance from the new center to every pool sample at
    every pick: a distance is skipped or screened only where a bound,
    with margins for rounding, proves it cannot lower a sample's nearest
    distance (see ``LazyCover``): the triangle inequality about a group's
    center, then a lower bound from the pool's 32 leading principal
    directions plus the norm of the rest (``kcenter_basis``), then a
    float32 screen. How much is skipped depends on the data: on clustered
    embeddings and on learned ones (a network's hidden layer, whose spread
    lies mostly in a few directions) 1% to 6% of the plain greedy's
    distances are still screened; on isotropic noise in many dimensions
    most are. Worst case O((n_labeled + batch_size) * n_pool * n_features)
    operations, as the plain greedy, plus O(n_pool * n_features * 32) for
    the projection and O(n_pool * 32 * 64) per level of the grouping.
    Memory beyond the input: a float32 pool close to the origin (largest
    squared norm at most ``RAW_SCREEN_RATIO`` times that about the pool
    mean) is screened as sent; any other pool gets one shifted copy,
    float32 (float64 outside float32's range). Then the 32-d projection
    in float64 while it is grouped, the bound's 33 values per row in
    float32, the centers in float64 and in float32, a few vectors of
    n_pool and 5 MiB blocks. Up to ``WORKERS`` threads (the process's
    share of the cores, at most 4) stream and group the pool and update
    the parts of large rounds side by side, while BLAS is held to one
    thread (``one_blas_thread``); a pool of fewer than ``THREADED_VALUES``
    values runs on the calling thread alone. Most rounds update one group
    of a few hundred rows (3 to 4 rounds per pick on learned embeddings);
    a round is one call into the compiled loops (``kcenter_native``,
    built from ``_kcenter.c`` when a C compiler was present at install),
    which do the bounds, the screen and the exact distances pair by pair
    and release the GIL, so rounds of many pairs split by rows over the
    threads. Pools screened in float64 (norms beyond float32's range)
    take the numpy rounds, and so do rounds with
    ``kcenter_update.COMPILED_PENDING`` or more labeled centers pending,
    which BLAS products screen faster. Without the compiled loops a round
    is about 60 numpy calls, 2 to 3 times slower; the picks and scores are
    the same.

    Measured (bench/kcenter.py, 2-core machine, 2026-12-05, one run, best
    BLAS setting): 1,000 picks in 1.61 s on 100,000 x 768 clustered
    synthetic embeddings and 1.18 s on 70,000 x 768 learned embeddings of
    Fashion-MNIST (an MLP's hidden layer), where a plain float32 numpy
    greedy took 11.85 and 7.82 s (7.3x and 6.6x); 54.4x faster than
    scikit-activeml's ``CoreSet`` in the same run on the learned
    embeddings.

    References
    ----------
    Sener & Savarese, "Active Learning for Convolutional Neural Networks: A
    Core-Set Approach", ICLR 2018.
    """
    return kcenter_greedy_counted(embeddings, batch_size, labeled_embeddings, check)[0]


def _greedy(
    cover: LazyCover,
    embeddings: NDArray,
    shift: NDArray[np.float64],
    batch_size: int,
    labeled: NDArray | None,
    check: Callable[[], None],
    executor: ThreadPoolExecutor | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    # The greedy steps over ``cover``: picks (pool positions) and scores.
    order = cover.partition.order
    picks = np.empty(batch_size, dtype=np.int64)
    scores = np.empty(batch_size)
    start = 0
    if labeled is not None:
        if len(labeled):
            # Every row's distance to one center at once, streamed; the rest
            # of the labeled set lazily, as picks are.
            cover.add_first_center(shifted(labeled[0], shift), labeled[0])
        cover.add_raw_centers(labeled[1:])
    else:
        # The pool mean is the origin: the first pick is the smallest norm.
        smallest = np.flatnonzero(cover.norms == cover.norms.min())
        picks[0] = int(smallest.min())
        scores[0] = np.sqrt(cover.norms[picks[0]])
        position = int(np.flatnonzero(order == picks[0])[0])
        first = embeddings[picks[0]]
        cover.add_first_center(shifted(first, shift), first)
        cover.remove(position)
        start = 1

    for step in range(start, batch_size):
        check()
        position, distance = cover.farthest(executor)
        pick = int(order[position])
        picks[step] = pick
        scores[step] = np.sqrt(distance)
        raw = embeddings[pick : pick + 1]
        cover.add_centers(shifted(raw, shift), raw)
        cover.remove(position)
    return picks, scores


def kcenter_greedy_counted(
    embeddings: NDArray,
    batch_size: int,
    labeled_embeddings: NDArray | None = None,
    check: Callable[[], None] = never_cancelled,
) -> tuple[Ranking, int, int]:
    """Run ``kcenter_greedy``; also return how many sample-to-center
    distances it computed exactly (float64) and how many it screened (the
    plain greedy computes n_pool per pick)."""
    shift = pool_shift(embeddings)
    labeled = labeled_embeddings
    n_labeled = 0 if labeled is None else len(labeled)
    capacity = n_labeled + batch_size
    if embeddings.size < THREADED_VALUES:
        # A small pool: starting threads and setting BLAS limits would cost
        # more than they save. The picks are the same either way.
        cover = LazyCover(embeddings, shift, capacity, labeled, check)
        picks, scores = _greedy(cover, embeddings, shift, batch_size, labeled, check)
    else:
        with one_blas_thread(), ThreadPoolExecutor(
            WORKERS, thread_name_prefix="alquery-kcenter"
        ) as executor:
            cover = LazyCover(
                embeddings, shift, capacity, labeled, check, executor
            )
            picks, scores = _greedy(
                cover, embeddings, shift, batch_size, labeled, check, executor
            )
    ranking = Ranking(ranked_indices=picks, scores=scores)
    return ranking, cover.evaluations, cover.screened


def random_projection(
    n_features: int, dim: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Return a (n_features, dim) Gaussian matrix scaled by 1 / sqrt(dim).

    Squared distances between projected vectors are unbiased estimates of
    the original ones (Johnson-Lindenstrauss).
    """
    return rng.standard_normal((n_features, dim)) / np.sqrt(dim)


def project(rows: NDArray, matrix: NDArray[np.float64]) -> NDArray[np.float32]:
    """Return ``rows @ matrix`` in float32, a chunk of rows at a time."""
    out = np.empty((len(rows), matrix.shape[1]), dtype=np.float32)
    per_chunk = max(1, CHUNK_ELEMENTS // max(1, rows.shape[1]))
    matrix32 = matrix.astype(np.float32)
    for start in range(0, len(rows), per_chunk):
        chunk = np.asarray(rows[start : start + per_chunk], dtype=np.float32)
        out[start : start + len(chunk)] = chunk @ matrix32
    return out


def kcenter_projected(
    embeddings: NDArray,
    batch_size: int,
    labeled_embeddings: NDArray | None,
    dim: int,
    rng: np.random.Generator,
    check: Callable[[], None] = never_cancelled,
) -> Ranking:
    """Greedy k-center on a seeded random projection to ``dim`` dimensions.

    The pool and the labeled embeddings are multiplied by one Gaussian
    matrix G of shape (n_features, dim), G_jk ~ N(0, 1 / dim), drawn from
    ``rng``; then ``kcenter_greedy`` runs, exactly, on the projected rows.
    Scores are the distances in the projected space.

    Parameters
    ----------
    embeddings : ndarray of shape (n_pool, n_features)
        Checked, finite pool embeddings.
    batch_size : int
        ``1 <= batch_size <= n_pool``.
    labeled_embeddings : ndarray of shape (n_labeled, n_features) or None
        The initial centers.
    dim : int
        Projected dimensions, ``1 <= dim``; at least n_features runs the
        exact greedy on the embeddings themselves.
    rng : numpy.random.Generator
        Draws the projection; the same seed gives the same picks.
    check : callable, optional
        Runs before each pick and may raise to stop the work.

    Returns
    -------
    Ranking
        ``batch_size`` distinct pool positions in pick order, with their
        distance (projected) to the nearest center when picked.

    Notes
    -----
    Approximate: the picks are the exact greedy's on distorted distances,
    so they can differ from the exact greedy's picks and its coverage
    radius. The distortion of a squared distance has relative spread about
    sqrt(2 / dim). bench/kcenter.py measures the coverage radius and the
    shared picks against the exact greedy. Tie-break as ``kcenter_greedy``.
    The projection costs O(n_pool * n_features * dim) and a float32 copy of
    the projected pool.
    """
    n_features = embeddings.shape[1]
    if dim >= n_features:
        return kcenter_greedy(embeddings, batch_size, labeled_embeddings, check)
    matrix = random_projection(n_features, dim, rng)
    check()
    pool = project(embeddings, matrix)
    labeled = None
    if labeled_embeddings is not None:
        labeled = project(labeled_embeddings, matrix)
    return kcenter_greedy(pool, batch_size, labeled, check)


def _pick(query: Query) -> Ranking:
    # The request's k-center: exact unless a projection is asked for.
    dim = query.params["kcenter_projection"]
    if dim is None:
        return kcenter_greedy(
            query.pool_embeddings,
            query.batch_size,
            query.labeled_embeddings,
            check=query.check_cancelled,
        )
    return kcenter_projected(
        query.pool_embeddings,
        query.batch_size,
        query.labeled_embeddings,
        dim,
        query.random_generator(),
        check=query.check_cancelled,
    )


register(
    Strategy(
        family="diversity",
        method="kcenter",
        description=(
            "Greedy k-center: repeatedly pick the pool sample farthest (Euclidean) "
            "from its nearest center, starting from labeled.embeddings; score = "
            "that distance when picked; ties to the lower pool position."
        ),
        required_inputs=("pool_embeddings",),
        higher_first=True,
        parameters=(
            Parameter(
                name="kcenter_projection",
                type="int64",
                default="unset (exact)",
                description=(
                    "Approximate mode: run the greedy on a seeded Gaussian "
                    "random projection to this many dimensions."
                ),
                resolve=int_at_least("diversity.kcenter_projection", None),
            ),
        ),
        pick=lambda query: _pick(query),
    )
)
