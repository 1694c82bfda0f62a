import copy
import gzip
import json
import tracemalloc
import zlib

import pytest

from profiles.analysis import (
    MAX_FRAMES,
    MAX_SAMPLES,
    MAX_STACK_DEPTH,
    Frame,
    InvalidProfile,
    Profile,
    Sample,
    load_gzip_json,
)


def raw_profile(frame_count: int = 3) -> dict:
    return {
        "format": "pyprof-raw/1",
        "profileType": "cpu",
        "engine": "py-spy",
        "unit": "nanoseconds",
        "startedAt": 1764000000.123,
        "durationSeconds": 10.02,
        "sampleRate": 100,
        "sampleCount": 30,
        "frames": [
            {"function": f"f{i}", "file": "/app/work.py", "line": i + 1} for i in range(frame_count)
        ],
        "samples": [
            {"stack": [0, 1], "value": 10_000_000, "count": 1, "thread": "MainThread"},
            {"stack": [0, 2], "value": 20_000_000, "count": 2, "thread": "worker"},
        ],
        "notes": ["a note"],
        "instance": {"host": "web-1", "pid": 4242, "python": "3.11.7"},
    }


def test_from_raw_builds_the_model_and_round_trips():
    profile = Profile.from_raw(raw_profile())

    assert profile.profile_type == "cpu"
    assert profile.unit == "nanoseconds"
    assert profile.duration_seconds == 10.02
    assert profile.frames[1] == Frame("f1", "/app/work.py", 2)
    assert profile.samples[1] == Sample((0, 2), 20_000_000, 2, "worker")
    assert profile.notes == ("a note",)
    assert profile.total == 30_000_000
    assert profile.to_raw() == raw_profile()
    assert Profile.from_raw(profile.to_raw()) == profile


def test_from_raw_defaults_optional_fields_and_ignores_unknown_keys():
    raw = raw_profile()
    del raw["notes"], raw["instance"]
    raw["futureField"] = {"anything": 1}

    profile = Profile.from_raw(raw)

    assert profile.notes == ()
    assert profile.instance is None
    assert "instance" not in profile.to_raw()


def test_from_raw_merges_duplicate_stack_thread_pairs():
    raw = raw_profile()
    raw["samples"] = [
        {"stack": [0, 1], "value": 5, "count": 1, "thread": "t"},
        {"stack": [0, 1], "value": 7, "count": 2, "thread": "other"},
        {"stack": [0, 1], "value": 6, "count": 3, "thread": "t"},
    ]

    profile = Profile.from_raw(raw)

    assert profile.samples == (Sample((0, 1), 11, 4, "t"), Sample((0, 1), 7, 2, "other"))


def _set(path, value):
    """A mutation of raw_profile(): set (or with value=DELETE, remove) a nested key."""

    def mutate(raw):
        target = raw
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return mutate


DELETE = object()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set(("format",), "pprof"), "format: expected 'pyprof-raw/1', got 'pprof'"),
        (_set(("format",), DELETE), "format: required"),
        (
            _set(("profileType",), "heap"),
            "profileType: 'heap' is not one of alloc, block, cpu, goroutine, memory, mutex",
        ),
        (_set(("engine",), "perf"), "engine: 'perf' is not one of"),
        (
            _set(("unit",), "bytes"),
            "unit: 'bytes' does not match profileType 'cpu' (expected 'nanoseconds')",
        ),
        (_set(("durationSeconds",), -1), "durationSeconds: must be >= 0, got -1"),
        (_set(("durationSeconds",), "10"), "durationSeconds: expected a finite number, got string"),
        (_set(("durationSeconds",), float("nan")), "durationSeconds: expected a finite number"),
        (_set(("sampleRate",), True), "sampleRate: expected an integer, got boolean"),
        (_set(("sampleCount",), 1.5), "sampleCount: expected an integer, got number"),
        (_set(("startedAt",), None), "startedAt: expected a finite number, got null"),
        (_set(("frames",), {}), "frames: expected an array, got object"),
        (_set(("frames", 1), "f1"), "frames[1]: expected an object, got string"),
        (_set(("frames", 0, "function"), ""), "frames[0].function: must not be empty"),
        (_set(("frames", 2, "line"), "12"), "frames[2].line: expected an integer, got string"),
        (_set(("frames", 2, "file"), DELETE), "frames[2].file: required"),
        (_set(("samples", 1), [0, 1]), "samples[1]: expected an object, got array"),
        (_set(("samples", 1, "stack"), []), "samples[1].stack: must not be empty"),
        (_set(("samples", 0, "stack"), "0;1"), "samples[0].stack: expected an array, got string"),
        (
            _set(("samples", 1, "stack"), [0, True]),
            "samples[1].stack[1]: expected a frame index, got boolean",
        ),
        (
            _set(("samples", 1, "stack"), [0, -1]),
            "samples[1].stack[1]: frame index -1 out of range (0..2)",
        ),
        (_set(("samples", 0, "value"), -5), "samples[0].value: must be >= 0, got -5"),
        (_set(("samples", 0, "count"), 1.0), "samples[0].count: expected an integer, got number"),
        (
            _set(("samples", 0, "value"), 2**64),
            "samples[0].value: must be <= 9223372036854775807, got 18446744073709551616",
        ),
        (_set(("samples", 0, "thread"), DELETE), "samples[0].thread: required"),
        (
            _set(("samples", 0, "thread"), "a\x00b"),
            "samples[0].thread: contains a NUL character or invalid Unicode",
        ),
        (
            _set(("frames", 1, "function"), "f\ud800"),
            "frames[1].function: contains a NUL character or invalid Unicode",
        ),
        (_set(("notes",), ["ok", 3]), "notes[1]: expected a string, got integer"),
        (_set(("instance",), "web-1"), "instance: expected an object, got string"),
    ],
)
def test_from_raw_rejects_malformed_input_with_a_readable_message(mutate, message):
    raw = copy.deepcopy(raw_profile())
    mutate(raw)

    with pytest.raises(InvalidProfile) as excinfo:
        Profile.from_raw(raw)

    assert message in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_from_raw_names_the_sample_and_position_of_a_bad_frame_index():
    raw = raw_profile(frame_count=42)
    raw["samples"] = [
        {"stack": [0, 1], "value": 1, "count": 1, "thread": "t"} for _ in range(3)
    ] + [{"stack": [0, 1, 99], "value": 1, "count": 1, "thread": "t"}]

    with pytest.raises(
        InvalidProfile, match=r"^samples\[3\]\.stack\[2\]: frame index 99 out of range \(0\.\.41\)$"
    ):
        Profile.from_raw(raw)


def test_from_raw_rejects_a_non_object():
    with pytest.raises(InvalidProfile, match="expected a JSON object, got array"):
        Profile.from_raw([])


def test_from_raw_enforces_the_frame_limit():
    raw = raw_profile()
    raw["frames"] = [raw["frames"][0]] * (MAX_FRAMES + 1)

    with pytest.raises(InvalidProfile, match=f"frames: {MAX_FRAMES + 1} entries, the limit is"):
        Profile.from_raw(raw)


def test_from_raw_enforces_the_sample_limit():
    raw = raw_profile()
    raw["samples"] = [raw["samples"][0]] * (MAX_SAMPLES + 1)

    with pytest.raises(InvalidProfile, match=f"samples: {MAX_SAMPLES + 1} entries, the limit is"):
        Profile.from_raw(raw)


def test_from_raw_enforces_the_stack_depth_limit():
    raw = raw_profile()
    raw["samples"][0]["stack"] = [0] * MAX_STACK_DEPTH
    Profile.from_raw(raw)  # exactly at the limit is fine

    raw["samples"][0]["stack"] = [0] * (MAX_STACK_DEPTH + 1)
    with pytest.raises(
        InvalidProfile, match=r"samples\[0\]\.stack: depth 513 exceeds the limit of 512"
    ):
        Profile.from_raw(raw)


def test_profile_constructed_by_hand_stores_tuples():
    profile = Profile("cpu", "nanoseconds", "yappi", 1.0, 100, 1, [Frame("f", "x.py", 1)], [], [])

    assert profile.frames == (Frame("f", "x.py", 1),)
    assert profile.samples == ()
    assert profile.total == 0


# --- load_gzip_json ---------------------------------------------------------------------------


def test_load_gzip_json_round_trips_a_profile():
    body = gzip.compress(json.dumps(raw_profile()).encode())

    assert load_gzip_json(body, max_bytes=1_000_000) == raw_profile()


def test_load_gzip_json_accepts_exactly_max_bytes_and_refuses_one_more():
    text = json.dumps({"pad": "x" * 1000}).encode()
    body = gzip.compress(text)

    assert load_gzip_json(body, max_bytes=len(text)) == {"pad": "x" * 1000}
    with pytest.raises(InvalidProfile, match=f"exceeds the limit of {len(text) - 1} bytes"):
        load_gzip_json(body, max_bytes=len(text) - 1)


def test_load_gzip_json_refuses_a_gzip_bomb_without_inflating_it():
    # 64 MiB of zeros compress to about 64 KB; built in chunks to keep the test light.
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(deflater.compress(zeros) for _ in range(64)) + deflater.flush()
    assert len(bomb) < 100_000

    tracemalloc.start()
    try:
        with pytest.raises(InvalidProfile, match="exceeds the limit of 1000000 bytes"):
            load_gzip_json(bomb, max_bytes=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000  # a few times the cap, nowhere near 64 MiB


def test_load_gzip_json_reads_concatenated_gzip_members():
    body = gzip.compress(b'{"a": ') + gzip.compress(b"1}")

    assert load_gzip_json(body, max_bytes=100) == {"a": 1}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b'{"format": "pyprof-raw/1"}', "not gzip data"),
        (gzip.compress(b'{"a": 1}')[:-12], "truncated gzip data"),
        (gzip.compress(b'{"a": 1}')[:10] + b"\xff" * 20, "invalid gzip data"),
        (gzip.compress(b'{"a": '), "invalid JSON"),
        (gzip.compress(b"\xff\xfe{}"), "invalid JSON"),
        (gzip.compress(b'{"a": NaN}'), "invalid JSON: NaN is not allowed"),
        (gzip.compress(b"[1, 2]"), "expected a JSON object, got array"),
    ],
)
def test_load_gzip_json_rejects_bad_bodies(body, message):
    with pytest.raises(InvalidProfile, match=message):
        load_gzip_json(body, max_bytes=1_000_000)


def test_from_raw_accepts_non_ascii_names():
    raw = raw_profile()
    raw["frames"][0]["function"] = "größe_berechnen"
    raw["samples"][0]["thread"] = "工作线程"

    profile = Profile.from_raw(raw)

    assert profile.frames[0].function == "größe_berechnen"
    assert profile.samples[0].thread == "工作线程"


@pytest.mark.parametrize("value", [0, 1.25, 10_000])
def test_overhead_percent_is_parsed_and_round_trips(value):
    raw = raw_profile() | {"overheadPercent": value}
    profile = Profile.from_raw(raw)
    assert profile.overhead_percent == value
    assert Profile.from_raw(profile.to_raw()).overhead_percent == value
    assert Profile.from_raw(raw_profile()).overhead_percent is None  # optional


@pytest.mark.parametrize("value", [-0.5, 10_000.5, "3", True, float("nan")])
def test_overhead_percent_out_of_range_is_refused_with_its_name(value):
    with pytest.raises(InvalidProfile, match="overheadPercent"):
        Profile.from_raw(raw_profile() | {"overheadPercent": value})
