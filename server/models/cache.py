"""Loaded models, kept in a bounded least-recently-used cache by SHA-256.

The service stays stateless in meaning: a request names a model by the
hash of its bytes, and a hash the cache no longer holds gets NOT_FOUND, so
the client sends the bytes again. Nothing is written to disk.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import re
import threading

import onnx
import onnxruntime as ort

from alquery.server.errors import InvalidRequestError, UnknownModelError
from alquery.server.metrics import Metrics
from alquery.server.models import checks, graph

logger = logging.getLogger("alquery.server.models.cache")

MIB = 1 << 20
DEFAULT_CHUNK_ROWS = 4096
"""Rows per run when the memory of a row cannot be estimated."""
CHUNK_BYTES = 8 * MIB
"""Rows per run of a model with a dynamic batch axis are chosen so that the
tensors of one chunk take about this much memory. Small enough that a
chunk's tensors stay in the processor's cache between the finite check and
the run, and between layers: for a 768 -> 256 -> 10 network on 100,000 x
768 float32 rows, 8 MiB chunks took 0.21 s where 64 MiB took 0.24 s (with
the check; 0.20 against 0.23 s without), on this 2-core machine."""
MAX_CHUNK_ROWS = 65536
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")

ORT_ERRORS = tuple(
    getattr(ort.capi.onnxruntime_pybind11_state, name)
    for name in (
        "Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError",
        "RuntimeException", "InvalidProtobuf", "ModelLoaded",
        "NotImplemented", "InvalidGraph", "EPFail",
    )
)
"""The exception types onnxruntime raises on a model or a run it refuses."""


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A checked model, ready to run.

    A model with training-mode Dropout nodes keeps its (rewritten) graph
    instead of a session: each request builds a session with its own
    Dropout seeds.
    """

    sha256: str
    size_bytes: int
    inputs: list[graph.Value]
    outputs: list[graph.Value]
    opsets: list[str]
    class_labels: dict[str, list[str]]
    dropout_nodes: int
    chunk_rows: int
    session: ort.InferenceSession | None
    proto: onnx.ModelProto | None

    def new_session(self, seeds: list[int], threads: int) -> ort.InferenceSession:
        """A fresh session with the Dropout nodes seeded by ``seeds``."""
        data = graph.seed_dropout(self.proto, seeds)
        # Every optimisation level removes Dropout nodes, even in training
        # mode, so Monte-Carlo sessions run the graph as written.
        return _session(data, threads, optimize=False, field="model")


def sha256_of(data: bytes) -> str:
    """The lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _session(
    data: bytes, threads: int, *, optimize: bool, field: str
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # Idle intra-op threads sleep rather than spin: a server runs several
    # requests at once, and spinning threads take the cores they need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Load the bytes as ONNX only, never as onnxruntime's own format.
    options.add_session_config_entry("session.load_model_format", "ONNX")
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(
            data, options, providers=["CPUExecutionProvider"]
        )
    except ORT_ERRORS as error:
        first_line = str(error).strip().splitlines()[0][:300]
        raise InvalidRequestError(
            f"{field}: onnxruntime cannot load the model ({first_line})"
        ) from None


def load(data: bytes, field: str, *, max_bytes: int, threads: int) -> LoadedModel:
    """Check ``data`` (see ``checks.parse_model``) and prepare it to run.

    Raises
    ------
    InvalidRequestError, TooLargeError
        From the checks, or when onnxruntime refuses the model.
    """
    model = checks.parse_model(data, field, max_bytes)
    inputs, outputs = graph.inputs(model), graph.outputs(model)
    labels = graph.unzip_map(model)
    dropout = len(graph.training_dropout_nodes(model))
    row = graph.row_bytes(model)
    chunk_rows = DEFAULT_CHUNK_ROWS if row is None else CHUNK_BYTES // row
    session = None
    if dropout == 0:
        session = _session(
            model.SerializeToString(), threads, optimize=True, field=field
        )
    else:
        # Check once that onnxruntime takes it; requests build their own.
        _session(graph.seed_dropout(model, [0] * dropout), threads,
                 optimize=False, field=field)
    return LoadedModel(
        sha256=sha256_of(data),
        size_bytes=len(data),
        inputs=inputs,
        outputs=outputs,
        opsets=graph.opsets(model),
        class_labels=labels,
        dropout_nodes=dropout,
        chunk_rows=max(1, min(chunk_rows, MAX_CHUNK_ROWS)),
        session=session,
        proto=model if dropout else None,
    )


class ModelCache:
    """Loaded models by SHA-256, at most ``max_bytes`` of model bytes in all.

    An entry costs its model's size in bytes (the session's weights take
    about as much). Adding past the limit evicts the least recently used
    entries; a model larger than the whole cache is served but not kept.

    Parameters
    ----------
    max_bytes : int
        The cache's capacity in model bytes.
    max_model_bytes : int
        The largest model accepted.
    threads : int
        onnxruntime intra-op threads per run; 0 lets it use every core.
    metrics : Metrics or None, default=None
        Where look-ups (hit or miss), evictions and the bytes held are
        counted; None counts only ``evictions``.
    """

    def __init__(
        self,
        max_bytes: int,
        max_model_bytes: int,
        threads: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_model_bytes = max_model_bytes
        self.threads = threads
        self.evictions = 0
        self._metrics = metrics
        self._entries: collections.OrderedDict[str, LoadedModel] = (
            collections.OrderedDict()
        )
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        """The model bytes the cache holds now."""
        with self._lock:
            return self._size

    def __contains__(self, sha256: str) -> bool:
        with self._lock:
            return sha256 in self._entries

    def add(self, data: bytes, field: str) -> LoadedModel:
        """Load ``data`` (or find it by its hash) and keep it as most recent."""
        sha256 = sha256_of(data)
        with self._lock:
            found = self._entries.get(sha256)
            if found is not None:
                self._entries.move_to_end(sha256)
        self._count_lookup(found is not None)
        if found is not None:
            return found
        loaded = load(
            data, field, max_bytes=self.max_model_bytes, threads=self.threads
        )
        self._keep(loaded)
        return loaded

    def get(self, sha256: str, field: str) -> LoadedModel:
        """Return the model with hash ``sha256``, now the most recent.

        Raises
        ------
        InvalidRequestError
            When ``sha256`` is not 64 hexadecimal digits.
        UnknownModelError
            When the cache does not hold it (never sent, or evicted).
        """
        if not _SHA256.fullmatch(sha256):
            raise InvalidRequestError(
                f"{field}: {sha256[:80]!r} is not a SHA-256; expected 64 "
                "hexadecimal digits"
            )
        with self._lock:
            found = self._entries.get(sha256.lower())
            if found is not None:
                self._entries.move_to_end(sha256.lower())
        self._count_lookup(found is not None)
        if found is not None:
            return found
        raise UnknownModelError(
            f"{field}: this server holds no model with SHA-256 {sha256[:64]!r} "
            "(never sent, or evicted from its cache); send the model's "
            "bytes in `onnx` or upload them with UploadModel"
        )

    def _count_lookup(self, hit: bool) -> None:
        if self._metrics is not None:
            self._metrics.cache_lookups.labels("hit" if hit else "miss").inc()

    def _keep(self, loaded: LoadedModel) -> None:
        if loaded.size_bytes > self.max_bytes:
            logger.debug(
                "model sha256=%s size_bytes=%d is larger than the cache; not kept",
                loaded.sha256, loaded.size_bytes,
            )
            return
        with self._lock:
            if loaded.sha256 in self._entries:
                self._entries.move_to_end(loaded.sha256)
                return
            self._entries[loaded.sha256] = loaded
            self._size += loaded.size_bytes
            while self._size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._size -= evicted.size_bytes
                self.evictions += 1
                if self._metrics is not None:
                    self._metrics.cache_evictions.inc()
                logger.debug("evicted model sha256=%s", evicted.sha256)
            if self._metrics is not None:
                self._metrics.cache_bytes.set(self._size)
