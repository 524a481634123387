"""A generic gRPC tool needs nothing but reflection and JSON to use alquery.

The client here knows no generated code: it learns the service from the
server's reflection, builds the request from the JSON that the README shows
for grpcurl-style tools, and reads the answer back as JSON.
"""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "alquery.v1.QueryService"

# The README's example: probabilities [[0.6, 0.4], [0.9, 0.1], [0.5, 0.5]] as
# float32, their 24 little-endian bytes written in base64.
RANK_JSON = """
{
  "pool": {
    "probabilities": {
      "dtype": "D_TYPE_FLOAT32",
      "shape": [3, 2],
      "data": "mpkZP83MzD5mZmY/zczMPQAAAD8AAAA/"
    }
  },
  "uncertainty": {"method": "METHOD_MARGIN"},
  "batch_size": 2
}
"""


@pytest.fixture(scope="module")
def pool(channel) -> descriptor_pool.DescriptorPool:
    """Descriptors fetched from the server's reflection service, on demand."""
    return descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))


def call_with_json(channel, pool, method_name: str, request_json: str) -> dict:
    """Call ``method_name`` of the query service the way grpcurl does."""
    method = pool.FindServiceByName(SERVICE).methods_by_name[method_name]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        f"/{SERVICE}/{method_name}",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    request = json_format.Parse(request_json, request_class())
    return json.loads(json_format.MessageToJson(call(request, timeout=30)))


def test_reflection_lists_the_service_and_its_rpcs(channel, pool):
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert SERVICE in services
    methods = pool.FindServiceByName(SERVICE).methods_by_name
    assert sorted(methods) == [
        "DescribeModel", "ListStrategies", "Rank", "RankStream", "UploadModel"
    ]


def test_rank_from_json_with_base64_tensor_bytes(channel, pool):
    answer = call_with_json(channel, pool, "Rank", RANK_JSON)
    # Margins 0.2, 0.8 and 0: smallest first. JSON writes int64 as strings.
    assert answer["rankedIndices"] == ["2", "0"]
    assert answer["strategy"] == "uncertainty.margin"
    assert answer["scores"] == pytest.approx([0.0, 0.2], abs=1e-6)


def test_a_wrong_byte_count_in_json_is_refused_by_name(channel, pool):
    short = RANK_JSON.replace("mpkZP83MzD5mZmY/zczMPQAAAD8AAAA/", "AAAAAA==")
    with pytest.raises(grpc.RpcError) as caught:
        call_with_json(channel, pool, "Rank", short)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("pool.probabilities")


def test_list_strategies_from_empty_json(channel, pool):
    answer = call_with_json(channel, pool, "ListStrategies", "{}")
    names = [strategy["name"] for strategy in answer["strategies"]]
    assert "uncertainty.margin" in names and "diversity.kcenter" in names
