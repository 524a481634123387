"""pandas DataFrames and Series go where arrays go."""

from __future__ import annotations

import grpc
import numpy as np
import pandas as pd
import pytest

from alquery.client import AlqueryError
from alquery.client.frames import from_pandas
from alquery.client.tensors import as_array


def test_a_dataframe_is_its_array_in_column_order_ignoring_the_index():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}, index=[10, 5])
    np.testing.assert_array_equal(as_array(frame, "embeddings"), [[1, 3], [2, 4]])


def test_a_series_of_vectors_is_one_row_per_cell():
    series = pd.Series([np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    np.testing.assert_array_equal(as_array(series, "embeddings"), [[1, 2], [3, 4]])


def test_a_series_of_labels_is_a_vector():
    labels = as_array(pd.Series([2, 0, 1]), "labeled.labels", integer=True)
    assert labels.dtype == np.int64 and labels.tolist() == [2, 0, 1]


def test_a_text_column_is_refused_by_name():
    frame = pd.DataFrame({"x": [1.0], "name": ["cat"]})
    message = "embeddings: DataFrame column 'name' has dtype"
    with pytest.raises(AlqueryError, match=message) as e:
        as_array(frame, "embeddings")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_ragged_vectors_in_a_series_are_refused_by_row():
    series = pd.Series([np.zeros(3), np.zeros(2)])
    with pytest.raises(AlqueryError, match="embeddings: row 1 has 2 values"):
        as_array(series, "embeddings")


def test_a_missing_cell_in_a_series_of_vectors_is_refused_by_row():
    # The cell became a 0-d array, and the row check raised TypeError.
    series = pd.Series([np.array([0.5, 0.5]), None, np.array([0.9, 0.1])])
    with pytest.raises(AlqueryError) as raised:
        as_array(series, "pool.probabilities")
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "pool.probabilities: row 1 has a scalar" in raised.value.details


def test_other_values_pass_through_unchanged():
    values = [[1.0, 2.0]]
    assert from_pandas(values, "embeddings") is values


def test_the_client_ranks_a_dataframe_as_its_array(client):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(30, 3))
    frame = pd.DataFrame(embeddings, columns=["x", "y", "z"])
    by_frame = client.rank("diversity.kcenter", 5, embeddings=frame)
    by_array = client.rank("diversity.kcenter", 5, embeddings=embeddings)
    assert by_frame.indices.tolist() == by_array.indices.tolist()
