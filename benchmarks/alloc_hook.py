"""What the alloc-sampler's allocation hook costs an allocation-heavy loop, part by part.

    .venv/bin/python benchmarks/alloc_hook.py [--rounds 7] [--callgrind]

The loop builds and serializes small dicts (json.dumps: tens of allocations and frees per
iteration). Each configuration runs in a process of its own, interleaved with an unhooked
baseline in every round; printed are medians of the ratios, per configuration:

- ``wrapped``: the hook installed, sampling nothing (mean gap 1e12 bytes): the price of
  wrapping CPython's allocators;
- ``sampling``: sampling every 512 KiB on average, no other live sampled block;
- ``sampling + 200 live``: the same with 200 sampled blocks live, so every free is checked
  against the live table (behind its bit filter).

CPU time by default (noisy on a busy machine); ``--callgrind`` counts instructions instead
(valgrind: repeatable whatever else the machine does, one round is enough). Prints, never fails.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
from profiling_agent.collectors import _allochook
mode, iterations = sys.argv[1], int(sys.argv[2])
if not mode.startswith("baseline"):
    mean = 1e12 if mode == "wrapped" else 524288.0
    _allochook.start(mean_bytes=mean, max_frames=128, max_records=100_000, labels_var=None)
# live sampled blocks (also made in the baseline, so that both do the same work): 2 MB each,
# nearly surely sampled; calloc'ed, so never touched
kept = [bytes(2_000_000) for _ in range(200 if mode.endswith("live") else 0)]
started = time.process_time()
for i in range(iterations):
    json.dumps({"a": i, "b": [i, i + 1], "c": str(i)})
print(time.process_time() - started)
"""

CONFIGS = ["wrapped", "sampling", "sampling + 200 live"]


def run(mode: str, iterations: int, callgrind: bool) -> float:
    """The loop's CPU seconds, or with callgrind its instructions (the whole process's, less
    those of the same process run with no iterations: start-up and set-up)."""
    if callgrind:
        return _instructions(mode, iterations) - _instructions(mode, 0)
    return float(_child(mode, iterations, callgrind=False).stdout.strip())


def _instructions(mode: str, iterations: int) -> float:
    # "Collected : N" on stderr
    stderr = _child(mode, iterations, callgrind=True).stderr
    return float(next(line for line in stderr.splitlines() if "Collected" in line).split(":")[-1])


def _child(mode: str, iterations: int, callgrind: bool) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", CHILD, mode, str(iterations)]
    if callgrind:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command]
    return subprocess.run(command, capture_output=True, text=True, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--callgrind", action="store_true")
    args = parser.parse_args()
    if args.callgrind and shutil.which("valgrind") is None:
        sys.exit("--callgrind needs valgrind")
    rounds = 1 if args.callgrind else args.rounds
    iterations = 30_000 if args.callgrind else 300_000
    ratios: dict[str, list[float]] = {config: [] for config in CONFIGS}
    started = time.monotonic()
    for round_ in range(rounds):
        for config in CONFIGS:
            # the live blocks' own cost is in the baseline too: compare like with like
            baseline_mode = "baseline" if config != "sampling + 200 live" else "baseline-live"
            baseline = run(baseline_mode, iterations, args.callgrind)
            ratios[config].append(run(config, iterations, args.callgrind) / baseline)
        print(f"  round {round_ + 1}/{rounds} done ({time.monotonic() - started:.0f} s)")
    unit = "instructions of the loop (callgrind)" if args.callgrind else "CPU time of the loop"
    print(f"\nallocation hook on a json.dumps loop, {unit}, ratio to unhooked, median of {rounds}:")
    for config, values in ratios.items():
        spread = f"  ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else ""
        print(f"  {config:<22} {statistics.median(values):.3f}x{spread}")


if __name__ == "__main__":
    main()
