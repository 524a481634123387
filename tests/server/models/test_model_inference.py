"""Models in the request: rankings equal those from the same model run in-process."""

import grpc
import numpy as np
import pytest

from alquery.client import AlqueryError, OnnxModel
from alquery.v1 import query_pb2
from conftest import tensor
from onnx_models import (
    custom_domain_model,
    external_data_model,
    mlp,
    run_in_process,
    sklearn_classifier,
    torch_network,
)

RNG = np.random.default_rng(7)
POOL = RNG.normal(size=(57, 6)).astype(np.float32)
LABELED = RNG.normal(size=(5, 6)).astype(np.float32)


def zipmap_rows(rows, classes):
    return np.array([[row[c] for c in classes] for row in rows])


def assert_same_ranking(by_model, by_outputs):
    np.testing.assert_array_equal(by_model.indices, by_outputs.indices)
    np.testing.assert_allclose(by_model.scores, by_outputs.scores, rtol=1e-9)


@pytest.fixture(scope="module")
def torch_model():
    return torch_network()


@pytest.mark.parametrize("zipmap", [True, False])
def test_sklearn_classifier_ranks_as_its_outputs_do(client, zipmap):
    model, X, classifier = sklearn_classifier(zipmap)
    probabilities = run_in_process(model, POOL)[1]
    if zipmap:
        probabilities = zipmap_rows(probabilities, classifier.classes_)
    for strategy in ("uncertainty.margin", "uncertainty.entropy"):
        by_model = client.rank(strategy, 10, model=model, embeddings=POOL)
        by_outputs = client.rank(strategy, 10, probabilities=probabilities)
        assert_same_ranking(by_model, by_outputs)


def test_zipmap_columns_follow_the_class_labels(client):
    # validation_knn reads the probability of each validation label, so a
    # column order other than classifier.classes_ would change the scores.
    model, X, classifier = sklearn_classifier(zipmap=True)
    validation, labels = X[:40], RNG.integers(0, 3, size=40)
    expected = zipmap_rows(run_in_process(model, validation)[1], classifier.classes_)
    common = dict(
        embeddings=POOL, validation_labels=labels, validation_embeddings=validation
    )
    by_model = client.rank(
        "credibility.validation_knn", 20, model=model, score_validation=True, **common
    )
    by_outputs = client.rank(
        "credibility.validation_knn", 20, validation_probabilities=expected, **common
    )
    assert_same_ranking(by_model, by_outputs)
    description = client.describe_model(model)
    assert description["class_labels"] == list(classifier.classes_)


def test_a_float64_model_takes_float32_embeddings_and_the_reverse(client):
    model64, _, _ = sklearn_classifier(zipmap=False, double=True)
    expected = run_in_process(model64, POOL.astype(np.float64))[1]
    by_model = client.rank("uncertainty.entropy", 9, model=model64, embeddings=POOL)
    by_outputs = client.rank("uncertainty.entropy", 9, probabilities=expected)
    assert_same_ranking(by_model, by_outputs)

    model32, _, _ = sklearn_classifier(zipmap=False)
    expected = run_in_process(model32, POOL)[1]
    by_model = client.rank(
        "uncertainty.entropy", 9, model=model32, embeddings=POOL.astype(np.float64)
    )
    by_outputs = client.rank("uncertainty.entropy", 9, probabilities=expected)
    assert_same_ranking(by_model, by_outputs)


def test_torch_network_logits_and_embeddings_feed_badge(client, torch_model):
    logits, hidden = run_in_process(torch_model, POOL)
    (labeled_hidden,) = run_in_process(torch_model, LABELED, ["hidden"])
    model = OnnxModel(torch_model, embeddings_output="hidden", output_kind="logits")
    strategies = (
        "hybrid.badge",
        "hybrid.expected_gradient_length",
        "diversity.kcenter",
    )
    for strategy in strategies:
        by_model = client.rank(
            strategy, 8, model=model, embeddings=POOL, labeled_embeddings=LABELED
        )
        by_outputs = client.rank(
            strategy,
            8,
            logits=logits,
            embeddings=hidden,
            labeled_embeddings=labeled_hidden,
        )
        assert_same_ranking(by_model, by_outputs)


def test_two_candidate_outputs_and_no_binding_is_refused(client, torch_model):
    with pytest.raises(AlqueryError) as error:
        client.rank("uncertainty.margin", 3, model=torch_model, embeddings=POOL)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details.startswith(
        "inference.models[0].output_name: not set, and the model has 2 outputs"
    )
    named = client.rank(
        "uncertainty.margin",
        3,
        embeddings=POOL,
        model=OnnxModel(torch_model, output_name="logits"),
    )
    assert len(named.indices) == 3


@pytest.mark.parametrize("fixed_batch", [1, 4])
def test_a_fixed_batch_axis_runs_in_chunks_of_that_size(client, fixed_batch):
    model = torch_network(fixed_batch=fixed_batch)
    logits = np.concatenate(
        [
            run_in_process(
                model, np.resize(POOL[i : i + fixed_batch], (fixed_batch, 6))
            )[0][: len(POOL[i : i + fixed_batch])]
            for i in range(0, len(POOL), fixed_batch)
        ]
    )
    binding = OnnxModel(model, output_name="logits")
    by_model = client.rank("uncertainty.entropy", 12, model=binding, embeddings=POOL)
    by_outputs = client.rank("uncertainty.entropy", 12, logits=logits)
    assert_same_ranking(by_model, by_outputs)
    assert client.describe_model(binding)["fixed_batch_size"] == fixed_batch


def test_a_committee_fills_the_passes_axis_in_member_order(client):
    members = [mlp(6, 8, 3, seed=seed) for seed in range(3)]
    logits = np.stack([run_in_process(m, POOL)[0] for m in members], axis=1)
    binding = [OnnxModel(m, output_name="logits") for m in members]
    for strategy in ("uncertainty.vote_entropy", "uncertainty.kl_max"):
        by_model = client.rank(strategy, 10, model=binding, embeddings=POOL)
        by_outputs = client.rank(strategy, 10, logits=logits)
        assert_same_ranking(by_model, by_outputs)


def test_monte_carlo_dropout_passes_are_reproducible_from_the_seed(client):
    model = OnnxModel(torch_network(dropout=True), output_name="logits", mc_passes=6)
    first = client.rank("uncertainty.bald", 15, model=model, embeddings=POOL, seed=3)
    again = client.rank("uncertainty.bald", 15, model=model, embeddings=POOL, seed=3)
    other = client.rank("uncertainty.bald", 15, model=model, embeddings=POOL, seed=4)
    assert_same_ranking(first, again)
    # BALD is 0 when every pass agrees; dropout makes the passes differ.
    assert first.scores.max() > 1e-3
    assert not np.allclose(first.scores, other.scores)


def test_mc_passes_need_a_training_mode_dropout(client, torch_model):
    model = OnnxModel(torch_model, output_name="logits", mc_passes=4)
    with pytest.raises(AlqueryError) as error:
        client.rank("uncertainty.bald", 3, model=model, embeddings=POOL)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details.startswith("inference.models[0].mc_passes: 4 passes")


@pytest.mark.parametrize(
    "model, message",
    [
        (external_data_model(), "references external data ('weights.bin')"),
        (custom_domain_model(), "from domain 'com.example.custom'"),
    ],
)
def test_unsafe_models_are_refused_and_the_server_keeps_serving(stub, model, message):
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(embeddings=tensor(POOL[:, :3], query_pb2.D_TYPE_FLOAT32)),
        uncertainty=query_pb2.UncertaintyStrategy(method=3),
        batch_size=2,
        inference=query_pb2.Inference(models=[query_pb2.Model(onnx=model)]),
    )
    with pytest.raises(grpc.RpcError) as error:
        stub.Rank(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("inference.models[0].onnx: ")
    assert message in error.value.details()
    request.inference.models[0].onnx = mlp(3, 4, 2)
    request.inference.models[0].output_name = "logits"
    assert len(stub.Rank(request).ranked_indices) == 2


def test_an_unknown_hash_is_not_found_naming_the_hash(stub):
    unknown = "0" * 64
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(embeddings=tensor(POOL)),
        uncertainty=query_pb2.UncertaintyStrategy(method=3),
        batch_size=2,
        inference=query_pb2.Inference(models=[query_pb2.Model(sha256=unknown)]),
    )
    with pytest.raises(grpc.RpcError) as error:
        stub.Rank(request)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert error.value.details().startswith(
        f"inference.models[0].sha256: this server holds no model with SHA-256 "
        f"'{unknown}'"
    )


@pytest.mark.parametrize(
    "change, field",
    [
        (
            lambda r: r.pool.probabilities.CopyFrom(tensor([[0.5, 0.5]] * 57)),
            "pool.probabilities: sent together with inference models",
        ),
        (lambda r: r.pool.ClearField("embeddings"), "pool.embeddings: missing"),
        (lambda r: r.inference.ClearField("models"), "inference.models: empty"),
        (
            lambda r: setattr(r.inference, "score_validation", True),
            "validation.embeddings: missing",
        ),
        (
            lambda r: r.pool.embeddings.CopyFrom(tensor(np.ones((4, 5)))),
            "pool.embeddings: has 5 features per row, but the model's input 'x'",
        ),
        (
            lambda r: setattr(r.inference.models[0], "output_kind", 9),
            "inference.models[0].output_kind: unknown value 9",
        ),
        (
            lambda r: setattr(r.inference.models[0], "input_name", "y"),
            "inference.models[0].input_name: 'y' is not an input",
        ),
        (
            lambda r: setattr(r.inference.models[0], "embeddings_output", "nope"),
            "inference.models[0].embeddings_output: 'nope' is not an output",
        ),
        (
            lambda r: setattr(r.inference.models[0], "mc_passes", 0),
            "inference.models[0].mc_passes: got 0",
        ),
        (
            lambda r: r.inference.models[0].ClearField("onnx"),
            "inference.models[0]: no model",
        ),
    ],
)
def test_bad_inference_requests_name_the_field(stub, change, field):
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(embeddings=tensor(POOL)),
        uncertainty=query_pb2.UncertaintyStrategy(method=3),
        batch_size=2,
        inference=query_pb2.Inference(
            models=[query_pb2.Model(onnx=mlp(6, 4, 3, batch="n"), output_name="logits")]
        ),
    )
    change(request)
    with pytest.raises(grpc.RpcError) as error:
        stub.Rank(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(field), error.value.details()


def test_stated_probabilities_that_are_not_distributions_are_refused(client):
    model = OnnxModel(mlp(6, 4, 3), output_name="logits", output_kind="probabilities")
    with pytest.raises(AlqueryError) as error:
        client.rank("uncertainty.margin", 2, model=model, embeddings=POOL)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details.startswith(
        "inference.models[0]: output 'logits' on pool.embeddings: row 0"
    )


@pytest.mark.parametrize("bad", ["abc", "0" * 63, "g" * 64, "0" * 65, ""])
def test_a_malformed_hash_is_invalid_naming_the_field(stub, bad):
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(embeddings=tensor(POOL)),
        uncertainty=query_pb2.UncertaintyStrategy(method=3),
        batch_size=2,
        inference=query_pb2.Inference(models=[query_pb2.Model(sha256=bad)]),
    )
    with pytest.raises(grpc.RpcError) as error:
        stub.Rank(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == (
        f"inference.models[0].sha256: {bad!r} is not a SHA-256; expected "
        "64 hexadecimal digits"
    )
    with pytest.raises(grpc.RpcError) as error:
        stub.DescribeModel(
            query_pb2.DescribeModelRequest(model=query_pb2.Model(sha256="abc"))
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("model.sha256: 'abc' is not a SHA-256")


def single_output_mlp() -> bytes:
    import onnx

    model = onnx.ModelProto.FromString(mlp(6, 4, 3))
    del model.graph.output[1]  # keep "logits" alone
    return model.SerializeToString()


def test_embeddings_output_naming_the_only_output_says_so(client):
    model = OnnxModel(single_output_mlp(), embeddings_output="logits")
    with pytest.raises(AlqueryError) as error:
        client.rank("uncertainty.margin", 3, model=model, embeddings=POOL)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details.startswith(
        "inference.models[0].embeddings_output: 'logits' is the model's only "
        "output that could hold predictions"
    )
