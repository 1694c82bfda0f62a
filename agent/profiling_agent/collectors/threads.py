"""Block and goroutine profiles from ``sys._current_frames()``, sampled in the calling thread.

Both run in the thread that called ``collect()`` (it has to wait for the window anyway), so no
extra thread is started, and that thread is left out of the profile along with every
``profiles-agent*`` thread.

block: off-CPU wall time per stack. A pure-Python sampler only runs when it holds the GIL, so
*when* it looks is biased (shared/PROFILERS.md); this one therefore does not count its looks.
Each thread's own CPU time is read at every look, and the wall time since the previous look
minus the CPU time the thread used in between is the time it spent off the CPU; that amount is
charged to the stack the thread shows now. Per thread the charged amounts add up to its exact
off-CPU time over the window, whatever the sampler's timing; only the split across stacks is
sampled. A thread that slept through the interval is charged all of it (as the spec's "CPU did
not advance" rule); a thread that slept 9 ms of 10 is charged 9 ms instead of nothing, which the
all-or-nothing rule would give for a loop of short sleeps.

Time spent runnable but waiting for a core is not blocking: on a busy 2-core machine a pure
busy loop showed 60 % "off-CPU" from that alone. On Linux the run-queue wait comes from the same
schedstat read as the CPU time and is subtracted. Waiting for the GIL is a real wait (a futex)
and stays in, on the Python line where the thread waits.

goroutine: every live thread, and every pending asyncio task of any loop (coroutine chain
from the task's outermost coroutine to the innermost awaited one), once per snapshot.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import CodeType

from ..labels import labels_of_task, labels_of_thread
from ._common import (
    ProfileBuilder,
    Window,
    code_stack,
    is_agent_thread,
    thread_names,
)

ENGINE = "thread-sampler"
_MAX_RATE = 1000.0  # Hz; a Python sampler cannot keep up beyond this
_ASYNCIO_THREAD = "asyncio tasks"


class _ThreadClock:
    """CPU time and run-queue wait of one thread.

    On Linux ``/proc/self/task/<tid>/schedstat`` gives both in one read (ns on a CPU, ns
    runnable but waiting for a core); the file stays open for the window and ``pread`` re-reads
    it (~5 us). Elsewhere, or for a thread without a native id, the thread's CPU clock
    (``pthread_getcpuclockid``) and no run-queue figure.
    """

    __slots__ = ("fd", "clock")

    def __init__(self, ident: int, native_id: int | None) -> None:
        self.fd: int | None = None
        self.clock: int | None = None
        if native_id is not None:
            try:
                self.fd = os.open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY)
            except OSError:
                self.fd = None
        if self.fd is None:
            try:
                self.clock = time.pthread_getcpuclockid(ident)
            except (OSError, ValueError, OverflowError, AttributeError):
                self.clock = None

    def read(self) -> tuple[int, int] | None:
        """(CPU ns, run-queue wait ns), or None when the thread is gone."""
        if self.fd is not None:
            try:
                fields = os.pread(self.fd, 128, 0).split()
                return int(fields[0]), int(fields[1])
            except (OSError, ValueError, IndexError):
                return None
        if self.clock is not None:
            try:
                return time.clock_gettime_ns(self.clock), 0
            except OSError:  # the thread has just exited
                return None
        return None

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def _native_ids() -> dict[int, int]:
    return {t.ident: t.native_id for t in threading.enumerate()
            if t.ident is not None and getattr(t, "native_id", None) is not None}


def collect_block(*, profile_type: str, duration: float, rate: float, window: Window) -> dict:
    builder = ProfileBuilder(profile_type, ENGINE, rate)
    interval = 1.0 / min(rate, _MAX_RATE)
    own = threading.get_ident()
    perf_ns = time.perf_counter_ns
    names: dict[int, str] = {}
    natives: dict[int, int] = {}
    clocks: dict[int, _ThreadClock] = {}
    last: dict[int, tuple[int, int, int]] = {}  # ident -> (wall, cpu, run-queue) ns at last look
    cached: dict[int, tuple[object, tuple[int, ...]]] = {}  # ident -> (leaf frame, stack)
    looks = 0
    window.start()
    next_look = time.perf_counter()
    try:
        while True:
            frames = sys._current_frames()
            now = perf_ns()
            if any(ident not in names for ident in frames):
                names = thread_names()
                natives = _native_ids()
            seen = set()
            for ident, frame in frames.items():
                if ident == own:
                    continue
                name = names.get(ident) or f"thread-{ident}"
                if is_agent_thread(name):
                    continue
                clock = clocks.get(ident)
                if clock is None:
                    clock = clocks[ident] = _ThreadClock(ident, natives.get(ident))
                reading = clock.read()
                if reading is None:
                    continue
                seen.add(ident)
                previous = last.get(ident)
                last[ident] = (now, reading[0], reading[1])
                if previous is None:
                    continue
                looks += 1
                off_cpu = (now - previous[0]) - (reading[0] - previous[1]) \
                    - (reading[1] - previous[2])
                if off_cpu <= 0:
                    continue
                hit = cached.get(ident)
                if hit is not None and hit[0] is frame:
                    stack = hit[1]
                else:
                    stack = builder.code_stack_indices(code_stack(frame))
                    cached[ident] = (frame, stack)
                builder.add(stack, off_cpu, 1, name, labels_of_thread(ident))
            del frames, frame
            for gone in [ident for ident in clocks if ident not in seen]:
                last.pop(gone, None)
                cached.pop(gone, None)
                clocks.pop(gone).close()
            if window.stopped or window.elapsed >= window.duration:
                break
            window.report()
            next_look += interval
            delay = next_look - time.perf_counter()
            if delay < 0:  # fell behind (GIL busy): skip the missed looks rather than burst
                next_look = time.perf_counter()
                delay = 0.0
            delay = min(delay, window.duration - window.elapsed)
            if delay > 0:
                if window.stop_event is not None:
                    window.stop_event.wait(delay)
                else:
                    time.sleep(delay)
    finally:
        for clock in clocks.values():
            clock.close()
        cached.clear()
    builder.notes.append(
        "off-CPU wall time per stack: between two looks, each thread's wall time minus its CPU "
        "time and minus its time runnable but waiting for a core is charged to the stack it "
        "shows; includes sleeping, lock, I/O and GIL waits")
    return builder.result(started_at=window.started_at, duration_seconds=window.elapsed,
                          sample_count=looks)


def _task_codes(task) -> tuple[CodeType, ...]:
    """Outermost coroutine first, following ``cr_await``/``gi_yieldfrom`` to the innermost."""
    codes = []
    coro = task.get_coro()
    while coro is not None and len(codes) < 512:
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        if code is None:
            break
        codes.append(code)
        coro = getattr(coro, "cr_await", None) if hasattr(coro, "cr_await") else \
            getattr(coro, "gi_yieldfrom", None)
    return tuple(codes)


def pending_tasks() -> list:
    """Pending tasks of every event loop, without importing asyncio into a program that does
    not use it. Reads asyncio's private task registries (3.11: ``_all_tasks``; 3.12+:
    ``_scheduled_tasks`` and ``_eager_tasks``); anything unexpected yields no tasks."""
    tasks_module = sys.modules.get("asyncio.tasks")
    if tasks_module is None:
        return []
    found: dict[int, object] = {}
    for attr in ("_all_tasks", "_scheduled_tasks", "_eager_tasks"):
        registry = getattr(tasks_module, attr, None)
        if registry is None:
            continue
        for _ in range(100):  # another thread may change the set while we copy it
            try:
                items = list(registry)
                break
            except RuntimeError:
                continue
        else:
            items = []
        for task in items:
            try:
                if not task.done():
                    found[id(task)] = task
            except Exception:  # noqa: BLE001 - a foreign task-like object
                continue
    return list(found.values())


def collect_goroutine(*, profile_type: str, duration: float, rate: float,
                      window: Window) -> dict:
    builder = ProfileBuilder(profile_type, ENGINE, rate)
    interval = max(1.0, 1.0 / rate)  # snapshots at min(sample_rate, 1 Hz)
    own = threading.get_ident()
    seen = 0
    snapshots = 0
    tasks_seen = 0
    window.start()
    next_snapshot = 0.0
    while True:
        names = thread_names()
        frames = sys._current_frames()
        for ident, frame in frames.items():
            name = names.get(ident) or f"thread-{ident}"
            if ident == own or is_agent_thread(name):
                continue
            builder.add(builder.code_stack_indices(code_stack(frame)), 1, 1, name,
                        labels_of_thread(ident))
            seen += 1
        del frames
        try:
            tasks = pending_tasks()
        except Exception:  # noqa: BLE001 - asyncio introspection is best effort
            tasks = []
        for task in tasks:
            try:
                codes = _task_codes(task)
                coro = task.get_coro()
                if getattr(coro, "cr_running", False):
                    continue  # running right now: already in its thread's stack
            except Exception:  # noqa: BLE001
                continue
            if codes:
                builder.add(builder.code_stack_indices(codes), 1, 1, _ASYNCIO_THREAD,
                            labels_of_task(task))
                seen += 1
                tasks_seen += 1
        del tasks
        snapshots += 1
        next_snapshot += interval
        if window.stopped:
            break
        if next_snapshot >= window.duration:
            window.wait()  # the run lasts its duration even when no snapshot is left to take
            break
        window.wait(wake_at=next_snapshot)
        if window.stopped or window.elapsed >= window.duration:
            break
    window.report()
    builder.notes.append(
        f"{snapshots} snapshot(s) of every live thread"
        + (f" and pending asyncio task ({tasks_seen} task observations)" if tasks_seen else "")
        + "; value = number of (snapshot, thread) observations")
    return builder.result(started_at=window.started_at,
                          duration_seconds=window.elapsed,
                          sample_count=seen)
