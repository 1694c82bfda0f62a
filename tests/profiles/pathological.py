"""Hostile uploads (issue 10), gzip-compressed as an agent would send them, built in chunks.

The large ones are generated straight into a gzip stream, so building a 184 MB document costs
the test or benchmark about the size of its gzip, not of its JSON.
"""

import json
import zlib
from collections.abc import Iterator

from profiling_agent.profile_format import DEFAULT_ENGINES

from .samples import UNITS, gzip_json, raw_cpu_profile


def _gzip_chunks(parts: Iterator[str]) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [compressor.compress(part.encode()) for part in parts]
    out.append(compressor.flush())
    return b"".join(out)


def _document(frames: Iterator[str], samples: Iterator[str], sample_count: int) -> Iterator[str]:
    head = {
        "format": "pyprof-raw/1", "profileType": "cpu", "engine": DEFAULT_ENGINES["cpu"], "unit": UNITS["cpu"],
        "startedAt": 1764000000.0, "durationSeconds": 60.0, "sampleRate": 100, "sampleCount": sample_count,
        "notes": [],
    }
    yield json.dumps(head)[:-1] + ', "frames": ['
    for i, frame in enumerate(frames):
        yield ("," if i else "") + frame
    yield '], "samples": ['
    for i, sample in enumerate(samples):
        yield ("," if i else "") + sample
    yield "]}"


def deep_and_wide(samples: int = 180_000, depth: int = 512) -> tuple[bytes, int]:
    """`samples` distinct stacks `depth` deep (the issue's 0.95 MB gzip of 184 MB of JSON).

    Returns (gzip body, size of its JSON in bytes).
    """
    frames = (json.dumps({"function": f"f{i}", "file": "/app/deep.py", "line": i}) for i in range(depth))
    stack = ",".join(str(i) for i in range(1, depth))

    def sample_texts():
        for i in range(samples):
            yield f'{{"stack":[{i % depth},{stack}],"value":1000,"count":1,"thread":"t{i}"}}'

    size = 0

    def counted(parts):
        nonlocal size
        for part in parts:
            size += len(part)  # ASCII only
            yield part

    body = _gzip_chunks(counted(_document(frames, sample_texts(), samples)))
    return body, size


def million_frames(count: int = 1_000_000) -> bytes:
    frames = (f'{{"function":"function_{i}","file":"/app/m{i % 100}.py","line":{i % 1000}}}' for i in range(count))
    return _gzip_chunks(_document(frames, iter(['{"stack":[0],"value":1,"count":1,"thread":"t"}']), 1))


def gzip_bomb(json_bytes: int = 2 * 1024**3) -> bytes:
    """A valid JSON start followed by `json_bytes` of spaces: ~2 MB of gzip for 2 GB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [compressor.compress(b'{"format": "pyprof-raw/1", "pad": "')]
    block = b" " * (1 << 20)
    out += [compressor.compress(block) for _ in range(json_bytes >> 20)]
    out.append(compressor.flush())
    return b"".join(out)


def with_string(path: tuple, value) -> dict:
    """The small valid cpu profile with one field (a path of keys and indices) set to `value`."""
    raw = raw_cpu_profile()
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return raw


#: Every string field of the format, as a path into `raw_cpu_profile()`.
STRING_FIELDS = {
    "frames[0].function": ("frames", 0, "function"),
    "frames[0].file": ("frames", 0, "file"),
    "samples[0].thread": ("samples", 0, "thread"),
    "notes[0]": ("notes", 0),
    "instance.host": ("instance", "host"),
}


def with_bad_string(field: str, bad: str) -> bytes:
    raw = raw_cpu_profile()
    raw["notes"] = ["fine"]
    raw["instance"] = {"host": "web-1", "pid": 42}
    target = raw
    path = STRING_FIELDS[field]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = f"a{bad}b"
    return gzip_json(raw)
