"""The committed generated code matches the proto, and the proto keeps its rules."""

import filecmp
import importlib.util
import pathlib

import pytest

from alquery.v1 import query_pb2

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_generated_code_is_up_to_date(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "generate", ROOT / "proto" / "generate.py"
    )
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    written = generate.generate(tmp_path)
    assert written, "protoc produced nothing"
    for path in written:
        committed = ROOT / "client" / "v1" / path.name
        assert filecmp.cmp(path, committed, shallow=False), (
            f"{committed} is stale: run `python proto/generate.py` and commit"
        )


def test_every_enum_starts_with_an_unspecified_zero():
    enums = list(query_pb2.DESCRIPTOR.enum_types_by_name.values())
    for message in query_pb2.DESCRIPTOR.message_types_by_name.values():
        enums.extend(message.enum_types)
    assert enums
    for enum in enums:
        assert enum.values_by_number[0].name.endswith("_UNSPECIFIED"), enum.full_name


@pytest.mark.parametrize("rpc", ["Rank", "ListStrategies"])
def test_each_rpc_has_its_own_request_and_response(rpc):
    method = query_pb2.DESCRIPTOR.services_by_name["QueryService"].methods_by_name[rpc]
    assert method.input_type.name == f"{rpc}Request"
    assert method.output_type.name == f"{rpc}Response"
