"""One BLAS thread while any holder is inside; the old limit after the last.

The BLAS thread count is process-wide, and the test session's server runs
other requests (scikit-learn's k-means sets it too), so the checks run in a
fresh interpreter.
"""

import os
import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent(
    """
    import numpy as np
    from threadpoolctl import threadpool_info
    from alquery.server.blas_threads import one_blas_thread

    def blas_threads():
        return {
            pool["num_threads"]
            for pool in threadpool_info()
            if pool["user_api"] == "blas" and "numpy" in pool["filepath"]
        }
    """
)


def run(body: str) -> None:
    script = PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "2"},
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "body",
    [
        # One holder.
        """
        assert blas_threads() == {2}
        with one_blas_thread():
            assert blas_threads() == {1}
        assert blas_threads() == {2}
        """,
        # Two holders whose holds overlap without nesting: the first to
        # enter leaves first, and the limit stays until the second leaves.
        """
        first, second = one_blas_thread(), one_blas_thread()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert blas_threads() == {1}
        second.__exit__(None, None, None)
        assert blas_threads() == {2}
        """,
        # A holder that raises still restores.
        """
        try:
            with one_blas_thread():
                raise KeyError("stop")
        except KeyError:
            pass
        assert blas_threads() == {2}
        """,
    ],
    ids=["one", "overlapping", "raising"],
)
def test_limit_holds_while_any_holder_is_inside(body):
    run(body)
