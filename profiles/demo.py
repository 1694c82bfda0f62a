"""A small, realistic workload with known hot spots, for the demo service and the end-to-end tests.

Each mode makes one function clearly dominant for one profile type; `service` mixes them all,
like a web service: CPU-heavy rendering, JSON/hashing, allocation churn, a contended lock, idle threads.
Every loop pauses between calls so that the demo leaves most of a core free (the machine it runs
on also runs the platform), and the memory hot spot leaks at a steady rate forever while its
live size stays bounded: every memory profile, at any time, shows it.
"""

import hashlib
import json
import threading
import time
from collections import deque

# The leak: a ring of chunks, the oldest dropped once the ring holds this much. At the demo's
# rates (1.25 MB/s in `service`, 5 MB/s in `memory`) a chunk lives 25-100 s.
HOARD_LIMIT_BYTES = 128 * 1024 * 1024
_hoard: deque[bytearray] = deque()
_hoard_bytes = 0
_hoard_lock = threading.Lock()


def burn_cpu(n: int = 22) -> int:
    """Pure-Python recursion: the cpu hot spot."""
    return n if n < 2 else burn_cpu(n - 1) + burn_cpu(n - 2)


def hash_and_encode(rounds: int = 50) -> str:
    digest = b""
    for i in range(rounds):
        digest = hashlib.sha256(digest + json.dumps({"i": i, "items": list(range(50))}).encode()).digest()
    return digest.hex()


def hoard(chunk_bytes: int = 256 * 1024) -> None:
    """Keeps what it allocates alive: the memory (growth) hot spot, bounded by HOARD_LIMIT_BYTES."""
    global _hoard_bytes
    chunk = bytearray(chunk_bytes)
    with _hoard_lock:
        _hoard.append(chunk)
        _hoard_bytes += chunk_bytes
        while _hoard_bytes > HOARD_LIMIT_BYTES:
            _hoard_bytes -= len(_hoard.popleft())


def churn(rounds: int = 200) -> int:
    """Allocates and drops many objects: the alloc hot spot."""
    total = 0
    for _ in range(rounds):
        block = []
        for _ in range(20):
            block.append(bytes(1024))
        total += len(block)
    return total


def contend(lock: threading.Lock, hold_seconds: float = 0.005) -> None:
    """Waits for a lock other threads hold: the mutex hot spot."""
    with lock:
        time.sleep(hold_seconds)


def nap(seconds: float = 0.05) -> None:
    """Off-CPU waiting: the block hot spot."""
    time.sleep(seconds)


def park(stop: threading.Event) -> None:
    """A thread that just exists: goroutine profiles count these."""
    stop.wait()


def _loop(stop: threading.Event, fn, *args, pause: float = 0.0) -> None:
    while not stop.is_set():
        fn(*args)
        if pause:
            time.sleep(pause)


MODES = ("cpu", "memory", "alloc", "mutex", "block", "goroutine", "service")
PARKED_THREADS = 7


def run(mode: str, stop: threading.Event) -> list[threading.Thread]:
    """Start the workload of `mode` in daemon threads; they run until `stop` is set."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    every = mode == "service"
    # (thread name, function, its arguments, pause between calls)
    plans: list[tuple[str, object, tuple, float]] = []
    if every or mode == "cpu":
        # bursts of ~0.1 s, then a pause: a sampler charges the CPU a thread used since its
        # previous sample to where it is now, so bursts much shorter than a sample interval
        # would show up in the pause (`_loop`) instead of in burn_cpu
        plans += [("cpu-burner", burn_cpu, (30,), 0.2), ("encoder", hash_and_encode, (20,), 0.05)]
    if every or mode == "memory":
        plans += [("hoarder", hoard, (64 * 1024 if every else 256 * 1024,), 0.05)]
    if every or mode == "alloc":
        plans += [("churner", churn, (100,), 0.02)]
    if every or mode == "mutex":
        # Created here, after the agent started: the lock profiler sees only locks made after it.
        lock = threading.Lock()
        plans += [(f"contender-{i}", contend, (lock, 0.005), 0.0) for i in range(4)]
    if every or mode == "block":
        plans += [(f"napper-{i}", nap, (0.05,), 0.0) for i in range(3)]
    threads = [
        threading.Thread(target=_loop, args=(stop, fn, *args), kwargs={"pause": pause}, name=name, daemon=True)
        for name, fn, args, pause in plans
    ]
    if every or mode == "goroutine":
        threads += [
            threading.Thread(target=park, args=(stop,), name=f"parked-{i}", daemon=True)
            for i in range(PARKED_THREADS)
        ]
    for thread in threads:
        thread.start()
    return threads
