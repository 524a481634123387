"""The compiled loops of the exact k-center greedy, and their numpy twins.

``_kcenter.c`` is built with the package when a C compiler is present
(pyproject.toml: an optional extension). ``LIBRARY`` is None without it;
the greedy then runs its numpy rounds (``kcenter_update``) and computes
exact distances with ``exact_twin``, which gives the same bits as the
compiled ``exact_distances``: picks and scores do not depend on which is
used.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np
from numpy.typing import NDArray

TWIN_PAIRS = 4096
"""Pairs ``exact_twin`` computes at a time (a few MiB of float64)."""


class _Cover(ctypes.Structure):
    # The layout of ``Cover`` in _kcenter.c.
    _fields_ = [
        ("embeddings", ctypes.c_void_p),
        ("embeddings_f64", ctypes.c_int64),
        ("n_features", ctypes.c_int64),
        ("order", ctypes.c_void_p),
        ("shift", ctypes.c_void_p),
        ("reach", ctypes.c_void_p),
        ("row_norms", ctypes.c_void_p),
        ("lifted", ctypes.c_void_p),
        ("lift_width", ctypes.c_int64),
        ("screen", ctypes.c_void_p),
        ("screen_norms", ctypes.c_void_p),
        ("centers", ctypes.c_void_p),
        ("center_norms", ctypes.c_void_p),
        ("screen_centers", ctypes.c_void_p),
        ("screen_center_norms", ctypes.c_void_p),
        ("lifted_centers", ctypes.c_void_p),
        ("middles", ctypes.c_void_p),
        ("middle_norms", ctypes.c_void_p),
        ("slack", ctypes.c_double),
        ("lift_slack", ctypes.c_double),
        ("screen_slack", ctypes.c_double),
        ("low", ctypes.c_void_p),
        ("half", ctypes.c_void_p),
        ("candidates", ctypes.c_void_p),
        ("screened", ctypes.c_void_p),
    ]


LAYOUT = 1
"""``LAYOUT`` of _kcenter.c this module speaks to (``_Cover``, signatures)."""

STATUS = "numpy"
"""What k-center runs, for the server's start-up line: ``compiled``,
``numpy`` (not built) or ``numpy_stale_build`` (reinstall to rebuild)."""


def _load() -> ctypes.CDLL | None:
    global STATUS
    try:
        from alquery.server.strategies import _kcenter
    except ImportError:
        return None
    library = ctypes.CDLL(_kcenter.__file__)
    version = getattr(library, "layout_version", None)
    if version is not None:
        version.restype = ctypes.c_int64
        version.argtypes = []
    if version is None or version() != LAYOUT:
        # A library built from other source (an editable install not
        # rebuilt after _kcenter.c changed): its layout may differ, and
        # calling it could crash. The numpy rounds give the same picks.
        STATUS = "numpy_stale_build"
        return None
    STATUS = "compiled"
    library.exact_distances.restype = None
    library.exact_distances.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]
    library.exact_norms.restype = None
    library.exact_norms.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]
    library.update_group.restype = ctypes.c_double
    library.update_group.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]
    library.pick_rounds.restype = ctypes.c_int64
    library.pick_rounds.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 3
    library.pick_rounds.argtypes += [ctypes.c_void_p] * 2
    return library


LIBRARY = _load()
"""The compiled loops, or None when the extension was not built."""


def _address(array: NDArray | None) -> int | None:
    return None if array is None else array.ctypes.data


def exact_distances(
    raw: NDArray,
    shift: NDArray[np.float64],
    row_norms: NDArray[np.float64],
    centers: NDArray[np.float64],
    center_norms: NDArray[np.float64],
    rows: NDArray[np.int64] | None = None,
    which: NDArray[np.int64] | None = None,
) -> NDArray[np.float64]:
    """Exact squared distances of pool rows to shifted centers, float64.

    Pair i is row ``rows[i]`` of ``raw`` (every row in turn when None),
    as the client sent it, and center ``which[i]`` of ``centers`` (center
    0 for every pair when None); ``row_norms[i]`` is its row's ||x -
    shift||^2 and ``center_norms`` is indexed like ``centers``. The
    distance is ((-2 dot) + ||x - shift||^2) + ||c||^2, clipped below at 0,
    with dot = sum_j (x_j - shift_j) c_j added in eight running partial
    sums (term j to sum j mod 8), combined as ((s0 + s1) + (s2 + s3)) +
    ((s4 + s5) + (s6 + s7)), then the terms past the last multiple of
    eight in order: the definition of the exact distance of the greedy
    and of its test reference, the same bits on every machine.
    """
    n = len(raw) if rows is None else len(rows)
    if LIBRARY is None or raw.dtype not in (np.float32, np.float64):
        return exact_twin(raw, shift, row_norms, centers, center_norms, rows, which)
    if rows is not None and not raw.flags.c_contiguous:
        # Gather the rows rather than copy the whole pool.
        raw, rows = raw[rows], None
    raw = np.ascontiguousarray(raw)
    if rows is not None:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
    if which is not None:
        which = np.ascontiguousarray(which, dtype=np.int64)
    row_norms = np.ascontiguousarray(row_norms, dtype=np.float64)
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    center_norms = np.ascontiguousarray(center_norms, dtype=np.float64)
    shift = np.ascontiguousarray(shift, dtype=np.float64)
    out = np.empty(n)
    LIBRARY.exact_distances(
        raw.ctypes.data,
        int(raw.dtype == np.float64),
        _address(rows),
        shift.ctypes.data,
        row_norms.ctypes.data,
        centers.ctypes.data,
        _address(which),
        center_norms.ctypes.data,
        n,
        raw.shape[1],
        out.ctypes.data,
    )
    return out


def exact_norms(rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """Squared norms of float64 rows (shifted pool rows or centers), summed
    like the dot of ``exact_distances``, so that the exact distance of a
    row to itself is 0."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    n, n_features = rows.shape
    out = np.empty(n)
    if LIBRARY is not None:
        LIBRARY.exact_norms(rows.ctypes.data, n, n_features, out.ctypes.data)
        return out
    for first in range(0, n, TWIN_PAIRS):
        part = rows[first : first + TWIN_PAIRS]
        out[first : first + TWIN_PAIRS] = _ordered_dots(part * part)
    return out


def _ordered_dots(products: NDArray[np.float64]) -> NDArray[np.float64]:
    # Row sums in the order of the compiled dot (``exact_distances``).
    n_rows, n_features = products.shape
    whole = n_features - n_features % 8
    sums = np.zeros((n_rows, 8))
    if whole:
        # add.accumulate adds in order, one term after the other, as the
        # compiled loop does (a plain sum may add pairwise).
        terms = products[:, :whole].reshape(n_rows, whole // 8, 8)
        sums = np.add.accumulate(terms, axis=1)[:, -1, :]
    s = sums.T
    dots = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
    for column in range(whole, n_features):
        dots += products[:, column]
    return dots


def exact_twin(
    raw: NDArray,
    shift: NDArray[np.float64],
    row_norms: NDArray[np.float64],
    centers: NDArray[np.float64],
    center_norms: NDArray[np.float64],
    rows: NDArray[np.int64] | None = None,
    which: NDArray[np.int64] | None = None,
) -> NDArray[np.float64]:
    """``exact_distances`` in numpy, operation for operation (same bits),
    TWIN_PAIRS pairs at a time."""
    n = len(raw) if rows is None else len(rows)
    if n > TWIN_PAIRS:
        parts = []
        for first in range(0, n, TWIN_PAIRS):
            part = slice(first, first + TWIN_PAIRS)
            parts.append(
                exact_twin(
                    raw if rows is not None else raw[part],
                    shift,
                    row_norms[part],
                    centers,
                    center_norms,
                    None if rows is None else rows[part],
                    None if which is None else which[part],
                )
            )
        return np.concatenate(parts)
    x = raw if rows is None else raw[rows]
    products = np.asarray(x, dtype=np.float64) - shift
    products *= centers[0] if which is None else centers[which]
    dots = _ordered_dots(products)
    norms = center_norms[0] if which is None else center_norms[which]
    out = dots * -2.0
    out += row_norms
    out += norms
    np.maximum(out, 0.0, out=out)
    return out


class NativeRounds:
    """The compiled round of one group, bound to a cover's arrays.

    Holds references to every array whose address it passes, and one set
    of scratch arrays per thread. ``usable`` says whether the cover's
    arrays have the types the compiled round reads (float32 screening
    and projection); else the numpy rounds run.
    """

    def __init__(self, cover) -> None:
        self.cover = cover
        self._local = threading.local()
        self._keep = []
        self.usable = LIBRARY is not None and self._fits(cover)
        self._starts = np.ascontiguousarray(cover.partition.starts, dtype=np.int64)

    @staticmethod
    def _fits(cover) -> bool:
        arrays = [
            cover.embeddings,
            cover.screen,
            cover.centers,
            cover.screen_centers,
            cover.partition.centers,
        ]
        if cover.lifted is not None:
            arrays += [cover.lifted, cover.lifted_centers]
            if cover.lifted.dtype != np.float32:
                return False
        if cover.embeddings.dtype not in (np.float32, np.float64):
            return False
        if cover.screen.dtype != np.float32:
            return False
        return all(array.flags.c_contiguous for array in arrays)

    def _structure(self) -> _Cover:
        structure = getattr(self._local, "structure", None)
        if structure is not None:
            return structure
        cover = self.cover
        capacity = len(cover.centers)

        def kept(array: NDArray, dtype) -> int:
            array = np.ascontiguousarray(array, dtype=dtype)
            self._keep.append(array)
            return array.ctypes.data

        scratch = [np.empty(capacity), np.empty(capacity)]
        scratch += [np.empty(capacity, dtype=np.int64), np.empty(capacity)]
        self._keep += scratch
        lifted = cover.lifted
        structure = _Cover(
            embeddings=cover.embeddings.ctypes.data,
            embeddings_f64=int(cover.embeddings.dtype == np.float64),
            n_features=cover.embeddings.shape[1],
            order=kept(cover.partition.order, np.int64),
            shift=kept(cover.shift, np.float64),
            reach=kept(cover.partition.reach, np.float64),
            row_norms=kept(cover.sorted_norms, np.float64),
            lifted=None if lifted is None else lifted.ctypes.data,
            lift_width=0 if lifted is None else lifted.shape[1],
            screen=cover.screen.ctypes.data,
            screen_norms=kept(cover.screen_norms, np.float64),
            centers=cover.centers.ctypes.data,
            center_norms=cover.center_norms.ctypes.data,
            screen_centers=cover.screen_centers.ctypes.data,
            screen_center_norms=cover.screen_center_norms.ctypes.data,
            lifted_centers=_address(cover.lifted_centers),
            middles=cover.partition.centers.ctypes.data,
            middle_norms=kept(cover.middle_norms, np.float64),
            slack=cover.slack,
            lift_slack=cover.lift_slack,
            screen_slack=cover.screen_slack,
            low=scratch[0].ctypes.data,
            half=scratch[1].ctypes.data,
            candidates=scratch[2].ctypes.data,
            screened=scratch[3].ctypes.data,
        )
        self._local.structure = structure
        self._local.counts = np.zeros(2, dtype=np.int64)
        self._local.large = np.empty(len(cover.bound), dtype=np.int64)
        return structure

    def pick_rounds(self, split_pairs: int) -> tuple[NDArray[np.int64], int, int]:
        """Run the rounds of a pick (``LazyCover.farthest``) on this
        thread until no stale group could hold the pick, or until a round
        would screen at least ``split_pairs`` pairs (0: never stop). Returns
        that round's groups (empty when done), exact distances computed and
        pairs screened."""
        structure = self._structure()
        cover = self.cover
        counts = self._local.counts
        counts[:] = 0
        large = self._local.large
        n_large = LIBRARY.pick_rounds(
            ctypes.addressof(structure),
            cover.nearest.ctypes.data,
            cover.bound.ctypes.data,
            cover.applied.ctypes.data,
            self._starts.ctypes.data,
            len(self._starts) - 1,
            cover.n_centers,
            split_pairs,
            counts.ctypes.data,
            large.ctypes.data,
        )
        return large[:n_large].copy(), int(counts[0]), int(counts[1])

    def update(self, group: int, rows: slice, first: int) -> tuple[float, int, int]:
        """Apply centers ``first`` onwards to ``rows`` of ``group``: the
        rows' largest nearest distance after, exact distances computed and
        pairs screened."""
        structure = self._structure()
        counts = self._local.counts
        counts[:] = 0
        largest = LIBRARY.update_group(
            ctypes.addressof(structure),
            self.cover.nearest.ctypes.data,
            group,
            rows.start,
            rows.stop,
            first,
            self.cover.n_centers,
            counts.ctypes.data,
        )
        return largest, int(counts[0]), int(counts[1])
