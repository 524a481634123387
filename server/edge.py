"""The request edge: turn a ``RankRequest`` into a checked, immutable ``Query``.

Every rule is checked here, once, before any strategy runs: the strategy
exists, the batch size is in range, each tensor decodes, the tensors agree
with each other, and the strategy's inputs and parameters are present and in
range. Strategies trust a ``Query`` and check nothing again.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from alquery.server import probabilities as probs
from alquery.server import registry
from alquery.server.errors import CancelledError, InvalidRequestError
from alquery.server.tensors import Payload, decode
from alquery.v1 import query_pb2

PREDICTION_NDIMS = (2, 3)
MAX_EMBEDDING_MAGNITUDE = 1e150
"""Embedding values must stay below this in magnitude: squared distances of
larger values overflow float64."""
DEFAULT_SEED = 0
"""The seed stochastic strategies use when a request sends none, so that the
same request always gets the same answer."""


@dataclasses.dataclass(frozen=True)
class Query:
    """A checked request. Arrays are read-only; absent inputs are None.

    Probabilities have shape (n, n_classes) or (n, n_passes, n_classes) and
    are float64 (logits have already gone through the softmax). Indices in
    ``ranked_indices`` of a result are pool positions.

    The pool's predictions stay as the client sent them, in its dtype, in
    ``pool_predictions`` (logits when ``pool_logits``), so that measures
    that score them chunk by chunk never hold a float64 copy;
    ``pool_probabilities`` converts them on first use.
    """

    strategy: registry.Strategy
    batch_size: int
    n_pool: int
    seed: int | None
    params: Mapping[str, Any]
    omit_scores: bool
    warnings: tuple[str, ...]
    selection_mode: int = query_pb2.Selection.MODE_TOP_K
    temperature: float = 1.0
    pool_predictions: NDArray | None = None
    pool_logits: bool = False
    pool_embeddings: NDArray | None = None
    labeled_embeddings: NDArray | None = None
    labeled_labels: NDArray | None = None
    validation_probabilities: NDArray[np.float64] | None = None
    validation_labels: NDArray | None = None
    validation_embeddings: NDArray | None = None
    target_probabilities: NDArray[np.float64] | None = None
    stop_requested: Callable[[], bool] = lambda: False

    @functools.cached_property
    def pool_probabilities(self) -> NDArray[np.float64] | None:
        """The pool's probabilities in float64, computed once on first use.

        Shape (n_pool, [n_passes,] n_classes); None when the request sent
        no pool predictions.
        """
        if self.pool_predictions is None:
            return None
        return probs.from_predictions(self.pool_predictions, logits=self.pool_logits)

    def check_cancelled(self) -> None:
        """Raise ``CancelledError`` once the call is over (client cancelled,
        deadline passed, or the server is stopping). Long strategies call it
        between chunks."""
        if self.stop_requested():
            raise CancelledError("the call was cancelled or its deadline passed")

    def random_generator(self) -> np.random.Generator:
        """A generator seeded with the request's seed, or ``DEFAULT_SEED``."""
        return np.random.default_rng(DEFAULT_SEED if self.seed is None else self.seed)


_METHOD_NAMES = {
    (family, number): f"{family}.{name.removeprefix('METHOD_').lower()}"
    for family, message in registry.FAMILY_MESSAGES.items()
    for name, number in message.Method.items()
    if number
}
"""(family, method number) -> "family.method", for every method the proto
defines; built once, as ``Method.values()`` builds a list on each call."""


def _never() -> bool:
    return False


def strategy_name(request: query_pb2.RankRequest) -> str:
    """Return the "family.method" a request asks for, or "" when unreadable.

    Used for logs and metrics before the request is checked, so it never
    raises.
    """
    family = request.WhichOneof("strategy")
    if family is None:
        return ""
    return _METHOD_NAMES.get((family, getattr(request, family).method), "")


def build_query(
    request: query_pb2.RankRequest,
    decoded: Mapping[str, NDArray] | None = None,
    payloads: Mapping[str, Payload] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> Query:
    """Check ``request`` and return it as a ``Query``.

    ``decoded`` maps ``Query`` embedding attributes (e.g. "pool_embeddings")
    to arrays that stand for the request's tensors, already decoded and
    checked by ``tensors.decode`` (the ONNX runner passes what it read or
    produced, so large arrays are not decoded twice). ``payloads`` maps
    field paths (e.g. "pool.embeddings") to the bytes of tensors that came
    apart from the request (``RankStream``); they are checked like any.
    ``stop_requested`` becomes the query's (see ``Query.check_cancelled``);
    None: never.

    Raises
    ------
    InvalidRequestError
        Naming the field, what was wrong and what was expected.
    """
    strategy = _resolve_strategy(request)
    if request.batch_size < 1:
        raise InvalidRequestError(
            f"batch_size: got {request.batch_size}; it must be at least 1"
        )
    mode, temperature = _resolve_selection(request.selection)
    arrays = _decode_arrays(request, decoded or {}, payloads or {})
    _check_agreement(arrays, request)
    n_pool = _pool_size(arrays, strategy)
    _check_required(arrays, strategy)
    _check_passes(arrays, strategy, request)

    pool_kind = request.pool.WhichOneof("predictions")
    arrays["pool_predictions"] = arrays.pop("pool_probabilities")
    warnings = []
    batch_size = request.batch_size
    if batch_size > n_pool:
        warnings.append(
            f"batch_size={batch_size} exceeds the pool size n_pool={n_pool}; "
            f"returning all {n_pool} pool samples ranked"
        )
        batch_size = n_pool
    warnings.extend(_unread_settings(request, strategy, mode))

    partial = Query(
        strategy=strategy,
        batch_size=batch_size,
        n_pool=n_pool,
        seed=request.seed if request.HasField("seed") else None,
        params={},
        omit_scores=request.omit_scores,
        warnings=tuple(warnings),
        selection_mode=mode,
        temperature=temperature,
        stop_requested=stop_requested or _never,
        pool_logits=pool_kind == "logits",
        **arrays,
    )
    if not strategy.parameters:
        # Most strategies take no parameters: spare the second construction.
        return partial
    params = _resolve_params(getattr(request, strategy.family), partial)
    return dataclasses.replace(partial, params=params)


def _resolve_strategy(request: query_pb2.RankRequest) -> registry.Strategy:
    family = request.WhichOneof("strategy")
    if family is None:
        raise InvalidRequestError(
            "strategy: not set; set one of uncertainty, diversity, "
            f"credibility or hybrid. Valid strategies: {_valid_names()}"
        )
    name = strategy_name(request)
    strategy = registry.lookup(name) if name else None
    if strategy is not None:
        return strategy
    method = getattr(request, family).method
    enum = registry.FAMILY_MESSAGES[family].Method
    field = f"{family}.method"
    if method not in enum.values():
        raise InvalidRequestError(
            f"{field}: unknown value {method}; valid strategies: {_valid_names()}"
        )
    raise InvalidRequestError(
        f"{field}: {enum.Name(method)} is not a strategy this server offers; "
        f"valid strategies: {_valid_names()}"
    )


def _valid_names() -> str:
    return ", ".join(s.name for s in registry.all_strategies())


def _decode_predictions(
    message: Any,
    prefix: str,
    payloads: Mapping[str, Payload],
    decoded: Mapping[str, NDArray],
) -> NDArray | None:
    # Checked, in the dtype sent: logits stay logits. What the inference
    # models gave comes as an array ("pool_probabilities"), checked alike.
    kind = message.WhichOneof("predictions")
    if kind is None:
        return None
    field = f"{prefix}.{kind}"
    array = decoded.get(f"{prefix}_probabilities")
    if array is None:
        array = decode(
            getattr(message, kind),
            field,
            ndims=PREDICTION_NDIMS,
            data=payloads.get(field),
        )
    if array.shape[-1] < 2:
        raise InvalidRequestError(
            f"{field}: has {array.shape[-1]} class; at least 2 classes are "
            "needed (send a binary model's output as two columns, 1 - p and p)"
        )
    if kind == "probabilities":
        probs.check_probabilities(array, field)
    return array


def _probabilities(
    message: Any,
    prefix: str,
    payloads: Mapping[str, Payload],
    decoded: Mapping[str, NDArray],
) -> NDArray[np.float64] | None:
    values = _decode_predictions(message, prefix, payloads, decoded)
    if values is None:
        return None
    logits = message.WhichOneof("predictions") == "logits"
    return probs.from_predictions(values, logits=logits)


def _decode_arrays(
    request: query_pb2.RankRequest,
    decoded: Mapping[str, NDArray],
    payloads: Mapping[str, Payload],
) -> dict[str, NDArray | None]:
    def optional(message: Any, name: str, field: str, **kwargs: Any) -> NDArray | None:
        key = field.replace(".", "_")
        if key in decoded:
            return decoded[key]
        if not message.HasField(name):
            return None
        return decode(getattr(message, name), field, data=payloads.get(field), **kwargs)

    pool, labeled, validation = request.pool, request.labeled, request.validation
    arrays = {
        "pool_probabilities": _decode_predictions(pool, "pool", payloads, decoded),
        "pool_embeddings": optional(pool, "embeddings", "pool.embeddings", ndims=(2,)),
        "labeled_embeddings": optional(
            labeled, "embeddings", "labeled.embeddings", ndims=(2,)
        ),
        "labeled_labels": optional(
            labeled, "labels", "labeled.labels", ndims=(1,), integer=True
        ),
        "validation_probabilities": _probabilities(
            validation, "validation", payloads, decoded
        ),
        "validation_labels": optional(
            validation, "labels", "validation.labels", ndims=(1,), integer=True
        ),
        "validation_embeddings": optional(
            validation, "embeddings", "validation.embeddings", ndims=(2,)
        ),
        "target_probabilities": _probabilities(
            request.target, "target", payloads, decoded
        ),
    }
    for key in _EMBEDDINGS:
        _check_magnitude(arrays[key], input_field(key))
    return arrays


def _check_magnitude(array: NDArray | None, field: str) -> None:
    # float32 tops out near 3.4e38, far below the limit.
    if array is None or array.dtype.itemsize < 8:
        return
    too_large = np.abs(array) > MAX_EMBEDDING_MAGNITUDE
    if too_large.any():
        row = int(np.argwhere(too_large)[0][0])
        raise InvalidRequestError(
            f"{field}: row {row} holds a value beyond "
            f"{MAX_EMBEDDING_MAGNITUDE:g} in magnitude; squared distances "
            "would overflow, so rescale the embeddings"
        )


# Inputs that must have one row each per sample of the same set.
_ROW_GROUPS = {
    "pool": ("pool_probabilities", "pool_embeddings"),
    "labeled": ("labeled_embeddings", "labeled_labels"),
    "validation": (
        "validation_probabilities",
        "validation_labels",
        "validation_embeddings",
    ),
}
_EMBEDDINGS = ("pool_embeddings", "labeled_embeddings", "validation_embeddings")


def input_field(key: str, request: query_pb2.RankRequest | None = None) -> str:
    """Return the request field that fills ``Query`` attribute ``key``.

    Predictions come from ``probabilities`` or ``logits``; with a request the
    one actually sent is named, without one both are.
    """
    group, _, name = key.partition("_")
    if name != "probabilities":
        return f"{group}.{name}"
    kind = getattr(request, group).WhichOneof("predictions") if request else None
    if kind is None:
        return f"{group}.probabilities or {group}.logits"
    return f"{group}.{kind}"


def _check_agreement(
    arrays: dict[str, NDArray | None], request: query_pb2.RankRequest
) -> None:
    def same(keys: tuple[str, ...], axis: int, what: str) -> None:
        present = [key for key in keys if arrays[key] is not None]
        for key in present[1:]:
            first, other = arrays[present[0]].shape[axis], arrays[key].shape[axis]
            if other != first:
                raise InvalidRequestError(
                    f"{input_field(present[0], request)} has {first} {what} but "
                    f"{input_field(key, request)} has {other}; they must agree"
                )

    for keys in _ROW_GROUPS.values():
        same(keys, axis=0, what="rows")
    same(_EMBEDDINGS, axis=1, what="features")
    predictions = (
        "pool_probabilities",
        "validation_probabilities",
        "target_probabilities",
    )
    same(predictions, axis=-1, what="classes")
    for key in ("labeled_labels", "validation_labels"):
        _check_labels(arrays, key)


def _check_labels(arrays: dict[str, NDArray | None], key: str) -> None:
    labels = arrays[key]
    if labels is None:
        return
    predictions = arrays["pool_probabilities"]
    if predictions is None:
        predictions = arrays["validation_probabilities"]
    n_classes = predictions.shape[-1] if predictions is not None else None
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (n_classes is not None and high >= n_classes):
        bound = f"[0, {n_classes})" if n_classes is not None else "0 or more"
        bad = low if low < 0 else high
        row = int(np.flatnonzero(labels == bad)[0])
        raise InvalidRequestError(
            f"{input_field(key)}: row {row} holds class {bad}; "
            f"labels must be in {bound}"
        )


def _pool_size(arrays: dict[str, NDArray | None], strategy: registry.Strategy) -> int:
    for key in _ROW_GROUPS["pool"]:
        if arrays[key] is not None:
            return len(arrays[key])
    needs = ", ".join(input_field(k) for k in strategy.required_inputs)
    needs = needs or "pool.probabilities, pool.logits or pool.embeddings"
    raise InvalidRequestError(f"pool: empty; {strategy.name} needs {needs}")


def _check_required(
    arrays: dict[str, NDArray | None], strategy: registry.Strategy
) -> None:
    for key in strategy.required_inputs:
        if arrays[key] is None:
            needs = ", ".join(input_field(k) for k in strategy.required_inputs)
            raise InvalidRequestError(
                f"{input_field(key)}: missing; {strategy.name} needs {needs}"
            )


def _check_passes(
    arrays: dict[str, NDArray | None],
    strategy: registry.Strategy,
    request: query_pb2.RankRequest,
) -> None:
    pool, target = arrays["pool_probabilities"], arrays["target_probabilities"]
    if target is not None and pool is not None:
        pool_passes = pool.shape[1] if pool.ndim == 3 else 1
        target_passes = target.shape[1] if target.ndim == 3 else 1
        if pool_passes != target_passes:
            raise InvalidRequestError(
                f"{input_field('target_probabilities', request)} has "
                f"{target_passes} passes but "
                f"{input_field('pool_probabilities', request)}"
                f" has {pool_passes}; the target needs the same passes as the pool"
            )
    if strategy.min_passes > 1 and pool is not None:
        passes = pool.shape[1] if pool.ndim == 3 else 1
        if passes < strategy.min_passes:
            raise InvalidRequestError(
                f"{input_field('pool_probabilities', request)}: {strategy.name} "
                f"needs at least {strategy.min_passes} passes, shape (n_pool, "
                f"n_passes, n_classes); got shape {list(pool.shape)}"
            )


_SELECTION_MODES = frozenset(query_pb2.Selection.Mode.values())
"""The selection modes the proto defines, listed once (``values()`` builds
a list on each call)."""


def _resolve_selection(selection: query_pb2.Selection) -> tuple[int, float]:
    modes = query_pb2.Selection.Mode
    if selection.mode not in _SELECTION_MODES:
        raise InvalidRequestError(
            f"selection.mode: unknown value {selection.mode}; expected one of "
            + ", ".join(
                name for name in modes.keys() if not name.endswith("UNSPECIFIED")
            )
        )
    mode = selection.mode or query_pb2.Selection.MODE_TOP_K
    temperature = selection.temperature if selection.HasField("temperature") else 1.0
    if not (math.isfinite(temperature) and temperature > 0):
        raise InvalidRequestError(
            f"selection.temperature: got {temperature}; it must be a finite "
            "number above 0"
        )
    return mode, temperature


def _unread_settings(
    request: query_pb2.RankRequest, strategy: registry.Strategy, mode: int
) -> list[str]:
    """Warnings for fields set in ``request`` that ``strategy`` never reads.

    A family's message holds the parameters of all its methods; one meant
    for another method (or a mistaken strategy) would otherwise change
    nothing without a word. So would a sampling mode for a strategy that
    picks its batch itself, and a temperature without a sampling mode.
    """
    warnings = []
    family = request.WhichOneof("strategy")
    own = {parameter.name for parameter in strategy.parameters}
    unread = [
        f"{family}.{field.name}"
        for field, _ in getattr(request, family).ListFields()
        if field.name != "method" and field.name not in own
    ]
    if unread:
        what = "not parameters" if len(unread) > 1 else "not a parameter"
        warnings.append(
            f"{', '.join(unread)}: {what} of {strategy.name} "
            f"({', '.join(sorted(own)) or 'it has none'}); ignored"
        )
    if mode != query_pb2.Selection.MODE_TOP_K and strategy.pick is not None:
        warnings.append(
            f"selection.mode: {query_pb2.Selection.Mode.Name(mode)} is ignored; "
            f"{strategy.name} picks its batch itself, so only scored "
            "strategies draw a sampled batch"
        )
    if mode == query_pb2.Selection.MODE_TOP_K and request.selection.HasField(
        "temperature"
    ):
        warnings.append(
            "selection.temperature: read by the sampling modes only "
            "(selection.mode); ignored by top-k selection"
        )
    return warnings


def _resolve_params(message: Any, query: Query) -> dict[str, Any]:
    params = {}
    for parameter in query.strategy.parameters:
        value = (
            getattr(message, parameter.name)
            if message.HasField(parameter.name)
            else None
        )
        params[parameter.name] = parameter.resolve(value, query)
    return params
