"""A pool beyond protobuf's 2 GiB message limit goes through RankStream.

About 2.06 GiB of float32 embeddings; the client and the (in-process)
server each hold a copy, so the test needs about 6 GiB free and skips
with a reason otherwise. It takes a few tens of seconds.
"""

import pathlib

import numpy as np
import pytest

from alquery.client import AlqueryClient
from alquery.server.strategies.diversity_sampling import random_batch

ROWS, FEATURES = 720_000, 768  # 2,211,840,000 bytes > 2**31


def available_bytes() -> int:
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.large
def test_a_pool_over_two_gib_is_accepted(target):
    if available_bytes() < 6 << 30:
        pytest.skip("needs about 6 GiB of free memory")
    embeddings = np.empty((ROWS, FEATURES), dtype=np.float32)
    embeddings[:] = np.linspace(0.0, 1.0, ROWS, dtype=np.float32)[:, None]
    assert embeddings.nbytes > 2**31
    sent = []
    with AlqueryClient(target, timeout=300) as client:
        result = client.rank(
            "diversity.random",
            5,
            embeddings=embeddings,
            seed=7,
            progress=lambda done, total: sent.append((done, total)),
        )
    assert sent[-1] == (embeddings.nbytes, embeddings.nbytes)
    # The server saw every row: the same keys as a pool of ROWS drawn here.
    expected = random_batch(ROWS, 5, np.random.default_rng(7))
    assert result.indices.tolist() == expected.ranked_indices.tolist()
