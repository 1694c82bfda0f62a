"""Small, valid raw profiles for tests."""

import gzip
import json


def raw_cpu_profile(hot_ns: int = 900_000_000, cold_ns: int = 100_000_000) -> dict:
    """A small, valid pyprof-raw/1 cpu profile: main -> hot and main -> cold."""
    return {
        "format": "pyprof-raw/1",
        "profileType": "cpu",
        "engine": "py-spy",
        "unit": "nanoseconds",
        "startedAt": 1764000000.0,
        "durationSeconds": 2.0,
        "sampleRate": 100,
        "sampleCount": (hot_ns + cold_ns) // 10_000_000,
        "frames": [
            {"function": "main", "file": "/app/app.py", "line": 1},
            {"function": "hot", "file": "/app/app.py", "line": 10},
            {"function": "cold", "file": "/app/app.py", "line": 20},
        ],
        "samples": [
            {"stack": [0, 1], "value": hot_ns, "count": hot_ns // 10_000_000, "thread": "MainThread"},
            {"stack": [0, 2], "value": cold_ns, "count": cold_ns // 10_000_000, "thread": "MainThread"},
        ],
        "notes": [],
    }


def gzip_json(obj) -> bytes:
    return gzip.compress(json.dumps(obj).encode())
