"""A small decoder of pprof's protobuf (profile.proto), the agent's own: no protobuf package.

Only what the in-process sampler's files hold is read: sample types, samples (locations, values,
labels), locations with their lines, functions and the string table. Anything else is skipped
by wire type, so a newer producer that adds fields still decodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class PprofError(ValueError):
    """The bytes are not a pprof profile this decoder understands."""

    def __init__(self, reason: str):
        super().__init__(f"malformed pprof: {reason}")


@dataclass
class Sample:
    stack: tuple[tuple[str, str, int], ...]  # (function, file, line), root first
    values: tuple[int, ...]
    labels: dict[str, str | int]


@dataclass
class Profile:
    sample_types: list[str]  # type names, in the order of each sample's values
    samples: list[Sample] = field(default_factory=list)
    time_nanos: int = 0
    duration_nanos: int = 0


def varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise PprofError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise PprofError("varint too long")


def fields(data: bytes):
    """(field number, wire type, value) of one protobuf message; value is an int or a bytes
    slice. The platform's pprof reader (profiles/analysis/export.py) decodes with these too."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(data, pos)
        elif wire == 2:
            length, pos = varint(data, pos)
            if pos + length > end:
                raise PprofError("truncated field")
            value = data[pos:pos + length]
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise PprofError("truncated field")
            value, pos = int.from_bytes(data[pos:pos + size], "little"), pos + size
        else:
            raise PprofError(f"unsupported wire type {wire}")
        yield number, wire, value


def ints(wire: int, value) -> list[int]:
    """A repeated integer field: packed (one bytes value) or not (one int per occurrence)."""
    if wire == 0:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        item, pos = varint(value, pos)
        out.append(item)
    return out


def signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def decode(data: bytes) -> Profile:
    """Decode an uncompressed pprof Profile message."""
    strings: list[bytes] = []
    raw_types, raw_samples, raw_locations, raw_functions = [], [], [], []
    time_nanos = duration_nanos = 0
    for number, _wire, value in fields(data):
        if number == 6:
            strings.append(value)
        elif number == 1:
            raw_types.append(value)
        elif number == 2:
            raw_samples.append(value)
        elif number == 4:
            raw_locations.append(value)
        elif number == 5:
            raw_functions.append(value)
        elif number == 9:
            time_nanos = value
        elif number == 10:
            duration_nanos = value

    def text(index: int) -> str:
        if not 0 <= index < len(strings):
            raise PprofError(f"string index {index} out of range")
        return strings[index].decode("utf-8", "replace")

    functions: dict[int, tuple[str, str, int]] = {}
    for raw in raw_functions:
        ident = name = filename = start = 0
        for number, _wire, value in fields(raw):
            if number == 1:
                ident = value
            elif number == 2:
                name = value
            elif number == 4:
                filename = value
            elif number == 5:
                start = value
        functions[ident] = (text(name), text(filename), start)

    locations: dict[int, tuple[tuple[str, str, int], ...]] = {}
    for raw in raw_locations:
        ident, lines = 0, []
        for number, _wire, value in fields(raw):
            if number == 1:
                ident = value
            elif number == 4:
                function_id = line = 0
                for sub, _w, item in fields(value):
                    if sub == 1:
                        function_id = item
                    elif sub == 2:
                        line = item
                if function_id in functions:
                    # the function's start line when the producer gives one, else the line
                    name, filename, start = functions[function_id]
                    lines.append((name, filename, start or line))
        # inlined frames come callee first; a Python location has one line anyway
        locations[ident] = tuple(reversed(lines))

    sample_types = []
    for raw in raw_types:
        type_name = 0
        for number, _wire, value in fields(raw):
            if number == 1:
                type_name = value
        sample_types.append(text(type_name))

    profile = Profile(sample_types, time_nanos=time_nanos, duration_nanos=duration_nanos)
    for raw in raw_samples:
        location_ids: list[int] = []
        values: list[int] = []
        labels: dict[str, str | int] = {}
        for number, wire, value in fields(raw):
            if number == 1:
                location_ids.extend(ints(wire, value))
            elif number == 2:
                values.extend(signed(v) for v in ints(wire, value))
            elif number == 3:
                key = string = num = 0
                for sub, _w, item in fields(value):
                    if sub == 1:
                        key = item
                    elif sub == 2:
                        string = item
                    elif sub == 3:
                        num = signed(item)
                labels[text(key)] = text(string) if string else num
        frames: list[tuple[str, str, int]] = []
        for location_id in reversed(location_ids):  # pprof lists the leaf first
            frames.extend(locations.get(location_id, ()))
        profile.samples.append(Sample(tuple(frames), tuple(values), labels))
    return profile
