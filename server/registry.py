"""The strategy registry: every strategy the server offers, by "family.method".

Adding a strategy is one function in its family's module and one ``register``
call there. A strategy either returns per-sample scores, which the shared
selection step ranks, or (batch-aware methods such as k-center) picks its
batch itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from alquery.v1 import query_pb2

if TYPE_CHECKING:
    from alquery.server.edge import Query

FAMILY_MESSAGES = {
    "uncertainty": query_pb2.UncertaintyStrategy,
    "diversity": query_pb2.DiversityStrategy,
    "credibility": query_pb2.CredibilityStrategy,
    "hybrid": query_pb2.HybridStrategy,
}


@dataclasses.dataclass(frozen=True)
class Ranking:
    """Pool positions, best first, and the score of each, aligned.

    ``extras`` maps a name to further per-sample values aligned with
    ``ranked_indices`` (e.g. conformal confidence). ``warnings`` are told to
    the client in ``RankResponse.warnings``, after the edge's own: a strategy
    adds one when it served the request in a degraded way (for example
    k-means finding fewer distinct clusters than asked for).
    """

    ranked_indices: NDArray[np.int64]
    scores: NDArray[np.float64]
    extras: dict[str, NDArray[np.float64]] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PoolScores:
    """What a scored strategy may return instead of a bare score array.

    ``scores`` has shape (n_pool,); each array in ``extras`` has the same
    shape, and the response carries its values for the selected samples
    only. ``warnings`` go to the client as a ``Ranking``'s do.
    """

    scores: NDArray[np.float64]
    extras: dict[str, NDArray[np.float64]] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A strategy parameter: an optional field of the family's message.

    ``resolve`` receives the field's value (None when unset) and the decoded
    query, and returns the value to use or raises ``InvalidRequestError``.
    """

    name: str
    type: str
    default: str
    description: str
    resolve: Callable[[Any, "Query"], Any]


@dataclasses.dataclass(frozen=True)
class Strategy:
    """One registered strategy.

    Exactly one of ``score`` and ``pick`` is set:

    - ``score(query)`` returns scores of shape (n_pool,), or a
      ``PoolScores``; the shared selection step (``ranking.rank``) ranks
      them, highest first if ``higher_first``, else lowest first, ties to
      the lower pool position, and applies the request's sampling mode.
    - ``pick(query)`` returns a ``Ranking`` of exactly ``query.batch_size``
      distinct pool positions in pick order (the first picked first), each
      with its per-pick score. What that score means (a distance, a gain, a
      count, ...) is documented by each strategy. ``higher_first`` describes
      the order of the scores down the ranking: True when a greedy pick
      takes the highest value first (k-center distances, BatchBALD gains),
      False when it takes the lowest (k-means distances). Where a draw or
      a visiting order sets the pick order (BADGE, k-means++, TypiClust,
      cluster-margin), it only says which end of the score is the wanted
      one, and the scores need not be sorted. Ties go to the lower pool
      position; randomness comes only from ``query.random_generator()``.
      Sampling modes do not apply.

    ``top(query)``, optional beside ``score``, is a faster route to the
    top-k selection: it returns exactly the ``Ranking`` that
    ``selection.top_k`` makes of ``score(query)`` (same positions, order
    and scores, no extras); ``ranking.rank`` takes it for top-k requests.

    ``required_inputs`` names ``Query`` attributes that must be present;
    ``min_passes`` > 1 asks for pool predictions with that many passes or
    more, shape (n_pool, n_passes, n_classes).
    """

    family: str
    method: str
    description: str
    required_inputs: tuple[str, ...]
    higher_first: bool
    parameters: tuple[Parameter, ...] = ()
    min_passes: int = 1
    score: Callable[["Query"], NDArray[np.float64] | PoolScores] | None = None
    pick: Callable[["Query"], Ranking] | None = None
    top: Callable[["Query"], Ranking] | None = None

    @property
    def name(self) -> str:
        return f"{self.family}.{self.method}"


_STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Add ``strategy`` to the registry; its method must exist in the proto."""
    if (strategy.score is None) == (strategy.pick is None):
        raise TypeError(f"{strategy.name}: set exactly one of score and pick")
    if strategy.top is not None and strategy.score is None:
        raise TypeError(f"{strategy.name}: top needs score")
    message = FAMILY_MESSAGES[strategy.family]
    enum_name = "METHOD_" + strategy.method.upper()
    if enum_name not in message.Method.keys():
        raise TypeError(f"{strategy.name}: {message.__name__} has no {enum_name}")
    for parameter in strategy.parameters:
        if parameter.name not in message.DESCRIPTOR.fields_by_name:
            raise TypeError(f"{strategy.name}: no field {parameter.name}")
    if strategy.name in _STRATEGIES:
        raise TypeError(f"{strategy.name} is registered twice")
    _STRATEGIES[strategy.name] = strategy
    return strategy


def lookup(name: str) -> Strategy | None:
    """Return the strategy registered as ``name`` ("family.method"), if any."""
    _load()
    return _STRATEGIES.get(name)


def all_strategies() -> list[Strategy]:
    """Return every registered strategy, sorted by name."""
    _load()
    return [_STRATEGIES[name] for name in sorted(_STRATEGIES)]


def _load() -> None:
    # The family modules register themselves on import.
    import alquery.server.strategies  # noqa: F401
