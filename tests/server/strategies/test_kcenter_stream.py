"""The streaming passes give, block by block and thread by thread, exactly
what one whole-pool numpy expression gives."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from alquery.server.strategies import kcenter_stream
from alquery.server.strategies.kcenter_cover import row_norms, shifted
from alquery.server.strategies.kcenter_native import exact_norms
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
    basis = np.linalg.qr(np.random.default_rng(2).normal(size=(40, 6)))[0]
    norms, projected, raw = norms_and_projection(pool, shift, basis, executor, 2)
    assert norms.tolist() == exact_norms(shifted(pool, shift)).tolist()
    np.testing.assert_allclose(
        projected, shifted(pool, shift) @ basis, rtol=1e-12, atol=1e-12
    )
    assert raw.dtype == np.float32
    np.testing.assert_allclose(raw, row_norms(pool.astype(np.float64)), rtol=1e-5)


def test_without_a_basis_the_projection_is_the_shifted_pool(executor):
    pool, shift = pool_and_shift()
    _, projected, raw = norms_and_projection(
        pool.astype(np.float64), shift, None, executor, 2
    )
    assert projected.tolist() == shifted(pool, shift).tolist()
    # Only a float32 pool is screened as it is.
    assert raw is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shifted_copy_is_the_pool_less_the_shift(executor, dtype):
    pool, shift = pool_and_shift()
    copy = shifted_copy(pool, shift, dtype, executor, 2)
    assert copy.dtype == dtype
    assert copy.tolist() == shifted(pool, shift).astype(dtype).tolist()
