"""The exact distance of the k-center greedy: the compiled loops and their
numpy twin give the same bits, and the bits are the definition's."""

import os
import shutil
import sysconfig

import numpy as np
import pytest
from alquery.server.strategies import kcenter_native
from alquery.server.strategies.kcenter_native import (
    exact_distances,
    exact_norms,
    exact_twin,
)


def ordered_dot(a, b):
    # The definition, one scalar at a time in Python floats (IEEE double):
    # eight running sums (term j to sum j mod 8), a fixed tree, the tail.
    sums = [0.0] * 8
    whole = len(a) - len(a) % 8
    for j in range(whole):
        sums[j % 8] += float(a[j]) * float(b[j])
    s = sums
    total = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
    for j in range(whole, len(a)):
        total += float(a[j]) * float(b[j])
    return total


needs_library = pytest.mark.skipif(
    kcenter_native.LIBRARY is None,
    reason="the compiled k-center loops were not built (no C compiler)",
)


def test_the_compiled_loops_are_built_where_a_compiler_is():
    # The extension is optional so that installing never fails without a
    # compiler; where one and Python's headers are, it must have been built.
    headers = sysconfig.get_paths()["include"] + "/Python.h"
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not os.path.exists(headers):
        pytest.skip("no C compiler or no Python headers here")
    assert kcenter_native.LIBRARY is not None


@pytest.mark.parametrize("n_features", [1, 5, 8, 13, 64, 77])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_distances_are_the_definition_to_the_bit(n_features, dtype):
    rng = np.random.default_rng(n_features)
    raw = (rng.normal(size=(40, n_features)) * 10.0**rng.integers(-3, 4)).astype(dtype)
    shift = raw.mean(axis=0, dtype=np.float64)
    shifted = raw.astype(np.float64) - shift
    norms = exact_norms(shifted)
    centers = rng.normal(size=(6, n_features))
    center_norms = exact_norms(centers)
    rows = rng.integers(0, 40, size=100)
    which = rng.integers(0, 6, size=100)
    got = exact_distances(raw, shift, norms[rows], centers, center_norms, rows, which)
    for value, row, center in zip(got, rows, which):
        dot = ordered_dot(shifted[row], centers[center])
        expected = max((-2.0 * dot + norms[row]) + center_norms[center], 0.0)
        assert value == expected
    for value, row in zip(norms, shifted):
        assert value == ordered_dot(row, row)


@needs_library
@pytest.mark.parametrize("n_features", [3, 16, 17, 768])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_and_numpy_exact_distances_agree_to_the_bit(n_features, dtype):
    rng = np.random.default_rng(5)
    raw = rng.normal(size=(300, n_features)).astype(dtype)
    raw[:20] *= np.float32(1e6)
    raw[20:30] = -0.0
    shift = raw.mean(axis=0, dtype=np.float64)
    shifted = raw.astype(np.float64) - shift
    norms = exact_norms(shifted)
    centers = shifted[rng.integers(0, 300, size=25)]
    center_norms = exact_norms(centers)
    rows = rng.integers(0, 300, size=5000)
    which = rng.integers(0, 25, size=5000)
    pairs = (raw, shift, norms[rows], centers, center_norms, rows, which)
    assert exact_distances(*pairs).tolist() == exact_twin(*pairs).tolist()
    every = (raw, shift, norms, centers[:1], center_norms[:1])
    assert exact_distances(*every).tolist() == exact_twin(*every).tolist()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kcenter_native, "LIBRARY", None)
        assert exact_norms(shifted).tolist() == norms.tolist()


def test_a_row_is_at_distance_zero_from_itself():
    rng = np.random.default_rng(9)
    raw = rng.normal(size=(50, 29)).astype(np.float32)
    shift = raw.mean(axis=0, dtype=np.float64)
    shifted = raw.astype(np.float64) - shift
    norms = exact_norms(shifted)
    got = exact_distances(raw, shift, norms, shifted, norms, which=np.arange(50))
    assert not got.any()


@needs_library
def test_a_library_built_from_other_source_is_refused(monkeypatch):
    # An editable install keeps the library it built until it is rebuilt;
    # if _kcenter.c's layout changed since, calling it could crash, so a
    # layout other than the one this module speaks to leaves the numpy
    # rounds in charge, and says so.
    monkeypatch.setattr(kcenter_native, "STATUS", kcenter_native.STATUS)
    assert kcenter_native._load() is not None
    assert kcenter_native.STATUS == "compiled"
    monkeypatch.setattr(kcenter_native, "LAYOUT", kcenter_native.LAYOUT + 1)
    assert kcenter_native._load() is None
    assert kcenter_native.STATUS == "numpy_stale_build"
