"""The profile data model ("pyprof-raw/1") and its strict loader.

Everything here is pure Python: the agent, the Celery task and the tests share it.
Untrusted uploads go through `load_upload` (caps on bytes, values, frames and stack entries,
checked while decoding) or `load_gzip_json` (size cap) and then `Profile.from_raw` (shape,
types and limits); anything past that point may assume a well-formed profile.
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
    LABEL_OVERFLOW_VALUE,
    LABEL_THREAD,
    MAX_FRAMES,
    MAX_INT32,
    MAX_INT64,
    MAX_LABEL_CHARS,
    MAX_LABEL_KEYS,
    MAX_LABEL_VALUES_PER_KEY,
    MAX_OVERHEAD_PERCENT,
    MAX_SAMPLES,
    MAX_STACK_DEPTH,
    MAX_STACK_ENTRIES,
    MAX_STRING_CHARS,
    PROFILE_TYPES,
    UNIT_BY_TYPE,
)

FrameKey = tuple[str, str, int]
#: A sample's labels as (key, value) pairs sorted by key: hashable, so samples merge by them.
Labels = tuple[tuple[str, str], ...]
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
    labels: Labels = ()


@dataclass(frozen=True)
class Profile:
    """A validated profile. Samples are unique by (stack, thread, labels) after `from_raw`."""

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
    labels_overflow: int = 0  # samples whose label value the agent replaced by LABEL_OVERFLOW_VALUE

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
        checked for type, range and the server's limits. Duplicate (stack, thread, labels)
        samples are merged by summing value and count.
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
            "samples": [sample_to_raw(s) for s in self.samples],
            "notes": list(self.notes),
        }
        if self.labels_overflow:
            raw["labelsOverflow"] = self.labels_overflow
        if self.instance is not None:
            raw["instance"] = dict(self.instance)
        if self.overhead_percent is not None:
            raw["overheadPercent"] = self.overhead_percent
        return raw


def sample_to_raw(sample: Sample) -> dict[str, Any]:
    raw = {"stack": list(sample.stack), "value": sample.value, "count": sample.count, "thread": sample.thread}
    if sample.labels:
        raw["labels"] = dict(sample.labels)
    return raw


#: Every JSON value but the first of its container follows a comma, so counting commas while
#: inflating bounds the number of values a document can make json.loads build. A valid upload
#: has at most this many: its stack entries, 4 per sample and one per label, 3 per frame, and
#: some slack.
MAX_JSON_VALUES = MAX_STACK_ENTRIES + (4 + MAX_LABEL_KEYS) * MAX_SAMPLES + 3 * MAX_FRAMES + 100_000
#: Objects that are neither frames nor samples (the document, its instance): a few in practice.
MAX_OTHER_OBJECTS = 1_000
MAX_NOTES = 100
MAX_INSTANCE_VALUES = 200


def gunzip_capped(data: bytes, max_bytes: int, max_values: int | None = None) -> bytearray:
    """Decompress gzip `data` (one or more members), refusing output over `max_bytes`.

    Inflates incrementally with a bounded output buffer, so a gzip bomb costs at most
    `max_bytes` (+1) of memory before it is refused with InvalidProfile. With `max_values`,
    output holding more commas than that is refused as soon as they are inflated.
    """
    if not data:
        raise InvalidProfile("empty body: expected gzip-compressed data")
    if data[:2] != b"\x1f\x8b":
        raise InvalidProfile("not gzip data (missing gzip header)")
    out = bytearray()
    commas = 0
    pending = data
    try:
        while pending:  # one iteration per gzip member
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while not inflater.eof:
                chunk = inflater.decompress(pending, min(1 << 20, max_bytes + 1 - len(out)))
                out += chunk
                if len(out) > max_bytes:
                    raise InvalidProfile(
                        f"decompressed size exceeds the limit of {max_bytes} bytes"
                    )
                if max_values is not None:
                    commas += chunk.count(b",")
                    if commas > max_values:
                        raise InvalidProfile(
                            f"more than {max_values} JSON values: the limits are {MAX_SAMPLES} samples, "
                            f"{MAX_FRAMES} frames and {MAX_STACK_ENTRIES} stack entries in all"
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
    return _parse_json(gunzip_capped(data, max_bytes), None)


def load_upload(data: bytes, max_bytes: int) -> Profile:
    """An untrusted gzip upload as a validated Profile, its cost bounded before anything big is built.

    While inflating: at most `max_bytes` of JSON and MAX_JSON_VALUES values. While parsing:
    frames and stack entries are counted as each object completes, and stacks are stored as
    tuples of shared ints, so memory stays a small multiple of the JSON size.
    """
    text = gunzip_capped(data, max_bytes, MAX_JSON_VALUES)
    raw = _parse_json(text, _UploadCounter())
    del text  # the document's text is not needed once parsed
    return _parse_raw(raw)


class _UploadCounter:
    """json.loads object_hook: refuses an upload past a limit as soon as the object crossing it is read."""

    def __init__(self) -> None:
        self.entries = self.frames = self.others = 0
        self.ints: dict[int, int] = {}

    def __call__(self, obj: dict[str, Any]) -> dict[str, Any]:
        stack = obj.get("stack")
        if type(stack) is list:
            self.entries += len(stack)
            if self.entries > MAX_STACK_ENTRIES:
                raise InvalidProfile(
                    f"samples: more than {MAX_STACK_ENTRIES} stack entries in all (samples x stack depth)"
                )
            if set(map(type, stack)) <= {int}:
                # One int object per distinct index instead of one per entry.
                obj["stack"] = tuple(map(self.ints.setdefault, stack, stack))
            if type(obj.get("labels")) is dict:
                self.others -= 1  # its labels object, read just before it, belongs to a sample
        elif "function" in obj:
            self.frames += 1
            if self.frames > MAX_FRAMES:
                raise InvalidProfile(f"frames: more than {MAX_FRAMES} entries, the limit is {MAX_FRAMES}")
        else:
            self.others += 1
            if self.others > MAX_OTHER_OBJECTS:
                raise InvalidProfile(f"more than {MAX_OTHER_OBJECTS} objects that are neither frames nor samples")
        return obj


def _parse_json(text: bytearray, object_hook: Any) -> dict[str, Any]:
    try:
        doc = json.loads(text, parse_constant=_reject_constant, object_hook=object_hook)
    except InvalidProfile:
        raise
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
    return _clean_text(value, f"{where}{key}")


def _clean_text(value: str, where: str) -> str:
    if len(value) > MAX_STRING_CHARS:
        raise InvalidProfile(f"{where}: {len(value)} characters, the limit is {MAX_STRING_CHARS}")
    if "\x00" in value or not (value.isascii() or _encodable(value)):
        # Neither PostgreSQL text/JSON nor protobuf strings can hold these.
        raise InvalidProfile(f"{where}: contains a NUL character or invalid Unicode (a lone surrogate)")
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
    if not isinstance(stack, (list, tuple)):  # a tuple when `load_upload` has interned it
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


def _parse_labels(raw: Any, where: str, values_by_key: dict[str, set[str]], seen: dict[Labels, Labels]) -> Labels:
    """A sample's labels as sorted pairs, within the caps the agent enforces (profile_format)."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise InvalidProfile(f"{where}.labels: expected an object of strings, got {_type_name(raw)}")
    if len(raw) > MAX_LABEL_KEYS:
        raise InvalidProfile(f"{where}.labels: {len(raw)} keys, the limit is {MAX_LABEL_KEYS}")
    for key, value in raw.items():
        if not key or len(key) > MAX_LABEL_CHARS:
            raise InvalidProfile(f"{where}.labels: a key must have 1 to {MAX_LABEL_CHARS} characters, got {len(key)}")
        _clean_text(key, f"{where}.labels key {key[:40]!r}")
        if key == LABEL_THREAD:
            raise InvalidProfile(f"{where}.labels: {LABEL_THREAD!r} is the sample's thread field, not a label to set")
        if not isinstance(value, str):
            raise InvalidProfile(f"{where}.labels.{key}: expected a string, got {_type_name(value)}")
        if len(value) > MAX_LABEL_CHARS:
            raise InvalidProfile(f"{where}.labels.{key}: {len(value)} characters, the limit is {MAX_LABEL_CHARS}")
        _clean_text(value, f"{where}.labels.{key}")
        values = values_by_key.setdefault(key, set())
        if value not in values and value != LABEL_OVERFLOW_VALUE:
            if len(values) >= MAX_LABEL_VALUES_PER_KEY:
                raise InvalidProfile(
                    f"{where}.labels.{key}: more than {MAX_LABEL_VALUES_PER_KEY} distinct values of {key!r}; "
                    f"the agent replaces values past that cap by {LABEL_OVERFLOW_VALUE!r}"
                )
            values.add(value)
    labels = tuple(sorted(raw.items()))
    return seen.setdefault(labels, labels)  # one tuple per distinct label set


def _parse_samples(raw_samples: list[Any], frame_count: int) -> list[Sample]:
    merged: dict[tuple[tuple[int, ...], str, Labels], list[Any]] = {}
    values_by_key: dict[str, set[str]] = {}
    seen_labels: dict[Labels, Labels] = {}
    for i, item in enumerate(raw_samples):
        where = f"samples[{i}]"
        if not isinstance(item, dict):
            raise InvalidProfile(f"{where}: expected an object, got {_type_name(item)}")
        stack = _check_stack(_require(item, "stack", where + "."), where, frame_count)
        value = _non_negative_number(item, "value", where + ".")
        count = _non_negative_int(item, "count", where + ".")
        thread = _string(item, "thread", where + ".")
        labels = _parse_labels(item.get("labels"), where, values_by_key, seen_labels)
        key = (stack, thread, labels)
        entry = merged.get(key)
        if entry is None:
            merged[key] = [value, count]
        else:
            entry[0] += value
            entry[1] += count
    total = sum(value for value, _ in merged.values())
    if total > MAX_INT64:
        raise InvalidProfile(f"samples: the values sum to {total}, over the limit of {MAX_INT64}")
    return [Sample(stack, v, c, thread, labels) for (stack, thread, labels), (v, c) in merged.items()]


def _check_instance(instance: dict[str, Any]) -> None:
    """The instance is stored as a JSON column: every string clean, every integer an int64, small."""
    pending: list[tuple[str, Any]] = [("instance", instance)]
    seen = 0
    while pending:
        where, value = pending.pop()
        seen += 1
        if seen > MAX_INSTANCE_VALUES:
            raise InvalidProfile(f"instance: more than {MAX_INSTANCE_VALUES} values")
        if isinstance(value, str):
            _clean_text(value, where)
        elif _is_int(value):
            if not -MAX_INT64 <= value <= MAX_INT64:
                raise InvalidProfile(f"{where}: {value} is out of the int64 range")
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidProfile(f"{where}: {value} is not a finite number")
        elif isinstance(value, dict):
            for key, item in value.items():
                _clean_text(key, f"{where} key {key[:40]!r}")
                pending.append((f"{where}.{key}", item))
        elif isinstance(value, list):
            pending.extend((f"{where}[{i}]", item) for i, item in enumerate(value))


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
    if sample_count > MAX_INT32:
        raise InvalidProfile(f"sampleCount: must be <= {MAX_INT32}, got {sample_count}")

    frames = _parse_frames(_array(raw, "frames", MAX_FRAMES))
    samples = _parse_samples(_array(raw, "samples", MAX_SAMPLES), len(frames))

    notes: Sequence[Any] = raw.get("notes", [])
    if not isinstance(notes, list):
        raise InvalidProfile(f"notes: expected an array, got {_type_name(notes)}")
    if len(notes) > MAX_NOTES:
        raise InvalidProfile(f"notes: {len(notes)} entries, the limit is {MAX_NOTES}")
    for i, note in enumerate(notes):
        if not isinstance(note, str):
            raise InvalidProfile(f"notes[{i}]: expected a string, got {_type_name(note)}")
        _clean_text(note, f"notes[{i}]")

    overhead = raw.get("overheadPercent")
    if overhead is not None and not (_is_number(overhead) and
                                     0 <= overhead <= MAX_OVERHEAD_PERCENT):
        raise InvalidProfile(f"overheadPercent: expected a number from 0 to "
                             f"{MAX_OVERHEAD_PERCENT}, got {overhead!r}"[:300])

    labels_overflow = raw.get("labelsOverflow", 0)
    if not _is_int(labels_overflow) or not 0 <= labels_overflow <= MAX_INT64:
        raise InvalidProfile(f"labelsOverflow: expected a count of samples (an integer >= 0), got {labels_overflow!r}"[:300])

    instance = raw.get("instance")
    if instance is not None:
        if not isinstance(instance, dict):
            raise InvalidProfile(f"instance: expected an object, got {_type_name(instance)}")
        _check_instance(instance)

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
        labels_overflow=labels_overflow,
    )
