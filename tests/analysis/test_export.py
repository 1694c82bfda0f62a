import gzip
import json
import shutil
import subprocess

import pytest
from profiling_agent.collectors._pprof import fields as _fields

from profiles.analysis import (
    Frame,
    Profile,
    Sample,
    parse_pprof,
    to_folded,
    to_pprof,
    to_speedscope,
)
from profiles.analysis.export import _encode_varint


def python_profile(profile_type="cpu", unit="nanoseconds", engine="py-spy"):
    frames = [
        Frame("<module>", "/app/main.py", 1),
        Frame("Worker.run", "/app/work.py", 10),
        Frame("<listcomp>", "/app/work.py", 14),
        Frame("fib", "/app/work.py", 20),
    ]
    samples = [
        Sample((0, 1, 2), 30_000_000, 3, "MainThread"),
        Sample((0, 1, 3, 3), 50_000_000, 5, "worker-1"),
        Sample((0, 1), 10_000_000, 1, "worker-1"),
    ]
    return Profile(
        profile_type=profile_type,
        unit=unit,
        engine=engine,
        duration_seconds=10.5,
        sample_rate=100,
        sample_count=9,
        frames=frames,
        samples=samples,
        notes=["collected with py-spy"],
        started_at=1_764_000_000.25,
    )


# --- pprof ------------------------------------------------------------------------------------


def test_pprof_round_trip_keeps_stacks_values_and_metadata():
    data = to_pprof(python_profile())

    assert data[:2] == b"\x1f\x8b"  # gzip'd, as pprof files are
    parsed = parse_pprof(data)

    assert parsed["string_table"][0] == ""
    assert parsed["sample_types"] == [("samples", "count"), ("cpu", "nanoseconds")]
    assert parsed["default_sample_type"] == "cpu"
    samples = [(s["stack"], s["values"], s["labels"]) for s in parsed["samples"]]
    assert samples == [
        (["[listcomp]", "Worker.run", "[module]"], [3, 30_000_000], {"thread": "MainThread"}),
        (["fib", "fib", "Worker.run", "[module]"], [5, 50_000_000], {"thread": "worker-1"}),
        (["Worker.run", "[module]"], [1, 10_000_000], {"thread": "worker-1"}),
    ]
    functions = {(f["name"], f["filename"], f["start_line"]) for f in parsed["functions"]}
    assert functions == {
        ("[module]", "/app/main.py", 1),
        ("Worker.run", "/app/work.py", 10),
        ("[listcomp]", "/app/work.py", 14),
        ("fib", "/app/work.py", 20),
    }
    assert parsed["period_type"] == ("cpu", "nanoseconds")
    assert parsed["period"] == 10_000_000  # 100 Hz
    assert parsed["duration_nanos"] == 10_500_000_000
    assert parsed["time_nanos"] == 1_764_000_000_250_000_000
    assert parsed["comments"] == ["engine: py-spy", "collected with py-spy"]
    assert all(location["mapping_id"] == 1 for location in parsed["locations"])
    assert parsed["mappings"][0]["has_functions"] is True


@pytest.mark.parametrize(
    ("profile_type", "unit", "sample_types", "values"),
    [
        (
            "memory",
            "bytes",
            [("inuse_objects", "count"), ("inuse_space", "bytes")],
            [3, 30_000_000],
        ),
        ("alloc", "bytes", [("alloc_objects", "count"), ("alloc_space", "bytes")], [3, 30_000_000]),
        ("block", "nanoseconds", [("samples", "count"), ("delay", "nanoseconds")], [3, 30_000_000]),
        (
            "mutex",
            "nanoseconds",
            [("contentions", "count"), ("delay", "nanoseconds")],
            [3, 30_000_000],
        ),
        ("goroutine", "count", [("goroutine", "count")], [30_000_000]),
    ],
)
def test_pprof_sample_types_per_profile_type(profile_type, unit, sample_types, values):
    parsed = parse_pprof(to_pprof(python_profile(profile_type, unit)))

    assert parsed["sample_types"] == sample_types
    assert parsed["default_sample_type"] == sample_types[-1][0]
    assert parsed["samples"][0]["values"] == values


def test_pprof_rounds_float_values_to_integers():
    frames = [Frame("main", "m.py", 1)]
    profile = Profile("cpu", "nanoseconds", "yappi", 1.0, 0, 1, frames, [Sample((0,), 2.6, 1, "t")])

    parsed = parse_pprof(to_pprof(profile))

    assert parsed["samples"][0]["values"] == [1, 3]
    assert parsed["period"] == 1  # no sample rate: no meaningful period


def test_pprof_repeated_sample_fields_are_packed():
    message = gzip.decompress(to_pprof(python_profile()))
    sample = next(value for field, _, value in _fields(message) if field == 2)

    wire_types = {field: wire for field, wire, _ in _fields(sample)}

    assert wire_types[1] == 2  # location_id: one length-delimited packed run
    assert wire_types[2] == 2  # value
    assert wire_types[3] == 2  # label is a message


def test_varint_encoding():
    assert _encode_varint(1) == b"\x01"
    assert _encode_varint(150) == b"\x96\x01"
    assert _encode_varint(300) == b"\xac\x02"
    assert _encode_varint(-1) == b"\xff" * 9 + b"\x01"  # int64 two's complement


def test_parse_pprof_reads_unpacked_repeated_fields():
    # A minimal hand-encoded profile whose sample lists location ids one by one (also legal).
    def field(number, payload):
        return bytes([number << 3 | 2, len(payload)]) + payload

    def varint_field(number, value):
        return bytes([number << 3, value])

    strings = [b"", b"samples", b"count", b"main", b"leaf"]
    profile = b"".join(
        [
            field(1, varint_field(1, 1) + varint_field(2, 2)),
            field(2, varint_field(1, 2) + varint_field(1, 1) + varint_field(2, 7)),
            field(4, varint_field(1, 1) + field(4, varint_field(1, 1))),
            field(4, varint_field(1, 2) + field(4, varint_field(1, 2))),
            field(5, varint_field(1, 1) + varint_field(2, 3)),
            field(5, varint_field(1, 2) + varint_field(2, 4)),
            *(field(6, s) for s in strings),
        ]
    )

    parsed = parse_pprof(profile)

    assert parsed["sample_types"] == [("samples", "count")]
    assert parsed["samples"][0]["stack"] == ["leaf", "main"]
    assert parsed["samples"][0]["values"] == [7]


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05\x08",  # length runs past the end
        b"\x08",  # truncated varint
        b"\x32\x01x",  # string_table[0] is not ""
        gzip.compress(b"\x0b"),  # wire type 3 (groups) is not used by pprof
    ],
)
def test_parse_pprof_rejects_malformed_input(data):
    with pytest.raises(ValueError, match="malformed pprof"):
        parse_pprof(data)


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed (go tool pprof)")
def test_go_tool_pprof_reads_the_export(tmp_path):
    path = tmp_path / "cpu.pb.gz"
    path.write_bytes(to_pprof(python_profile()))

    result = subprocess.run(
        ["go", "tool", "pprof", "-top", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "fib" in result.stdout
    assert "[listcomp]" in result.stdout
    assert "<unknown>" not in result.stdout


# --- speedscope -------------------------------------------------------------------------------

# The parts of speedscope's file format (src/lib/file-format-spec.ts) that a sampled file uses.
SPEEDSCOPE_SCHEMA = {
    "type": "object",
    "required": ["$schema", "shared", "profiles"],
    "properties": {
        "$schema": {"const": "https://www.speedscope.app/file-format-schema.json"},
        "shared": {
            "type": "object",
            "required": ["frames"],
            "properties": {
                "frames": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "file": {"type": "string"},
                            "line": {"type": "number"},
                            "col": {"type": "number"},
                        },
                    },
                }
            },
        },
        "profiles": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "type",
                    "name",
                    "unit",
                    "startValue",
                    "endValue",
                    "samples",
                    "weights",
                ],
                "properties": {
                    "type": {"const": "sampled"},
                    "name": {"type": "string"},
                    "unit": {
                        "enum": [
                            "none",
                            "nanoseconds",
                            "microseconds",
                            "milliseconds",
                            "seconds",
                            "bytes",
                        ]
                    },
                    "startValue": {"type": "number"},
                    "endValue": {"type": "number"},
                    "samples": {
                        "type": "array",
                        "items": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    },
                    "weights": {"type": "array", "items": {"type": "number"}},
                },
            },
        },
        "name": {"type": "string"},
        "activeProfileIndex": {"type": "number"},
        "exporter": {"type": "string"},
    },
}


@pytest.mark.parametrize(
    ("profile_type", "unit", "speedscope_unit"),
    [
        ("cpu", "nanoseconds", "nanoseconds"),
        ("memory", "bytes", "bytes"),
        ("goroutine", "count", "none"),
    ],
)
def test_speedscope_file_is_valid_and_maps_units(profile_type, unit, speedscope_unit):
    jsonschema = pytest.importorskip("jsonschema")

    document = to_speedscope(python_profile(profile_type, unit))

    jsonschema.validate(json.loads(json.dumps(document)), SPEEDSCOPE_SCHEMA)
    assert {profile["unit"] for profile in document["profiles"]} == {speedscope_unit}


def test_speedscope_has_one_sampled_profile_per_thread_with_root_first_stacks():
    document = to_speedscope(python_profile())

    frames = [frame["name"] for frame in document["shared"]["frames"]]
    assert document["shared"]["frames"][0] == {
        "name": "<module>",
        "file": "/app/main.py",
        "line": 1,
    }
    profiles = {profile["name"]: profile for profile in document["profiles"]}
    assert list(profiles) == ["worker-1", "MainThread"]  # heaviest first: the one shown
    worker = profiles["worker-1"]
    assert [[frames[i] for i in stack] for stack in worker["samples"]] == [
        ["<module>", "Worker.run", "fib", "fib"],
        ["<module>", "Worker.run"],
    ]
    assert worker["weights"] == [50_000_000, 10_000_000]
    assert (worker["startValue"], worker["endValue"]) == (0, 60_000_000)
    assert len(worker["samples"]) == len(worker["weights"])


def test_speedscope_of_an_empty_profile_still_has_a_profile():
    empty = Profile("cpu", "nanoseconds", "py-spy", 1.0, 100, 0, [], [])

    document = to_speedscope(empty)

    assert document["shared"]["frames"] == []
    assert [(p["samples"], p["weights"]) for p in document["profiles"]] == [([], [])]


# --- folded -----------------------------------------------------------------------------------


def test_folded_stacks_root_first_with_file_and_line():
    frames = [Frame("a", "f.py", 1), Frame("b", "f.py", 5)]
    profile = Profile(
        "cpu", "nanoseconds", "py-spy", 1.0, 100, 1, frames, [Sample((0, 1), 42, 1, "t")]
    )

    assert to_folded(profile) == "a (f.py:1);b (f.py:5) 42\n"


def test_folded_merges_threads_and_sorts_lines():
    text = to_folded(python_profile())

    assert text.splitlines() == [
        "<module> (/app/main.py:1);Worker.run (/app/work.py:10) 10000000",
        "<module> (/app/main.py:1);Worker.run (/app/work.py:10);<listcomp> (/app/work.py:14) 30000000",
        "<module> (/app/main.py:1);Worker.run (/app/work.py:10);fib (/app/work.py:20);"
        "fib (/app/work.py:20) 50000000",
    ]


def test_folded_keeps_the_format_intact_for_odd_names():
    frames = [Frame("main", "m.py", 1), Frame("weird;name", "dir with space/x.py", 2)]
    profile = Profile(
        "cpu",
        "nanoseconds",
        "py-spy",
        1.0,
        100,
        2,
        frames,
        [Sample((0, 1), 7.6, 1, "t"), Sample((0,), 0.2, 1, "t")],
    )

    assert to_folded(profile) == "main (m.py:1);weird,name (dir with space/x.py:2) 8\n"
