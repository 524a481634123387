"""Turn ``RankRequest.inference`` into the predictions and embeddings it stands for.

This runs at the edge, before the usual checks: the models run on each
set's embeddings, and their predictions are written into the request as if
the client had sent them (``pool.probabilities``, and
``validation.probabilities`` with ``score_validation``). The embeddings
each set ends up with (the model's embeddings output, or the input as
decoded) are handed to ``edge.build_query`` as arrays, so a large pool is
decoded once. The checks of the edge and every strategy then run
unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from alquery.server import registry
from alquery.server.edge import DEFAULT_SEED, strategy_name
from alquery.server.errors import InvalidRequestError
from alquery.server.models import binding as bindings
from alquery.server.models.cache import LoadedModel, ModelCache
from alquery.server.models.runner import RunControl, run, to_probabilities
from alquery.server.streaming import Arrivals
from alquery.server.tensors import decode
from alquery.v1 import query_pb2

logger = logging.getLogger("alquery.server.models.inference")

_SETS = ("pool", "labeled", "validation")


@dataclasses.dataclass(frozen=True)
class Member:
    """One model of the request with its resolved binding."""

    loaded: LoadedModel
    binding: bindings.Binding
    field: str


def load_member(
    spec: query_pb2.Model, cache: ModelCache, field: str
) -> Member:
    """Fetch (or load) the model of ``spec`` and resolve its binding.

    Raises
    ------
    InvalidRequestError, TooLargeError, UnknownModelError
        From the checks, the binding, or an unknown hash.
    """
    source = spec.WhichOneof("source")
    if source is None:
        raise InvalidRequestError(
            f"{field}: no model; set `onnx` (the bytes) or `sha256`"
        )
    if source == "onnx":
        loaded = cache.add(spec.onnx, f"{field}.onnx")
    else:
        loaded = cache.get(spec.sha256, f"{field}.sha256")
    binding = bindings.resolve(spec, loaded.inputs, loaded.outputs, field)
    if binding.passes > 1 and loaded.dropout_nodes == 0:
        raise InvalidRequestError(
            f"{field}.mc_passes: {binding.passes} passes asked, but the model "
            "has no Dropout node with training_mode set to a constant true; "
            "its passes would all be the same"
        )
    return Member(loaded, binding, field)


def apply(
    request: query_pb2.RankRequest,
    cache: ModelCache,
    *,
    stop_requested: Callable[[], bool],
    on_stop: Callable[[Callable[[], None]], object],
    arrivals: Arrivals | None = None,
) -> dict[str, NDArray]:
    """Run ``request.inference``'s models and write their outputs into ``request``.

    Returns, by ``Query`` attribute, for ``edge.build_query``: the
    embeddings of each set the models ran on ("pool_embeddings", ...) and
    the probabilities they gave ("pool_probabilities",
    "validation_probabilities"; the request's tensor then holds only their
    dtype and shape); an empty dict when the request carries no models.
    ``on_stop`` registers a callback run when the call ends; it aborts a
    run in progress.

    With ``arrivals`` (a ``RankStream`` call still being read), the
    embeddings it streams are read from its buffers: each chunk of rows
    runs as soon as it has arrived and been checked to be finite.

    Raises
    ------
    InvalidRequestError
        Naming the field: models and predictions both sent, embeddings
        missing, binding or output errors.
    """
    if not request.HasField("inference"):
        return {}
    inference = request.inference
    _check_inputs(request)
    members = [
        load_member(spec, cache, f"inference.models[{i}]")
        for i, spec in enumerate(inference.models)
    ]
    embedders = [m for m in members if m.binding.embeddings_output]
    if len(embedders) > 1:
        raise InvalidRequestError(
            f"{embedders[1].field}.embeddings_output: only one model may give "
            f"the embeddings; {embedders[0].field} already does"
        )

    options = ort.RunOptions()
    on_stop(lambda: setattr(options, "terminate", True))
    control = RunControl(options, stop_requested, cache.threads)
    seed = DEFAULT_SEED if not request.HasField("seed") else request.seed
    decoded = {}
    for set_index, name in enumerate(_SETS):
        wanted = name == "pool" or (name == "validation" and inference.score_validation)
        if not wanted and not embedders:
            continue
        message = getattr(request, name)
        if not message.HasField("embeddings"):
            continue
        features, rows_ready = _features(message, name, arrivals)
        predicted, embeddings = _run_set(
            message, name, features, members, wanted, control,
            np.random.SeedSequence([seed, set_index]), rows_ready,
        )
        if predicted is not None:
            decoded[f"{name}_probabilities"] = predicted
        if embeddings is not None:
            embeddings.flags.writeable = False
        decoded[f"{name}_embeddings"] = features if embeddings is None else embeddings
    request.ClearField("inference")
    return decoded


def features_only_models_read(request: query_pb2.RankRequest) -> frozenset[str]:
    """The embeddings fields of ``request`` that only its models will read.

    ``apply`` runs the models on a set's embeddings and hands the strategy
    either the models' embeddings output (when a model names one) or the
    set's own embeddings. A field is returned when the models run on it and
    the strategy never sees its raw values: some model gives embeddings, or
    the strategy does not need that set's embeddings. Such a field may be
    read in place from memory the client can still change
    (``shared_memory``): the models' outputs are checked after the run, so
    changed bytes change only the client's own answer. Empty without
    models or with an unknown strategy.
    """
    if not request.HasField("inference"):
        return frozenset()
    strategy = registry.lookup(strategy_name(request))
    if strategy is None:
        return frozenset()
    inference = request.inference
    embedder = any(spec.embeddings_output for spec in inference.models)
    fields = set()
    for name in _SETS:
        wanted = name == "pool" or (name == "validation" and inference.score_validation)
        if not (wanted or embedder):
            continue
        if embedder or f"{name}_embeddings" not in strategy.required_inputs:
            fields.add(f"{name}.embeddings")
    return frozenset(fields)


def _check_inputs(request: query_pb2.RankRequest) -> None:
    inference = request.inference
    if not inference.models:
        raise InvalidRequestError(
            "inference.models: empty; send at least one model"
        )
    for name in ("pool", "validation"):
        kind = getattr(request, name).WhichOneof("predictions")
        if kind is not None and (name == "pool" or inference.score_validation):
            raise InvalidRequestError(
                f"{name}.{kind}: sent together with inference models that "
                "produce it; send one or the other"
            )
    if not request.pool.HasField("embeddings"):
        raise InvalidRequestError(
            "pool.embeddings: missing; the inference models run on it"
        )
    if inference.score_validation and not request.validation.HasField("embeddings"):
        raise InvalidRequestError(
            "validation.embeddings: missing; inference.score_validation runs "
            "the models on it"
        )


def _features(
    message: object, name: str, arrivals: Arrivals | None
) -> tuple[NDArray, Callable[[int], None] | None]:
    """Decode a set's embeddings; for a streamed tensor, also return the
    ``rows_ready`` that waits for its rows (see ``Arrivals.rows_ready``)."""
    field = f"{name}.embeddings"
    if arrivals is None or field not in arrivals.fields:
        return decode(message.embeddings, field, ndims=(2,)), None
    features = decode(
        message.embeddings, field, ndims=(2,), data=arrivals.buffer(field),
        finite=False,
    )
    features.flags.writeable = False
    return features, arrivals.rows_ready(field, features)


def _run_set(
    message: object,
    name: str,
    features: NDArray,
    members: list[Member],
    wanted: bool,
    control: RunControl,
    seed: np.random.SeedSequence,
    rows_ready: Callable[[int], None] | None = None,
) -> tuple[NDArray | None, NDArray | None]:
    """Run the models on one set; return its probabilities (None when not
    ``wanted``) and the embeddings a model gave (or None)."""
    field = f"{name}.embeddings"
    parts, embeddings = [], None
    member_seeds = seed.spawn(len(members))
    for member, member_seed in zip(members, member_seeds):
        if not wanted and not member.binding.embeddings_output:
            continue
        bindings.features_for(member.binding, features.shape[1], field)
        outputs = run(
            member.loaded, member.binding, features,
            field=member.field, features_field=field, seed=member_seed,
            control=control, predictions=wanted, rows_ready=rows_ready,
        )
        if outputs.embeddings is not None:
            embeddings = outputs.embeddings
        if wanted:
            what = f"{member.field}: output {member.binding.output_name!r} on {field}"
            parts.append(
                to_probabilities(outputs.predictions, member.binding.output_kind, what)
            )

    if not parts:
        return None, embeddings
    _check_classes(parts, members)
    stacked = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    if stacked.shape[1] == 1:
        stacked = stacked[:, 0]
    stacked.flags.writeable = False
    # The tensor says what the models gave; its values stay in the array.
    message.probabilities.CopyFrom(
        query_pb2.Tensor(dtype=_wire_dtype(stacked), shape=stacked.shape)
    )
    return stacked, embeddings


def _check_classes(parts: list[NDArray], members: list[Member]) -> None:
    for part, member in zip(parts[1:], members[1:]):
        if part.shape[-1] != parts[0].shape[-1]:
            raise InvalidRequestError(
                f"{member.field}: gives {part.shape[-1]} classes but "
                f"{members[0].field} gives {parts[0].shape[-1]}; committee "
                "members must agree"
            )


def _wire_dtype(array: NDArray) -> int:
    if array.dtype == np.float32:
        return query_pb2.D_TYPE_FLOAT32
    return query_pb2.D_TYPE_FLOAT64
