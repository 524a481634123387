"""Information-theoretic helpers shared by the Bayesian and committee strategies.

Natural log throughout, and 0 ln 0 = 0 without an epsilon, so a zero
probability contributes exactly 0 and never turns a score into NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def xlogy(x: NDArray, y: NDArray) -> NDArray[np.float64]:
    """Return x * ln(y) elementwise, taking the product as 0 wherever x = 0.

    Callers guarantee y > 0 wherever x > 0 (for example y is a mixture that
    contains x), so no other case needs a guard.
    """
    x = np.asarray(x, dtype=np.float64)
    # Where x = 0 the log's argument becomes 1, so the product is exactly 0
    # whatever y is there.
    return x * np.log(np.where(x > 0, y, 1.0))


def entropy_along_classes(probabilities: NDArray) -> NDArray[np.float64]:
    """Return H(p) = -sum_c p_c ln p_c over the last axis.

    The terms are summed in ascending order of p_c, so the result does not
    depend on the order of the classes: two samples whose probabilities are
    the same values in another class order get exactly the same entropy, and
    tie (floating-point addition is not associative, so summing in class
    order can differ in the last bit). Costs a sort, O(n_classes log
    n_classes) per row.
    """
    p = np.sort(np.asarray(probabilities, dtype=np.float64), axis=-1)
    # 0.0 - x rather than -x, so that a certain sample scores 0.0, not -0.0.
    return 0.0 - xlogy(p, p).sum(axis=-1)


def expected_entropy(probabilities: NDArray) -> NDArray[np.float64]:
    """Return (1 / T) sum_t H(p_t) per sample, the mean entropy of the passes.

    ``probabilities`` has shape (n, n_passes, n_classes); the result has
    shape (n,). Each H is ``entropy_along_classes``.
    """
    return entropy_along_classes(probabilities).mean(axis=1)
