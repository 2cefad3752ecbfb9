"""Where a protobuf body is broken: a wire-format walk that names the field.

The protobuf runtime only says "Error parsing message". This walk runs on the
failure path alone (never on a body that parsed) and follows the message
descriptor, so a 400 can say ``resource_spans[0].scope_spans[0].spans[3].name:
invalid UTF-8`` instead. Hand-written because no maintained library reports the
field path of a decode error; it checks only what the runtime rejects
(truncation, bad wire types, bad lengths, invalid UTF-8 in strings, depth).
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

MAX_DEPTH = 100  # the protobuf runtime's default recursion limit

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


class WireProblem(Exception):
    """The first thing wrong with the bytes, at a field path."""


def _varint(data: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end:
            raise WireProblem(f"{where}: truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise WireProblem(f"{where}: varint longer than 10 bytes")


def _skip_group(data: bytes, pos: int, end: int, number: int, where: str, depth: int) -> int:
    while True:
        tag, pos = _varint(data, pos, end, where)
        wire = tag & 7
        if wire == EGROUP:
            if tag >> 3 != number:
                raise WireProblem(f"{where}: mismatched end of group")
            return pos
        pos = _skip(data, pos, end, wire, tag >> 3, where, depth + 1)


def _skip(data: bytes, pos: int, end: int, wire: int, number: int, where: str, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise WireProblem(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if wire == VARINT:
        return _varint(data, pos, end, where)[1]
    if wire in (I64, I32):
        size = 8 if wire == I64 else 4
        if pos + size > end:
            raise WireProblem(f"{where}: truncated {size * 8}-bit value")
        return pos + size
    if wire == LEN:
        length, pos = _varint(data, pos, end, where)
        if pos + length > end:
            raise WireProblem(f"{where}: length {length} runs past the end of its message")
        return pos + length
    if wire == SGROUP:
        return _skip_group(data, pos, end, number, where, depth)
    raise WireProblem(f"{where}: invalid wire type {wire}")


def _walk(data: bytes, pos: int, end: int, descriptor: Descriptor, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise WireProblem(f"{path or 'body'}: nested deeper than {MAX_DEPTH} levels")
    counts: dict[int, int] = {}
    while pos < end:
        tag, pos = _varint(data, pos, end, f"{path or 'body'} (field tag)")
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireProblem(f"{path or 'body'}: field number 0 is invalid")
        field = descriptor.fields_by_number.get(number)
        if field is None:
            where = f"{path}.<field {number}>" if path else f"<field {number}>"
        else:
            index = counts.get(number, 0)
            counts[number] = index + 1
            name = f"{path}.{field.name}" if path else field.name
            where = f"{name}[{index}]" if field.is_repeated else name
        if field is None or wire != LEN:
            pos = _skip(data, pos, end, wire, number, where, depth)
            continue
        start = pos
        pos = _skip(data, pos, end, wire, number, where, depth)
        length_end = pos
        _, body_start = _varint(data, start, end, where)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            _walk(data, body_start, length_end, field.message_type, where, depth + 1)
        elif field.type == FieldDescriptor.TYPE_STRING:
            try:
                data[body_start:length_end].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise WireProblem(f"{where}: invalid UTF-8 at byte {exc.start} of the string") from None


def locate_problem(data: bytes, descriptor: Descriptor) -> str | None:
    """The field path and reason of the first wire-level problem, or None if none is found."""
    try:
        _walk(data, 0, len(data), descriptor, "", 0)
    except WireProblem as problem:
        return str(problem)
    return None
