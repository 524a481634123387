"""How much memory a request needs: its arrays plus its strategy's working set.

Every registered strategy has an entry in ``WORKING_SETS``: a function of
the request's sizes (``Sizes``) and its strategy parameters that returns an
upper bound, in bytes, of the numpy memory the strategy and the selection
step allocate at their peak. The bounds were measured with tracemalloc for
every strategy, on worst-case data where the memory depends on the data
(``tests/server/test_footprints.py`` checks each one against a measured
peak: never below it, at most 4x above it plus 1 MiB).

Units below: ``p`` one float64 value per pool sample and class
(n_pool x n_classes x 8 bytes), ``pp`` the same with every pass, ``e`` the
pool embeddings in float64, ``n`` one float64 per pool sample, and
``block(m)`` a distance block of n_pool x m float64 values, capped by the
strategies' chunking at ``CHUNK_ELEMENTS`` values (32 MiB).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from alquery.server import edge
from alquery.server.chunks import CHUNK_BYTES as MEASURE_CHUNK_BYTES
from alquery.server.edge import strategy_name as edge_strategy_name
from alquery.server.models.cache import CHUNK_BYTES as RUNNER_CHUNK_BYTES
from alquery.server.parts import part_count
from alquery.server.strategies.bayesian_joint import (
    DEFAULT_CONFIGURATIONS,
    DEFAULT_TARGET_SAMPLES,
)
from alquery.server.strategies.diversity import CHUNK_ELEMENTS
from alquery.server.strategies.entropy_screen import PATTERN_CHUNK_SCALE
from alquery.server.strategies.kcenter_cover import (
    CENTER_BLOCK_ELEMENTS as KCENTER_BLOCK,
)
from alquery.server.strategies.kcenter_cover import LEAF_SIZE
from alquery.server.strategies.kcenter_cover import WORKERS as KCENTER_WORKERS
from alquery.server.strategies.kcenter_stream import PROJECTED_DIMS
from alquery.server.strategies.kcenter_update import BATCH_ROWS as KCENTER_BATCH_ROWS
from alquery.server.strategies.kcenter_update import UPDATE_ELEMENTS as KCENTER_PAIRS
from alquery.v1 import query_pb2

if TYPE_CHECKING:
    from alquery.server.edge import Query

FLOAT = 8
CHUNK_BYTES = CHUNK_ELEMENTS * FLOAT
_FOUR_BYTE_DTYPES = (query_pb2.D_TYPE_FLOAT32, query_pb2.D_TYPE_INT32)
RESPONSE_BYTES_PER_PICK = 64
"""The answer's lists and message, per ranked sample (an upper bound)."""


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The sizes a request's memory depends on; absent inputs count 0.

    ``n_passes`` is 1 for predictions of shape (n, n_classes).
    ``input_bytes`` is what the decoded arrays hold: the tensors as sent,
    plus a float64 copy of predictions sent as float32 or as logits.
    """

    n_pool: int
    n_classes: int = 0
    n_passes: int = 1
    n_features: int = 0
    n_labeled: int = 0
    n_validation: int = 0
    n_target: int = 0
    batch_size: int = 1
    input_bytes: int = 0

    def describe(self) -> str:
        """The shapes, as a refusal message names them."""
        parts = [f"n_pool={self.n_pool}"]
        if self.n_classes:
            parts += [f"n_passes={self.n_passes}", f"n_classes={self.n_classes}"]
        if self.n_features:
            parts.append(f"n_features={self.n_features}")
        for name in ("n_labeled", "n_validation", "n_target"):
            if getattr(self, name):
                parts.append(f"{name}={getattr(self, name)}")
        parts.append(f"batch_size={self.batch_size}")
        return ", ".join(parts)


WorkingSet = Callable[[Sizes, Mapping[str, Any]], int]


def _p(s: Sizes) -> int:
    return s.n_pool * s.n_classes * FLOAT


def _pp(s: Sizes) -> int:
    return _p(s) * s.n_passes


def _e(s: Sizes) -> int:
    return s.n_pool * s.n_features * FLOAT


def _n(s: Sizes) -> int:
    return s.n_pool * FLOAT


def _block(s: Sizes, m: int) -> int:
    return min(s.n_pool * m, CHUNK_ELEMENTS) * FLOAT


def _kmeans(s: Sizes, n_rows: int, n_clusters: int) -> int:
    # scikit-learn's k-means on a float64 copy: labels, distances and
    # centers; chunked over 256 rows.
    return 2 * n_rows * s.n_features * FLOAT + 2 * n_rows * n_clusters * FLOAT


def _measure_chunks(s: Sizes, scale: int = 1, *, logs: bool = True) -> int:
    # Rows per chunk fill scale x MEASURE_CHUNK_BYTES at 4 bytes a value (the
    # most rows); per row and thread: the chunk, its float64 clamp and
    # terms (``logs``: entropy's kernels; the scratch makes them only for
    # a kernel that reads them), a float64 softmax of the passes for
    # logits, three row vectors; then the scores and the selection's
    # vectors of n_pool. (Rows here are the most rows, at 4 bytes a value;
    # float64 chunks have half as many, and probabilities sent as float32
    # need no softmax buffer: either leaves room for the argmax route's
    # two other row vectors.)
    per_row = max(1, s.n_passes * s.n_classes)
    rows = max(1, min(s.n_pool, scale * MEASURE_CHUNK_BYTES // (4 * per_row)))
    n_chunks = -(-s.n_pool // rows)
    threads = part_count(n_chunks)
    scratch = (
        rows * s.n_classes * (4 + (2 * FLOAT if logs else 0))
        + rows * per_row * FLOAT
        + 3 * rows * FLOAT
    )
    return threads * scratch + 5 * _n(s)


def _kcenter(s: Sizes, _: Mapping[str, Any]) -> int:
    # A float32 copy of the pool (not made for a float32 pool near the
    # origin, counted anyway), its float64 projection while the rows are
    # grouped, the projection bound's rows in float32 (twice while they
    # are put in group order), vectors of n_pool, and per worker thread
    # one part of a round screened against its pending centers: about ten
    # bytes per (row, center) pair, and the part's rows in float32.
    # Every center (labeled row or pick) is kept in float64 and float32,
    # with two norms and its projection bound's row; each thread of the
    # compiled rounds (the workers and the calling one) has four scratch
    # values per center. The labeled set is prepared a block at a time:
    # about 40 bytes per value of one block.
    rows = min(s.n_pool, KCENTER_BATCH_ROWS + LEAF_SIZE)
    n_centers = s.n_labeled + s.batch_size
    pairs = min(KCENTER_PAIRS, rows * n_centers)
    per_worker = 10 * pairs + rows * s.n_features * 4
    per_center = (
        s.n_features * (FLOAT + 4)
        + 2 * FLOAT
        + (PROJECTED_DIMS + 1) * 4
        + (KCENTER_WORKERS + 1) * 4 * FLOAT
    )
    block = min(KCENTER_BLOCK, s.n_labeled * s.n_features)
    return (
        _e(s) // 2
        + (PROJECTED_DIMS + 16) * _n(s)
        + (PROJECTED_DIMS + 1) * _n(s)
        + KCENTER_WORKERS * per_worker
        + n_centers * per_center
        + 40 * block
    )


def _batchbald(s: Sizes, params: Mapping[str, Any]) -> int:
    limit = params.get("n_configurations") or min(
        DEFAULT_CONFIGURATIONS, CHUNK_ELEMENTS // max(1, s.n_passes)
    )
    # Label configurations of the picks before the last: exact while
    # n_classes^(batch_size - 1) fits the limit, sampled at the limit past.
    rows = 1
    for _ in range(s.batch_size - 1):
        rows = min(limit, rows * max(1, s.n_classes))
    per_sample = rows * s.n_classes
    joint = max(min(s.n_pool * per_sample, CHUNK_ELEMENTS), per_sample) * FLOAT
    return (
        3 * joint
        + joint // max(1, s.n_classes)
        + 4 * rows * s.n_passes * FLOAT
        + 2 * _pp(s)
        + 8 * _n(s)
    )


def _epig(s: Sizes, params: Mapping[str, Any]) -> int:
    samples = params.get("max_target_samples") or DEFAULT_TARGET_SAMPLES
    target = min(samples, s.n_target or s.n_pool)
    per_sample = max(target * s.n_classes * s.n_classes, 1)
    joint = max(min(s.n_pool * per_sample, CHUNK_ELEMENTS), per_sample) * FLOAT
    return 3 * joint + 2 * _pp(s) + target * s.n_passes * s.n_classes * FLOAT


def _typiclust(s: Sizes, params: Mapping[str, Any]) -> int:
    # One cluster may hold the whole pool: its distance block, partitioned.
    rows = s.n_pool + s.n_labeled
    block = min(rows * rows, CHUNK_ELEMENTS) * FLOAT
    clusters = s.n_labeled + s.batch_size
    return 3 * block + _kmeans(s, rows, clusters) + 4 * _n(s)


def _density(s: Sizes, params: Mapping[str, Any]) -> int:
    # Cosine: unit vectors and their mean. Euclidean (or not yet known,
    # in a stream's header): distance blocks over the pool.
    if params.get("density_similarity") == "cosine":
        return 2 * _e(s)
    return 3 * _block(s, s.n_pool) + 2 * _e(s)


def _weak_clusters(s: Sizes, params: Mapping[str, Any]) -> int:
    rows = s.n_pool + s.n_validation
    clusters = params.get("n_clusters") or s.batch_size
    data = rows * s.n_features * FLOAT
    return _kmeans(s, rows, clusters) + data + 2 * _p(s) + 6 * _n(s)


def _two_step(s: Sizes, params: Mapping[str, Any]) -> int:
    factor = params.get("prefilter_factor") or 10
    rows = min(s.n_pool, factor * s.batch_size)
    return 2 * _p(s) + _kmeans(s, rows, s.batch_size) + 4 * _n(s)


def _clustered(s: Sizes, params: Mapping[str, Any]) -> int:
    clusters = params.get("n_clusters") or s.batch_size
    return _kmeans(s, s.n_pool, clusters) + 2 * _p(s) + 6 * _n(s)


WORKING_SETS: dict[str, WorkingSet] = {
    # Uncertainty: a few (n_pool, n_classes) arrays, or (.., n_passes, ..).
    # Scored chunk by chunk (uncertainty_chunks): no pool-sized copy.
    "uncertainty.least_confidence": lambda s, _: _measure_chunks(s, logs=False),
    "uncertainty.margin": lambda s, _: _measure_chunks(s, logs=False),
    "uncertainty.ratio_of_confidence": lambda s, _: _measure_chunks(s, logs=False),
    # The screened top-k's first pass reads chunks PATTERN_CHUNK_SCALE times
    # as large, with the same buffers (entropy_screen.screen).
    "uncertainty.entropy": lambda s, _: _measure_chunks(s, PATTERN_CHUNK_SCALE),
    "uncertainty.consensus_entropy": lambda s, _: _measure_chunks(s),
    "uncertainty.bald": lambda s, _: 3 * _pp(s) + 4 * _n(s),
    "uncertainty.kl_mean": lambda s, _: 3 * _pp(s) + _p(s) + 4 * _n(s),
    "uncertainty.kl_max": lambda s, _: 3 * _pp(s) + _p(s) + 4 * _n(s),
    "uncertainty.mean_std": lambda s, _: _pp(s) + 2 * _p(s) + 4 * _n(s),
    "uncertainty.variation_ratios": lambda s, _: (
        _pp(s) + (s.n_passes + 6) * _n(s)
    ),
    "uncertainty.vote_entropy": lambda s, _: (
        _pp(s) + 4 * _p(s) + (s.n_passes + 6) * _n(s)
    ),
    "uncertainty.batchbald": _batchbald,
    "uncertainty.epig": _epig,
    # Diversity: distance blocks of at most CHUNK_ELEMENTS values.
    "diversity.kcenter": _kcenter,
    "diversity.kmeans": lambda s, _: (
        _kmeans(s, s.n_pool, s.batch_size) + s.batch_size * _n(s) + 4 * _n(s)
    ),
    "diversity.kmeans_plusplus": lambda s, _: (
        _block(s, s.n_labeled) + 2 * _e(s) + 8 * _n(s)
    ),
    "diversity.typiclust": _typiclust,
    "diversity.probcover": lambda s, _: (
        2 * _block(s, s.n_pool) + _block(s, s.n_pool) // 4 + 8 * _n(s)
    ),
    "diversity.information_density": lambda s, params: (
        _density(s, params) + 4 * _n(s)
    ),
    "diversity.lightweight_coreset": lambda s, _: 6 * _n(s),
    "diversity.random": lambda s, _: 4 * _n(s),
    # Hybrid: probabilities and embeddings together.
    "hybrid.badge": lambda s, _: 2 * _p(s) + 4 * _n(s),
    "hybrid.ranked_batch": lambda s, _: (
        _block(s, s.n_labeled) + 2 * _e(s) + 8 * _n(s)
    ),
    "hybrid.clue": _clustered,
    "hybrid.two_step": _two_step,
    "hybrid.cluster_margin": _clustered,
    "hybrid.density_weighted": lambda s, params: (
        4 * _p(s) + _density(s, params) + 4 * _n(s)
    ),
    "hybrid.expected_gradient_length": lambda s, _: 3 * _p(s) + 3 * _n(s),
    # Credibility: blocks against the validation or labeled set.
    "credibility.validation_knn": lambda s, params: (
        2 * _block(s, s.n_validation)
        + 5 * _e(s)
        + (params.get("n_neighbors") or 10) * _n(s)
        + 2 * s.n_validation * s.n_classes * FLOAT
        + 4 * _n(s)
    ),
    "credibility.weak_clusters": _weak_clusters,
    "credibility.class_weakness": lambda s, _: 5 * _p(s) + 8 * _n(s),
    "credibility.conformal": lambda s, _: 4 * _p(s) + 4 * _n(s),
    "credibility.gradient_alignment": lambda s, _: 3 * _p(s) + 4 * _n(s),
    "credibility.trust_score": lambda s, _: (
        3 * _p(s) + _block(s, s.n_labeled) + 2 * _e(s) + 4 * _n(s)
    ),
}


def working_set(name: str, sizes: Sizes, params: Mapping[str, Any]) -> int:
    """Upper bound, in bytes, of what strategy ``name`` and the selection
    step allocate for a request of ``sizes``. Unset parameters take the
    strategy's default (or a bound of it)."""
    return WORKING_SETS[name](sizes, params) + RESPONSE_BYTES_PER_PICK * (
        sizes.batch_size
    )


def estimate(name: str, sizes: Sizes, params: Mapping[str, Any]) -> int:
    """The request's working memory: its arrays plus the working set."""
    return sizes.input_bytes + working_set(name, sizes, params)


def header_estimate(
    request: query_pb2.RankRequest,
) -> tuple[int, Callable[[], str]]:
    """A ``RankStream`` header's estimate, before its tensors come, and
    what a refusal says about it.

    Parameters are those the header sets, unresolved (the edge resolves
    them once the tensors are here); the formulas bound the unset ones.
    An unknown strategy counts its tensors only: the edge refuses it later.
    """
    name = edge_strategy_name(request)
    sizes = sizes_of_request(request)
    nbytes = sizes.input_bytes
    if name in WORKING_SETS:
        nbytes += working_set(name, sizes, _declared_params(request))
    return nbytes, lambda: f"{name or 'the request'} on {sizes.describe()}"


def _declared_params(request: query_pb2.RankRequest) -> dict[str, Any]:
    family = request.WhichOneof("strategy")
    if family is None:
        return {}
    message = getattr(request, family)
    return {
        field.name: value
        for field, value in message.ListFields()
        if field.name != "method"
    }


def inference_estimate(request: query_pb2.RankRequest) -> int:
    """What a request needs before its models run: its tensors and the
    edge's copies, plus two of the runner's chunks (about 64 MiB of tensors
    each: the cast inputs and the outputs of one run).

    The models' outputs are counted once they exist, in the ``estimate`` of
    the checked query that follows.
    """
    return sizes_of_request(request).input_bytes + 2 * RUNNER_CHUNK_BYTES


_QUERY_INPUTS = tuple(
    field.name
    for field in dataclasses.fields(edge.Query)
    if field.name.startswith(("pool_", "labeled_", "validation_", "target_"))
)
"""The ``Query`` attributes that hold the request's inputs; listed once, as
``dataclasses.fields`` builds its answer on every call."""


def sizes_of_query(query: Query) -> Sizes:
    """The sizes of a checked query; its arrays as they are held.

    Predictions count twice: the float64 array the strategy reads, and the
    tensor the request still holds (the same size or, as float32, half).
    """
    arrays = [getattr(query, name) for name in _QUERY_INPUTS]
    pool = query.pool_predictions
    # The pool's float64 probabilities are made on first use only (measures
    # scored in chunks never make them): count them without making them.
    copies = [
        0 if pool is None else pool.size * FLOAT,
        *(
            0 if a is None else a.nbytes
            for a in (query.validation_probabilities, query.target_probabilities)
        ),
    ]
    held = sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
    return Sizes(
        n_pool=query.n_pool,
        n_classes=0 if pool is None else pool.shape[-1],
        n_passes=1 if pool is None or pool.ndim == 2 else pool.shape[1],
        n_features=_columns(query.pool_embeddings),
        n_labeled=_rows(query.labeled_embeddings, query.labeled_labels),
        n_validation=_rows(
            query.validation_probabilities,
            query.validation_embeddings,
            query.validation_labels,
        ),
        n_target=_rows(query.target_probabilities),
        batch_size=query.batch_size,
        input_bytes=held + sum(copies),
    )


def _rows(*arrays: Any) -> int:
    return next((len(a) for a in arrays if a is not None), 0)


def _columns(array: Any) -> int:
    return 0 if array is None else array.shape[1]


def sizes_of_request(request: query_pb2.RankRequest) -> Sizes:
    """The sizes a request's tensors declare (dtype and shape only), for a
    ``RankStream`` header whose data has not come yet.

    Shapes are taken as declared; ``edge.build_query`` checks them later.
    ``input_bytes`` counts each tensor as sent, plus the float64 arrays the
    edge makes while it checks them.
    """
    def shape(message: Any, name: str) -> list[int]:
        if name in ("probabilities", "logits"):
            if message.WhichOneof("predictions") != name:
                return []
        elif not message.HasField(name):
            return []
        return list(getattr(message, name).shape)

    def predictions(message: Any) -> list[int]:
        return shape(message, "probabilities") or shape(message, "logits")

    input_bytes = 0
    for group in ("pool", "labeled", "validation", "target"):
        message = getattr(request, group)
        for name in ("probabilities", "logits", "embeddings", "labels"):
            if name in message.DESCRIPTOR.fields_by_name and shape(message, name):
                input_bytes += _held_bytes(getattr(message, name), name)
    pool = predictions(request.pool)
    embeddings = shape(request.pool, "embeddings")
    n_pool = (pool or embeddings or [0])[0]
    labeled = shape(request.labeled, "embeddings") or shape(request.labeled, "labels")
    validation = (
        predictions(request.validation)
        or shape(request.validation, "embeddings")
        or shape(request.validation, "labels")
    )
    target = predictions(request.target)
    return Sizes(
        n_pool=n_pool,
        n_classes=pool[-1] if pool else 0,
        n_passes=pool[1] if len(pool) == 3 else 1,
        n_features=embeddings[1] if len(embeddings) == 2 else 0,
        n_labeled=labeled[0] if labeled else 0,
        n_validation=validation[0] if validation else 0,
        n_target=target[0] if target else 0,
        batch_size=max(1, min(request.batch_size, n_pool)),
        input_bytes=input_bytes,
    )


def _held_bytes(tensor: query_pb2.Tensor, name: str) -> int:
    # The tensor as sent, plus what the edge makes of it: a float64 copy of
    # predictions, a float64 temporary while embeddings are checked.
    count = _product(list(tensor.shape))
    itemsize = 4 if tensor.dtype in _FOUR_BYTE_DTYPES else FLOAT
    extra = 0 if name == "labels" else FLOAT
    return count * (itemsize + extra)


def _product(dims: list[int]) -> int:
    total = 1
    for size in dims:
        total *= max(0, size)
    return total
