"""Run one model over a set's embeddings, chunk by chunk, and read its outputs.

A model with a fixed batch axis runs on chunks of exactly that many rows
(the last one padded by repeating its final row, the padding dropped from
the outputs); a dynamic batch axis runs on chunks sized by the memory of a
row (``LoadedModel.chunk_rows``). Rows are cast to the input's dtype one
chunk at a time, so a float64 pool never exists twice in memory.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from alquery.server import probabilities as probs
from alquery.server.errors import CancelledError, InvalidRequestError
from alquery.server.models.binding import Binding
from alquery.server.models.cache import ORT_ERRORS, LoadedModel
from alquery.v1 import query_pb2

logger = logging.getLogger("alquery.server.models.runner")


@dataclasses.dataclass(frozen=True)
class Outputs:
    """What one model gave on one set.

    ``predictions`` has shape (n_samples, n_passes, n_columns), float64, as
    the model wrote them (probabilities or logits; see ``to_probabilities``),
    or is None when not asked for. ``embeddings`` has shape (n_samples,
    n_dims), the mean over passes, or is None.
    """

    predictions: NDArray[np.float64] | None
    embeddings: NDArray | None


@dataclasses.dataclass(frozen=True)
class RunControl:
    """How a request's runs stop early and how many threads they use."""

    run_options: ort.RunOptions
    stop_requested: Callable[[], bool]
    threads: int


def run(
    loaded: LoadedModel,
    binding: Binding,
    features: NDArray,
    *,
    field: str,
    features_field: str,
    seed: np.random.SeedSequence,
    control: RunControl,
    predictions: bool = True,
    rows_ready: Callable[[int], None] | None = None,
) -> Outputs:
    """Run ``loaded`` on ``features`` (n_samples, n_features), all passes.

    Parameters
    ----------
    field : str
        The model's request field, e.g. "inference.models[0]".
    features_field : str
        The embeddings' request field, e.g. "pool.embeddings".
    seed : numpy.random.SeedSequence
        Draws the Dropout seeds of a Monte-Carlo model; unused otherwise.
    predictions : bool, default=True
        False fetches only the embeddings output.
    rows_ready : callable, optional
        Called as ``rows_ready(n)`` before rows up to ``n`` are run; it
        blocks until they are there (rows still arriving by ``RankStream``)
        and raises when they never will be, or are not finite.

    Raises
    ------
    InvalidRequestError
        When onnxruntime fails on a chunk, or an output has a wrong shape or
        holds NaN or infinite values.
    CancelledError
        When the call ends (deadline, cancel) while the model runs.
    """
    names = [binding.output_name] if predictions else []
    if binding.embeddings_output:
        names.append(binding.embeddings_output)
    session = loaded.session
    if session is None:
        seeds = seed.generate_state(loaded.dropout_nodes, dtype=np.uint32)
        seeds = [int(s) >> 1 for s in seeds]
        session = loaded.new_session(seeds, control.threads)

    n = len(features)
    labels = loaded.class_labels.get(binding.output_name)
    collected = _Collector(n, binding.passes, labels)
    for pass_index in range(binding.passes):
        for start, rows, results in _chunks(
            session, binding, features, names, loaded.chunk_rows, control,
            field, features_field, rows_ready,
        ):
            place = slice(start, start + rows)
            if predictions:
                collected.predictions(results[0], place, pass_index, field, binding)
            if binding.embeddings_output:
                collected.embeddings(results[-1], place, field, binding)
    return Outputs(
        predictions=collected.predicted if predictions else None,
        embeddings=collected.mean_embeddings(),
    )


def _chunks(
    session: ort.InferenceSession,
    binding: Binding,
    features: NDArray,
    names: list[str],
    chunk_rows: int,
    control: RunControl,
    field: str,
    features_field: str,
    rows_ready: Callable[[int], None] | None,
) -> Iterator[tuple[int, int, list[Any]]]:
    step = binding.fixed_batch_size or chunk_rows
    for start in range(0, len(features), step):
        if rows_ready is not None:
            rows_ready(min(start + step, len(features)))
        if control.stop_requested():
            raise CancelledError("the call was cancelled or its deadline passed")
        chunk = features[start:start + step]
        rows = len(chunk)
        if binding.fixed_batch_size and rows < step:
            padding = np.repeat(chunk[-1:], step - rows, axis=0)
            chunk = np.concatenate([chunk, padding])
        fed = np.ascontiguousarray(chunk, dtype=binding.input_dtype)
        if binding.row_shape is not None:
            fed = fed.reshape((len(fed), *binding.row_shape))
        try:
            results = session.run(
                names, {binding.input_name: fed}, control.run_options
            )
        except ORT_ERRORS as error:
            if control.stop_requested():
                raise CancelledError(
                    "the call was cancelled or its deadline passed"
                ) from None
            first_line = str(error).strip().splitlines()[0][:300]
            raise InvalidRequestError(
                f"{field}: onnxruntime failed on rows {start} to "
                f"{start + rows - 1} of {features_field} ({first_line})"
            ) from None
        yield start, rows, results


def _rows_match(produced: int, rows: int, binding: Binding) -> bool:
    """Whether an output has one row per row fed: ``rows``, or the fixed
    batch size when the chunk was padded up to it (the padding is then cut)."""
    return produced == rows or produced == binding.fixed_batch_size > rows


class _Collector:
    """Fills the prediction and embedding arrays chunk by chunk."""

    def __init__(self, n: int, passes: int, labels: list[str] | None) -> None:
        self.n, self.passes, self.labels = n, passes, labels
        self.predicted: NDArray[np.float64] | None = None
        self.embedded: NDArray[np.float64] | None = None
        self.embedding_dtype = np.dtype(np.float64)

    def predictions(
        self, value: Any, place: slice, pass_index: int, field: str, binding: Binding
    ) -> None:
        rows = place.stop - place.start
        what = f"{field}: output {binding.output_name!r}"
        if isinstance(value, list):
            value = self._from_maps(value, what)
        value = np.asarray(value)
        if value.ndim == 1:
            value = value[:, None]
        if value.ndim != 2 or not _rows_match(len(value), rows, binding):
            raise InvalidRequestError(
                f"{what} has shape {list(value.shape)} for {rows} rows; "
                "expected one row per input row, (rows, n_classes)"
            )
        _check_columns(value, what)
        value = value[:rows]
        _check_finite(value, what, place.start)
        if self.predicted is None:
            self.predicted = np.empty((self.n, self.passes, value.shape[1]))
        elif value.shape[1] != self.predicted.shape[2]:
            raise InvalidRequestError(
                f"{what} gave {value.shape[1]} columns, earlier chunks "
                f"{self.predicted.shape[2]}"
            )
        self.predicted[place, pass_index] = value

    def _from_maps(self, rows: list[dict], what: str) -> NDArray[np.float64]:
        if not rows:
            return np.empty((0, 0))
        keys = list(rows[0])
        if self.labels:
            by_text = {str(key): key for key in keys}
            keys = [by_text[label] for label in self.labels if label in by_text]
        else:
            keys = sorted(keys)
        try:
            return np.array([[row[key] for key in keys] for row in rows], dtype=float)
        except KeyError as error:
            raise InvalidRequestError(
                f"{what}: a row lacks class {error.args[0]!r} that others have"
            ) from None

    def embeddings(
        self, value: Any, place: slice, field: str, binding: Binding
    ) -> None:
        rows = place.stop - place.start
        what = f"{field}: output {binding.embeddings_output!r}"
        value = np.asarray(value)
        if value.ndim < 1 or not _rows_match(len(value), rows, binding):
            raise InvalidRequestError(
                f"{what} has shape {list(value.shape)} for {rows} rows; "
                "expected one row per input row"
            )
        value = value[:rows].reshape(rows, -1)
        _check_columns(value, what)
        _check_finite(value, what, place.start)
        if self.embedded is None:
            self.embedded = np.zeros((self.n, value.shape[1]))
            self.embedding_dtype = value.dtype
        self.embedded[place] += value

    def mean_embeddings(self) -> NDArray | None:
        if self.embedded is None:
            return None
        if self.passes == 1:
            return self.embedded.astype(self.embedding_dtype, copy=False)
        return self.embedded / self.passes


def _check_columns(value: NDArray, what: str) -> None:
    # Sent directly, tensors with an axis of size 0 are refused at the edge;
    # a model's output must not slip past that (softmax over no class fails
    # inside numpy, and a strategy on width-0 embeddings ranks on nothing).
    if value.shape[1] == 0:
        raise InvalidRequestError(
            f"{what} has shape {list(value.shape)}: no column per row; "
            "expected at least 1"
        )


def _check_finite(value: NDArray, what: str, offset: int) -> None:
    finite = np.isfinite(value)
    if not finite.all():
        row = int(np.argmin(finite.all(axis=1)))
        raise InvalidRequestError(
            f"{what} holds NaN or an infinite value on row {offset + row}; "
            "model outputs must be finite"
        )


def to_probabilities(
    raw: NDArray[np.float64], kind: int, what: str
) -> NDArray[np.float64]:
    """Turn a model's raw predictions into class probabilities.

    Parameters
    ----------
    raw : ndarray of shape (n_samples, n_passes, n_columns)
        One column is the positive class of a binary model: probabilities p
        become (1 - p, p), a logit z becomes the logits (0, z).
    kind : int
        An ``OutputKind``. Unspecified detects: probabilities when every
        value lies in [0, 1] and (with 2 or more columns) every row sums to 1
        within ``probabilities.SUM_TOLERANCE``; logits otherwise.
    what : str
        The output, for messages.

    Raises
    ------
    InvalidRequestError
        When probabilities were stated and a row is not a distribution.
    """
    if kind == query_pb2.OUTPUT_KIND_UNSPECIFIED:
        kind = _detect(raw)
    if kind == query_pb2.OUTPUT_KIND_PROBABILITIES:
        if raw.shape[-1] == 1:
            raw = np.concatenate([1.0 - raw, raw], axis=-1)
        probs.check_probabilities(raw, what)
        return raw
    if raw.shape[-1] == 1:
        raw = np.concatenate([np.zeros_like(raw), raw], axis=-1)
    return probs.softmax(raw)


def _detect(raw: NDArray[np.float64]) -> int:
    in_range = bool(((raw >= 0) & (raw <= 1)).all())
    if in_range and raw.shape[-1] == 1:
        return query_pb2.OUTPUT_KIND_PROBABILITIES
    sums = raw.sum(axis=-1)
    if in_range and bool((np.abs(sums - 1.0) <= probs.SUM_TOLERANCE).all()):
        return query_pb2.OUTPUT_KIND_PROBABILITIES
    return query_pb2.OUTPUT_KIND_LOGITS
