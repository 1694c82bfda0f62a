"""A program that knows what it allocates, profiles itself, and prints both as JSON.

Run it under the agent's wrapper (``python -m profiling_agent run -- memory_truth.py``): its
main thread's stacks then hold the wrapper's frames, as a real service's do. The main thread
keeps 2 units of 20 kB per round and a second thread 1 unit (known live proportions 2:1);
two more threads churn allocations and keep nothing: ``small_churn`` objects of 233 bytes
(pymalloc's small-object pools), ``big_churn`` 100 kB buffers. Each function counts the bytes
it allocates and keeps. Two agent threads collect ``memory`` and ``alloc`` at once.

Usage: python -m profiling_agent run -- memory_truth.py [--duration 3] [--engine alloc-sampler]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from itertools import repeat

from profiling_agent import collectors

UNIT = 20_000
SMALL = 200  # sys.getsizeof(bytes(200)) == 233: under pymalloc's 512-byte limit
BIG = 100_000
# sizes measured once: measuring inside a function would allocate there too
UNIT_BYTES = sys.getsizeof(bytes(UNIT))
SMALL_BYTES = sys.getsizeof(bytes(SMALL))
BIG_BYTES = sys.getsizeof(bytearray(BIG))
STOP = threading.Event()
KEPT: list = []
ALLOCATED: dict[str, int] = {"main_leak": 0, "side_leak": 0, "small_churn": 0, "big_churn": 0}
LIVE: dict[str, int] = {"main_leak": 0, "side_leak": 0}
RECORDING = threading.Event()


def _keep(name: str, units: int) -> None:
    for _ in repeat(None, units):
        KEPT.append(bytes(UNIT))
    if RECORDING.is_set():
        size = units * UNIT_BYTES
        ALLOCATED[name] += size
        LIVE[name] += size


def main_leak() -> None:
    _keep("main_leak", 2)


def side_leak() -> None:
    _keep("side_leak", 1)


def small_churn() -> None:
    for _ in repeat(None, 400):
        bytes(SMALL)
    if RECORDING.is_set():
        ALLOCATED["small_churn"] += 400 * SMALL_BYTES


def big_churn() -> None:
    for _ in repeat(None, 2):
        bytearray(BIG)
    if RECORDING.is_set():
        ALLOCATED["big_churn"] += 2 * BIG_BYTES


def loop(function) -> None:
    while not STOP.is_set():
        function()
        time.sleep(0.002)


def totals(profile: dict, names: set[str]) -> dict[str, int]:
    """Each named function's total (samples whose stack contains it)."""
    by_name = dict.fromkeys(names, 0)
    for sample in profile["samples"]:
        hit = {profile["frames"][i]["function"].rsplit(".", 1)[-1] for i in sample["stack"]}
        for name in hit & names:
            by_name[name] += sample["value"]
    return by_name


def shares(profile: dict, names: set[str]) -> dict[str, float]:
    """Share of the named functions' total held by each."""
    by_name = totals(profile, names)
    whole = sum(by_name.values()) or 1
    return {name: value / whole for name, value in by_name.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--engine", default="alloc-sampler")
    args = parser.parse_args()
    results: dict[str, dict] = {}

    def collect(kind: str) -> None:
        results[kind] = collectors.collect(kind, duration_seconds=args.duration,
                                           sample_rate=100, engine=args.engine)

    # the sampler's one-time import and start are not the window's
    collectors.collect("alloc", duration_seconds=0.2, sample_rate=100, engine=args.engine)
    workers = [threading.Thread(target=loop, args=(fn,), daemon=True)
               for fn in (side_leak, small_churn, big_churn)]
    agents = [threading.Thread(target=collect, args=(kind,), name=f"profiles-agent-{kind}")
              for kind in ("memory", "alloc")]
    for thread in workers:
        thread.start()
    time.sleep(0.3)  # steady state
    # counted from the windows' start: the memory profile holds what was allocated since then
    RECORDING.set()
    for thread in agents:
        thread.start()
    while any(agent.is_alive() for agent in agents):
        main_leak()  # the main thread, under the wrapper's frames
        time.sleep(0.002)
    RECORDING.clear()
    STOP.set()
    live_total = sum(LIVE.values())
    allocated_total = sum(ALLOCATED.values())
    out = {
        "measuredLive": {name: value / live_total for name, value in LIVE.items()},
        "profiledLive": shares(results["memory"], set(LIVE)),
        "measuredAllocated": {name: value / allocated_total
                              for name, value in ALLOCATED.items()},
        "profiledAllocated": shares(results["alloc"], set(ALLOCATED)),
        "measuredAllocatedBytes": ALLOCATED,
        "profiledAllocatedBytes": totals(results["alloc"], set(ALLOCATED)),
        "notes": results["memory"]["notes"] + results["alloc"]["notes"],
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
