"""The cpu profile against the truth: a program that measures its own CPU per function.

tests/agent/programs/cpu_ground_truth.py runs pure-Python functions (two alternating in one
thread), C code that releases the GIL (sha256, zlib) and C code that keeps it (json) in
parallel threads plus a mostly sleeping thread, times every call with ``time.thread_time()``,
and profiles itself with ``collect("cpu", ...)`` for 4 s. Each function's share of the
profile (self + children) must be within 5 points of its share of the measured CPU time.

The machine these tests run on is shared and its load changes from second to second; a run
that misses by a little is repeated once, and the failure message shows both attempts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = Path(__file__).parent / "programs" / "cpu_ground_truth.py"
ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 0.05


def run_program(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(PROGRAM), "--duration", "4", *args],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worst_error(result: dict) -> float:
    return max(abs(result["profiled"][name] - result["measured"][name])
               for name in result["measured"])


def describe(result: dict) -> str:
    lines = [f"on-CPU {result['onCpuSeconds']:.2f} s, profile {result['profileSeconds']:.2f} s, "
             f"{result['sampleCount']} samples"]
    for name, measured in result["measured"].items():
        profiled = result["profiled"][name]
        lines.append(f"  {name:<13} measured {measured:6.1%}  profiled {profiled:6.1%}  "
                     f"({(profiled - measured) * 100:+.1f} points)")
    return "\n".join(lines)


def test_cpu_profile_shares_match_measured_cpu_time():
    attempts = []
    for _ in range(2):
        result = run_program()
        if result["error"] and "ptrace" in result["error"].lower():
            pytest.skip(f"py-spy cannot attach here: {result['error']}")
        assert result["error"] is None, result["error"]
        attempts.append(result)
        if worst_error(result) <= TOLERANCE:
            break
    result = attempts[-1]
    report = "\n".join(describe(r) for r in attempts)
    assert worst_error(result) <= TOLERANCE, report
    # every function the program spends CPU in is present, C code that releases the GIL too
    for name in ("py_recursive", "py_loops", "c_sha256", "c_zlib", "c_json"):
        assert result["profiled"][name] > 0.01, report
    # the profile's total is real CPU time, not samples x interval
    assert 0.5 < result["profileSeconds"] / result["onCpuSeconds"] < 1.2, report
    print(report)
