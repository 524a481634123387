"""The client sends models by itself: inline, by hash, uploaded, resent if evicted."""

import hashlib
import json

import grpc
import numpy as np
import pytest

from alquery.client import AlqueryClient, AlqueryError, OnnxModel, cli
from alquery.client import models as client_models
from alquery.client.tensors import to_tensor
from alquery.server import app
from alquery.v1 import query_pb2
from onnx_models import mlp, run_in_process

POOL = np.random.default_rng(3).normal(size=(30, 64)).astype(np.float32)


def wide_model(seed):
    """About 0.5 MiB: two of them overflow a 1 MiB cache."""
    return mlp(64, 2000, 3, seed=seed)


@pytest.fixture(scope="module")
def small_cache_server():
    running = app.start(
        app.ServerConfig(port=0, metrics_port=None, model_cache_mib=1, max_model_mib=1)
    )
    yield running
    running.stop(grace_seconds=1)


@pytest.fixture
def small_cache_client(small_cache_server):
    with AlqueryClient(f"127.0.0.1:{small_cache_server.port}", timeout=60) as client:
        yield client


def by_hash(client, model):
    """Rank with a model named only by its hash, through the raw stub."""
    request = query_pb2.RankRequest(
        uncertainty=query_pb2.UncertaintyStrategy(method=3), batch_size=2
    )
    request.pool.embeddings.CopyFrom(to_tensor(POOL, "pool.embeddings"))
    request.inference.models.add(
        sha256=hashlib.sha256(model).hexdigest(), output_name="logits"
    )
    return client._stub.Rank(request, timeout=60)


def test_an_evicted_model_is_sent_again_by_the_client(small_cache_client):
    first, second = (OnnxModel(wide_model(s), output_name="logits") for s in (1, 2))
    expected = small_cache_client.rank(
        "uncertainty.entropy", 5, logits=run_in_process(first.source, POOL)[0]
    )
    small_cache_client.rank("uncertainty.entropy", 5, model=first, embeddings=POOL)
    small_cache_client.rank("uncertainty.entropy", 5, model=second, embeddings=POOL)
    # The second model pushed the first out of the 1 MiB cache.
    with pytest.raises(grpc.RpcError) as error:
        by_hash(small_cache_client, first.source)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    # The client knows it sent the first model, tries its hash, gets
    # NOT_FOUND and sends the bytes again.
    again = small_cache_client.rank(
        "uncertainty.entropy", 5, model=first, embeddings=POOL
    )
    np.testing.assert_array_equal(again.indices, expected.indices)
    assert by_hash(small_cache_client, first.source).ranked_indices


def test_a_model_over_the_size_limit_is_resource_exhausted(small_cache_client):
    with pytest.raises(AlqueryError) as error:
        small_cache_client.rank(
            "uncertainty.entropy", 2, embeddings=POOL,
            model=OnnxModel(mlp(64, 5000, 3), output_name="logits"),
        )
    assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over the server's limit of 1048576 (--max-model-mib)" in error.value.details


def test_a_large_model_is_uploaded_in_chunks(client, monkeypatch):
    monkeypatch.setattr(client_models, "CHUNK_BYTES", 1000)
    model = OnnxModel(mlp(64, 40, 3, seed=9), output_name="logits")
    chunks = list(client_models.chunks(model.data(), "h"))
    assert len(chunks) > 5 and b"".join(c.chunk for c in chunks) == model.data()
    result = client.rank("uncertainty.margin", 4, model=model, embeddings=POOL)
    expected = client.rank(
        "uncertainty.margin", 4, logits=run_in_process(model.source, POOL)[0]
    )
    np.testing.assert_array_equal(result.indices, expected.indices)


def test_upload_answers_the_hash_and_checks_a_stated_one(client, stub):
    data = mlp(8, 4, 2, seed=11)
    assert client.upload_model(data) == hashlib.sha256(data).hexdigest()
    with pytest.raises(grpc.RpcError) as error:
        stub.UploadModel(iter([query_pb2.UploadModelRequest(chunk=data, sha256="ab")]))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("sha256: the client stated 'ab'")


def test_describe_model_lists_inputs_outputs_and_the_binding(client):
    data = mlp(8, 4, 2)
    description = client.describe_model(data)
    assert description["inputs"] == [
        {"name": "x", "type": "tensor(float)", "shape": ["n", 8]}
    ]
    assert [o["name"] for o in description["outputs"]] == ["logits", "hidden"]
    assert description["binding_error"].startswith("model.output_name: not set")
    bound = client.describe_model(OnnxModel(data, embeddings_output="hidden"))
    assert bound["binding_error"] == ""
    assert (bound["input_name"], bound["output_name"]) == ("x", "logits")
    assert bound["output_kind"] == "unspecified" and bound["fixed_batch_size"] == 0


def test_cli_ranks_with_a_model_and_describes_it(target, tmp_path, capsys):
    model_path, pool_path = tmp_path / "m.onnx", tmp_path / "pool.npy"
    model_path.write_bytes(mlp(64, 16, 3, seed=5))
    np.save(pool_path, POOL)
    status = cli.main([
        "rank", "--target", target, "--strategy", "uncertainty.entropy",
        "--batch-size", "3", "--model", str(model_path), "--model-output", "logits",
        "--embeddings", str(pool_path),
    ])
    out, _ = capsys.readouterr()
    assert status == 0
    logits = run_in_process(model_path.read_bytes(), POOL)[0]
    with AlqueryClient(target) as client:
        expected = client.rank("uncertainty.entropy", 3, logits=logits)
    assert json.loads(out)["indices"] == expected.indices.tolist()

    status = cli.main([
        "describe-model", "--target", target, "--model", str(model_path),
        "--embeddings-output", "hidden",
    ])
    out, _ = capsys.readouterr()
    assert status == 0 and json.loads(out)["output_name"] == "logits"


@pytest.mark.parametrize(
    "model, field",
    [
        (5, "model"),
        ([mlp(64, 8, 3), 5.0], "model"),
        (OnnxModel(5), "model"),
        (OnnxModel(b"x", mc_passes="2"), "model.mc_passes"),
        (OnnxModel(b"x", mc_passes=2.5), "model.mc_passes"),
        (OnnxModel(b"x", mc_passes=True), "model.mc_passes"),
        (OnnxModel(b"x", mc_passes=2**70), "model.mc_passes"),
        (OnnxModel(b"x", input_name=5), "model.input_name"),
        (OnnxModel(b"x", output_name=b"logits"), "model.output_name"),
    ],
)
def test_a_model_argument_of_the_wrong_type_is_invalid_argument(client, model, field):
    # These raised TypeError or ValueError from deep in the client.
    with pytest.raises(AlqueryError) as raised:
        client.rank("uncertainty.margin", 2, model=model, embeddings=POOL)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details.startswith(f"{field}: got ")


def test_score_validation_without_a_model_is_refused(client):
    # It was dropped by the client without a word.
    with pytest.raises(AlqueryError) as raised:
        client.rank(
            "uncertainty.margin", 1, probabilities=[[0.6, 0.4]],
            score_validation=True,
        )
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details.startswith("score_validation: set without a model")
