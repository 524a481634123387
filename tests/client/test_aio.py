"""The asyncio client answers as the blocking client does."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from alquery.client import AlqueryError
from alquery.client.aio import AsyncAlqueryClient


def test_concurrent_ranks_match_the_blocking_client(target, client):
    rng = np.random.default_rng(3)
    probabilities = rng.dirichlet(np.ones(5), size=50)
    embeddings = rng.normal(size=(50, 4))

    async def main():
        async with AsyncAlqueryClient(target, timeout=60) as aio:
            return await asyncio.gather(
                aio.rank("uncertainty.entropy", 6, probabilities=probabilities),
                aio.rank("diversity.kcenter", 6, embeddings=embeddings),
                aio.strategies(),
            )

    entropy, kcenter, strategies = asyncio.run(main())
    expected = client.rank("uncertainty.entropy", 6, probabilities=probabilities)
    assert entropy.indices.tolist() == expected.indices.tolist()
    np.testing.assert_array_equal(entropy.scores, expected.scores)
    assert kcenter.indices.tolist() == client.rank(
        "diversity.kcenter", 6, embeddings=embeddings
    ).indices.tolist()
    assert strategies == client.strategies()


def test_a_refused_request_raises_alquery_error_naming_the_field(target):
    async def main():
        async with AsyncAlqueryClient(target) as aio:
            await aio.rank("uncertainty.margin", 1, probabilities=[[0.5, 0.4]])

    with pytest.raises(AlqueryError, match="pool.probabilities: row 0") as caught:
        asyncio.run(main())
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "option", [{"model": b"onnx"}, {"score_validation": True}, {"progress": print}]
)
def test_options_of_the_blocking_client_only_are_refused_by_name(target, option):
    # They reached build_request: "build_request() got an unexpected keyword
    # argument 'model'", for a client the README said had the same methods.
    async def rank() -> None:
        async with AsyncAlqueryClient(target) as client:
            await client.rank(
                "uncertainty.margin", 1, probabilities=[[0.6, 0.4]], **option
            )

    (name,) = option
    with pytest.raises(TypeError, match=f"AsyncAlqueryClient.rank: no {name!r}"):
        asyncio.run(rank())
