import math

import numpy as np
import pytest

from alquery.server.strategies.information import (
    entropy_along_classes,
    grid_offset,
    snap_to_grid,
)


@pytest.mark.parametrize("n_classes", [2, 3, 10, 1000, 3000])
def test_the_grid_offset_bounds_every_entropy_below_twice_itself(n_classes):
    offset = grid_offset(n_classes)
    assert math.log(n_classes) + 1 <= offset < 2 * (math.log(n_classes) + 1)
    assert math.log2(offset).is_integer()


@pytest.mark.parametrize("n_classes", [5, 64, 1000])
def test_snapped_terms_sum_to_the_same_value_in_any_order(n_classes):
    rng = np.random.default_rng(n_classes)
    p = rng.dirichlet(np.full(n_classes, 0.3), size=20)
    terms = p * np.log(np.where(p > 0, p, 1.0))
    snap_to_grid(terms, n_classes)
    forward = terms.sum(axis=1)
    for _ in range(3):
        order = rng.permutation(n_classes)
        np.testing.assert_array_equal(terms[:, order].sum(axis=1), forward)
    exact = [math.fsum(row) for row in p * np.log(np.where(p > 0, p, 1.0))]
    step = grid_offset(n_classes) * 2.0**-52
    np.testing.assert_allclose(forward, exact, rtol=0, atol=n_classes * step / 2)


def test_entropy_along_classes_of_passes():
    p = np.array([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]])
    np.testing.assert_allclose(entropy_along_classes(p), [[math.log(2), 0.0]])
