"""Which input alquery feeds and which outputs it reads, for one model.

The rules: alquery feeds exactly one graph input, a float or double tensor
whose first axis is the batch; the predictions come from the named output,
or from the only float tensor (at most two axes) or sequence of maps among
the outputs once the embeddings output is set aside.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from alquery.server.errors import InvalidRequestError
from alquery.server.models.graph import FLOAT_INPUTS, Value
from alquery.v1 import query_pb2


@dataclasses.dataclass(frozen=True)
class Binding:
    """A resolved binding of one model.

    Attributes
    ----------
    input_name : str
        The graph input fed with embeddings.
    input_dtype : numpy.dtype
        float32 or float64; embeddings are cast to it chunk by chunk.
    row_shape : tuple of int, or None
        The shape each row is reshaped to (all input axes but the batch),
        or None when the input is (batch, n_features) with any n_features.
    fixed_batch_size : int
        Rows per run when the batch axis is fixed; 0 when it is dynamic.
    output_name : str
        The predictions output.
    output_kind : int
        An ``OutputKind``; unspecified means detect on each run.
    embeddings_output : str
        The embeddings output, or "" for none.
    passes : int
        Monte-Carlo passes, at least 1.
    """

    input_name: str
    input_dtype: np.dtype
    row_shape: tuple[int, ...] | None
    fixed_batch_size: int
    output_name: str
    output_kind: int
    embeddings_output: str
    passes: int


MAX_PASSES = 256
MAX_FIXED_BATCH = 1 << 16
"""The largest fixed batch axis alquery runs: a short chunk is padded up to
the fixed size, so a tiny model declaring a huge one would allocate without
bound."""


def resolve(
    spec: query_pb2.Model,
    model_inputs: list[Value],
    model_outputs: list[Value],
    field: str,
) -> Binding:
    """Resolve ``spec``'s binding fields against a model's inputs and outputs.

    Raises
    ------
    InvalidRequestError
        Naming the binding field and listing the names to choose from.
    """
    feed = _input(spec.input_name, model_inputs, field)
    row_shape, fixed = _row_shape(feed, field)
    embeddings = _embeddings_output(spec.embeddings_output, model_outputs, field)
    output = _output(spec.output_name, embeddings, model_outputs, field)
    if spec.output_kind not in query_pb2.OutputKind.values():
        raise InvalidRequestError(
            f"{field}.output_kind: unknown value {spec.output_kind}; expected "
            "OUTPUT_KIND_PROBABILITIES, OUTPUT_KIND_LOGITS or unset (detect)"
        )
    passes = spec.mc_passes if spec.HasField("mc_passes") else 1
    if not 1 <= passes <= MAX_PASSES:
        raise InvalidRequestError(
            f"{field}.mc_passes: got {passes}; expected 1 to {MAX_PASSES}"
        )
    return Binding(
        input_name=feed.name,
        input_dtype=FLOAT_INPUTS[feed.elem_type],
        row_shape=row_shape,
        fixed_batch_size=fixed,
        output_name=output,
        output_kind=spec.output_kind,
        embeddings_output=embeddings,
        passes=passes,
    )


def _names(values: list[Value]) -> str:
    return ", ".join(f"{v.name!r} {v.type}" for v in values) or "none"


def _input(name: str, model_inputs: list[Value], field: str) -> Value:
    if len(model_inputs) != 1:
        raise InvalidRequestError(
            f"{field}: the model has {len(model_inputs)} inputs ("
            f"{_names(model_inputs)}); alquery feeds exactly one, the embeddings"
        )
    feed = model_inputs[0]
    if name and name != feed.name:
        raise InvalidRequestError(
            f"{field}.input_name: {name!r} is not an input of the model; "
            f"its input is {feed.name!r}"
        )
    if feed.elem_type not in FLOAT_INPUTS:
        raise InvalidRequestError(
            f"{field}: the model's input {feed.name!r} is {feed.type}; alquery "
            "feeds tensor(float) or tensor(double)"
        )
    return feed


def _row_shape(feed: Value, field: str) -> tuple[tuple[int, ...] | None, int]:
    if feed.shape is None:
        return None, 0
    if not feed.shape:
        raise InvalidRequestError(
            f"{field}: the model's input {feed.name!r} is a scalar; it needs a "
            "batch axis first"
        )
    fixed = feed.shape[0][0]
    if fixed is not None and not 0 <= fixed <= MAX_FIXED_BATCH:
        raise InvalidRequestError(
            f"{field}: the model's input {feed.name!r} has shape "
            f"{_shape_text(feed)}, a fixed batch axis of {fixed}; alquery runs "
            f"fixed batches of 1 to {MAX_FIXED_BATCH} rows (export the model "
            "with a dynamic batch axis instead)"
        )
    rest = [size for size, _ in feed.shape[1:]]
    if len(rest) == 1 and rest[0] == 0:
        return None, fixed
    if not all(rest):
        raise InvalidRequestError(
            f"{field}: the model's input {feed.name!r} has shape "
            f"{_shape_text(feed)} with dynamic axes after the batch axis; "
            "alquery can reshape rows only to fixed axes"
        )
    return tuple(rest), fixed


def _shape_text(value: Value) -> str:
    return "[" + ", ".join(str(s) if s else (n or "?") for s, n in value.shape) + "]"


def _find(name: str, model_outputs: list[Value], field: str) -> Value:
    for value in model_outputs:
        if value.name == name:
            return value
    raise InvalidRequestError(
        f"{field}: {name!r} is not an output of the model; its outputs are "
        f"{_names(model_outputs)}"
    )


def _embeddings_output(name: str, model_outputs: list[Value], field: str) -> str:
    if not name:
        return ""
    value = _find(name, model_outputs, f"{field}.embeddings_output")
    if not value.is_float_tensor:
        raise InvalidRequestError(
            f"{field}.embeddings_output: {name!r} is {value.type}; embeddings "
            "must be a float tensor"
        )
    return name


def _could_predict(value: Value) -> bool:
    if value.is_probability_map:
        return True
    return value.is_float_tensor and (value.shape is None or len(value.shape) <= 2)


def _output(
    name: str, embeddings: str, model_outputs: list[Value], field: str
) -> str:
    if name:
        value = _find(name, model_outputs, f"{field}.output_name")
        if not _could_predict(value):
            raise InvalidRequestError(
                f"{field}.output_name: {name!r} is {value.type} of shape "
                f"{_shape_text(value) if value.shape else '?'}; predictions "
                "need a float tensor of at most 2 axes or a sequence of maps"
            )
        if name == embeddings:
            raise InvalidRequestError(
                f"{field}.output_name: {name!r} is also the embeddings_output"
            )
        return name
    candidates = [
        v for v in model_outputs if _could_predict(v) and v.name != embeddings
    ]
    if not candidates and embeddings:
        raise InvalidRequestError(
            f"{field}.embeddings_output: {embeddings!r} is the model's only "
            "output that could hold predictions; the predictions need an "
            "output of their own, so leave embeddings_output unset or name "
            "another output"
        )
    if len(candidates) != 1:
        raise InvalidRequestError(
            f"{field}.output_name: not set, and the model has "
            f"{len(candidates)} outputs that could hold predictions "
            f"({_names(candidates)}); name one (and the embeddings in "
            "embeddings_output)"
        )
    return candidates[0].name


def features_for(binding: Binding, n_features: int, field: str) -> None:
    """Check that rows of ``n_features`` values fit the model's input.

    Raises
    ------
    InvalidRequestError
        Naming ``field`` (the embeddings tensor) and the size expected.
    """
    if binding.row_shape is None:
        return
    expected = math.prod(binding.row_shape)
    if expected != n_features:
        raise InvalidRequestError(
            f"{field}: has {n_features} features per row, but the model's "
            f"input {binding.input_name!r} takes rows of shape "
            f"{list(binding.row_shape)} ({expected} values)"
        )
