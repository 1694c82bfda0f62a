"""A program that forbids being traced (``prctl(PR_SET_DUMPABLE, 0)``), busy in one thread,
profiling its own CPU with the engine named on the command line; prints JSON.

Run it as an unprivileged user (without CAP_SYS_PTRACE nothing may attach to it then).
Usage: python untraceable.py stack-sampler|py-spy
"""

from __future__ import annotations

import ctypes
import json
import sys
import threading

from profiling_agent import collectors

PR_SET_DUMPABLE = 4


def busy(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    stop = threading.Event()
    worker = threading.Thread(target=busy, args=(stop,), name="busy", daemon=True)
    worker.start()
    out: dict = {"engine": sys.argv[1]}
    try:
        profile = collectors.collect("cpu", duration_seconds=1.5, sample_rate=100,
                                     engine=sys.argv[1])
        busy_ns = sum(s["value"] for s in profile["samples"] if s["thread"] == "busy")
        out.update(error=None, busySeconds=busy_ns / 1e9, sampleCount=profile["sampleCount"])
    except collectors.CollectorError as exc:
        out.update(error=exc.reason)
    stop.set()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
