"""Interchange formats: pprof (gzip'd protobuf), speedscope JSON and folded stacks.

The pprof encoder and decoder are hand-written from the public field numbers of
profile.proto, so exporting needs no protobuf runtime.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable
from typing import Any

from profiling_agent.collectors._pprof import fields as wire_fields
from profiling_agent.collectors._pprof import ints as wire_ints
from profiling_agent.collectors._pprof import signed as wire_signed

from .labels import sample_label
from .model import FrameKey, Profile, gunzip_capped

# --- pprof ----------------------------------------------------------------------------------

# (type, unit, which sample field feeds it); the last entry is the default sample type.
SAMPLE_TYPES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "cpu": (("samples", "count", "count"), ("cpu", "nanoseconds", "value")),
    "memory": (("inuse_objects", "count", "count"), ("inuse_space", "bytes", "value")),
    "alloc": (("alloc_objects", "count", "count"), ("alloc_space", "bytes", "value")),
    "block": (("samples", "count", "count"), ("delay", "nanoseconds", "value")),
    "mutex": (("contentions", "count", "count"), ("delay", "nanoseconds", "value")),
    "goroutine": (("goroutine", "count", "value"),),
}
# period_type per profile type; time-sampled types get period = 1e9 / sampleRate ns.
PERIOD_TYPES: dict[str, tuple[str, str]] = {
    "cpu": ("cpu", "nanoseconds"),
    "memory": ("space", "bytes"),
    "alloc": ("space", "bytes"),
    "block": ("delay", "nanoseconds"),
    "mutex": ("contentions", "count"),
    "goroutine": ("goroutine", "count"),
}
TIME_SAMPLED = frozenset({"cpu", "block"})
MAX_PPROF_BYTES = 512 * 1024 * 1024

_U64 = (1 << 64) - 1
_VARINT, _BYTES = 0, 2


def pprof_function_name(name: str) -> str:
    """pprof drops text inside <...> in names (templates in C++): `<listcomp>` -> `[listcomp]`."""
    return name.replace("<", "[").replace(">", "]")


def _encode_varint(value: int) -> bytes:
    value &= _U64  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Ids, string indices, lengths and tags are mostly small: look their encoding up.
_SMALL_VARINTS = [_encode_varint(i) for i in range(1 << 14)]


def _varint(value: int) -> bytes:
    return _SMALL_VARINTS[value] if 0 <= value < 16384 else _encode_varint(value)


def _uint_field(buf: bytearray, field: int, value: int) -> None:
    if value:  # proto3: zero is the default and is not written
        buf += _SMALL_VARINTS[field << 3 | _VARINT]
        buf += _varint(value)


def _bytes_field(buf: bytearray, field: int, data: bytes | bytearray) -> None:
    buf += _SMALL_VARINTS[field << 3 | _BYTES]
    buf += _varint(len(data))
    buf += data


def _packed_field(buf: bytearray, field: int, values: Iterable[int]) -> None:
    packed = b"".join([_varint(value) for value in values])
    if packed:
        _bytes_field(buf, field, packed)


class _Strings:
    """pprof string table; index 0 is always ""."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {"": 0}

    def __call__(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.index)
        return found


def _value_type(strings: _Strings, type_: str, unit: str) -> bytearray:
    msg = bytearray()
    _uint_field(msg, 1, strings(type_))
    _uint_field(msg, 2, strings(unit))
    return msg


def to_pprof(profile: Profile) -> bytes:
    """The profile as a gzip-compressed pprof `Profile` message (readable by `go tool pprof`).

    One Function and one Location per distinct (function, file, line); sample locations are
    leaf first as pprof expects; every sample carries a "thread" label and its own labels as
    string labels. Values are rounded to
    integers (pprof values are int64). Notes and the engine go into comments.
    """
    strings = _Strings()
    out = bytearray()
    types = SAMPLE_TYPES[profile.profile_type]
    for type_, unit, _ in types:
        _bytes_field(out, 1, _value_type(strings, type_, unit))

    keys, frame_ids = profile.function_table
    thread_key = strings("thread")
    for sample in profile.samples:
        msg = bytearray()
        _packed_field(msg, 1, (frame_ids[i] + 1 for i in reversed(sample.stack)))
        _packed_field(
            msg, 2, (round(sample.count if src == "count" else sample.value) for *_, src in types)
        )
        for key, value in ((thread_key, sample.thread), *sample.labels):
            label = bytearray()
            _uint_field(label, 1, key if key is thread_key else strings(key))
            _uint_field(label, 2, strings(value))
            _bytes_field(msg, 3, label)
        _bytes_field(out, 2, msg)

    mapping = bytearray()
    _uint_field(mapping, 1, 1)  # id
    _uint_field(mapping, 5, strings("python"))  # filename
    for field in (7, 8, 9):  # has_functions, has_filenames, has_line_numbers
        _uint_field(mapping, field, 1)
    _bytes_field(out, 3, mapping)

    for fid, (_function, _file, line) in enumerate(keys, start=1):
        line_msg = bytearray()
        _uint_field(line_msg, 1, fid)
        _uint_field(line_msg, 2, line)
        location = bytearray()
        _uint_field(location, 1, fid)
        _uint_field(location, 2, 1)  # mapping_id
        _bytes_field(location, 4, line_msg)
        _bytes_field(out, 4, location)
    for fid, (function, file, line) in enumerate(keys, start=1):
        name = strings(pprof_function_name(function))
        func = bytearray()
        _uint_field(func, 1, fid)
        _uint_field(func, 2, name)
        _uint_field(func, 3, name)  # system_name
        _uint_field(func, 4, strings(file))
        _uint_field(func, 5, line)
        _bytes_field(out, 5, func)

    _uint_field(out, 9, _nanoseconds(profile.started_at))  # time_nanos
    _uint_field(out, 10, round(profile.duration_seconds * 1e9))  # duration_nanos
    period_type, period_unit = PERIOD_TYPES[profile.profile_type]
    _bytes_field(out, 11, _value_type(strings, period_type, period_unit))
    if profile.profile_type in TIME_SAMPLED and profile.sample_rate:
        period = round(1e9 / profile.sample_rate)
    else:
        period = 1
    _uint_field(out, 12, period)
    comments = [f"engine: {profile.engine}", *profile.notes]
    _packed_field(out, 13, (strings(c) for c in comments))
    _uint_field(out, 14, strings(types[-1][0]))  # default_sample_type

    # The string table goes last: only now is it complete.
    for text in strings.index:
        _bytes_field(out, 6, text.encode("utf-8", "replace"))
    return gzip.compress(out, compresslevel=6, mtime=0)


def _nanoseconds(epoch_seconds: float) -> int:
    # Split off whole seconds first: epoch * 1e9 as one float loses ~100 ns of precision.
    whole = math.floor(epoch_seconds)
    return whole * 1_000_000_000 + round((epoch_seconds - whole) * 1e9)


# --- pprof decoding (tests, round trips) -----------------------------------------------------


def _repeated_ints(wire: int, value: Any, signed: bool = False) -> list[int]:
    """A repeated integer field's entries, packed (length-delimited) or not."""
    values = wire_ints(wire, value)
    return [wire_signed(v) for v in values] if signed else values


def _message(data: bytes, repeated: frozenset[int] = frozenset()) -> dict[int, Any]:
    """Decode one message: scalar fields by number; `repeated` ones as lists of raw values."""
    result: dict[int, Any] = {}
    for field, wire, value in wire_fields(data):
        if field in repeated:
            result.setdefault(field, []).append((wire, value))
        else:
            result[field] = value
    return result


def parse_pprof(data: bytes) -> dict[str, Any]:
    """Decode a (gzip'd or plain) pprof Profile into plain Python data.

    Returns sample_types [(type, unit)], samples [{"stack": function names leaf first,
    "values", "labels", "num_labels"}], functions, locations, mappings, period_type, period,
    time_nanos, duration_nanos, comments, default_sample_type, string_table.
    Raises ValueError on malformed input.
    """
    if data[:2] == b"\x1f\x8b":
        data = bytes(gunzip_capped(data, MAX_PPROF_BYTES))
    top = _message(data, frozenset({1, 2, 3, 4, 5, 6, 13}))

    strings = [raw.decode("utf-8") for _, raw in top.get(6, [])]
    if not strings or strings[0] != "":
        raise ValueError('malformed pprof: string_table[0] must be ""')

    def text(index: int) -> str:
        if not 0 <= index < len(strings):
            raise ValueError(f"malformed pprof: string index {index} out of range")
        return strings[index]

    def value_type(raw: bytes) -> tuple[str, str]:
        msg = _message(raw)
        return text(msg.get(1, 0)), text(msg.get(2, 0))

    functions = {}
    for _, raw in top.get(5, []):
        msg = _message(raw)
        functions[msg.get(1, 0)] = {
            "id": msg.get(1, 0),
            "name": text(msg.get(2, 0)),
            "system_name": text(msg.get(3, 0)),
            "filename": text(msg.get(4, 0)),
            "start_line": msg.get(5, 0),
        }
    locations = {}
    for _, raw in top.get(4, []):
        msg = _message(raw, frozenset({4}))
        lines = []
        for _, line_raw in msg.get(4, []):
            line = _message(line_raw)
            if line.get(1, 0) not in functions:
                raise ValueError(f"malformed pprof: unknown function id {line.get(1, 0)}")
            lines.append({"function_id": line.get(1, 0), "line": line.get(2, 0)})
        locations[msg.get(1, 0)] = {
            "id": msg.get(1, 0),
            "mapping_id": msg.get(2, 0),
            "address": msg.get(3, 0),
            "lines": lines,
            "is_folded": bool(msg.get(5, 0)),
        }
    mappings = []
    for _, raw in top.get(3, []):
        msg = _message(raw)
        mappings.append(
            {
                "id": msg.get(1, 0),
                "filename": text(msg.get(5, 0)),
                "has_functions": bool(msg.get(7, 0)),
            }
        )

    samples = []
    for _, raw in top.get(2, []):
        msg = _message(raw, frozenset({1, 2, 3}))
        stack: list[str] = []
        for wire, value in msg.get(1, []):
            for location_id in _repeated_ints(wire, value):
                if location_id not in locations:
                    raise ValueError(f"malformed pprof: unknown location id {location_id}")
                # A location's lines are leaf first too (inlined callees before callers).
                stack.extend(
                    functions[line["function_id"]]["name"]
                    for line in locations[location_id]["lines"]
                )
        values = [v for wire, value in msg.get(2, []) for v in _repeated_ints(wire, value, True)]
        labels: dict[str, str] = {}
        num_labels: dict[str, int] = {}
        for _, label_raw in msg.get(3, []):
            label = _message(label_raw)
            key = text(label.get(1, 0))
            if 3 in label or 4 in label:
                num_labels[key] = wire_signed(label.get(3, 0))
            else:  # proto3 omits str index 0, the empty string
                labels[key] = text(label.get(2, 0))
        samples.append(
            {"stack": stack, "values": values, "labels": labels, "num_labels": num_labels}
        )

    sample_types = [value_type(raw) for _, raw in top.get(1, [])]
    for sample in samples:
        if len(sample["values"]) != len(sample_types):
            raise ValueError("malformed pprof: a sample's value count differs from sample_type")
    comments = [text(i) for wire, value in top.get(13, []) for i in _repeated_ints(wire, value)]
    return {
        "sample_types": sample_types,
        "samples": samples,
        "functions": list(functions.values()),
        "locations": list(locations.values()),
        "mappings": mappings,
        "period_type": value_type(top[11]) if 11 in top else None,
        "period": wire_signed(top.get(12, 0)),
        "time_nanos": wire_signed(top.get(9, 0)),
        "duration_nanos": wire_signed(top.get(10, 0)),
        "comments": comments,
        "default_sample_type": text(top.get(14, 0)),
        "string_table": strings,
    }


# --- speedscope -------------------------------------------------------------------------------

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
SPEEDSCOPE_UNITS = {"nanoseconds": "nanoseconds", "bytes": "bytes", "count": "none"}


def to_speedscope(profile: Profile, group_by: str | None = None) -> dict[str, Any]:
    """A speedscope file: shared frames and one "sampled" profile per thread, or with
    `group_by` per value of that label key (named "key=value"; "key=(none)" for samples
    without it).

    Stacks are frame indices root first; weights are sample values. Profiles are ordered by
    total weight, heaviest first (the one speedscope opens). A profile without samples
    still yields one (empty) profile so the file loads.
    """
    keys, frame_ids = profile.function_table
    frames = []
    for function, file, line in keys:
        frame: dict[str, Any] = {"name": function}
        if file:
            frame["file"] = file
        if line:
            frame["line"] = line
        frames.append(frame)

    by_group: dict[str, tuple[list[list[int]], list[float]]] = {}
    for sample in profile.samples:
        if group_by is None:
            name = sample.thread
        else:
            name = f"{group_by}={sample_label(sample, group_by) or '(none)'}"
        stacks, weights = by_group.setdefault(name, ([], []))
        stacks.append([frame_ids[i] for i in sample.stack])
        weights.append(sample.value)
    unit = SPEEDSCOPE_UNITS[profile.unit]
    profiles = [
        {
            "type": "sampled",
            "name": name,
            "unit": unit,
            "startValue": 0,
            "endValue": sum(weights),
            "samples": stacks,
            "weights": weights,
        }
        for name, (stacks, weights) in sorted(
            by_group.items(), key=lambda item: (-sum(item[1][1]), item[0])
        )
    ]
    if not profiles:
        profiles.append(
            {
                "type": "sampled",
                "name": "all threads",
                "unit": unit,
                "startValue": 0,
                "endValue": 0,
                "samples": [],
                "weights": [],
            }
        )
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": f"{profile.profile_type} profile ({profile.engine})",
        "activeProfileIndex": 0,
        "exporter": "profiles.analysis",
    }


# --- folded stacks ----------------------------------------------------------------------------


def folded_frame_name(key: FrameKey) -> str:
    """`function (file:line)`; ';' and newlines would break the format, so they are replaced."""
    function, file, line = key
    return _folded_safe(f"{function} ({file}:{line})")


def _folded_safe(text: str) -> str:
    return text.replace(";", ",").replace("\n", " ").replace("\r", " ")


def to_folded(profile: Profile, group_by: str | None = None) -> str:
    """Folded stacks (`root;...;leaf value` per line), threads merged, lines sorted; with
    `group_by`, each stack starts with a frame "key=value" of that label key (samples without
    it have none), so a flame graph of the file splits by the key's values first.

    Values are rounded to integers, as flamegraph.pl and most readers expect; stacks whose
    value rounds to 0 are left out.
    """
    keys, frame_ids = profile.function_table
    names = [folded_frame_name(key) for key in keys]
    totals: dict[str, float] = {}
    for sample in profile.samples:  # keyed by text: equal frames may have several indices
        parts = [names[frame_ids[i]] for i in sample.stack]
        value = sample_label(sample, group_by) if group_by else None
        if value is not None:
            parts.insert(0, _folded_safe(f"{group_by}={value}"))
        text = ";".join(parts)
        totals[text] = totals.get(text, 0) + sample.value
    lines = [f"{text} {round(value)}" for text, value in totals.items() if round(value)]
    lines.sort()
    return "".join(line + "\n" for line in lines)
