"""Each ``--workers`` process gets its share of the cores for native pools."""

import os
import subprocess
import sys

import pytest

from alquery.server import threads


@pytest.mark.parametrize(
    ("workers", "cores", "expected"),
    [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 8, 4), (3, 8, 2), (16, 4, 1)],
)
def test_each_worker_gets_its_share_of_the_cores_and_at_least_one(
    workers, cores, expected
):
    assert threads.threads_per_worker(workers, cores) == expected


def test_the_default_cores_are_those_this_process_may_run_on():
    assert threads.available_cores() == len(os.sched_getaffinity(0))
    assert threads.threads_per_worker(1) == threads.available_cores()


def test_unset_variables_are_set_for_the_block_and_removed_after():
    environ = {"OPENBLAS_NUM_THREADS": "3", "OTHER": "x"}
    with threads.worker_environment(2, environ) as seen:
        assert seen == {
            "OMP_NUM_THREADS": "2",
            "OPENBLAS_NUM_THREADS": "3",
            "MKL_NUM_THREADS": "2",
        }
        assert environ["OMP_NUM_THREADS"] == "2"
    assert environ == {"OPENBLAS_NUM_THREADS": "3", "OTHER": "x"}


def test_the_variables_are_removed_when_the_block_raises():
    environ: dict[str, str] = {}
    with pytest.raises(RuntimeError):
        with threads.worker_environment(1, environ):
            raise RuntimeError("worker failed")
    assert environ == {}


def test_pools_loaded_before_the_variables_are_capped_at_them():
    # In a child: numpy's OpenBLAS loads with one thread per core, then the
    # variables appear and the cap must reach the pool already running.
    code = (
        "import os, numpy, sklearn.cluster\n"
        "from alquery.server import threads\n"
        "before = threads.pool_sizes()\n"
        "os.environ['OPENBLAS_NUM_THREADS'] = '1'\n"
        "os.environ['OMP_NUM_THREADS'] = '1'\n"
        "after = threads.limit_loaded_pools()\n"
        "print(before['blas'], after['blas'], after['openmp'])\n"
    )
    env = {
        key: value for key, value in os.environ.items()
        if key not in threads.THREAD_VARIABLES
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True,
        check=True, timeout=120,
    ).stdout.split()
    before, after_blas, after_openmp = map(int, out)
    assert before == threads.available_cores()
    assert (after_blas, after_openmp) == (1, 1)
