"""A coarse partition of the pool into small, tight, contiguous groups.

The exact k-center greedy (``kcenter_cover``) groups the rows of a random
projection of the pool (``group_rows``), then gives each group its center
and bounds (``finish_partition``), so that a group is skipped by one bound
and screened by one BLAS call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np
from numpy.typing import NDArray

SPLIT_FANOUT = 64
"""At most this many random sub-centers split one group per level."""

SAMPLE_PER_SEED = 16
"""Split seeds are spread over a random sample of this many rows per seed."""

CHUNK_ROWS = 4096
"""Rows assigned or copied at a time."""


@dataclasses.dataclass(frozen=True)
class Partition:
    """Groups of pool rows, contiguous in ``order``.

    Attributes
    ----------
    order : ndarray of shape (n_pool,), int64
        Pool positions, group by group; within a group, the farthest from
        the group's center first.
    starts : ndarray of shape (n_groups + 1,), int64
        Group g is ``order[starts[g]:starts[g + 1]]``.
    centers : ndarray of shape (n_groups, n_features), float64
        The mean of each group's rows, shifted by the pool mean.
    reach : ndarray of shape (n_pool,), float64
        An upper bound on the Euclidean distance of each row (in ``order``)
        to its group's center; non-increasing within a group.
    """

    order: NDArray[np.int64]
    starts: NDArray[np.int64]
    centers: NDArray[np.float64]
    reach: NDArray[np.float64]


def _assign(
    rows: NDArray, centers: NDArray, norms: NDArray
) -> tuple[NDArray[np.int64], NDArray]:
    # Nearest center of each row and the squared distance to it, in the
    # dtype of ``rows``.
    products = rows @ centers.T
    products *= -2.0
    products += np.einsum("ij,ij->i", centers, centers)[None, :]
    nearest = products.argmin(axis=1)
    closest = products[np.arange(len(rows)), nearest] + norms
    return nearest, np.maximum(closest, 0.0)


def _spread_seeds(
    x: NDArray, part: NDArray[np.int64], n_seeds: int, rng: np.random.Generator
) -> NDArray:
    # Farthest-first traversal of a random sample of ``part``: seeds that
    # each sit in a different region, so few groups span two clusters.
    size = min(len(part), SAMPLE_PER_SEED * n_seeds)
    sample = x[rng.choice(part, size=size, replace=False)].astype(np.float64)
    chosen = [0]
    step = sample - sample[0]
    nearest = np.einsum("ij,ij->i", step, step)
    for _ in range(n_seeds - 1):
        chosen.append(int(np.argmax(nearest)))
        step = sample - sample[chosen[-1]]
        np.minimum(nearest, np.einsum("ij,ij->i", step, step), out=nearest)
    return sample[chosen].astype(x.dtype)


def _split(
    part: NDArray[np.int64],
    seeds: NDArray,
    x: NDArray,
    norms: NDArray,
    map_: Callable = map,
) -> list[NDArray[np.int64]]:
    # Split the rows ``part`` of x by their nearest seed, CHUNK_ROWS rows at
    # a time (through ``map_``); empty parts dropped.
    def owners(start: int) -> NDArray[np.int64]:
        rows = part[start : start + CHUNK_ROWS]
        return _assign(x[rows], seeds, norms[rows])[0]

    owner = np.concatenate(list(map_(owners, range(0, len(part), CHUNK_ROWS))))
    sizes = np.bincount(owner, minlength=len(seeds))
    by_owner = np.argsort(owner, kind="stable")
    pieces = np.split(part[by_owner], np.cumsum(sizes)[:-1])
    return [piece for piece in pieces if len(piece)]


def _groups(
    x: NDArray,
    norms: NDArray,
    leaf_size: int,
    rng: np.random.Generator,
    map_: Callable,
) -> list[NDArray[np.int64]]:
    # Split level by level until every group has at most ``leaf_size`` rows,
    # or a split no longer separates anything (copies of one row). A level
    # of one part spreads its rows over ``map_``, a level of many its parts.
    parts, done = [np.arange(len(x))], []
    while parts:
        done += [part for part in parts if len(part) <= leaf_size]
        parts = [part for part in parts if len(part) > leaf_size]
        seeds = [
            _spread_seeds(x, part, min(SPLIT_FANOUT, -(-len(part) // leaf_size)), rng)
            for part in parts
        ]
        if len(parts) == 1:
            split = [_split(parts[0], seeds[0], x, norms, map_)]
        else:
            split = list(map_(lambda job: _split(*job, x, norms), zip(parts, seeds)))
        next_parts = []
        for part, pieces in zip(parts, split):
            if len(pieces) == 1:
                done.append(part)
            else:
                next_parts += pieces
        parts = next_parts
    done.sort(key=lambda group: int(group.min()))
    return done


def group_rows(
    x: NDArray,
    leaf_size: int,
    seed: int = 0,
    executor: Executor | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Split the pool into groups of at most ``leaf_size`` rows.

    Parameters
    ----------
    x : ndarray of shape (n_pool, n_dims)
        The pool, or any view of it that keeps near rows near (the greedy
        passes its principal projection): only the grouping depends on it.
    leaf_size : int
        Target group size; a group of identical rows may stay larger.
    seed : int, default=0
        Seeds the split seeds. The grouping changes only how much work the
        greedy skips, never its picks.
    executor : concurrent.futures.Executor, optional
        Runs chunks of the work side by side.

    Returns
    -------
    order : ndarray of shape (n_pool,), int64
        Pool positions, group by group.
    starts : ndarray of shape (n_groups + 1,), int64
        Group g is ``order[starts[g]:starts[g + 1]]``.

    Notes
    -----
    Each level assigns every row of a group to the nearest of up to
    SPLIT_FANOUT seeds, spread by a farthest-first traversal of a sample:
    O(n_pool * n_dims * SPLIT_FANOUT) for the first level, less below.
    No k-means iterations: cheaper, and the groups are looser for it.
    """
    map_ = map if executor is None else executor.map
    rng = np.random.default_rng(seed)
    norms = np.einsum("ij,ij->i", x, x)
    groups = _groups(x, norms, leaf_size, rng, map_)
    order = np.concatenate(groups)
    starts = np.cumsum([0] + [len(group) for group in groups])
    return order, starts


def finish_partition(
    screen: NDArray,
    offset: NDArray[np.float64] | None,
    order: NDArray[np.int64],
    starts: NDArray[np.int64],
    slack: float,
    widen: float,
    executor: Executor | None = None,
) -> Partition:
    """Give each group its center and reach, its rows farthest first.

    Parameters
    ----------
    screen : ndarray of shape (n_pool, n_features), float32 or float64
        The pool as the screening reads it, in pool order.
    offset : ndarray of shape (n_features,) or None
        Subtracted from each group's center (in float64) to put it where
        the greedy's centers are: the pool mean when ``screen`` is the pool
        as sent, None when it is already shifted.
    order, starts : ndarray of int64
        The groups (``group_rows``); ``order`` is reordered in place.
    slack : float
        A bound on the absolute error of a squared distance computed in
        the dtype of ``screen``, rounding to it included; each squared
        reach is widened by it.
    widen : float
        Added to each reach: a bound on how far the rows and centers the
        greedy computes with lie from those of ``screen`` and ``offset``.
    executor : concurrent.futures.Executor, optional
        Runs groups side by side.
    """
    map_ = map if executor is None else executor.map
    partition = Partition(
        order=order,
        starts=starts,
        centers=np.empty((len(starts) - 1, screen.shape[1])),
        reach=np.empty(len(order)),
    )

    def finish(index: int) -> None:
        _sort_group(partition, index, screen, slack, widen)

    list(map_(finish, range(len(starts) - 1)))
    if offset is not None:
        partition.centers[:] -= offset
    return partition


def _sort_group(
    partition: Partition, index: int, screen: NDArray, slack: float, widen: float
) -> None:
    # Set group ``index``'s center (the mean of its rows, rounded to their
    # dtype) and reach, and order its rows farthest from the center first.
    group = slice(partition.starts[index], partition.starts[index + 1])
    members = partition.order[group]
    rows = screen[members]
    center = rows.mean(axis=0, dtype=np.float64).astype(rows.dtype)
    partition.centers[index] = center
    rows -= center
    squared = np.einsum("ij,ij->i", rows, rows).astype(np.float64)
    distances = np.sqrt(squared + slack) + widen
    farthest_first = np.argsort(-distances, kind="stable")
    partition.order[group] = members[farthest_first]
    partition.reach[group] = distances[farthest_first]
