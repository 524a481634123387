"""Run a checked query's strategy and turn its output into a ``Ranking``."""

from __future__ import annotations

from alquery.server.edge import Query
from alquery.server.registry import Ranking
from alquery.server.selection import sample, top_k
from alquery.v1 import query_pb2


def rank(query: Query) -> Ranking:
    """Return the ranked batch for ``query``: pool positions, best first.

    Scored strategies go through the request's selection mode (top-k unless
    a sampling mode was asked for); batch-aware ones pick their own batch.
    """
    strategy = query.strategy
    if strategy.pick is not None:
        return strategy.pick(query)
    scores = strategy.score(query)
    if query.selection_mode == query_pb2.Selection.MODE_TOP_K:
        return top_k(scores, query.batch_size, higher_first=strategy.higher_first)
    return sample(
        scores,
        query.batch_size,
        higher_first=strategy.higher_first,
        mode=query.selection_mode,
        temperature=query.temperature,
        rng=query.random_generator(),
    )
