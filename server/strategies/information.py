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


def expected_entropy(probabilities: NDArray) -> NDArray[np.float64]:
    """Return (1 / T) sum_t H(p_t) per sample, the mean entropy of the passes.

    ``probabilities`` has shape (n, n_passes, n_classes); the result has
    shape (n,).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    return 0.0 - xlogy(p, p).sum(axis=2).mean(axis=1)
