"""The streaming passes give, block by block and thread by thread, exactly
what one whole-pool numpy expression gives."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from alquery.server.strategies import kcenter_stream
from alquery.server.strategies.kcenter_cover import row_norms, shifted
from alquery.server.strategies.kcenter_stream import (
    norms_and_projection,
    shifted_copy,
)


@pytest.fixture(params=["calling thread", "two workers"])
def executor(request):
    if request.param == "calling thread":
        yield None
        return
    with ThreadPoolExecutor(2) as pool:
        yield pool


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    # Blocks of 3 rows of 40 values: rows split across blocks and workers.
    monkeypatch.setattr(kcenter_stream, "CACHE_ELEMENTS", 3 * 40)


def pool_and_shift():
    rng = np.random.default_rng(0)
    pool = rng.normal(loc=5.0, size=(101, 40)).astype(np.float32)
    return pool, pool.mean(axis=0, dtype=np.float64)


def test_norms_are_the_exact_norms_of_the_shifted_pool(executor):
    pool, shift = pool_and_shift()
    norms, projected = norms_and_projection(pool, shift, executor, 2)
    assert norms.tolist() == row_norms(shifted(pool, shift)).tolist()
    assert projected.shape == (101, kcenter_stream.PROJECTED_DIMS)


def test_projection_is_seeded_and_keeps_few_dimensions_as_they_are(
    executor, monkeypatch
):
    pool, shift = pool_and_shift()
    first = norms_and_projection(pool, shift, executor, 2)[1]
    again = norms_and_projection(pool, shift, None, 1)[1]
    np.testing.assert_allclose(first, again, rtol=1e-12)
    monkeypatch.setattr(kcenter_stream, "PROJECTED_DIMS", 40)
    same = norms_and_projection(pool, shift, executor, 2)[1]
    assert same.tolist() == shifted(pool, shift).tolist()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shifted_copy_is_the_pool_in_order_less_the_shift(executor, dtype):
    pool, shift = pool_and_shift()
    order = np.random.default_rng(1).permutation(len(pool))
    copy = shifted_copy(pool, shift, dtype, order, executor, 2)
    assert copy.dtype == dtype
    assert copy.tolist() == shifted(pool[order], shift).astype(dtype).tolist()
