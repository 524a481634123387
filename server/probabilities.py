"""Class probabilities: the one softmax, the row checks, and losses.

Logits become probabilities only through ``softmax`` in this module.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from alquery.server.errors import InvalidRequestError
from alquery.server.parts import map_parts, row_parts
from alquery.server.rows import row_max, row_sum

SUM_TOLERANCE = 1e-3
"""How far a probability row's sum may be from 1 (float32 softmax outputs
often sum to 0.99999994)."""

MAX_QUICK_SUM_CLASSES = 2048
"""Up to this many float32 classes, row sums are checked in float32 first:
their error bound stays a small part of ``SUM_TOLERANCE``."""

LOSS_EPSILON = 1e-12
"""Probabilities are clipped below at this value before a logarithm in
``cross_entropy``, so a confident wrong answer costs ln(1e12) = 27.6."""


def softmax(logits: NDArray, out: NDArray | None = None) -> NDArray:
    """Return softmax over the last axis, in float64 unless ``out`` says.

    p_c = exp(z_c - max_k z_k) / sum_j exp(z_j - max_k z_k). Subtracting the
    row maximum keeps every exponent at most 0, so no finite input overflows.
    ``out``, when given, receives the result and sets the dtype it is
    computed in (the chunked scoring passes a float32 buffer for float32
    logits).
    """
    if out is None:
        out = np.empty(logits.shape, np.float64)
    if logits.ndim == 2:
        top = row_max(logits)[:, np.newaxis]
    else:
        top = logits.max(axis=-1, keepdims=True)
    np.subtract(logits, top, out=out, dtype=out.dtype)
    np.exp(out, out=out)
    if out.ndim == 2:
        out /= row_sum(out)[:, np.newaxis]
    else:
        out /= out.sum(axis=-1, keepdims=True)
    return out


def from_predictions(values: NDArray, *, logits: bool) -> NDArray[np.float64]:
    """Return float64 probabilities from checked probabilities or logits.

    Logits go through ``softmax``; probabilities are only cast (no copy when
    they are float64 already).
    """
    if logits:
        return softmax(values)
    return np.asarray(values, dtype=np.float64)


def check_probabilities(
    probabilities: NDArray, field: str, chunk_bytes: int = 2 * 2**20
) -> None:
    """Raise ``InvalidRequestError`` unless every row is a distribution.

    A row is a distribution when each value lies in [0, 1] and the values sum
    to 1 within ``SUM_TOLERANCE``. The message names the first bad row (the
    row index is the sample's position; for three axes, the pass is named
    too); a bad sum anywhere is reported before a value out of range.

    Notes
    -----
    Checked ``chunk_bytes`` of rows at a time, so no temporary is larger
    than a chunk, in contiguous row ranges on the compute threads
    (``parts.row_parts``); the first range that found a bad sum, else a
    value out of range, is reported, as a single pass would. A float32
    chunk of up to ``MAX_QUICK_SUM_CLASSES`` classes without negative values
    has its sums taken in float32 first (``_sums_surely_fine``); only a
    chunk with a row near the tolerance, or a bad one, is summed in float64.
    """
    row_bytes = probabilities[0].size * probabilities.itemsize
    rows = max(1, chunk_bytes // row_bytes)
    if len(probabilities) <= rows:
        # One chunk (small requests, most calls): the scan below without
        # its split and closures, the same checks in the same order.
        low, high = probabilities.min(), probabilities.max()
        if not (low >= 0 and _sums_surely_fine(probabilities)):
            _check_sums(probabilities, 0, field)
        if low < 0 or high > 1:
            _raise_out_of_range(probabilities, 0, field)
        return

    def scan(start: int, stop: int) -> tuple[InvalidRequestError | None, int | None]:
        # This range's first bad sum, and its first chunk out of range.
        first_out_of_range = None
        for chunk_start in range(start, stop, rows):
            block = probabilities[chunk_start : min(chunk_start + rows, stop)]
            low, high = block.min(), block.max()
            if not (low >= 0 and _sums_surely_fine(block)):
                try:
                    _check_sums(block, chunk_start, field)
                except InvalidRequestError as error:
                    return error, first_out_of_range
            if first_out_of_range is None and (low < 0 or high > 1):
                first_out_of_range = chunk_start
        return None, first_out_of_range

    found = map_parts(scan, row_parts(len(probabilities), rows))
    for bad_sum, _ in found:
        if bad_sum is not None:
            raise bad_sum
    starts = [start for _, start in found if start is not None]
    if starts:
        first = starts[0]
        _raise_out_of_range(probabilities[first : first + rows], first, field)


def _raise_out_of_range(block: NDArray, start: int, field: str) -> None:
    # ``block`` holds a value outside [0, 1]; its first row is row ``start``.
    out_of_range = (block < 0) | (block > 1)
    where = np.argwhere(out_of_range)[0]
    value = block[tuple(where)]
    where[0] += start
    raise InvalidRequestError(
        f"{field}: {_position(where[:-1])} holds {value:.6g} for class "
        f"{where[-1]}; probabilities must lie in [0, 1]"
    )


FEW_CLASSES = 4
"""Up to this many classes, ``_check_sums`` adds columns (``row_sum``);
from 5 on, ``np.einsum`` sums rows about twice as fast (1,000 x 10 float64:
5.8 against 13.2 microseconds). The two orders differ in the last bit at
most, far below ``SUM_TOLERANCE``."""


def _sums_surely_fine(block: NDArray) -> bool:
    """Whether every row of a block of values >= 0 passes ``_check_sums``,
    judged from float32 sums; False means "not known", not "bad".

    With u = 2^-24, n classes and g = (n + 1) u / (1 - (n + 1) u), a float32
    sum s of values >= 0 is within g S of their sum S in any order of
    additions, and ``_check_sums``'s float64 sum within far less, so
    |s - 1| <= tol - 4 g s (tol = ``SUM_TOLERANCE``) leaves that float64 sum
    within tol of 1.
    """
    n_classes = block.shape[-1]
    if block.ndim != 2 or block.dtype != np.float32:
        return False
    if n_classes > MAX_QUICK_SUM_CLASSES:
        return False
    sums = np.matmul(block, np.ones(n_classes, np.float32)).astype(np.float64)
    u = 2.0**-24
    g = (n_classes + 1) * u / (1.0 - (n_classes + 1) * u)
    return bool(np.all(np.abs(sums - 1.0) <= SUM_TOLERANCE - 4.0 * g * sums))


def _check_sums(block: NDArray, start: int, field: str) -> None:
    if block.ndim == 2 and block.shape[1] <= FEW_CLASSES:
        sums = row_sum(block, out=np.empty(len(block)))
    else:
        # Each row summed in float64, with no float64 copy of the block.
        sums = np.einsum("...c->...", block, dtype=np.float64)
    bad_sum = np.abs(sums - 1.0) > SUM_TOLERANCE
    if bad_sum.any():
        where = np.argwhere(bad_sum)[0]
        value = sums[tuple(where)]
        where[0] += start
        raise InvalidRequestError(
            f"{field}: {_position(where)} sums to {value:.6g}; "
            f"each row must sum to 1 within {SUM_TOLERANCE:g}"
        )


def _position(where: NDArray) -> str:
    if len(where) == 1:
        return f"row {where[0]}"
    return f"row {where[0]} pass {where[1]}"


def predictive(probabilities: NDArray) -> NDArray[np.float64]:
    """Return one distribution per sample, shape (n_samples, n_classes).

    Three-axis input (n_samples, n_passes, n_classes) is averaged over the
    passes: p_ic = (1 / T) sum_t p_itc.
    """
    if probabilities.ndim == 3:
        return probabilities.mean(axis=1, dtype=np.float64)
    return np.asarray(probabilities, dtype=np.float64)


def cross_entropy(probabilities: NDArray, labels: NDArray) -> NDArray[np.float64]:
    """Return each sample's loss -ln(max(p_i,y_i, LOSS_EPSILON)), natural log.

    ``probabilities`` has shape (n_samples, n_classes); ``labels`` holds class
    indices in [0, n_classes), shape (n_samples,).
    """
    chosen = probabilities[np.arange(len(labels)), labels]
    return -np.log(np.maximum(chosen, LOSS_EPSILON))
