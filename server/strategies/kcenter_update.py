"""Bringing many groups of the k-center cover up to date at once.

``LazyCover`` (``kcenter_cover``) asks for a set of stale groups to be
updated. With the compiled loops (``kcenter_native``), each group is one
call that applies its pending centers pair by pair; large rounds split by
rows over the workers. Without them, this module applies the pending
centers to a part of the rows at a time, so the work per round is a
handful of numpy calls and a few BLAS products per part, however many
groups the round touches.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from alquery.server.strategies.diversity import CHUNK_ELEMENTS

if TYPE_CHECKING:
    from alquery.server.strategies.kcenter_cover import LazyCover

BATCH_ROWS = 2048
"""Pool rows one part of a round updates together."""

SPLIT_PAIRS = 1 << 18
"""A round that screens at least this many (row, center) pairs is split
over the workers."""

COMPILED_PENDING = 64
"""A round whose groups have at least this many labeled centers pending
(the labeled set is applied lazily) screens them with BLAS products, as
without the compiled loops: there the compiled round's pair-by-pair
float32 dots were about 5 times slower (2,000 x 256 pool, 50,000 labeled
rows). Picks a group has not seen stay compiled: there the compiled
bounds win (60,000 x 128 clustered, 1,000 picks: 0.65 s against 0.85)."""

UPDATE_ELEMENTS = CHUNK_ELEMENTS // 8
"""(row, center) pairs one part screens at a time: about ten bytes each
(float64 thresholds, then float32 products and masks), 5 MiB in all."""


def update_groups(
    cover: LazyCover, groups: NDArray[np.int64], executor: Executor | None
) -> tuple[int, int]:
    """Apply to ``groups`` every center they have not seen.

    Returns how many distances were computed exactly (float64) and how many
    were screened. The rows are split into parts of at most BATCH_ROWS,
    and over the workers when the round screens at least SPLIT_PAIRS
    pairs; parts hold disjoint rows, so they run side by side on
    ``executor``. A round of one group that needs neither split, the most
    common round, reads its rows through slices on the calling thread.
    """
    starts = cover.partition.starts
    pending = cover.n_labeled - int(cover.applied[groups].min())
    if cover.native.usable and pending < COMPILED_PENDING:
        return _update_compiled(cover, groups, executor)
    if len(groups) == 1:
        group = int(groups[0])
        rows = slice(int(starts[group]), int(starts[group + 1]))
        n_rows = rows.stop - rows.start
        n_pairs = n_rows * (cover.n_centers - int(cover.applied[group]))
        if n_rows <= BATCH_ROWS and (executor is None or n_pairs < SPLIT_PAIRS):
            return _update_group(cover, group, rows)
    sizes = starts[groups + 1] - starts[groups]
    positions = _ranges(starts[groups], sizes)
    owner = np.repeat(np.arange(len(groups)), sizes)
    n_centers = cover.n_centers
    first = int(cover.applied[groups].min())
    parts = _parts(len(positions), n_centers - first, cover.workers, executor)

    def job(rows: slice) -> tuple[int, int]:
        # The part's groups are a run of ``groups``: owners are sorted.
        lowest, highest = int(owner[rows.start]), int(owner[rows.stop - 1])
        return _update_rows(
            cover,
            groups[lowest : highest + 1],
            positions[rows],
            owner[rows] - lowest,
            slice(first, n_centers),
        )

    if executor is None or len(parts) == 1:
        counts = [job(rows) for rows in parts]
    else:
        counts = list(executor.map(job, parts))
    cover.applied[groups] = n_centers
    offsets = np.cumsum(sizes) - sizes
    cover.bound[groups] = np.maximum.reduceat(cover.nearest[positions], offsets)
    return sum(count[0] for count in counts), sum(count[1] for count in counts)


def _update_compiled(
    cover: LazyCover, groups: NDArray[np.int64], executor: Executor | None
) -> tuple[int, int]:
    # The compiled round (``kcenter_native``), a group at a time; a round
    # that screens at least SPLIT_PAIRS pairs is split by rows over the
    # workers (the compiled loops release the GIL).
    starts = cover.partition.starts
    n_centers = cover.n_centers
    pieces = []
    for group in groups.tolist():
        first = int(cover.applied[group])
        start, stop = int(starts[group]), int(starts[group + 1])
        n_parts = 1
        if executor is not None:
            n_pairs = (stop - start) * (n_centers - first)
            n_parts = min(cover.workers, -(-n_pairs // SPLIT_PAIRS), stop - start)
        bounds = [start + (stop - start) * k // n_parts for k in range(n_parts + 1)]
        for low, high in zip(bounds[:-1], bounds[1:]):
            pieces.append((group, slice(low, high), first))

    def job(piece: tuple[int, slice, int]) -> tuple[float, int, int]:
        return cover.native.update(*piece)

    if executor is None or len(pieces) == 1:
        results = [job(piece) for piece in pieces]
    else:
        results = list(executor.map(job, pieces))
    cover.applied[groups] = n_centers
    cover.bound[groups] = -np.inf
    for (group, _, _), (largest, _, _) in zip(pieces, results):
        cover.bound[group] = max(cover.bound[group], largest)
    return sum(r[1] for r in results), sum(r[2] for r in results)


def _update_group(cover: LazyCover, group: int, rows: slice) -> tuple[int, int]:
    # A round of one group on the calling thread: its rows are one run of
    # the partition, so they are read through slices, not gathered.
    n_centers = cover.n_centers
    per_chunk = max(1, UPDATE_ELEMENTS // (rows.stop - rows.start))
    evaluations = screened = 0
    for first in range(int(cover.applied[group]), n_centers, per_chunk):
        pending = slice(first, min(first + per_chunk, n_centers))
        counts = _apply_group(cover, group, rows, pending)
        evaluations += counts[0]
        screened += counts[1]
    cover.applied[group] = n_centers
    cover.bound[group] = cover.nearest[rows].max()
    return evaluations, screened


def _apply_group(
    cover: LazyCover, group: int, rows: slice, pending: slice
) -> tuple[int, int]:
    # ``_apply`` for the rows of one group, every pending center unseen by
    # all of them: the same bounds on the whole (rows, centers) block at
    # once, then the screen and the exact distances on what is left. Each
    # bound is rearranged so that most of its arithmetic is on vectors and
    # two operations on the block decide it; a rearrangement moves the
    # rounding by an ulp, far inside the margins the bounds carry.
    to_middle = cover.centers[pending] @ cover.partition.centers[group]
    to_middle *= -2.0
    to_middle += cover.center_norms[pending]
    to_middle += cover.middle_norms[group]
    low = np.sqrt(np.maximum(to_middle - 2.0 * cover.slack, 0.0))
    nearest = cover.nearest[rows]
    with np.errstate(invalid="ignore"):
        # c can lower x only if reach(x) + sqrt(nearest(x)) >= low(c).
        radius = np.sqrt(nearest + 2.0 * cover.slack)
        radius += cover.partition.reach[rows]
        reachable = radius[:, None] >= low[None, :]
    if cover.lifted is not None:
        # The projection bound (``_below_nearest``): ||x||^2 + ||c||^2 -
        # 2 p(x).p(c) <= limit(x), as p(x).p(c) >= half the rest.
        products = cover.lifted[rows] @ cover.lifted_centers[pending].T
        limit = nearest + (cover.lift_slack + 2.0 * cover.slack)
        row_half = 0.5 * (cover.sorted_norms[rows] - limit)
        center_half = 0.5 * cover.center_norms[pending]
        needed = row_half[:, None] + center_half[None, :]
        reachable &= products >= needed
    hit_rows, hit_columns, reachable = _nonempty(reachable)
    if not len(hit_rows):
        return 0, 0
    return _screen(cover, rows.start + hit_rows, pending.start + hit_columns, reachable)


def _parts(
    n_rows: int, n_pending: int, workers: int, executor: Executor | None
) -> list[slice]:
    # Consecutive row ranges of about equal size: at most BATCH_ROWS rows
    # each, and one per worker at least when the round is large.
    n_parts = -(-n_rows // BATCH_ROWS)
    if executor is not None and n_rows * n_pending >= SPLIT_PAIRS:
        n_parts = max(n_parts, workers)
    n_parts = max(1, min(n_parts, n_rows))
    if n_parts == 1:
        return [slice(0, n_rows)]
    bounds = [n_rows * part // n_parts for part in range(n_parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _ranges(starts: NDArray[np.int64], sizes: NDArray[np.int64]) -> NDArray[np.int64]:
    # The concatenation of arange(start, start + size) for each pair.
    if len(starts) == 1:
        return np.arange(starts[0], starts[0] + sizes[0])
    offsets = np.cumsum(sizes) - sizes
    steps = np.arange(int(sizes.sum())) - np.repeat(offsets, sizes)
    return np.repeat(starts, sizes) + steps


def _update_rows(
    cover: LazyCover,
    groups: NDArray[np.int64],
    positions: NDArray[np.int64],
    owner: NDArray[np.int64],
    pending: slice,
) -> tuple[int, int]:
    # Apply the ``pending`` centers to the rows ``positions`` (of
    # ``groups[owner]``), a chunk of centers at a time.
    per_chunk = max(1, UPDATE_ELEMENTS // len(positions))
    evaluations = screened = 0
    for first in range(pending.start, pending.stop, per_chunk):
        chunk = slice(first, min(first + per_chunk, pending.stop))
        counts = _apply(cover, groups, positions, owner, chunk)
        evaluations += counts[0]
        screened += counts[1]
    return evaluations, screened


def _reachable(
    cover: LazyCover,
    groups: NDArray[np.int64],
    positions: NDArray[np.int64],
    owner: NDArray[np.int64],
    pending: slice,
) -> NDArray[np.bool_]:
    # (row, center) pairs where the center might bring the row closer, by
    # the triangle inequality about the row's group center m: c can lower x
    # only if d(x, m) >= d(c, m) - d(x, its nearest center). A group's
    # rows see only the centers added since the group was last updated.
    to_middle = cover.partition.centers[groups] @ cover.centers[pending].T
    to_middle *= -2.0
    to_middle += cover.center_norms[pending][None, :]
    to_middle += cover.middle_norms[groups][:, None]
    low = np.sqrt(np.maximum(to_middle - 2.0 * cover.slack, 0.0))
    applied = cover.applied[groups]
    if applied.max() > pending.start:
        indices = np.arange(pending.start, pending.stop)
        low[indices[None, :] < applied[:, None]] = np.inf
    nearest = cover.nearest[positions]
    # Removed rows (nearest -1) give NaN, and NaN reaches nothing.
    with np.errstate(invalid="ignore"):
        radius = np.sqrt(nearest + 2.0 * cover.slack)
        threshold = low[owner]
        threshold -= radius[:, None]
        return cover.partition.reach[positions][:, None] >= threshold


def _apply(
    cover: LazyCover,
    groups: NDArray[np.int64],
    positions: NDArray[np.int64],
    owner: NDArray[np.int64],
    pending: slice,
) -> tuple[int, int]:
    # Bound the reachable pairs from below by the projection, screen the
    # rest in the screening dtype, then compute exactly the pairs that
    # might set a row's new nearest distance.
    reachable = _reachable(cover, groups, positions, owner, pending)
    rows, columns, reachable = _nonempty(reachable)
    if not len(rows):
        return 0, 0
    where, centers = positions[rows], pending.start + columns
    if cover.lifted is not None:
        reachable &= _below_nearest(cover, where, centers)
        rows, columns, reachable = _nonempty(reachable)
        if not len(rows):
            return 0, 0
        where, centers = where[rows], centers[columns]
    return _screen(cover, where, centers, reachable)


def _screen(
    cover: LazyCover,
    where: NDArray[np.int64],
    centers: NDArray[np.int64],
    reachable: NDArray[np.bool_],
) -> tuple[int, int]:
    # Screen the (row, center) block in the screening dtype, then compute
    # exactly the pairs that might set a row's new nearest distance.
    samples = cover.partition.order[where]
    approx = cover.screen[samples] @ cover.screen_centers[centers].T
    approx *= -2.0
    approx += cover.screen_norms[samples][:, None]
    approx += cover.screen_center_norms[centers][None, :]
    # Pairs the bounds rule out cannot lower the row's nearest distance.
    approx[~reachable] = np.inf
    # A pair can set the row's new nearest distance only if its screened
    # distance is within 2 * margin of the lowest upper bound on it.
    margin = 2.0 * (cover.slack + cover.screen_slack)
    lowest = approx.min(axis=1).astype(np.float64) + margin
    ceiling = np.minimum(cover.nearest[where], lowest) + margin
    row_hits, center_hits = np.nonzero(approx <= ceiling[:, None])
    cover.exact(where[row_hits], centers[center_hits])
    return len(row_hits), approx.size


def _nonempty(
    reachable: NDArray[np.bool_],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    # The rows and columns with a reachable pair, and the mask on them.
    rows = np.flatnonzero(reachable.any(axis=1))
    columns = np.flatnonzero(reachable.any(axis=0))
    if len(rows) == reachable.shape[0] and len(columns) == reachable.shape[1]:
        return rows, columns, reachable
    return rows, columns, reachable[rows][:, columns]


def _below_nearest(
    cover: LazyCover, where: NDArray[np.int64], centers: NDArray[np.int64]
) -> NDArray[np.bool_]:
    # Pairs whose projection bound (``kcenter_basis``), less its rounding,
    # stays below the row's nearest distance: only they might lower it.
    low = cover.lifted[where] @ cover.lifted_centers[centers].T
    low *= -2.0
    low += cover.sorted_norms[where][:, None]
    low += cover.center_norms[centers][None, :]
    limit = cover.nearest[where] + (cover.lift_slack + 2.0 * cover.slack)
    return low <= limit[:, None]
