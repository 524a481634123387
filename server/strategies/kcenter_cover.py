"""Nearest-center distances of the pool for the exact k-center greedy."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np
from numpy.typing import NDArray

from alquery.server.strategies import kcenter_stream, kcenter_update
from alquery.server.strategies.kcenter_basis import principal_basis
from alquery.server.strategies.kcenter_native import (
    NativeRounds,
    exact_distances,
    exact_norms,
)
from alquery.server.strategies.kcenter_partition import (
    finish_partition,
    group_rows,
)
from alquery.server.strategies.kcenter_stream import (
    norms_and_projection,
    shifted_copy,
    stream,
)
from alquery.server.strategies.kcenter_update import update_groups
from alquery.server.threads import compute_threads

LEAF_SIZE = 384
"""Target number of pool rows per group of the partition."""

WORKERS = min(4, compute_threads())
"""Threads that update groups side by side (BLAS then runs on one): this
process's share of the cores (``threads.compute_threads``), at most 4."""

RAW_SCREEN_RATIO = 4.0
"""A float32 pool is screened as it is, without a shifted copy, when its
largest squared norm is at most this many times that about the pool mean."""

CENTER_BLOCK_ELEMENTS = 1 << 18
"""A labeled set is measured and added as centers this many values at a
time (2 MiB of float64), so that its temporary copies stay small however
many labeled rows there are."""

SCREEN_MAGNITUDES = (1e-20, 1e30)
"""Screening runs in float32 only when the largest squared norm lies
between these (float32 squares neither overflow nor underflow)."""


def pool_shift(embeddings: NDArray) -> NDArray[np.float64]:
    """Return the pool mean, float64: every vector is shifted by it."""
    return np.mean(embeddings, axis=0, dtype=np.float64)


def shifted(rows: NDArray, shift: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return ``rows`` in float64 less ``shift``."""
    return np.asarray(rows, dtype=np.float64) - shift


def center_blocks(rows: NDArray) -> list[NDArray]:
    """Split ``rows`` into runs of about CENTER_BLOCK_ELEMENTS values."""
    step = max(1, CENTER_BLOCK_ELEMENTS // max(1, rows.shape[1]))
    return [rows[first : first + step] for first in range(0, len(rows), step)]


def _residuals(
    norms: NDArray[np.float64], projected: NDArray[np.float64]
) -> NDArray[np.float64]:
    # rho = sqrt(||x||^2 - ||z||^2), the norm of what the basis leaves out.
    left = norms - np.einsum("ij,ij->i", projected, projected)
    return np.sqrt(np.maximum(left, 0.0))


def row_norms(rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return ||r||^2 of every row, float64 (one row per einsum sum)."""
    return np.einsum("ij,ij->i", rows, rows)


class LazyCover:
    """Nearest-center distances of the pool, brought up to date lazily.

    The pool is projected once onto its leading principal directions
    (``kcenter_basis``, estimated on a sample) and grouped there
    (``group_rows``); groups are runs of a permutation of the pool, not a
    copy. A group remembers how many centers it has seen and the largest
    nearest distance among its rows, ``bound``. Centers added since then
    are applied only when the group could hold the next pick, i.e. when its
    (stale) bound is the largest: true nearest distances never exceed stale
    ones, so a group whose bound is below the best up-to-date distance
    cannot hold the farthest sample. All the groups a round must update are
    updated together (``update_groups``).

    Applying center c to row x is skipped when a lower bound on d(x, c)
    proves that c cannot come closer to x than its nearest center: first
    the triangle inequality about the group's center m, d(x, m) < d(c, m) -
    d(x, its nearest center); then the projection bound of
    ``kcenter_basis``, ||x||^2 + ||c||^2 - 2 (z_x.z_c + rho_x rho_c), one
    product in PROJECTED_DIMS + 1 dimensions. The pairs left are screened
    in float32 (pair by pair in the compiled rounds of ``kcenter_native``,
    else by one BLAS product per part of a round), on the pool as
    the client sent it when it is float32 and not far from the origin
    (``RAW_SCREEN_RATIO``), else on a shifted copy. Only pairs whose
    screened distance might reach the row's new nearest distance (within a
    proven rounding bound) get the exact float64 distance
    (``exact_distances``). Every bound leaves a margin for the
    rounding of the exact expansion (``slack``), of the projection bound
    (``lift_slack``) and of the screening (``screen_slack``), so a row's
    nearest distance is always the minimum of its exact distances to all
    centers, to the bit.
    """

    def __init__(
        self,
        embeddings: NDArray,
        shift: NDArray[np.float64],
        capacity: int,
        labeled: NDArray | None,
        check: Callable[[], None],
        executor: Executor | None = None,
    ):
        self.embeddings = embeddings
        self.shift = shift
        n_pool, n_features = embeddings.shape
        basis, departure = None, 0.0
        width = kcenter_stream.PROJECTED_DIMS
        if n_features > width:
            basis, departure = principal_basis(embeddings, shift, width)
        self.basis = basis
        self.norms, projected, raw_norms = norms_and_projection(
            embeddings, shift, basis, executor, WORKERS
        )
        magnitude = float(self.norms.max(initial=0.0))
        raw_magnitude = np.inf
        if raw_norms is not None:
            raw_magnitude = float(raw_norms.max(initial=0.0))
        if labeled is not None:
            for part in center_blocks(labeled):
                moved = row_norms(shifted(part, shift))
                magnitude = max(magnitude, float(moved.max(initial=0.0)))
                raw = row_norms(np.asarray(part, dtype=np.float64))
                raw_magnitude = max(raw_magnitude, float(raw.max(initial=0.0)))
        eps = float(np.finfo(np.float64).eps)
        # Each of the three terms of the expansion is off by at most about
        # n_features * eps times the largest squared norm; doubled.
        self.slack = 8.0 * (n_features + 2) * eps * magnitude
        check()
        self._choose_screen(magnitude, raw_magnitude, raw_norms, executor)
        self._lift(projected, magnitude, departure)
        check()
        order, starts = group_rows(projected, LEAF_SIZE, executor=executor)
        del projected
        check()
        self.partition = finish_partition(
            self.screen,
            shift if self.raw_screen else None,
            order,
            starts,
            self.screen_slack,
            self._widen,
            executor,
        )
        self.sorted_norms = self.norms[self.partition.order]
        self.middle_norms = row_norms(self.partition.centers)
        if self.lifted is not None:
            self.lifted = self.lifted[self.partition.order]
        self.nearest = np.full(n_pool, np.inf)
        n_groups = len(self.partition.starts) - 1
        self.bound = np.full(n_groups, np.inf)
        self.applied = np.zeros(n_groups, dtype=np.int64)
        self.centers = np.empty((capacity, n_features))
        self.center_norms = np.empty(capacity)
        self.screen_centers = np.empty((capacity, n_features), dtype=self.screen.dtype)
        self.screen_center_norms = np.empty(capacity)
        self.lifted_centers = None
        if self.lifted is not None:
            width = self.lifted.shape[1]
            self.lifted_centers = np.empty((capacity, width), self.lifted.dtype)
        self.n_centers = 0
        self.n_labeled = 0 if labeled is None else len(labeled)
        self.evaluations = 0
        self.screened = 0
        self.workers = WORKERS
        self.executor = executor
        self.native = NativeRounds(self)

    def _choose_screen(
        self,
        magnitude: float,
        raw_magnitude: float,
        raw_norms: NDArray | None,
        executor: Executor | None,
    ) -> None:
        # The rows the screening multiplies: a float32 pool as it is, when
        # its norms are not much larger than about the mean (they set the
        # rounding bound), else a shifted copy, float32 when in range.
        n_features = self.embeddings.shape[1]
        self.raw_screen = (
            raw_norms is not None
            and SCREEN_MAGNITUDES[0] < raw_magnitude < SCREEN_MAGNITUDES[1]
            and raw_magnitude <= RAW_SCREEN_RATIO * magnitude
        )
        unit = float(np.finfo(np.float32).eps) / 2.0
        if self.raw_screen:
            self.screen, self.screen_norms = self.embeddings, raw_norms
            screen_magnitude = raw_magnitude
        else:
            dtype = np.float32
            if not SCREEN_MAGNITUDES[0] < magnitude < SCREEN_MAGNITUDES[1]:
                # Outside float32's range, the screening runs in float64.
                dtype, unit = np.float64, float(np.finfo(np.float64).eps) / 2.0
            self.screen = shifted_copy(
                self.embeddings, self.shift, dtype, executor, WORKERS
            )
            self.screen_norms = row_norms(self.screen)
            screen_magnitude = magnitude
        # The rounding of the values to the screening type, then of the
        # n_features-term sums (any order), of the three terms; doubled.
        self.screen_slack = 8.0 * (n_features + 6) * unit * screen_magnitude
        # How far a row or group center of the screen lies from the shifted
        # float64 one the greedy computes with (roundings of the shift and
        # to the screening type), with room to spare.
        largest = np.sqrt(max(screen_magnitude, magnitude))
        self._widen = 4.0 * np.sqrt(n_features) * unit * largest

    def _lift(
        self, projected: NDArray[np.float64], magnitude: float, departure: float
    ) -> None:
        # The rows [z, rho] of the projection bound (``kcenter_basis``), in
        # pool order until the groups are known, and a bound on its
        # rounding, ``lift_slack``; None without a basis.
        self.lifted, self.lift_slack = None, 0.0
        if self.basis is None:
            return
        n_features, width = self.basis.shape
        dtype, unit = np.float32, float(np.finfo(np.float32).eps) / 2.0
        if not SCREEN_MAGNITUDES[0] < magnitude < SCREEN_MAGNITUDES[1]:
            dtype, unit = np.float64, float(np.finfo(np.float64).eps) / 2.0
        self.lifted = np.empty((len(projected), width + 1), dtype=dtype)
        self.lifted[:, :width] = projected
        self.lifted[:, width] = _residuals(self.norms, projected)
        eps = float(np.finfo(np.float64).eps)
        # |rho^2 - R^2| for the computed rho and the true residual norm R:
        # the norms and projections in float64, and P not quite orthonormal.
        residual = (8.0 * np.sqrt(width) * (n_features + width) * eps) * magnitude
        residual += 4.0 * departure * magnitude
        self.lift_slack = (
            8.0 * (width + 7) * unit * magnitude
            + 8.0 * np.sqrt(residual * magnitude)
            + 8.0 * departure * magnitude
        )

    def add_centers(self, centers: NDArray[np.float64], raw: NDArray) -> None:
        """Append centers, shifted in float64 and ``raw`` as the client sent
        them; groups see them when needed."""
        stop = self.n_centers + len(centers)
        self.centers[self.n_centers : stop] = centers
        self.center_norms[self.n_centers : stop] = exact_norms(centers)
        if self.raw_screen:
            screen = np.asarray(raw, dtype=np.float32)
        else:
            screen = centers.astype(self.screen.dtype)
        self.screen_centers[self.n_centers : stop] = screen
        self.screen_center_norms[self.n_centers : stop] = row_norms(
            screen.astype(np.float64)
        )
        if self.lifted_centers is not None:
            width = self.basis.shape[1]
            lifted = self.lifted_centers[self.n_centers : stop]
            projected = centers @ self.basis
            lifted[:, :width] = projected
            lifted[:, width] = _residuals(
                self.center_norms[self.n_centers : stop], projected
            )
        self.n_centers = stop

    def add_raw_centers(self, raw: NDArray) -> None:
        """Append the rows of ``raw`` (as the client sent them) as centers,
        shifted a block at a time (``center_blocks``): only the centers'
        own arrays grow with their number."""
        for part in center_blocks(raw):
            self.add_centers(shifted(part, self.shift), part)

    def add_first_center(self, center: NDArray[np.float64], raw: NDArray) -> None:
        """Make ``center`` (shifted, float64; ``raw`` as sent) the only
        center, every exact distance computed at once, a cache-sized block
        of the pool at a time."""
        self.add_centers(center[None, :], raw[None, :])
        center_norm = self.center_norms[:1]
        distances = np.empty(len(self.nearest))

        def job(rows: slice, block: NDArray[np.float64]) -> None:
            distances[rows] = exact_distances(
                self.embeddings[rows],
                self.shift,
                self.norms[rows],
                center[None, :],
                center_norm,
            )

        stream(len(distances), len(center), self.executor, self.workers, job)
        self.evaluations += len(distances)
        self.nearest = distances[self.partition.order]
        self.applied[:] = 1
        starts = self.partition.starts
        self.bound = np.maximum.reduceat(self.nearest, starts[:-1])

    def remove(self, position: int) -> None:
        """Take the row at partition ``position`` out of the running."""
        self.nearest[position] = -1.0
        starts = self.partition.starts
        group = int(np.searchsorted(starts, position, side="right")) - 1
        if self.applied[group] == self.n_centers:
            self.bound[group] = self.nearest[starts[group] : starts[group + 1]].max()

    def farthest(self, executor: Executor | None = None) -> tuple[int, float]:
        """Return the partition position of the sample farthest from every
        center (ties: the lower pool position) and its squared distance.

        Stale groups are updated until none could hold a farther sample,
        all the groups of a round at once (``kcenter_update``), their
        parts side by side on ``executor``.
        """
        bound = self.bound
        while self.native.usable:
            # The rounds run in the compiled loops until one is large
            # enough to split over the workers, which runs here.
            split = kcenter_update.SPLIT_PAIRS if executor is not None else 0
            pending = kcenter_update.COMPILED_PENDING
            if self.n_labeled - int(self.applied.min()) >= pending:
                # Some group has many labeled centers pending:
                # rounds that may hold it come back too, for
                # ``update_groups`` to screen with BLAS products.
                many = pending * LEAF_SIZE
                split = min(split, many) if split else many
            groups, evaluations, screened = self.native.pick_rounds(split)
            self.evaluations += evaluations
            self.screened += screened
            if not len(groups):
                break
            counts = update_groups(self, groups, executor)
            self.evaluations += counts[0]
            self.screened += counts[1]
        while True:
            top = bound.max()
            groups = self._stale_groups(top)
            if not len(groups):
                break
            counts = update_groups(self, groups, executor)
            self.evaluations += counts[0]
            self.screened += counts[1]
        starts = self.partition.starts
        best = []
        for group in np.flatnonzero(bound == top):
            rows = slice(starts[group], starts[group + 1])
            best.append(starts[group] + np.flatnonzero(self.nearest[rows] == top))
        positions = np.concatenate(best)
        position = positions[np.argmin(self.partition.order[positions])]
        return int(position), float(top)

    def _stale_groups(self, top: float) -> NDArray[np.int64]:
        # The stale groups that might hold the farthest sample: those whose
        # bound reaches ``top``. Once some groups are up to date, the
        # farthest distance is at least their largest bound, so every stale
        # group that reaches it is taken now: one more round at most.
        stale = self.applied < self.n_centers
        return np.flatnonzero(stale & (self.bound >= top))

    def exact(self, positions: NDArray[np.int64], centers: NDArray[np.int64]) -> None:
        """Compute the exact distances (``exact_distances``) of the
        (partition position, center) pairs and keep the minima in
        ``nearest``."""
        distances = exact_distances(
            self.embeddings,
            self.shift,
            self.sorted_norms[positions],
            self.centers,
            self.center_norms,
            self.partition.order[positions],
            centers,
        )
        np.minimum.at(self.nearest, positions, distances)
