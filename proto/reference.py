"""Render the proto's comments as the reference page ``docs/reference.md``.

``python proto/reference.py`` rewrites the page (``proto/generate.py`` does
too); ``tests/test_proto_product.py`` fails while the committed page is stale
or while any message, field, oneof, enum, enum value, service or RPC has no
comment.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Iterator

from google.protobuf import descriptor_pb2

from descriptors import PROTO_ROOT, compile_set

PAGE = PROTO_ROOT.parent / "docs" / "reference.md"

# Field numbers of FileDescriptorProto and its parts, as used in the paths
# of SourceCodeInfo locations (descriptor.proto).
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_ENUM_VALUE, _SERVICE_METHOD = 2, 2
_FILE_SYNTAX = 12

Path = tuple[int, ...]
FileProto = descriptor_pb2.FileDescriptorProto
FieldProto = descriptor_pb2.FieldDescriptorProto


def comments(file: FileProto) -> dict[Path, str]:
    """The leading comment of every element, by its source path, as one line."""
    return {
        tuple(location.path): " ".join(location.leading_comments.split())
        for location in file.source_code_info.location
        if location.leading_comments.strip()
    }


def elements(file: FileProto) -> Iterator[tuple[str, str, Path]]:
    """Every commentable element as (kind, full name, source path)."""
    for index, service in enumerate(file.service):
        path = (_FILE_SERVICE, index)
        yield "service", service.name, path
        for number, method in enumerate(service.method):
            method_path = (*path, _SERVICE_METHOD, number)
            yield "rpc", f"{service.name}.{method.name}", method_path
    for index, enum in enumerate(file.enum_type):
        yield from _enum_elements(enum, enum.name, (_FILE_ENUM, index))
    for index, message in enumerate(file.message_type):
        yield from _message_elements(message, message.name, (_FILE_MESSAGE, index))


def _message_elements(
    message: descriptor_pb2.DescriptorProto, name: str, path: Path
) -> Iterator[tuple[str, str, Path]]:
    yield "message", name, path
    for index, field in enumerate(message.field):
        yield "field", f"{name}.{field.name}", (*path, _MESSAGE_FIELD, index)
    for index, oneof in enumerate(message.oneof_decl):
        if not oneof.name.startswith("_"):  # proto3 optional's hidden oneof
            yield "oneof", f"{name}.{oneof.name}", (*path, _MESSAGE_ONEOF, index)
    for index, enum in enumerate(message.enum_type):
        yield from _enum_elements(
            enum, f"{name}.{enum.name}", (*path, _MESSAGE_ENUM, index)
        )
    for index, nested in enumerate(message.nested_type):
        if not nested.options.map_entry:
            yield from _message_elements(
                nested, f"{name}.{nested.name}", (*path, _MESSAGE_NESTED, index)
            )


def _enum_elements(
    enum: descriptor_pb2.EnumDescriptorProto, name: str, path: Path
) -> Iterator[tuple[str, str, Path]]:
    yield "enum", name, path
    for index, value in enumerate(enum.value):
        yield "enum value", f"{name}.{value.name}", (*path, _ENUM_VALUE, index)


def missing_comments(file: FileProto) -> list[str]:
    """The elements of ``file`` without a leading comment, as "kind name"."""
    found = comments(file)
    return [
        f"{kind} {name}" for kind, name, path in elements(file) if path not in found
    ]


def _anchor(name: str) -> str:
    return name.lower().replace(".", "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type(file: FileProto, field: FieldProto) -> str:
    if field.type_name:
        name = field.type_name.removeprefix(f".{file.package}.")
        return f"[{name}](#{_anchor(name)})"
    return FieldProto.Type.Name(field.type).removeprefix("TYPE_").lower()


def _field_type(
    file: FileProto, message: descriptor_pb2.DescriptorProto, field: FieldProto
) -> str:
    text = _type(file, field)
    if field.label == FieldProto.LABEL_REPEATED:
        nested = {m.name: m for m in message.nested_type}
        entry = nested.get(field.type_name.rsplit(".", 1)[-1])
        if entry is not None and entry.options.map_entry:
            key, value = entry.field
            return f"map<{_type(file, key)}, {_type(file, value)}>"
        return f"repeated {text}"
    if field.proto3_optional:
        return f"optional {text}"
    if field.HasField("oneof_index"):
        return f"{text} (oneof `{message.oneof_decl[field.oneof_index].name}`)"
    return text


def render(file: FileProto) -> str:
    """The reference page for one proto file, as Markdown."""
    notes = comments(file)
    lines = [
        f"# `{file.package}` reference",
        "",
        f"Generated from `proto/{file.name}` by `proto/reference.py`; do not",
        "edit by hand. Tensors travel as raw little-endian bytes (see",
        "[Tensor](#tensor)); in JSON their `data` is base64.",
    ]
    if (_FILE_SYNTAX,) in notes:
        lines += ["", notes[(_FILE_SYNTAX,)]]
    for kind, name, path in elements(file):
        text = _cell(notes.get(path, ""))
        if kind in ("service", "message", "enum"):
            lines += ["", f"## {name}", "", f"{kind.capitalize()}. {text}", ""]
            lines += _table_header(kind)
        elif kind == "rpc":
            method = file.service[path[1]].method[path[3]]
            request = method.input_type.removeprefix(f".{file.package}.")
            response = method.output_type.removeprefix(f".{file.package}.")
            lines.append(
                f"| `{method.name}` | [{request}](#{_anchor(request)}) | "
                f"[{response}](#{_anchor(response)}) | {text} |"
            )
        elif kind == "field":
            message = _message_at(file, path[:-2])
            field = message.field[path[-1]]
            lines.append(
                f"| `{field.name}` | {field.number} | "
                f"{_field_type(file, message, field)} | {text} |"
            )
        elif kind == "oneof":
            lines += ["", f"Oneof `{name.rsplit('.', 1)[1]}`: {text}"]
        elif kind == "enum value":
            value = _enum_at(file, path[:-2]).value[path[-1]]
            lines.append(f"| `{value.name}` | {value.number} | {text} |")
    return "\n".join(lines) + "\n"


def _table_header(kind: str) -> list[str]:
    return {
        "service": ["| RPC | request | response | description |", "|---|---|---|---|"],
        "message": ["| field | number | type | description |", "|---|---|---|---|"],
        "enum": ["| value | number | description |", "|---|---|---|"],
    }[kind]


def _message_at(file: FileProto, path: Path) -> descriptor_pb2.DescriptorProto:
    message = file.message_type[path[1]]
    for index in path[3::2]:
        message = message.nested_type[index]
    return message


def _enum_at(file: FileProto, path: Path) -> descriptor_pb2.EnumDescriptorProto:
    if path[0] == _FILE_ENUM:
        return file.enum_type[path[1]]
    return _message_at(file, path[:-2]).enum_type[path[-1]]


def render_all() -> str:
    """The page for every file of the contract, one after another."""
    files = [f for f in compile_set().file if f.name.startswith("alquery/")]
    return "\n".join(render(file) for file in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=PAGE)
    out = parser.parse_args(argv).out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_all())
    sys.stderr.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
