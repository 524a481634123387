"""Class probabilities: the one softmax, the row checks, and losses.

Logits become probabilities only through ``softmax`` in this module.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from alquery.server.errors import InvalidRequestError

SUM_TOLERANCE = 1e-3
"""How far a probability row's sum may be from 1 (float32 softmax outputs
often sum to 0.99999994)."""

LOSS_EPSILON = 1e-12
"""Probabilities are clipped below at this value before a logarithm in
``cross_entropy``, so a confident wrong answer costs ln(1e12) = 27.6."""


def softmax(logits: NDArray) -> NDArray[np.float64]:
    """Return softmax over the last axis, in float64.

    p_c = exp(z_c - max_k z_k) / sum_j exp(z_j - max_k z_k). Subtracting the
    row maximum keeps every exponent at most 0, so no finite input overflows.
    """
    shifted = np.asarray(logits, dtype=np.float64) - logits.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


def check_probabilities(probabilities: NDArray, field: str) -> None:
    """Raise ``InvalidRequestError`` unless every row is a distribution.

    A row is a distribution when each value lies in [0, 1] and the values sum
    to 1 within ``SUM_TOLERANCE``. The message names the first bad row (the
    row index is the sample's position; for three axes, the pass is named
    too).
    """
    sums = probabilities.sum(axis=-1, dtype=np.float64)
    bad_sum = np.abs(sums - 1.0) > SUM_TOLERANCE
    if bad_sum.any():
        where = np.argwhere(bad_sum)[0]
        raise InvalidRequestError(
            f"{field}: {_position(where)} sums to {sums[tuple(where)]:.6g}; "
            f"each row must sum to 1 within {SUM_TOLERANCE:g}"
        )
    out_of_range = (probabilities < 0) | (probabilities > 1)
    if out_of_range.any():
        where = np.argwhere(out_of_range)[0]
        value = probabilities[tuple(where)]
        raise InvalidRequestError(
            f"{field}: {_position(where[:-1])} holds {value:.6g} for class "
            f"{where[-1]}; probabilities must lie in [0, 1]"
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
