"""A program that knows where its CPU goes, profiles itself, and prints both as JSON.

Worker threads call top-level functions in a loop and add the ``time.thread_time()`` each
call took to that function's account -- exact per-thread CPU time, the ground truth. Meanwhile the
main thread runs ``collect("cpu", ...)`` on its own process. The output compares, per
top-level function, its share of all on-CPU time measured by the program and its share of the
profile (self + children: samples whose stack contains it).

The mix covers the ways a sampler can go wrong: pure-Python code holding the GIL (two threads
fighting for it), C code that releases the GIL and runs in parallel (sha256, zlib), C code that
holds it (json), and a thread that mostly sleeps.

Usage: python cpu_ground_truth.py [--engine stack-sampler|py-spy|yappi] [--duration 4]
       [--rate 100] [--nonblocking]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

from profiling_agent import collectors  # noqa: E402

from benchmarks.load import machine_busy_seconds  # noqa: E402 - the load benchmark's /proc/stat reading

STOP = threading.Event()
BY_THREAD: dict[str, dict[str, float]] = {}  # thread -> function -> CPU seconds
BUFFER = os.urandom(1 << 20)
TEXT = (b"the quick brown fox jumps over the lazy dog " * 40000)[: 1 << 20]
DOC = {"items": [{"id": i, "name": f"item-{i}", "tags": ["a", "b", "c"], "price": i * 1.5}
                 for i in range(400)]}


def _fib(n: int) -> int:
    return n if n < 2 else _fib(n - 1) + _fib(n - 2)


def py_recursive() -> None:
    """Pure Python, deep call stacks."""
    _fib(19)


def _step(value: int) -> int:
    return (value * 31 + 7) % 1_000_003


def py_loops() -> None:
    """Pure Python, flat loops and string building."""
    value = 1
    parts = []
    for index in range(20000):
        value = _step(value)
        if index % 50 == 0:
            parts.append(str(value))
    "".join(parts)


def c_sha256() -> None:
    """C code that releases the GIL while it hashes."""
    for _ in range(3):
        hashlib.sha256(BUFFER).digest()


def c_zlib() -> None:
    """C code that releases the GIL while it compresses."""
    zlib.compress(TEXT, 6)


def _use(value) -> None:
    """A Python call after a C call that held the GIL throughout: the GIL hand-over that the
    C call delayed happens here, inside the caller's stack, as in real code that goes on to
    use the result (otherwise it would happen in the worker loop, outside every function)."""


def c_json() -> None:
    """C code that keeps the GIL."""
    for _ in range(3):
        _use(json.loads(json.dumps(DOC)))


def light_work() -> None:
    sum(range(2000))


def sleepy() -> None:
    """Mostly asleep: a little CPU between sleeps."""
    time.sleep(0.01)
    light_work()


# One thread alternates two pure-Python functions, so the profile must split that thread's CPU
# between them by its samples alone; C code that releases the GIL runs in parallel threads.
THREADS = {
    "python": (py_recursive, py_loops),
    "sha256": (c_sha256,),
    "zlib": (c_zlib,),
    "json": (c_json,),
    "sleepy": (sleepy,),
}
WORKERS = [py_recursive, py_loops, c_sha256, c_zlib, c_json, sleepy]


def worker(functions) -> None:
    clock = time.thread_time
    mine = BY_THREAD[threading.current_thread().name]
    while not STOP.is_set():
        for function in functions:
            started = clock()
            function()
            mine[function.__name__] += clock() - started


def profile_shares(profile: dict, key: str = "value") -> dict[str, float]:
    """Share of the profile's total in samples whose stack contains each top-level function.

    ``key="count"`` weighs every py-spy sample alike (what the profile would say without
    the per-thread CPU-time calibration), for comparison.
    """
    names = {fn.__name__ for fn in WORKERS}
    wanted = {i for i, frame in enumerate(profile["frames"]) if frame["function"] in names}
    total = sum(sample[key] for sample in profile["samples"]) or 1
    shares = dict.fromkeys(names, 0.0)
    for sample in profile["samples"]:
        hit = {profile["frames"][i]["function"] for i in set(sample["stack"]) & wanted}
        for name in hit:
            shares[name] += sample[key] / total
    return shares


def _per_thread(profile: dict) -> dict[str, dict[str, float]]:
    """Profile seconds per thread and top-level function (for diagnosing a failure)."""
    names = {fn.__name__ for fn in WORKERS}
    out: dict[str, dict[str, float]] = {}
    for sample in profile["samples"]:
        mine = out.setdefault(sample["thread"], {})
        hit = {profile["frames"][i]["function"] for i in sample["stack"]} & names
        for name in hit or {"(other)"}:
            mine[name] = mine.get(name, 0.0) + sample["value"] / 1e9
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="stack-sampler")
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--nonblocking", action="store_true")
    args = parser.parse_args()
    if args.nonblocking:
        from profiling_agent.collectors import pyspy

        pyspy.BLOCKING = False
    for name, functions in THREADS.items():
        BY_THREAD[name] = {fn.__name__: 0.0 for fn in functions}
    threads = [threading.Thread(target=worker, args=(fns,), name=name, daemon=True)
               for name, fns in THREADS.items()]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # steady state
    if args.engine == "stack-sampler":  # its one-time import and start are not the window's
        collectors.collect("cpu", duration_seconds=0.2, sample_rate=args.rate,
                           engine=args.engine)
    before_by_thread = {name: dict(spent) for name, spent in BY_THREAD.items()}
    process_before = time.process_time()
    machine_before = machine_busy_seconds()
    main_before = time.thread_time()
    wall_before = time.perf_counter()
    error = None
    try:
        profile = collectors.collect("cpu", duration_seconds=args.duration,
                                     sample_rate=args.rate, engine=args.engine)
    except collectors.CollectorError as exc:
        profile, error = None, exc.reason
    wall = time.perf_counter() - wall_before
    # the collecting (main) thread's own CPU is the profiler's, and is not in the profile
    on_cpu = (time.process_time() - process_before) - (time.thread_time() - main_before)
    # how many cores the rest of the machine kept busy meanwhile: is it the quiet machine asked for?
    others = (machine_busy_seconds() - machine_before) - (time.process_time() - process_before)
    by_thread = {name: {fn: BY_THREAD[name][fn] - before_by_thread[name][fn] for fn in spent}
                 for name, spent in BY_THREAD.items()}
    spent = dict.fromkeys((fn.__name__ for fn in WORKERS), 0.0)
    for functions in by_thread.values():
        for name, seconds in functions.items():
            spent[name] += seconds
    STOP.set()
    for thread in threads:
        thread.join(5)
    out = {
        "error": error,
        "wallSeconds": wall,
        "otherCores": max(0.0, others) / wall,
        "onCpuSeconds": on_cpu,
        "measured": {name: seconds / on_cpu for name, seconds in spent.items()},
        "measuredSeconds": spent,
        "measuredThreadSeconds": by_thread,
    }
    if profile is not None:
        out.update(
            profiled=profile_shares(profile),
            profiledBySampleCount=profile_shares(profile, "count"),
            sampleCount=profile["sampleCount"],
            durationSeconds=profile["durationSeconds"],
            profileSeconds=sum(s["value"] for s in profile["samples"]) / 1e9,
            profileThreadSeconds=_per_thread(profile),
            notes=profile["notes"],
        )
    if os.environ.get("GT_DUMP") and profile is not None:
        with open(os.environ["GT_DUMP"], "w") as handle:
            json.dump(profile, handle)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
