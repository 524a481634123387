"""Every registered strategy, through the edge, returns a proper batch."""

import numpy as np
import pytest

from alquery.server import edge, registry
from alquery.server.ranking import rank
from alquery.v1 import query_pb2
from conftest import tensor

N_POOL, N_PASSES, N_CLASSES, N_FEATURES = 12, 3, 4, 3

REQUIRED_VALUES = {"radius": 0.5}
"""Values for parameters that have no default, by parameter name."""


def _request(strategy: registry.Strategy, batch_size: int, labeled: bool):
    rng = np.random.default_rng(7)
    # Six distinct embeddings, each twice, and probabilities repeated alike,
    # so that duplicates and ties meet every strategy.
    embeddings = np.repeat(rng.normal(size=(N_POOL // 2, N_FEATURES)), 2, axis=0)
    logits = np.repeat(rng.normal(size=(N_POOL // 2, N_PASSES, N_CLASSES)), 2, axis=0)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(
            probabilities=tensor(probabilities), embeddings=tensor(embeddings)
        ),
        validation=query_pb2.ValidationSet(
            probabilities=tensor(probabilities[:5]),
            labels=tensor([0, 1, 2, 3, 0], dtype=query_pb2.D_TYPE_INT64),
            embeddings=tensor(embeddings[:5] + 0.1),
        ),
        batch_size=batch_size,
        seed=3,
    )
    if labeled:
        request.labeled.embeddings.CopyFrom(tensor(embeddings[:3] - 0.2))
        request.labeled.labels.CopyFrom(
            tensor([0, 1, 2], dtype=query_pb2.D_TYPE_INT64)
        )
    message = getattr(request, strategy.family)
    message.method = message.Method.Value("METHOD_" + strategy.method.upper())
    for parameter in strategy.parameters:
        if parameter.default == "required":
            setattr(message, parameter.name, REQUIRED_VALUES[parameter.name])
    return request


@pytest.mark.parametrize("labeled", [False, True], ids=["cold", "labeled"])
@pytest.mark.parametrize("batch_size", [1, 5, N_POOL])
@pytest.mark.parametrize(
    "strategy", registry.all_strategies(), ids=lambda strategy: strategy.name
)
def test_every_strategy_returns_batch_size_distinct_pool_positions(
    strategy, batch_size, labeled
):
    if not labeled and "labeled_embeddings" in strategy.required_inputs:
        pytest.skip(f"{strategy.name} needs a labeled set")
    query = edge.build_query(_request(strategy, batch_size, labeled))
    ranking = rank(query)
    picks = ranking.ranked_indices.tolist()
    assert len(picks) == batch_size
    assert len(set(picks)) == batch_size
    assert all(0 <= pick < N_POOL for pick in picks)
    assert ranking.scores.shape == (batch_size,)
