"""Run a checked query's strategy and turn its output into a ``Ranking``."""

from __future__ import annotations

import dataclasses

from alquery.server.edge import Query
from alquery.server.registry import PoolScores, Ranking
from alquery.server.selection import sample, top_k
from alquery.v1 import query_pb2


def rank(query: Query) -> Ranking:
    """Return the ranked batch for ``query``: pool positions, best first.

    Scored strategies go through the request's selection mode (top-k unless
    a sampling mode was asked for); batch-aware ones pick their own batch.
    The strategy's warnings travel in the ``Ranking``.
    """
    strategy = query.strategy
    if strategy.pick is not None:
        return strategy.pick(query)
    top_k_mode = query.selection_mode == query_pb2.Selection.MODE_TOP_K
    if top_k_mode and strategy.top is not None:
        return strategy.top(query)
    scored = strategy.score(query)
    if not isinstance(scored, PoolScores):
        scored = PoolScores(scores=scored)
    scores = scored.scores
    if top_k_mode:
        ranking = top_k(scores, query.batch_size, higher_first=strategy.higher_first)
    else:
        ranking = sample(
            scores,
            query.batch_size,
            higher_first=strategy.higher_first,
            mode=query.selection_mode,
            temperature=query.temperature,
            rng=query.random_generator(),
        )
    if not scored.extras and not scored.warnings:
        return ranking
    chosen = ranking.ranked_indices
    return dataclasses.replace(
        ranking,
        extras={name: values[chosen] for name, values in scored.extras.items()},
        warnings=scored.warnings,
    )
