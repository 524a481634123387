"""Run a checked query's strategy and turn its output into a ``Ranking``."""

from __future__ import annotations

from alquery.server.edge import Query
from alquery.server.registry import Ranking
from alquery.server.selection import top_k


def rank(query: Query) -> Ranking:
    """Return the ranked batch for ``query``: pool positions, best first."""
    strategy = query.strategy
    if strategy.pick is not None:
        return strategy.pick(query)
    scores = strategy.score(query)
    return top_k(scores, query.batch_size, higher_first=strategy.higher_first)
