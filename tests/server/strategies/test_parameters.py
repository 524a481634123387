import types

import pytest

from alquery.server.errors import InvalidRequestError
from alquery.server.strategies.parameters import (
    finite_float,
    int_at_least,
    int_up_to,
    pool_size,
)

QUERY = types.SimpleNamespace(n_pool=20, batch_size=3)


def test_int_at_least():
    resolve = int_at_least("family.count", 7)
    assert resolve(None, QUERY) == 7
    assert resolve(1, QUERY) == 1
    with pytest.raises(
        InvalidRequestError, match=r"^family.count: got 0; it must be at least 1$"
    ):
        resolve(0, QUERY)


def test_int_up_to_the_pool_size_with_a_default_from_the_query():
    resolve = int_up_to("family.count", lambda query: query.batch_size, pool_size)
    assert resolve(None, QUERY) == 3
    assert resolve(20, QUERY) == 20
    message = (
        r"^family.count: got 21; it must be between 1 and the pool size n_pool=20$"
    )
    with pytest.raises(InvalidRequestError, match=message):
        resolve(21, QUERY)
    with pytest.raises(InvalidRequestError, match="got 0"):
        resolve(0, QUERY)


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan")])
def test_finite_float_above_zero(value):
    resolve = finite_float("family.size", 2.5, above_zero=True)
    assert resolve(None, QUERY) == 2.5
    assert resolve(1e-9, QUERY) == 1e-9
    with pytest.raises(InvalidRequestError, match="it must be a finite number above 0"):
        resolve(value, QUERY)


def test_finite_float_of_at_least_zero_takes_zero():
    resolve = finite_float("family.power", 1.0, above_zero=False)
    assert resolve(0.0, QUERY) == 0.0
    with pytest.raises(InvalidRequestError, match="finite number of at least 0"):
        resolve(-0.5, QUERY)


def test_a_required_float_has_no_default():
    resolve = finite_float("family.size", above_zero=True, required="give it")
    with pytest.raises(InvalidRequestError, match=r"^family.size: missing; give it$"):
        resolve(None, QUERY)
    assert resolve(3.0, QUERY) == 3.0
