"""memray records every allocation: its capture file is capped, and removed after the window."""

from __future__ import annotations

import importlib.util
import tempfile
import threading

import pytest
from profiling_agent import collectors

pytestmark = pytest.mark.skipif(importlib.util.find_spec("memray") is None, reason="memray is not installed")


def test_an_alloc_window_ends_when_the_capture_reaches_its_cap_and_leaves_no_file(monkeypatch, tmp_path):
    monkeypatch.setenv("PROFILING_MEMRAY_MAX_CAPTURE_BYTES", str(2 * 1024 * 1024))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stop = threading.Event()

    def churn():  # a record per allocation: megabytes of capture within moments
        while not stop.is_set():
            [bytearray(1024) for _ in range(200)]

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        profile = collectors.collect("alloc", duration_seconds=120, sample_rate=100, engine="memray")
    finally:
        stop.set()
        worker.join(10)

    capped = [note for note in profile["notes"] if "reached its cap of 2097152 bytes" in note]
    assert capped, profile["notes"]
    assert profile["durationSeconds"] < 120  # ended by the cap, not by the window
    assert any(frame["function"].endswith("churn") for frame in profile["frames"])
    assert list(tmp_path.iterdir()) == []  # the capture and its folder are gone
