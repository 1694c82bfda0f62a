"""A process killed mid-window leaves its collector's scratch folder; the next one sweeps it."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from profiling_agent.collectors import ddprof

ROOT = Path(__file__).resolve().parents[2]

COLLECT_FOREVER = """
import sys
from profiling_agent import collectors
collectors.collect("alloc", duration_seconds=600, sample_rate=100, engine="memray")
"""
HOLD_A_FOLDER = """
import sys
from profiling_agent.collectors import _tempfiles
print(_tempfiles.private_dir("ddtrace"), flush=True)
sys.stdin.read()
"""
COLLECT_BRIEFLY = """
from profiling_agent import collectors
collectors.collect("cpu", duration_seconds=0.2, sample_rate=100, engine="stack-sampler")
"""


def _python(code: str, tmp: Path, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(ROOT / "agent"))
    return subprocess.Popen([sys.executable, "-c", code], env=env, **kwargs)


def _folders_of(pid: int, tmp: Path) -> list[Path]:
    return sorted(tmp.glob(f"profiles-agent-{pid}-*"))


def _wait_for_folder(process: subprocess.Popen, tmp: Path, timeout: float = 60) -> Path:
    pid = process.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"process {process.pid} ended with {process.returncode}"
        found = [p for p in _folders_of(pid, tmp) if any(p.iterdir())]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"process {pid} made no scratch folder with files in {timeout} s")


@pytest.mark.skipif(not ddprof.available() or importlib.util.find_spec("memray") is None,
                    reason="memray and the in-process sampler's extra are needed")
def test_the_next_collection_sweeps_what_a_killed_process_left_and_keeps_a_live_ones(tmp_path):
    killed = _python(COLLECT_FOREVER, tmp_path)
    live = _python(HOLD_A_FOLDER, tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        left_behind = _wait_for_folder(killed, tmp_path)  # memray's capture file, mid-window
        live_folder = Path(live.stdout.readline().strip())
        (live_folder / "capture.bin").write_bytes(b"x")
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        assert left_behind.exists(), "SIGKILL leaves the folder: the sweep is what removes it"

        sweeper = _python(COLLECT_BRIEFLY, tmp_path)
        assert sweeper.wait(120) == 0

        assert not left_behind.exists()
        assert (live_folder / "capture.bin").exists(), "a running process's files are its own"
        assert _folders_of(sweeper.pid, tmp_path) == [], "a collection removes its own folder"
    finally:
        for process in (killed, live):
            if process.poll() is None:
                process.kill()
                process.wait(10)
