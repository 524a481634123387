"""The edge keeps the pool's predictions as sent; float64 only on demand."""

import numpy as np
import pytest

from alquery.server import edge, ranking
from alquery.server.probabilities import softmax
from alquery.v1 import query_pb2
from conftest import tensor

F32 = query_pb2.D_TYPE_FLOAT32
RNG = np.random.default_rng(2)


def margin_request(kind, values, dtype=F32):
    request = query_pb2.RankRequest(batch_size=3)
    request.uncertainty.method = query_pb2.UncertaintyStrategy.METHOD_MARGIN
    getattr(request.pool, kind).CopyFrom(tensor(values, dtype))
    return request


def test_float32_probabilities_are_scored_without_a_float64_copy():
    probabilities = RNG.dirichlet(np.ones(4), size=12).astype(np.float32)
    query = edge.build_query(margin_request("probabilities", probabilities))
    assert query.pool_predictions.dtype == np.float32
    assert not query.pool_logits
    ranked = ranking.rank(query)
    # The cached float64 conversion was never made.
    assert "pool_probabilities" not in vars(query)
    top = -np.sort(-probabilities.astype(np.float64), axis=1)
    expected = np.argsort(top[:, 0] - top[:, 1], kind="stable")[:3]
    np.testing.assert_array_equal(ranked.ranked_indices, expected)


@pytest.mark.parametrize("kind", ["probabilities", "logits"])
def test_pool_probabilities_are_float64_on_first_use(kind):
    values = RNG.dirichlet(np.ones(3), size=5).astype(np.float32)
    query = edge.build_query(margin_request(kind, values))
    expected = softmax(values) if kind == "logits" else values.astype(np.float64)
    assert query.pool_probabilities.dtype == np.float64
    np.testing.assert_array_equal(query.pool_probabilities, expected)
    assert query.pool_probabilities is query.pool_probabilities


def test_a_bad_row_past_the_first_chunk_is_named():
    # 100,000 x 10 float32 is 4 MB: the checks walk it in several chunks.
    probabilities = np.full((100_000, 10), 0.1, dtype=np.float32)
    probabilities[90_001, 3] = np.nan
    with pytest.raises(edge.InvalidRequestError, match="row 90001 contains NaN"):
        edge.build_query(margin_request("probabilities", probabilities))
    probabilities[90_001, 3] = 0.2
    with pytest.raises(edge.InvalidRequestError, match="row 90001 sums to 1.1"):
        edge.build_query(margin_request("probabilities", probabilities))


EMBEDDINGS = np.random.default_rng(5).normal(size=(12, 3))


def kcenter_request(**fields):
    return query_pb2.RankRequest(
        pool=query_pb2.Pool(embeddings=tensor(EMBEDDINGS)),
        diversity=query_pb2.DiversityStrategy(
            method=query_pb2.DiversityStrategy.METHOD_KCENTER, **fields
        ),
        batch_size=2,
    )


def test_a_parameter_the_strategy_does_not_read_is_warned_about(stub):
    # radius is probcover's and angular_distance lightweight_coreset's: both
    # used to be dropped without a word, the answer that of plain k-center.
    plain = stub.Rank(kcenter_request(), timeout=30)
    sent = stub.Rank(
        kcenter_request(radius=0.5, angular_distance=False), timeout=30
    )
    assert list(sent.ranked_indices) == list(plain.ranked_indices)
    assert list(plain.warnings) == []
    assert list(sent.warnings) == [
        "diversity.radius, diversity.angular_distance: not parameters of "
        "diversity.kcenter (kcenter_projection); ignored"
    ]
    alone = stub.Rank(kcenter_request(radius=0.5), timeout=30)
    assert list(alone.warnings) == [
        "diversity.radius: not a parameter of diversity.kcenter "
        "(kcenter_projection); ignored"
    ]
    # A parameter it reads, set to its default, draws no warning.
    read = stub.Rank(kcenter_request(kcenter_projection=3), timeout=30)
    assert list(read.warnings) == []


def test_a_temperature_without_a_sampling_mode_is_warned_about(stub):
    request = kcenter_request()
    request.diversity.method = query_pb2.DiversityStrategy.METHOD_INFORMATION_DENSITY
    request.selection.temperature = 0.5
    answer = stub.Rank(request, timeout=30)
    assert list(answer.warnings) == [
        "selection.temperature: read by the sampling modes only (selection.mode); "
        "ignored by top-k selection"
    ]


def test_a_sampling_mode_for_a_strategy_that_picks_its_batch_is_warned_about(stub):
    # The proto says such strategies ignore the selection; the answer gave
    # no sign that the stochastic batch asked for was not drawn.
    request = kcenter_request()
    request.selection.mode = query_pb2.Selection.MODE_SOFTMAX
    answer = stub.Rank(request, timeout=30)
    plain = stub.Rank(kcenter_request(), timeout=30)
    assert list(answer.ranked_indices) == list(plain.ranked_indices)
    assert list(answer.warnings) == [
        "selection.mode: MODE_SOFTMAX is ignored; diversity.kcenter picks its "
        "batch itself, so only scored strategies draw a sampled batch"
    ]
