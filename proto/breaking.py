"""Check that the proto stays compatible with the last released one.

``python proto/breaking.py`` compares the current proto with the released
snapshot ``proto/released/alquery_v1.binpb`` and lists every change that
would break a client built against the release: a message, enum, service or
RPC removed; a field or enum value removed, renamed or renumbered; a field's
type, cardinality or oneof changed; an RPC's request or response changed.
Adding is always allowed. ``python proto/breaking.py --release`` writes a new
snapshot; run it when a version is released, never to silence the check.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from google.protobuf import descriptor_pb2

from descriptors import PROTO_ROOT, compile_set

SNAPSHOT = PROTO_ROOT / "released" / "alquery_v1.binpb"

FieldProto = descriptor_pb2.FieldDescriptorProto
MessageProto = descriptor_pb2.DescriptorProto
EnumProto = descriptor_pb2.EnumDescriptorProto


def _messages(
    messages: list[MessageProto], prefix: str
) -> dict[str, MessageProto]:
    found = {}
    for message in messages:
        name = f"{prefix}.{message.name}"
        found[name] = message
        found.update(_messages(list(message.nested_type), name))
    return found


def _enums(file: descriptor_pb2.FileDescriptorProto) -> dict[str, EnumProto]:
    prefix = f".{file.package}"
    found = {f"{prefix}.{enum.name}": enum for enum in file.enum_type}
    for name, message in _messages(list(file.message_type), prefix).items():
        found.update({f"{name}.{enum.name}": enum for enum in message.enum_type})
    return found


def _field_shape(message: MessageProto, field: FieldProto) -> dict[str, object]:
    """What a client's code and the wire depend on, besides name and number."""
    oneof = None
    if field.HasField("oneof_index") and not field.proto3_optional:
        oneof = message.oneof_decl[field.oneof_index].name
    return {
        "type": FieldProto.Type.Name(field.type).removeprefix("TYPE_").lower(),
        "type name": field.type_name or None,
        "cardinality": FieldProto.Label.Name(field.label).removeprefix("LABEL_"),
        "oneof": oneof,
        "explicit presence (optional)": field.proto3_optional,
    }


def _compare_fields(name: str, old: MessageProto, new: MessageProto) -> list[str]:
    problems = []
    new_by_number = {field.number: field for field in new.field}
    new_by_name = {field.name: field for field in new.field}
    for field in old.field:
        where = f"{name}.{field.name} = {field.number}"
        now = new_by_number.get(field.number)
        if now is None:
            moved = new_by_name.get(field.name)
            problems.append(
                f"{where}: renumbered to {moved.number}"
                if moved is not None
                else f"{where}: removed"
            )
            continue
        if now.name != field.name:
            problems.append(f"{where}: renamed to {now.name}")
        before, after = _field_shape(old, field), _field_shape(new, now)
        for key in before:
            if before[key] != after[key]:
                problems.append(
                    f"{where}: {key} changed from {before[key]} to {after[key]}"
                )
    return problems


def _compare_enum(name: str, old: EnumProto, new: EnumProto) -> list[str]:
    problems = []
    new_by_number = {value.number: value.name for value in new.value}
    new_by_name = {value.name: value.number for value in new.value}
    for value in old.value:
        where = f"{name}.{value.name} = {value.number}"
        if value.number not in new_by_number:
            if value.name in new_by_name:
                problems.append(f"{where}: renumbered to {new_by_name[value.name]}")
            else:
                problems.append(f"{where}: removed")
        elif new_by_number[value.number] != value.name:
            problems.append(f"{where}: renamed to {new_by_number[value.number]}")
    return problems


def _compare_services(
    old: descriptor_pb2.FileDescriptorProto, new: descriptor_pb2.FileDescriptorProto
) -> list[str]:
    problems = []
    new_services = {service.name: service for service in new.service}
    for service in old.service:
        name = f"{old.package}.{service.name}"
        if service.name not in new_services:
            problems.append(f"{name}: service removed")
            continue
        methods = {method.name: method for method in new_services[service.name].method}
        for method in service.method:
            now = methods.get(method.name)
            if now is None:
                problems.append(f"{name}.{method.name}: RPC removed")
                continue
            for key in ("input_type", "output_type", "client_streaming",
                        "server_streaming"):
                before, after = getattr(method, key), getattr(now, key)
                if before != after:
                    problems.append(
                        f"{name}.{method.name}: {key} changed from {before} "
                        f"to {after}"
                    )
    return problems


def compare(
    released: descriptor_pb2.FileDescriptorSet,
    current: descriptor_pb2.FileDescriptorSet,
) -> list[str]:
    """Every breaking change from ``released`` to ``current``, in words.

    Returns an empty list when ``current`` only adds to ``released``.
    """
    problems = []
    current_files = {file.name: file for file in current.file}
    for old_file in released.file:
        new_file = current_files.get(old_file.name)
        if new_file is None:
            problems.append(f"{old_file.name}: file removed")
            continue
        prefix = f".{old_file.package}"
        old_messages = _messages(list(old_file.message_type), prefix)
        new_messages = _messages(list(new_file.message_type), prefix)
        for name, message in old_messages.items():
            if name not in new_messages:
                problems.append(f"{name[1:]}: message removed")
            else:
                problems += _compare_fields(name[1:], message, new_messages[name])
        new_enums = _enums(new_file)
        for name, enum in _enums(old_file).items():
            if name not in new_enums:
                problems.append(f"{name[1:]}: enum removed")
            else:
                problems += _compare_enum(name[1:], enum, new_enums[name])
        problems += _compare_services(old_file, new_file)
    return problems


def load_snapshot(path: pathlib.Path = SNAPSHOT) -> descriptor_pb2.FileDescriptorSet:
    """Read a released snapshot (a binary ``FileDescriptorSet``)."""
    return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--release", action="store_true",
        help=f"write the current proto to {SNAPSHOT.relative_to(PROTO_ROOT)}",
    )
    args = parser.parse_args(argv)
    if args.release:
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_bytes(compile_set(source_info=False).SerializeToString())
        sys.stderr.write(f"wrote {SNAPSHOT}\n")
        return 0
    problems = compare(load_snapshot(), compile_set(source_info=False))
    for problem in problems:
        sys.stderr.write(f"breaking: {problem}\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
