"""Turn the server's answers into numpy and plain Python values."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alquery.v1 import query_pb2


@dataclasses.dataclass(frozen=True)
class RankResult:
    """The server's answer to ``rank``.

    Attributes
    ----------
    indices : ndarray of shape (n_returned,), int64
        Pool positions, best first.
    scores : ndarray of shape (n_returned,), float64, or None
        The strategy's score of each index; None when scores were not asked.
    strategy : str
        The strategy that ran, "family.method".
    warnings : tuple of str
        Notes from the server, e.g. a batch size clamped to the pool size.
    extras : dict of str to ndarray
        Further per-sample values some strategies report, aligned with
        ``indices`` (e.g. "confidence" from credibility.conformal).
    """

    indices: NDArray[np.int64]
    scores: NDArray[np.float64] | None
    strategy: str
    warnings: tuple[str, ...] = ()
    extras: dict[str, NDArray[np.float64]] = dataclasses.field(default_factory=dict)


def rank_result(response: query_pb2.RankResponse, *, omit_scores: bool) -> RankResult:
    """Return a ``RankResult`` for a ``RankResponse``.

    ``omit_scores`` is the request's flag: scores are None when it was set.
    """
    return RankResult(
        indices=_array(response.ranked_indices, np.int64),
        scores=None if omit_scores else _array(response.scores, np.float64),
        strategy=response.strategy,
        warnings=tuple(response.warnings),
        extras={
            key: _array(values.values, np.float64)
            for key, values in response.extras.items()
        },
    )


def _array(values: Any, dtype: type) -> NDArray:
    # A repeated field is a sequence, not an array: ``np.array`` probes it
    # element by element, ``np.fromiter`` with its length is a few times
    # faster.
    return np.fromiter(values, dtype=dtype, count=len(values))


def strategy_dicts(response: query_pb2.ListStrategiesResponse) -> list[dict[str, Any]]:
    """Every strategy of a ``ListStrategiesResponse`` as a dict."""
    return [
        {
            "name": info.name,
            "family": info.family,
            "method": info.method,
            "description": info.description,
            "required_inputs": list(info.required_inputs),
            "higher_first": info.higher_first,
            "min_passes": info.min_passes,
            "parameters": [
                {
                    "name": p.name,
                    "type": p.type,
                    "default": p.default,
                    "description": p.description,
                }
                for p in info.parameters
            ],
        }
        for info in response.strategies
    ]
