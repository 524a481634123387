import numpy as np
import pytest

from alquery.server.rows import FEW_COLUMNS, row_max, row_sum


@pytest.mark.parametrize("n_columns", [1, 2, 7, FEW_COLUMNS, FEW_COLUMNS + 1, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_reductions_equal_numpy(n_columns, dtype):
    values = np.random.default_rng(n_columns).random((57, n_columns)).astype(dtype)
    np.testing.assert_array_equal(row_max(values), values.max(axis=1))
    np.testing.assert_allclose(row_sum(values), values.sum(axis=1), rtol=1e-6)
    assert row_max(values).dtype == dtype


def test_row_sum_adds_in_the_dtype_of_out():
    values = np.full((3, 4), 0.1, dtype=np.float32)
    out = np.empty(3)
    row_sum(values, out=out)
    np.testing.assert_array_equal(out, [4 * np.float64(np.float32(0.1))] * 3)
