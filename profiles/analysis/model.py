"""The profile data model ("pyprof-raw/1") and its strict loader.

Everything here is pure Python: the agent, the Celery task and the tests share it.
Untrusted uploads go through `load_gzip_json` (size cap) and then `Profile.from_raw`
(shape, types and limits); anything past that point may assume a well-formed profile.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from profiling_agent.profile_format import (  # noqa: F401 - re-exported
    ENGINES,
    FORMAT,
    MAX_FRAMES,
    MAX_INT64,
    MAX_OVERHEAD_PERCENT,
    MAX_SAMPLES,
    MAX_STACK_DEPTH,
    PROFILE_TYPES,
    UNIT_BY_TYPE,
)

FrameKey = tuple[str, str, int]
_N = TypeVar("_N", int, float)


class InvalidProfile(ValueError):
    """The input is not a valid pyprof-raw/1 profile; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Frame:
    function: str
    file: str
    line: int

    @property
    def key(self) -> FrameKey:
        return (self.function, self.file, self.line)


@dataclass(frozen=True, slots=True)
class Sample:
    """One aggregated stack: `stack` holds frame indices, root first, leaf last."""

    stack: tuple[int, ...]
    value: int | float
    count: int
    thread: str


@dataclass(frozen=True)
class Profile:
    """A validated profile. Samples have unique (stack, thread) pairs after `from_raw`."""

    profile_type: str
    unit: str
    engine: str
    duration_seconds: float
    sample_rate: int
    sample_count: int
    frames: tuple[Frame, ...]
    samples: tuple[Sample, ...]
    notes: tuple[str, ...] = ()
    started_at: float = 0.0
    # Not in the analysis contract's field list, but part of the raw format: kept for round trips.
    instance: Mapping[str, Any] | None = field(default=None, compare=False)
    overhead_percent: float | None = None  # the agent's CPU over the process's, when measured

    def __post_init__(self) -> None:
        # Accept lists from callers building profiles by hand; store immutable tuples.
        for name in ("frames", "samples", "notes"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    @cached_property
    def total(self) -> int | float:
        """Sum of all sample values, in `unit`."""
        return sum(s.value for s in self.samples)

    @cached_property
    def function_table(self) -> tuple[tuple[FrameKey, ...], tuple[int, ...]]:
        """(distinct function keys, function id of each frame index).

        Functions are identified by (function, file, line); a frame table may repeat a key,
        and every analysis must count such frames as one function.
        """
        ids: dict[FrameKey, int] = {}
        frame_ids = tuple(ids.setdefault(f.key, len(ids)) for f in self.frames)
        return tuple(ids), frame_ids

    @classmethod
    def from_raw(cls, raw: Any) -> Profile:
        """Validate a decoded pyprof-raw/1 document and build a Profile.

        Unknown keys are ignored (forward compatibility); everything the contract names is
        checked for type, range and the server's limits. Duplicate (stack, thread) samples
        are merged by summing value and count.
        """
        return _parse_raw(raw)

    def to_raw(self) -> dict[str, Any]:
        """The pyprof-raw/1 dict; `Profile.from_raw(p.to_raw()) == p`."""
        raw: dict[str, Any] = {
            "format": FORMAT,
            "profileType": self.profile_type,
            "engine": self.engine,
            "unit": self.unit,
            "startedAt": self.started_at,
            "durationSeconds": self.duration_seconds,
            "sampleRate": self.sample_rate,
            "sampleCount": self.sample_count,
            "frames": [
                {"function": f.function, "file": f.file, "line": f.line} for f in self.frames
            ],
            "samples": [
                {"stack": list(s.stack), "value": s.value, "count": s.count, "thread": s.thread}
                for s in self.samples
            ],
            "notes": list(self.notes),
        }
        if self.instance is not None:
            raw["instance"] = dict(self.instance)
        if self.overhead_percent is not None:
            raw["overheadPercent"] = self.overhead_percent
        return raw


def gunzip_capped(data: bytes, max_bytes: int) -> bytearray:
    """Decompress gzip `data` (one or more members), refusing output over `max_bytes`.

    Inflates incrementally with a bounded output buffer, so a gzip bomb costs at most
    `max_bytes` (+1) of memory before it is refused with InvalidProfile.
    """
    if not data:
        raise InvalidProfile("empty body: expected gzip-compressed data")
    if data[:2] != b"\x1f\x8b":
        raise InvalidProfile("not gzip data (missing gzip header)")
    out = bytearray()
    pending = data
    try:
        while pending:  # one iteration per gzip member
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while not inflater.eof:
                chunk = inflater.decompress(pending, max_bytes + 1 - len(out))
                out += chunk
                if len(out) > max_bytes:
                    raise InvalidProfile(
                        f"decompressed size exceeds the limit of {max_bytes} bytes"
                    )
                pending = inflater.unconsumed_tail
                if not chunk and not pending:
                    raise InvalidProfile("truncated gzip data")
            pending = inflater.unused_data
    except zlib.error as exc:
        raise InvalidProfile(f"invalid gzip data: {exc}") from None
    return out


def load_gzip_json(data: bytes, max_bytes: int) -> dict[str, Any]:
    """Decompress (at most `max_bytes`, see `gunzip_capped`) and parse a JSON object.

    NaN/Infinity literals are refused; any failure is an InvalidProfile.
    """
    text = gunzip_capped(data, max_bytes)
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidProfile(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidProfile(f"expected a JSON object, got {_type_name(doc)}")
    return doc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


# --- validation -------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _require(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise InvalidProfile(f"{where}{key}: required")
    return obj[key]


def _string(obj: Mapping[str, Any], key: str, where: str = "") -> str:
    value = _require(obj, key, where)
    if not isinstance(value, str):
        raise InvalidProfile(f"{where}{key}: expected a string, got {_type_name(value)}")
    if "\x00" in value or not (value.isascii() or _encodable(value)):
        # Neither PostgreSQL JSON nor protobuf strings can hold these.
        raise InvalidProfile(f"{where}{key}: contains a NUL character or invalid Unicode")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from a "\ud800" JSON escape
        return False
    return True


def _choice(obj: Mapping[str, Any], key: str, choices: Iterable[str]) -> str:
    value = _string(obj, key)
    if value not in choices:
        allowed = ", ".join(sorted(choices))
        raise InvalidProfile(f"{key}: {value!r} is not one of {allowed}")
    return value


def _non_negative_int(obj: Mapping[str, Any], key: str, where: str = "") -> int:
    value = _require(obj, key, where)
    if not _is_int(value):
        raise InvalidProfile(f"{where}{key}: expected an integer, got {_type_name(value)}")
    return _in_range(value, key, where)


def _in_range(value: _N, key: str, where: str) -> _N:
    if value < 0:
        raise InvalidProfile(f"{where}{key}: must be >= 0, got {value}")
    if value > MAX_INT64:
        raise InvalidProfile(f"{where}{key}: must be <= {MAX_INT64}, got {value}")
    return value


def _non_negative_number(obj: Mapping[str, Any], key: str, where: str = "") -> int | float:
    value = _require(obj, key, where)
    if not _is_number(value):
        raise InvalidProfile(f"{where}{key}: expected a finite number, got {_type_name(value)}")
    return _in_range(value, key, where)


def _array(obj: Mapping[str, Any], key: str, limit: int) -> list[Any]:
    value = _require(obj, key, "")
    if not isinstance(value, list):
        raise InvalidProfile(f"{key}: expected an array, got {_type_name(value)}")
    if len(value) > limit:
        raise InvalidProfile(f"{key}: {len(value)} entries, the limit is {limit}")
    return value


def _parse_frames(raw_frames: list[Any]) -> list[Frame]:
    frames = []
    for i, item in enumerate(raw_frames):
        where = f"frames[{i}]."
        if not isinstance(item, dict):
            raise InvalidProfile(f"frames[{i}]: expected an object, got {_type_name(item)}")
        function = _string(item, "function", where)
        if not function:
            raise InvalidProfile(f"{where}function: must not be empty")
        frames.append(
            Frame(function, _string(item, "file", where), _non_negative_int(item, "line", where))
        )
    return frames


def _check_stack(stack: Any, where: str, frame_count: int) -> tuple[int, ...]:
    if not isinstance(stack, list):
        raise InvalidProfile(f"{where}.stack: expected an array, got {_type_name(stack)}")
    if not stack:
        raise InvalidProfile(f"{where}.stack: must not be empty")
    if len(stack) > MAX_STACK_DEPTH:
        raise InvalidProfile(
            f"{where}.stack: depth {len(stack)} exceeds the limit of {MAX_STACK_DEPTH}"
        )
    # Fast path in C (set/min/max); the slow loop only runs to name the offending entry.
    if set(map(type, stack)) == {int} and min(stack) >= 0 and max(stack) < frame_count:
        return tuple(stack)
    valid = f"(0..{frame_count - 1})" if frame_count else "(there are no frames)"
    for j, index in enumerate(stack):
        if not _is_int(index):
            raise InvalidProfile(
                f"{where}.stack[{j}]: expected a frame index, got {_type_name(index)}"
            )
        if not 0 <= index < frame_count:
            raise InvalidProfile(f"{where}.stack[{j}]: frame index {index} out of range {valid}")
    raise AssertionError("unreachable")  # pragma: no cover


def _parse_samples(raw_samples: list[Any], frame_count: int) -> list[Sample]:
    merged: dict[tuple[tuple[int, ...], str], list[Any]] = {}
    for i, item in enumerate(raw_samples):
        where = f"samples[{i}]"
        if not isinstance(item, dict):
            raise InvalidProfile(f"{where}: expected an object, got {_type_name(item)}")
        stack = _check_stack(_require(item, "stack", where + "."), where, frame_count)
        value = _non_negative_number(item, "value", where + ".")
        count = _non_negative_int(item, "count", where + ".")
        thread = _string(item, "thread", where + ".")
        key = (stack, thread)
        entry = merged.get(key)
        if entry is None:
            merged[key] = [value, count]
        else:
            entry[0] += value
            entry[1] += count
    return [Sample(stack, v, c, thread) for (stack, thread), (v, c) in merged.items()]


def _parse_raw(raw: Any) -> Profile:
    if not isinstance(raw, dict):
        raise InvalidProfile(f"expected a JSON object, got {_type_name(raw)}")
    fmt = _string(raw, "format")
    if fmt != FORMAT:
        raise InvalidProfile(f"format: expected {FORMAT!r}, got {fmt!r}")
    profile_type = _choice(raw, "profileType", PROFILE_TYPES)
    engine = _choice(raw, "engine", ENGINES)
    unit = _choice(raw, "unit", set(UNIT_BY_TYPE.values()))
    expected_unit = UNIT_BY_TYPE[profile_type]
    if unit != expected_unit:
        raise InvalidProfile(
            f"unit: {unit!r} does not match profileType {profile_type!r} "
            f"(expected {expected_unit!r})"
        )
    started_at = _non_negative_number(raw, "startedAt")
    duration = _non_negative_number(raw, "durationSeconds")
    sample_rate = _non_negative_int(raw, "sampleRate")
    sample_count = _non_negative_int(raw, "sampleCount")

    frames = _parse_frames(_array(raw, "frames", MAX_FRAMES))
    samples = _parse_samples(_array(raw, "samples", MAX_SAMPLES), len(frames))

    notes: Sequence[Any] = raw.get("notes", [])
    if not isinstance(notes, list):
        raise InvalidProfile(f"notes: expected an array, got {_type_name(notes)}")
    for i, note in enumerate(notes):
        if not isinstance(note, str):
            raise InvalidProfile(f"notes[{i}]: expected a string, got {_type_name(note)}")

    overhead = raw.get("overheadPercent")
    if overhead is not None and not (_is_number(overhead) and
                                     0 <= overhead <= MAX_OVERHEAD_PERCENT):
        raise InvalidProfile(f"overheadPercent: expected a number from 0 to "
                             f"{MAX_OVERHEAD_PERCENT}, got {overhead!r}"[:300])

    instance = raw.get("instance")
    if instance is not None and not isinstance(instance, dict):
        raise InvalidProfile(f"instance: expected an object, got {_type_name(instance)}")

    return Profile(
        profile_type=profile_type,
        unit=unit,
        engine=engine,
        duration_seconds=float(duration),
        sample_rate=sample_rate,
        sample_count=sample_count,
        frames=tuple(frames),
        samples=tuple(samples),
        notes=tuple(notes),
        started_at=float(started_at),
        instance=instance,
        overhead_percent=None if overhead is None else float(overhead),
    )
