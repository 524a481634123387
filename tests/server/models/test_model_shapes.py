"""Models whose shapes would make the server allocate without bound, crash,
or read the wrong rows are refused with INVALID_ARGUMENT naming the model."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from alquery.client import AlqueryClient, AlqueryError, OnnxModel
from onnx_models import checked_model, mlp

POOL = np.random.default_rng(3).normal(size=(12, 6)).astype(np.float32)


@pytest.mark.parametrize("batch", [-5, 5 * 10**7])
def test_a_fixed_batch_axis_out_of_range_is_refused(client, batch):
    with pytest.raises(AlqueryError) as raised:
        client.rank(
            "uncertainty.margin", 2, model=mlp(6, 4, 3, batch=batch), embeddings=POOL
        )
    assert raised.value.code.name == "INVALID_ARGUMENT"
    assert f"a fixed batch axis of {batch}" in raised.value.details
    assert raised.value.details.startswith("inference.models[0]")


def extra_rows_model() -> bytes:
    """logits of x, with five constant rows stacked in front: (n + 5, 3)."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(6, 3)).astype(np.float32)
    extra = np.ones((5, 3), dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["scores"]),
            helper.make_node("Concat", ["extra", "scores"], ["logits"], axis=0),
        ],
        "extra_rows",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["m", 3])],
        [
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(extra, "extra"),
        ],
    )
    return checked_model(graph)


def test_an_output_with_more_rows_than_the_input_is_refused(client):
    with pytest.raises(AlqueryError) as raised:
        client.rank("uncertainty.margin", 2, model=extra_rows_model(), embeddings=POOL)
    assert raised.value.code.name == "INVALID_ARGUMENT"
    assert "expected one row per input row" in raised.value.details
    # The server goes on serving.
    assert client.rank(
        "uncertainty.margin", 1, probabilities=[[0.5, 0.5]]
    ).indices.tolist() == [0]


def no_column_model(*, embeddings: bool) -> bytes:
    """A model with an output of shape (n, 0): its predictions "logits", or,
    with ``embeddings``, a second output "hidden" beside 3 logits."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(6, 3)).astype(np.float32)
    # Slice(starts=0, ends=0, axes=1) keeps every row and no column.
    bounds = {"start": 0, "end": 0, "axis": 1}
    empty = "hidden" if embeddings else "logits"
    source = "x" if embeddings else "scores"
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["logits" if embeddings else source]),
        helper.make_node("Slice", [source, *bounds], [empty]),
    ]
    outputs = [helper.make_tensor_value_info(empty, TensorProto.FLOAT, ["n", 0])]
    if embeddings:
        outputs.insert(
            0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])
        )
    initializers = [numpy_helper.from_array(weights, "w")] + [
        numpy_helper.from_array(np.array([value], dtype=np.int64), name)
        for name, value in bounds.items()
    ]
    graph = helper.make_graph(
        nodes,
        "no_column",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
        outputs,
        initializers,
    )
    return checked_model(graph)


@pytest.mark.parametrize("streamed", [False, True])
def test_predictions_with_no_column_are_refused(target, streamed):
    # Softmax over zero columns used to fail inside numpy: INTERNAL.
    threshold = 0 if streamed else 1 << 30
    with AlqueryClient(target, stream_threshold_bytes=threshold) as client:
        with pytest.raises(AlqueryError) as raised:
            client.rank(
                "uncertainty.margin",
                2,
                model=no_column_model(embeddings=False),
                embeddings=POOL,
            )
        assert raised.value.code.name == "INVALID_ARGUMENT"
        assert raised.value.details.startswith("inference.models[0]: output 'logits'")
        assert "no column" in raised.value.details
        assert client.rank(
            "uncertainty.margin", 1, probabilities=[[0.5, 0.5]]
        ).indices.tolist() == [0]


def test_embeddings_with_no_column_are_refused(client):
    # Sent directly, embeddings of width 0 are refused at the edge; from a
    # model they reached the strategy, which ranked on nothing.
    model = OnnxModel(
        no_column_model(embeddings=True),
        output_name="logits",
        embeddings_output="hidden",
    )
    with pytest.raises(AlqueryError) as raised:
        client.rank("hybrid.badge", 2, model=model, embeddings=POOL)
    assert raised.value.code.name == "INVALID_ARGUMENT"
    assert raised.value.details.startswith("inference.models[0]: output 'hidden'")
    assert "no column" in raised.value.details
