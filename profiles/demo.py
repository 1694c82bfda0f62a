"""A small, realistic workload with known hot spots, for the demo service and the end-to-end tests.

Each mode makes one function clearly dominant for one profile type; `service` mixes them all,
like a web service: CPU-heavy rendering, JSON/hashing, allocation churn, a contended lock, idle threads.
"""

import hashlib
import json
import threading
import time

_hoard: list[bytearray] = []


def burn_cpu(n: int = 22) -> int:
    """Pure-Python recursion: the cpu hot spot."""
    return n if n < 2 else burn_cpu(n - 1) + burn_cpu(n - 2)


def hash_and_encode(rounds: int = 50) -> str:
    digest = b""
    for i in range(rounds):
        digest = hashlib.sha256(digest + json.dumps({"i": i, "items": list(range(50))}).encode()).digest()
    return digest.hex()


def hoard(chunk_bytes: int = 256 * 1024) -> None:
    """Keeps what it allocates alive: the memory (growth) hot spot. Capped at ~256 MB."""
    if len(_hoard) < 1000:
        _hoard.append(bytearray(chunk_bytes))


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
        plans += [("cpu-burner", burn_cpu, (), 0.0), ("encoder", hash_and_encode, (20,), 0.01)]
    if every or mode == "memory":
        plans += [("hoarder", hoard, (64 * 1024 if every else 256 * 1024,), 0.05)]
    if every or mode == "alloc":
        plans += [("churner", churn, (200,), 0.001)]
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
