"""Every strategy's memory estimate against its measured peak.

For each registered strategy, on a pool where an n_pool x n_pool float64
matrix would take 275 MiB, the peak of numpy allocations (numpy reports
them to tracemalloc) while ``ranking.rank`` runs in-process must stay
below half of that matrix, and ``footprints.working_set`` must bound the
peak from above without being loose: at most 4x the peak plus 1 MiB.
"""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest

from alquery.client.client import build_request
from alquery.server import edge, footprints, registry
from alquery.server.ranking import rank
from alquery.server.strategies import entropy_screen

N_POOL = 6000
SQUARE_BYTES = N_POOL * N_POOL * 8
SLACK_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Shape:
    n_classes: int
    n_passes: int
    n_features: int
    n_labeled: int
    n_validation: int
    batch_size: int
    batchbald_batch_size: int
    """BatchBALD costs time per pick: a short batch keeps the test quick,
    long enough that its label configurations reach their default limit
    (1000; sampled past it)."""


SHAPES = {
    # Small sets: the distance blocks against them stay under the chunk.
    "few-labels": Shape(10, 4, 16, 50, 200, 20, batchbald_batch_size=4),
    # Large sets: blocks reach the 32 MiB chunk; 3 classes, wide features.
    "many-labels": Shape(3, 2, 64, 800, 1000, 50, batchbald_batch_size=8),
}

PARAMS = {"diversity.probcover": {"radius": 1.0}}

CASES = [
    (name, strategy.name, "")
    for name in SHAPES
    for strategy in registry.all_strategies()
] + [
    # The euclidean density goes through distance blocks over the pool.
    (name, strategy, "SIMILARITY_EUCLIDEAN")
    for name in SHAPES
    for strategy in ("diversity.information_density", "hybrid.density_weighted")
]


def _embeddings(name: str, shape: Shape, batch_size: int, rng: np.random.Generator):
    pool = rng.normal(size=(N_POOL, shape.n_features))
    labeled = rng.normal(size=(shape.n_labeled, shape.n_features))
    if name == "diversity.typiclust":
        # Worst case: one k-means cluster holds nearly the whole pool. The
        # labeled samples and batch_size - 1 pool samples sit far apart,
        # the rest of the pool in one tight blob.
        far = rng.normal(size=(shape.n_labeled + batch_size - 1, shape.n_features))
        # The blob's rows are one point: every neighbour ties, so the exact
        # search falls back to its full distance blocks (its worst case).
        labeled = far[: shape.n_labeled] * 1e3
        pool[:] = 0.0
        pool[: batch_size - 1] = far[shape.n_labeled :] * 1e3
    return pool, labeled


def _validation_embeddings(name: str, shape: Shape, rng: np.random.Generator):
    if name == "credibility.validation_knn":
        # Worst case: one point held by every validation sample, so every
        # neighbour ties and the exact search takes its full distance blocks.
        return np.zeros((shape.n_validation, shape.n_features))
    return rng.normal(size=(shape.n_validation, shape.n_features))


def _labels(name: str, shape: Shape, rng: np.random.Generator):
    if name == "credibility.trust_score":
        # Worst case: one class holds every labeled sample but one.
        return np.array([0] * (shape.n_labeled - 1) + [1])
    return rng.integers(0, shape.n_classes, shape.n_labeled)


def _query(shape: Shape, name: str, similarity: str = "") -> edge.Query:
    params = dict(PARAMS.get(name, {}))
    if similarity:
        params["density_similarity"] = similarity
    batch_size = shape.batch_size
    if name == "uncertainty.batchbald":
        batch_size = shape.batchbald_batch_size
    rng = np.random.default_rng(0)
    pool, labeled = _embeddings(name, shape, batch_size, rng)
    classes = np.ones(shape.n_classes)
    request = build_request(
        name,
        batch_size,
        probabilities=rng.dirichlet(classes, size=(N_POOL, shape.n_passes)),
        embeddings=pool,
        labeled_embeddings=labeled,
        labeled_labels=_labels(name, shape, rng),
        validation_probabilities=rng.dirichlet(classes, shape.n_validation),
        validation_labels=rng.integers(0, shape.n_classes, shape.n_validation),
        validation_embeddings=_validation_embeddings(name, shape, rng),
        params=params,
    )
    return edge.build_query(request)


def _peak_bytes(query: edge.Query) -> int:
    # The pool's float64 probabilities, made on first use, count in the
    # request's input bytes (footprints.sizes_of_query), not in a working set.
    query.pool_probabilities  # noqa: B018
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rank(query)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_every_strategy_has_a_working_set():
    names = {strategy.name for strategy in registry.all_strategies()}
    assert names == set(footprints.WORKING_SETS)


def test_every_working_set_takes_a_header_without_pool_rows():
    # A RankStream header can name a strategy whose inputs it does not set:
    # the estimate runs before the edge refuses that, with sizes of 0.
    for name, working_set in footprints.WORKING_SETS.items():
        for n_classes in (0, 3):
            sizes = footprints.Sizes(n_pool=0, n_classes=n_classes)
            assert working_set(sizes, {}) >= 0, name


@pytest.mark.parametrize("shape, name, similarity", CASES)
def test_estimate_bounds_the_measured_peak(shape, name, similarity):
    query = _query(SHAPES[shape], name, similarity)
    peak = _peak_bytes(query)
    sizes = footprints.sizes_of_query(query)
    estimate = footprints.working_set(name, sizes, query.params)

    # A float64 n_pool x n_pool matrix alone would be SQUARE_BYTES; the
    # largest peaks, three 32 MiB chunks, stay near 0.37 of it.
    assert peak < SQUARE_BYTES / 2, f"{name} holds an n_pool x n_pool matrix"
    assert peak <= estimate, f"{name}: peak {peak} above the estimate {estimate}"
    assert estimate <= 4 * peak + SLACK_BYTES, (
        f"{name}: estimate {estimate} is loose for the peak {peak}"
    )


@pytest.mark.parametrize("pool", ["peaked", "uniform"])
def test_estimate_bounds_the_screened_entropy(pool):
    # float32 probabilities take the screened top-k path (bit patterns, then
    # a float32 log, then exact scores); uniform rows pass every screen.
    rng = np.random.default_rng(1)
    if pool == "peaked":
        logits = rng.normal(scale=3.0, size=(20_000, 500))
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    else:
        probabilities = np.ones((20_000, 500))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    request = build_request(
        "uncertainty.entropy", 10, probabilities=probabilities.astype(np.float32)
    )
    query = edge.build_query(request)
    entropy_screen.log_is_accurate()  # once per process, at the server's start
    peak = _peak_bytes(query)
    estimate = footprints.working_set(
        "uncertainty.entropy", footprints.sizes_of_query(query), query.params
    )
    assert peak <= estimate, f"peak {peak} above the estimate {estimate}"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kcenter_estimate_bounds_a_labeled_set_larger_than_the_pool(dtype):
    # k-center keeps every center (labeled rows and picks) in float64 and
    # float32 and prepares them in bulk: with far more labeled rows than
    # pool rows that, not the pool, sets the peak.
    rng = np.random.default_rng(2)
    request = build_request(
        "diversity.kcenter",
        50,
        embeddings=rng.normal(size=(2000, 64)).astype(dtype),
        labeled_embeddings=rng.normal(size=(60_000, 64)).astype(dtype),
    )
    query = edge.build_query(request)
    peak = _peak_bytes(query)
    sizes = footprints.sizes_of_query(query)
    estimate = footprints.working_set("diversity.kcenter", sizes, query.params)
    assert peak <= estimate, f"peak {peak} above the estimate {estimate}"
    assert estimate <= 4 * peak + SLACK_BYTES, f"estimate {estimate}, peak {peak}"
