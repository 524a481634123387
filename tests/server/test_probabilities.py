import numpy as np
import pytest

from alquery.server.errors import InvalidRequestError
from alquery.server.probabilities import check_probabilities, softmax


@pytest.mark.parametrize("chunk_bytes", [1, 40, 1 << 20])
def test_check_names_the_first_bad_row_whatever_the_chunking(chunk_bytes):
    p = np.full((50, 4), 0.25)
    p[37] = [1.5, -0.5, 0.0, 0.0]  # sums to 1 but leaves [0, 1]
    p[41, 0] = 0.5  # sums to 1.25
    with pytest.raises(InvalidRequestError, match=r"^f: row 41 sums to 1\.25"):
        check_probabilities(p, "f", chunk_bytes=chunk_bytes)
    p[41, 0] = 0.25
    with pytest.raises(InvalidRequestError, match="row 37 holds 1.5 for class 0"):
        check_probabilities(p, "f", chunk_bytes=chunk_bytes)


def test_check_names_the_pass_of_three_axis_input():
    p = np.full((6, 2, 2), 0.5)
    p[4, 1] = [0.9, 0.3]
    with pytest.raises(InvalidRequestError, match="row 4 pass 1 sums to 1.2"):
        check_probabilities(p, "f", chunk_bytes=8)


def test_softmax_into_a_float32_buffer():
    logits = np.array([[0.0, np.log(3.0)], [5.0, 5.0]], dtype=np.float32)
    out = np.empty((2, 2), dtype=np.float32)
    assert softmax(logits, out=out) is out
    np.testing.assert_allclose(out, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-6)
