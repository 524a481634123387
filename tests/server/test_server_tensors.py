"""tensors.check_finite: the first bad row of the whole tensor, and no false
alarm when a sum of finite values overflows."""

import numpy as np
import pytest

from alquery.server.errors import InvalidRequestError
from alquery.server.tensors import check_finite


def test_finite_values_whose_sum_overflows_pass():
    values = np.full((4, 3), 3e38, dtype=np.float32)  # the sum is inf
    check_finite(values, "pool.embeddings")


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (-np.inf, "an infinite")])
def test_the_first_bad_row_is_named_from_the_block_offset(bad, kind):
    block = np.zeros((5, 2), dtype=np.float32)
    block[3, 1] = bad
    block[4, 0] = np.nan
    with pytest.raises(InvalidRequestError, match=(
        f"^pool.embeddings: row 103 contains {kind}"
    )):
        check_finite(block, "pool.embeddings", first_row=100)


def test_an_empty_block_passes():
    check_finite(np.zeros((0, 3)), "pool.embeddings")


@pytest.mark.parametrize("bad_rows", [[7], [650], [7, 650], [640, 999]])
def test_threaded_check_names_the_first_bad_row(bad_rows, monkeypatch):
    # Four threads over chunks of 8 rows: the first bad row of the whole
    # tensor is named, whichever thread met it.
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    values = np.ones((1000, 4), dtype=np.float32)
    for row in bad_rows:
        values[row, 2] = np.inf
    with pytest.raises(InvalidRequestError, match=(
        f"^pool.embeddings: row {bad_rows[0]} contains an infinite value"
    )):
        check_finite(values, "pool.embeddings", chunk_bytes=8 * 16)


@pytest.mark.parametrize("bad_rows", [[], [0], [999], [3, 640]])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, "overflow"])
def test_one_chunk_check_reports_what_the_chunked_check_reports(bad_rows, bad):
    # A tensor that fits one chunk is summed whole; the same tensor in
    # chunks of 8 rows: the same message (or none), the same first row.
    values = np.random.default_rng(3).random((1000, 4))
    for row in bad_rows:
        values[row, 1] = 1e308 if bad == "overflow" else bad

    def message(chunk_bytes):
        try:
            check_finite(values, "pool.embeddings", chunk_bytes=chunk_bytes)
        except InvalidRequestError as error:
            return str(error)
        return None

    assert message(2 * 2**20) == message(8 * 32)
    assert (message(2 * 2**20) is None) == (bad == "overflow" or not bad_rows)
