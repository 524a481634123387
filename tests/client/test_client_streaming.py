"""The client's stream encoding: the bytes protobuf would write, chunk by chunk."""

import numpy as np
import pytest

from alquery.client import streaming
from alquery.client.client import build_request


@pytest.mark.parametrize("chunk_bytes", [1, 100, 1000, 1 << 20])
def test_encoded_messages_are_the_serialized_messages(chunk_bytes):
    rng = np.random.default_rng(0)
    deferred = {}
    request = build_request(
        "diversity.kcenter",
        3,
        embeddings=rng.normal(size=(700, 3)).astype(np.float32),
        labeled_embeddings=rng.normal(size=(4, 3)),
        labeled_labels=[0, 1, 1, 0],
        deferred=deferred,
    )
    expected = [
        message.SerializeToString()
        for message in streaming.messages(request, deferred, chunk_bytes=chunk_bytes)
    ]
    progress = []
    encoded = streaming.encoded_messages(
        request, deferred, lambda *s: progress.append(s), chunk_bytes=chunk_bytes
    )
    assert list(encoded) == expected
    total = streaming.payload_bytes(deferred)
    assert progress[-1] == (total, total)
