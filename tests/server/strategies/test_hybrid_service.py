"""The hybrid strategies and information density over a real loopback server."""

import grpc
import numpy as np
import pytest

from alquery.server.strategies.badge import badge
from alquery.server.strategies.density import density_weighted, information_density
from alquery.server.strategies.hybrid_clustering import clue, cluster_margin, two_step
from alquery.v1 import query_pb2
from conftest import tensor

H = query_pb2.HybridStrategy
D = query_pb2.DiversityStrategy
U = query_pb2.UncertaintyStrategy

RNG = np.random.default_rng(31)
PROBABILITIES = RNG.dirichlet(np.ones(3), size=40)
EMBEDDINGS = RNG.normal(size=(40, 4))


def hybrid(method, batch_size=5, seed=None, labeled=None, **params):
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(
            probabilities=tensor(PROBABILITIES), embeddings=tensor(EMBEDDINGS)
        ),
        hybrid=H(method=method, **params),
        batch_size=batch_size,
    )
    if seed is not None:
        request.seed = seed
    if labeled is not None:
        request.labeled.embeddings.CopyFrom(tensor(labeled))
    return request


def kmeans_seed(seed):
    return int(np.random.default_rng(seed).integers(np.iinfo(np.int32).max))


def test_density_weighted_over_the_wire(stub):
    response = stub.Rank(
        hybrid(
            H.METHOD_DENSITY_WEIGHTED,
            uncertainty=U.METHOD_MARGIN,
            density_similarity=query_pb2.SIMILARITY_EUCLIDEAN,
            beta=2.0,
        )
    )
    scores = density_weighted(PROBABILITIES, EMBEDDINGS, "margin", "euclidean", 2.0)
    expected = np.argsort(-scores, kind="stable")[:5]
    assert list(response.ranked_indices) == expected.tolist()
    np.testing.assert_allclose(response.scores, scores[expected], rtol=1e-12)
    assert response.strategy == "hybrid.density_weighted"


def test_information_density_over_the_wire(stub):
    # Unit vectors along x, y and their diagonal: sample 2 is the densest.
    response = stub.Rank(
        query_pb2.RankRequest(
            pool=query_pb2.Pool(
                embeddings=tensor([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
            ),
            diversity=D(method=D.METHOD_INFORMATION_DENSITY),
            batch_size=3,
        )
    )
    assert list(response.ranked_indices) == [2, 0, 1]
    r = 1 / np.sqrt(2)
    expected = [(1 + 2 * r) / 3, (1 + r) / 3, (1 + r) / 3]
    np.testing.assert_allclose(response.scores, expected)
    assert response.strategy == "diversity.information_density"


def test_information_density_euclidean_over_the_wire(stub):
    response = stub.Rank(
        query_pb2.RankRequest(
            pool=query_pb2.Pool(embeddings=tensor(EMBEDDINGS)),
            diversity=D(
                method=D.METHOD_INFORMATION_DENSITY,
                density_similarity=query_pb2.SIMILARITY_EUCLIDEAN,
            ),
            batch_size=4,
        )
    )
    scores = information_density(EMBEDDINGS, "euclidean")
    assert list(response.ranked_indices) == np.argsort(-scores)[:4].tolist()


def test_expected_gradient_length_over_the_wire(stub):
    # EGL = ||h|| sum_y p_y ||p - e_y||: (0.5, 0.5) with ||h|| = 5 gives
    # 5 sqrt(0.5); with the bias sqrt(26) sqrt(0.5).
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(
            probabilities=tensor([[1.0, 0.0], [0.5, 0.5]]),
            embeddings=tensor([[3.0, 4.0], [3.0, 4.0]]),
        ),
        hybrid=H(method=H.METHOD_EXPECTED_GRADIENT_LENGTH),
        batch_size=2,
    )
    response = stub.Rank(request)
    assert list(response.ranked_indices) == [1, 0]
    np.testing.assert_allclose(response.scores, [5 * np.sqrt(0.5), 0.0])
    request.hybrid.include_bias = True
    np.testing.assert_allclose(stub.Rank(request).scores[0], np.sqrt(13.0))


def test_ranked_batch_over_the_wire(stub):
    # The hand-computed case of test_hybrid.py: labeled at 0, pool 1, 2, 4.
    request = query_pb2.RankRequest(
        pool=query_pb2.Pool(
            probabilities=tensor([[0.5, 0.5], [0.8, 0.2], [1.0, 0.0]]),
            embeddings=tensor([[1.0], [2.0], [4.0]]),
        ),
        labeled=query_pb2.LabeledSet(embeddings=tensor([[0.0]])),
        hybrid=H(method=H.METHOD_RANKED_BATCH),
        batch_size=3,
    )
    response = stub.Rank(request)
    assert list(response.ranked_indices) == [2, 0, 1]
    np.testing.assert_allclose(response.scores, [0.6, 0.5, 0.275])


def test_badge_over_the_wire_is_seeded(stub):
    response = stub.Rank(hybrid(H.METHOD_BADGE, batch_size=8, seed=42))
    expected = badge(PROBABILITIES, EMBEDDINGS, 8, np.random.default_rng(42))
    assert list(response.ranked_indices) == expected.ranked_indices.tolist()
    np.testing.assert_allclose(response.scores, expected.scores, rtol=1e-12)
    again = stub.Rank(hybrid(H.METHOD_BADGE, batch_size=8, seed=42))
    assert list(again.ranked_indices) == list(response.ranked_indices)
    # No seed means the default seed 0.
    unseeded = stub.Rank(hybrid(H.METHOD_BADGE, batch_size=8))
    default = badge(PROBABILITIES, EMBEDDINGS, 8, np.random.default_rng(0))
    assert list(unseeded.ranked_indices) == default.ranked_indices.tolist()


@pytest.mark.parametrize(
    "method, params, direct",
    [
        (H.METHOD_CLUE, {}, lambda seed: clue(PROBABILITIES, EMBEDDINGS, 5, seed)),
        (
            H.METHOD_CLUE,
            {"uncertainty": U.METHOD_LEAST_CONFIDENCE},
            lambda seed: clue(PROBABILITIES, EMBEDDINGS, 5, seed, "least_confidence"),
        ),
        (
            H.METHOD_TWO_STEP,
            {"prefilter_factor": 3},
            lambda seed: two_step(PROBABILITIES, EMBEDDINGS, 5, seed, "margin", 3),
        ),
        (
            H.METHOD_CLUSTER_MARGIN,
            {"n_clusters": 3, "prefilter_factor": 2},
            lambda seed: cluster_margin(PROBABILITIES, EMBEDDINGS, 5, seed, 2, 3),
        ),
    ],
)
def test_cluster_hybrids_over_the_wire(stub, method, params, direct):
    response = stub.Rank(hybrid(method, seed=9, **params))
    expected = direct(kmeans_seed(9))
    assert list(response.ranked_indices) == expected.ranked_indices.tolist()
    np.testing.assert_allclose(response.scores, expected.scores, rtol=1e-12)
    assert len(set(response.ranked_indices)) == 5


def test_hybrid_parameters_are_listed(client):
    by_name = {item["name"]: item for item in client.strategies()}
    names = {
        "hybrid.badge": [],
        "hybrid.ranked_batch": ["uncertainty"],
        "hybrid.clue": ["uncertainty"],
        "hybrid.two_step": ["uncertainty", "prefilter_factor"],
        "hybrid.cluster_margin": ["prefilter_factor", "n_clusters"],
        "hybrid.density_weighted": ["uncertainty", "density_similarity", "beta"],
        "hybrid.expected_gradient_length": ["include_bias"],
        "diversity.information_density": ["density_similarity"],
    }
    for name, parameters in names.items():
        assert [p["name"] for p in by_name[name]["parameters"]] == parameters


def test_client_sets_enum_parameters_by_name(client):
    result = client.rank(
        "hybrid.density_weighted",
        5,
        probabilities=PROBABILITIES,
        embeddings=EMBEDDINGS,
        params={"uncertainty": "method_least_confidence", "beta": 0.0},
    )
    lc = 1.0 - PROBABILITIES.max(axis=1)
    assert list(result.indices) == np.argsort(-lc, kind="stable")[:5].tolist()


BAD_PARAMETERS = {
    "uncertainty not mixable": (
        lambda: hybrid(H.METHOD_DENSITY_WEIGHTED, uncertainty=U.METHOD_BALD),
        "hybrid.uncertainty: got METHOD_BALD",
    ),
    "uncertainty unknown": (
        lambda: hybrid(H.METHOD_CLUE, uncertainty=99),
        "hybrid.uncertainty: got 99",
    ),
    "hybrid similarity unknown": (
        lambda: hybrid(H.METHOD_DENSITY_WEIGHTED, density_similarity=7),
        "hybrid.density_similarity: got 7",
    ),
    "diversity similarity unknown": (
        lambda: query_pb2.RankRequest(
            pool=query_pb2.Pool(embeddings=tensor(EMBEDDINGS)),
            diversity=D(method=D.METHOD_INFORMATION_DENSITY, density_similarity=5),
            batch_size=2,
        ),
        "diversity.density_similarity: got 5",
    ),
    "negative beta": (
        lambda: hybrid(H.METHOD_DENSITY_WEIGHTED, beta=-1.0),
        "hybrid.beta: got -1.0",
    ),
    "infinite beta": (
        lambda: hybrid(H.METHOD_DENSITY_WEIGHTED, beta=float("inf")),
        "hybrid.beta: got inf",
    ),
    "prefilter_factor zero": (
        lambda: hybrid(H.METHOD_TWO_STEP, prefilter_factor=0),
        "hybrid.prefilter_factor: got 0",
    ),
    "cluster_margin prefilter_factor negative": (
        lambda: hybrid(H.METHOD_CLUSTER_MARGIN, prefilter_factor=-2),
        "hybrid.prefilter_factor: got -2",
    ),
    "n_clusters zero": (
        lambda: hybrid(H.METHOD_CLUSTER_MARGIN, n_clusters=0),
        "hybrid.n_clusters: got 0",
    ),
    "n_clusters above the pool": (
        lambda: hybrid(H.METHOD_CLUSTER_MARGIN, n_clusters=41),
        "n_pool=40",
    ),
    "badge without embeddings": (
        lambda: query_pb2.RankRequest(
            pool=query_pb2.Pool(probabilities=tensor(PROBABILITIES)),
            hybrid=H(method=H.METHOD_BADGE),
            batch_size=2,
        ),
        "pool.embeddings: missing",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PARAMETERS))
def test_bad_hybrid_parameters_get_invalid_argument(stub, case):
    build, expected = BAD_PARAMETERS[case]
    with pytest.raises(grpc.RpcError) as raised:
        stub.Rank(build())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in raised.value.details()
    # The server keeps serving.
    assert len(stub.Rank(hybrid(H.METHOD_EXPECTED_GRADIENT_LENGTH)).ranked_indices) == 5
