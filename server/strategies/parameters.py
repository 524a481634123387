"""Resolvers for strategy parameters, with one wording for every error.

Each function here returns a ``resolve(value, query)`` for a ``Parameter``:
it gives the default when the field is unset (None), checks a set value and
raises ``InvalidRequestError`` as "family.name: got X; it must be ...".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from alquery.server.errors import InvalidRequestError

if TYPE_CHECKING:
    from alquery.server.edge import Query

Resolver = Callable[[Any, "Query"], Any]
Default = Any | Callable[["Query"], Any]
"""A fixed default value, or a function of the query that returns one."""


def _default(default: Default, query: Query) -> Any:
    return default(query) if callable(default) else default


def int_at_least(field: str, default: Default, minimum: int = 1) -> Resolver:
    """An integer of at least ``minimum``; ``field`` is "family.name"."""

    def resolve(value: int | None, query: Query) -> int:
        if value is None:
            return _default(default, query)
        if value < minimum:
            raise InvalidRequestError(
                f"{field}: got {value}; it must be at least {minimum}"
            )
        return int(value)

    return resolve


def int_up_to(
    field: str,
    default: Default,
    maximum: Callable[[Query], tuple[int, str]],
) -> Resolver:
    """An integer between 1 and a bound that depends on the query.

    ``maximum(query)`` returns the bound and how the message names it, for
    example ``(20, "the pool size n_pool=20")``.
    """

    def resolve(value: int | None, query: Query) -> int:
        if value is None:
            return _default(default, query)
        bound, named = maximum(query)
        if not 1 <= value <= bound:
            raise InvalidRequestError(
                f"{field}: got {value}; it must be between 1 and {named}"
            )
        return int(value)

    return resolve


def pool_size(query: Query) -> tuple[int, str]:
    """The bound of ``int_up_to`` for counts of pool samples: n_pool."""
    return query.n_pool, f"the pool size n_pool={query.n_pool}"


def finite_float(
    field: str, default: Default = None, *, above_zero: bool, required: str = ""
) -> Resolver:
    """A finite number above 0 (``above_zero``) or of at least 0.

    With ``required`` (why the strategy needs the value) the field has no
    default, and leaving it unset is an error; ``default`` is then unused.
    """
    expectation = "above 0" if above_zero else "of at least 0"

    def resolve(value: float | None, query: Query) -> float:
        if value is None:
            if required:
                raise InvalidRequestError(f"{field}: missing; {required}")
            return _default(default, query)
        in_range = value > 0 if above_zero else value >= 0
        if not (math.isfinite(value) and in_range):
            raise InvalidRequestError(
                f"{field}: got {value}; it must be a finite number {expectation}"
            )
        return float(value)

    return resolve
