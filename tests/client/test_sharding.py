"""The sharded client answers as one server does, over real servers."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from onnx_models import mlp

from alquery.client import AlqueryError, OnnxModel, ShardedClient
from alquery.client.shard_merge import covering_radius
from alquery.client.shard_table import CORESET, EXACT, SHARDING, sharding_mode
from alquery.server import app, registry

N_POOL = 61
N_CLASSES = 4
N_PASSES = 3
KWARGS = {
    "pool_probabilities": "probabilities",
    "pool_embeddings": "embeddings",
    "labeled_embeddings": "labeled_embeddings",
    "labeled_labels": "labeled_labels",
    "validation_probabilities": "validation_probabilities",
    "validation_labels": "validation_labels",
    "validation_embeddings": "validation_embeddings",
}
EXACT_NAMES = sorted(name for name, mode in SHARDING.items() if mode == EXACT)
REFUSED_NAMES = sorted(
    name for name, mode in SHARDING.items() if mode not in (EXACT, CORESET)
)


@pytest.fixture(scope="module")
def targets(target):
    """Three servers on 127.0.0.1: the session's and two more."""
    extra = [
        app.start(app.ServerConfig(port=0, metrics_port=None, threads=2))
        for _ in range(2)
    ]
    yield [target] + [f"127.0.0.1:{running.port}" for running in extra]
    for running in extra:
        running.stop(grace_seconds=1)


@pytest.fixture(scope="module")
def inputs():
    """Every input a per-sample strategy can need, with many tied rows.

    Pool rows repeat 20 distinct rows, so equal scores fall within and
    across shards.
    """
    rng = np.random.default_rng(11)
    distinct = 20
    rows = rng.integers(0, distinct, size=N_POOL)
    passes = rng.dirichlet(np.ones(N_CLASSES), size=(distinct, N_PASSES))
    embeddings = rng.normal(size=(distinct, 5))
    return {
        "probabilities": passes[rows],
        "embeddings": embeddings[rows],
        "labeled_embeddings": rng.normal(size=(8, 5)),
        "labeled_labels": np.arange(8) % N_CLASSES,
        "validation_probabilities": rng.dirichlet(np.ones(N_CLASSES), size=12),
        "validation_labels": np.arange(12) % N_CLASSES,
        "validation_embeddings": rng.normal(size=(12, 5)),
    }


def needed(name, inputs):
    strategy = registry.lookup(name)
    return {KWARGS[i]: inputs[KWARGS[i]] for i in strategy.required_inputs}


def assert_same(sharded, single):
    assert sharded.indices.tolist() == single.indices.tolist()
    np.testing.assert_array_equal(sharded.scores, single.scores)
    assert sharded.strategy == single.strategy
    assert sharded.warnings == single.warnings
    assert sharded.extras.keys() == single.extras.keys()
    for key in single.extras:
        np.testing.assert_array_equal(sharded.extras[key], single.extras[key])


def test_the_table_covers_every_strategy_the_server_registers():
    names = {strategy.name for strategy in registry.all_strategies()}
    assert set(SHARDING) == names
    for name in EXACT_NAMES:
        assert registry.lookup(name).score is not None, name
    assert registry.lookup("diversity.kcenter").pick is not None


@pytest.mark.parametrize("n_targets", [2, 3])
@pytest.mark.parametrize("batch_size", [1, 10, 25, 80])
@pytest.mark.parametrize("name", EXACT_NAMES)
def test_scored_strategies_give_the_one_server_answer(
    targets, client, inputs, name, batch_size, n_targets
):
    request = needed(name, inputs)
    single = client.rank(name, batch_size, **request)
    with ShardedClient(targets[:n_targets], timeout=60) as sharded:
        assert_same(sharded.rank(name, batch_size, **request), single)


def test_shards_beyond_the_targets_take_turns(targets, client, inputs):
    request = needed("credibility.conformal", inputs)
    params = {"nonconformity": "NONCONFORMITY_APS", "class_conditional": True}
    single = client.rank("credibility.conformal", 9, params=params, **request)
    with ShardedClient(targets[:2], n_shards=7, timeout=60) as sharded:
        answer = sharded.rank("credibility.conformal", 9, params=params, **request)
    assert_same(answer, single)
    assert "confidence" in answer.extras


def test_scores_can_be_left_out(targets, client, inputs):
    with ShardedClient(targets, timeout=60) as sharded:
        answer = sharded.rank(
            "uncertainty.margin",
            5,
            probabilities=inputs["probabilities"],
            return_scores=False,
        )
    single = client.rank("uncertainty.margin", 5, probabilities=inputs["probabilities"])
    assert answer.scores is None and answer.extras == {}
    assert answer.indices.tolist() == single.indices.tolist()


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_strategies_that_cannot_merge_exactly_are_refused(targets, inputs, name):
    refused = f"strategy: {name} cannot be sharded"
    with (
        ShardedClient(targets, timeout=60) as sharded,
        pytest.raises(AlqueryError, match=refused),
    ):
        sharded.rank(name, 5, **needed(name, inputs))


def test_randomised_conformal_is_refused_and_the_rest_is_not():
    with pytest.raises(AlqueryError, match="NONCONFORMITY_APS_RANDOMIZED draws"):
        sharding_mode(
            "credibility.conformal",
            {"nonconformity": "nonconformity_aps_randomized"},
        )
    assert sharding_mode("credibility.conformal", {"nonconformity": 2}) == EXACT
    with pytest.raises(AlqueryError, match="does not know how to shard"):
        sharding_mode("uncertainty.not_yet_written")


def test_a_shard_error_names_the_shard_and_its_rows(targets, inputs):
    probabilities = inputs["probabilities"][:, 0, :].copy()
    probabilities[45] = [0.5, 0.5, 0.5, 0.5]
    with ShardedClient(targets, timeout=60) as sharded:
        with pytest.raises(AlqueryError) as caught:
            sharded.rank("uncertainty.entropy", 5, probabilities=probabilities)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details.startswith(
            f"shard 3 of 3 (pool rows 41 to 60, at {targets[2]}): "
            "pool.probabilities: row 4 sums to 2"
        )
        answer = sharded.rank(
            "uncertainty.entropy", 5, probabilities=probabilities[:40]
        )
    assert len(answer.indices) == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"probabilities": np.full((4, 2), 0.5), "embeddings": np.ones((3, 2))},
            (
                "pool.probabilities has 4 rows but pool.embeddings has 3 rows; "
                "they must agree"
            ),
        ),
        ({"probabilities": np.full((4, 2), 0.5), "batch_size": 0}, "batch_size: got 0"),
        ({"probabilities": np.full((4, 2), 0.5), "batch_size": 2.0}, "batch_size: got"),
    ],
)
def test_bad_requests_are_refused_before_sending(targets, kwargs, message):
    batch_size = kwargs.pop("batch_size", 2)
    with (
        ShardedClient(targets, timeout=60) as sharded,
        pytest.raises(AlqueryError, match=message) as caught,
    ):
        sharded.rank("hybrid.expected_gradient_length", batch_size, **kwargs)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("n_shards", [0, 2.5, "2", True])
def test_a_shard_count_that_is_not_a_positive_integer_is_refused(targets, n_shards):
    with pytest.raises(ValueError, match="n_shards=.*must be an integer, at least 1"):
        ShardedClient(targets, n_shards=n_shards)


@pytest.mark.parametrize("name", ["selection", "progress", "probabilites"])
def test_inputs_it_cannot_shard_are_refused_by_name(targets, name):
    with (
        ShardedClient(targets, timeout=60) as sharded,
        pytest.raises(AlqueryError, match=f"{name}: ShardedClient.rank does not"),
    ):
        sharded.rank("uncertainty.entropy", 3, **{name: None})


def test_a_request_without_pool_inputs_gets_the_server_message(targets):
    with (
        ShardedClient(targets, timeout=60) as sharded,
        pytest.raises(AlqueryError, match="pool.probabilities") as caught,
    ):
        sharded.rank("uncertainty.entropy", 3)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def clustered(rng, n_pool, n_features, n_clusters):
    centers = rng.normal(scale=5.0, size=(n_clusters, n_features))
    return centers[rng.integers(0, n_clusters, n_pool)] + rng.normal(
        size=(n_pool, n_features)
    )


@pytest.mark.parametrize("n_shards", [2, 3, 5])
@pytest.mark.parametrize("with_labeled", [False, True])
def test_sharded_kcenter_stays_within_four_times_one_server(
    targets, client, n_shards, with_labeled
):
    # Greedy k-center is a 2-approximation of the best radius r*, in each
    # round, so the two rounds cover the pool within 4 r*; one server's
    # greedy radius is at least r*.
    rng = np.random.default_rng(n_shards)
    embeddings = clustered(rng, 400, 8, 12)
    labeled = embeddings[:5] + 0.1 if with_labeled else None
    k = 10
    single = client.rank(
        "diversity.kcenter", k, embeddings=embeddings, labeled_embeddings=labeled
    )
    with ShardedClient(targets, n_shards=n_shards, timeout=60) as sharded:
        answer = sharded.rank(
            "diversity.kcenter", k, embeddings=embeddings, labeled_embeddings=labeled
        )

    assert len(set(answer.indices.tolist())) == k
    one = covering_radius(embeddings, single.indices, labeled)
    two = covering_radius(embeddings, answer.indices, labeled)
    assert one / 2 <= two <= 4 * one


def test_kcenter_scores_are_distances_to_the_earlier_centers(targets):
    rng = np.random.default_rng(5)
    embeddings = clustered(rng, 200, 4, 6)
    labeled = rng.normal(size=(3, 4))
    with ShardedClient(targets, timeout=60) as sharded:
        answer = sharded.rank(
            "diversity.kcenter", 6, embeddings=embeddings, labeled_embeddings=labeled
        )
    centers = list(labeled)
    for pick, score in zip(answer.indices, answer.scores):
        nearest = min(np.linalg.norm(embeddings[pick] - c) for c in centers)
        assert score == pytest.approx(nearest, rel=1e-9)
        centers.append(embeddings[pick])


def test_kcenter_on_a_pool_no_larger_than_the_batch_ranks_it_all(targets, client):
    embeddings = np.random.default_rng(2).normal(size=(7, 3))
    single = client.rank("diversity.kcenter", 9, embeddings=embeddings)
    with ShardedClient(targets, timeout=60) as sharded:
        answer = sharded.rank("diversity.kcenter", 9, embeddings=embeddings)
    assert_same(answer, single)


def test_a_model_run_by_the_servers_gives_the_one_server_answer(targets, client):
    # Each server runs the ONNX model on its shard's embeddings.
    model = OnnxModel(mlp(16, 32, 3, seed=4), output_name="logits")
    rng = np.random.default_rng(8)
    embeddings = rng.normal(size=(300, 16)).astype(np.float32)
    embeddings[150:] = embeddings[:150]
    single = client.rank("uncertainty.entropy", 20, embeddings=embeddings, model=model)
    with ShardedClient(targets, n_shards=4, timeout=60) as sharded:
        answer = sharded.rank(
            "uncertainty.entropy", 20, embeddings=embeddings, model=model
        )
    assert_same(answer, single)
