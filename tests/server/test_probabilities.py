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


def message(p, chunk_bytes):
    """The check's message for ``p``, or None when it passes."""
    try:
        check_probabilities(p, "f", chunk_bytes=chunk_bytes)
    except InvalidRequestError as error:
        return str(error)
    return None


def softmax_pool(n_rows, n_classes, dtype):
    rng = np.random.default_rng(n_rows + n_classes)
    return softmax(rng.normal(scale=3.0, size=(n_rows, n_classes))).astype(dtype)


# (row, class, new value) edits: bad sums, values out of [0, 1] with a good
# sum, and sums just inside and just outside the tolerance.
EDITS = [
    [],
    [(900, 0, 0.3)],
    [(130, 1, 0.3), (900, 0, 0.3)],
    [(120, None, "negative"), (950, 0, 0.3)],
    [(120, None, "negative"), (950, None, "above one")],
    [(800, None, "negative")],
    [(10, None, 1.0009), (700, None, 0.9991)],
    [(10, None, 1.0011), (700, None, 0.9989)],
    [(999, None, 0.998)],
]


def edit(p, edits):
    p = p.copy()
    for row, column, value in edits:
        if value == "negative":
            p[row, :2] = [1.25, -0.25]
            p[row, 2:] = 0
        elif value == "above one":
            p[row, :2] = [-0.5, 1.5]
            p[row, 2:] = 0
        elif column is None:
            p[row] *= value / p[row].sum(dtype=np.float64)
        else:
            p[row, column] += value
    return p


@pytest.mark.parametrize("edits", EDITS)
@pytest.mark.parametrize("n_classes", [3, 10, 40, 3000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threaded_checks_report_what_one_pass_reports(
    edits, n_classes, dtype, monkeypatch
):
    # Four threads over chunks of a few rows, against one chunk on one
    # thread: the same message, naming the same first bad row.
    p = edit(softmax_pool(1000, n_classes, dtype), edits)
    single = message(p, chunk_bytes=1 << 40)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    threaded = message(p, chunk_bytes=7 * n_classes * p.itemsize)
    assert threaded == single
    assert (single is None) == (edits == [] or edits[0][2] == 1.0009)
