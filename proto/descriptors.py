"""Compile the proto into descriptors, for the reference page and the
breaking-change check (``proto/reference.py``, ``proto/breaking.py``)."""

from __future__ import annotations

import pathlib
import tempfile

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

PROTO_ROOT = pathlib.Path(__file__).resolve().parent


def proto_files() -> list[str]:
    """The contract's files, relative to ``proto/``, e.g. alquery/v1/query.proto."""
    return [
        str(path.relative_to(PROTO_ROOT))
        for path in sorted(PROTO_ROOT.glob("alquery/v1/*.proto"))
    ]


def compile_set(*, source_info: bool = True) -> descriptor_pb2.FileDescriptorSet:
    """Compile every file of the contract into one ``FileDescriptorSet``.

    Parameters
    ----------
    source_info : bool, default=True
        Keep the comments and source locations (the reference page needs
        them; the released snapshot does not).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp, "set.binpb")
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            *(["--include_source_info"] if source_info else []),
            *proto_files(),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed on " + ", ".join(proto_files()))
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
