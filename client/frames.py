"""Accept pandas data where the client takes arrays, without needing pandas.

Embeddings often live in a DataFrame (one numeric column per feature) or in
a Series whose cells are vectors. pandas is optional: it is recognised by
the module of the value's type, never imported here.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from alquery.client.errors import AlqueryError


def _is_pandas(values: Any) -> bool:
    return type(values).__module__.partition(".")[0] == "pandas"


def from_pandas(values: Any, field: str) -> Any:
    """Return a DataFrame or Series as a numpy array or list of rows.

    Anything that is not pandas is returned unchanged. A DataFrame becomes
    its (n_rows, n_columns) array, in column order; a Series of vectors
    becomes the list of its vectors (one row each); a Series of numbers, its
    1-D array. The index is ignored: row i is the i-th row, whatever its
    label.

    Raises
    ------
    AlqueryError
        INVALID_ARGUMENT naming the first column that is not numeric.
    """
    if not _is_pandas(values) or not hasattr(values, "to_numpy"):
        return values
    if values.ndim == 2:
        for column, dtype in values.dtypes.items():
            if getattr(dtype, "kind", "O") not in "fiub":
                raise AlqueryError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{field}: DataFrame column {column!r} has dtype {dtype}; "
                    "every column must be numeric",
                )
        return values.to_numpy()
    if values.dtype == object:
        # A missing cell (None, NaN) stays a scalar, which the row check
        # names; as a 0-d array it had no length to compare.
        return [row if np.ndim(row) == 0 else np.asarray(row) for row in values]
    return values.to_numpy()
