"""``alloc-sampler`` (memory, alloc): sampled allocations, from the agent's own allocation hook.

``_allochook.c`` wraps CPython's object and memory allocators (``PyMem_SetAllocator``: every
object and buffer, pymalloc's small objects too) and samples allocations at random exponential
byte intervals (mean ``PROFILING_ALLOC_SAMPLE_BYTES``, default 512 KiB), keeping, for sampled
ones only, the thread's Python stack and the labels its code ran under (read in the allocating
thread, so an asyncio task's are its own); values are scaled so totals are unbiased.
alloc = every sampled allocation in the window (bytes, count); memory = sampled allocations
still live at the window's end (tracked since the hook started).

Why a hook of our own rather than ddtrace's (which this engine used before): ddtrace's keeps no
per-thread tag, so memory and alloc samples could carry no labels (its timeline mode, the one
way to join them, emitted every sample apart: 9,319 for 28 in a 3 s test, 6 % of the window to
decode); and memory needs no 44 MB APM install now. It is a C extension built at install, and
optional: without a compiler the agent installs without it, and memory and alloc runs must ask
for memray.

The hook runs only while a memory or alloc run collects (plus a short grace between
back-to-back windows); concurrent runs share it: each snapshot serves every run collecting.
"""

from __future__ import annotations

import _thread
import atexit
import os
import threading

from .. import labels as labels_api
from ..profile_format import DEFAULT_ALLOC_SAMPLE_BYTES
from . import _overhead
from ._common import (
    ProfileBuilder,
    Window,
    agent_thread_name,
    hidden_file,
    is_agent_thread,
    thread_names,
)

try:
    from . import _allochook
except ImportError:  # built at install where a C compiler was at hand
    _allochook = None

ENGINE = "alloc-sampler"
SNAPSHOT_EVERY_SECONDS = 5.0  # bounds what the hook holds between two snapshots
IDLE_GRACE_SECONDS = 5.0  # back-to-back windows leave and join within moments
MAX_FRAMES = 128
MAX_RECORDS = 100_000  # sampled allocations held at once (live, or not yet snapshotted), each


def available() -> bool:
    return _allochook is not None


def alloc_sample_bytes() -> int:
    raw = os.environ.get("PROFILING_ALLOC_SAMPLE_BYTES", "")
    try:
        value = int(raw)
    except ValueError:
        return DEFAULT_ALLOC_SAMPLE_BYTES
    return value if value > 0 else DEFAULT_ALLOC_SAMPLE_BYTES


class _Run:
    """What one collect() call gathers from the shared hook's snapshots."""

    def __init__(self, profile_type: str):
        self.profile_type = profile_type
        # (codes root first, thread ident, labels) -> [bytes, count]
        self.totals: dict[tuple, list[float]] = {}
        self.dropped = 0

    def absorb(self, allocations: list | None, live: list | None, dropped: int) -> None:
        """``live`` comes only with the snapshot a memory run ends with (see _Session.leave),
        ``allocations`` whenever an alloc run is collecting."""
        self.dropped += dropped
        if self.profile_type == "memory":
            if live is None:
                return
            self.totals = {}  # live at the window's end
            records = live
        else:
            records = allocations
        totals = self.totals
        for codes, size, count, thread, labels in records:
            key = (codes, thread, labels or ())
            entry = totals.get(key)
            if entry is None:
                totals[key] = [size, count]
            else:
                entry[0] += size
                entry[1] += count


class _Session:
    """The process's one hook: started by the first run, stopped once no run needed it for
    IDLE_GRACE_SECONDS."""

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()  # raw: never a lock-profiler wrapper
        self.runs: set[_Run] = set()
        self.sampling = False
        self.idle_timer: threading.Timer | None = None
        self.names: dict[int, str] = {}  # thread ident -> name, as last seen

    def join(self, run: _Run) -> None:
        with self.lock:
            self._snapshot(want_live=False)  # what was sampled before: the runs already here
            self.runs.add(run)
            if self.idle_timer is not None:
                self.idle_timer.cancel()
                self.idle_timer = None
            if not self.sampling:
                _allochook.start(mean_bytes=float(alloc_sample_bytes()), max_frames=MAX_FRAMES,
                                 max_records=MAX_RECORDS, labels_var=labels_api.context_var())
                self.sampling = True

    def leave(self, run: _Run) -> None:
        with self.lock:
            # the live blocks (possibly every record held) are listed only for a memory run's end
            self._snapshot(want_live=run.profile_type == "memory")
            self.runs.discard(run)
            if not self.runs and self.idle_timer is None:
                self.idle_timer = threading.Timer(IDLE_GRACE_SECONDS, self._stop_if_idle)
                self.idle_timer.name = agent_thread_name("alloc-idle")
                self.idle_timer.daemon = True
                self.idle_timer.start()

    def tick(self) -> None:
        with self.lock:
            self._snapshot(want_live=False)

    def _snapshot(self, *, want_live: bool) -> None:
        if not self.sampling:
            return
        want_allocations = any(run.profile_type == "alloc" for run in self.runs)
        allocations, live, dropped, sampling_ns = _allochook.snapshot(want_allocations, want_live)
        _overhead.add_cpu_in_host_threads(sampling_ns)
        self.names.update(thread_names())
        for run in self.runs:
            run.absorb(allocations, live, dropped)

    def _stop_if_idle(self) -> None:
        with self.lock:
            self.idle_timer = None
            if not self.runs:
                self._stop()

    def _stop(self) -> None:
        if self.sampling:
            self.sampling = False
            _allochook.stop()

    def shutdown(self) -> None:
        with self.lock:
            self.runs = set()
            self._stop()

    def reset_after_fork(self) -> None:
        """A forked child has none of its parent's runs: the hook it inherited stops."""
        self.lock = _thread.allocate_lock()
        self.runs = set()
        self.idle_timer = None
        self._stop()


_session = _Session()
if _allochook is not None:
    os.register_at_fork(after_in_child=_session.reset_after_fork)
    atexit.register(_session.shutdown)


def collect(*, profile_type: str, duration: float, rate: float, window: Window) -> dict:
    run = _Run(profile_type)
    _session.join(run)
    window.start()
    try:
        window.wait_ticking(SNAPSHOT_EVERY_SECONDS, _session.tick)
    finally:
        elapsed = window.elapsed
        _session.leave(run)

    builder = ProfileBuilder(profile_type, ENGINE, rate)
    names = {**_session.names, **thread_names()}
    # the agent's threads and the one that called collect() (it only waits) are left out
    agent_idents = {ident for ident, name in names.items() if is_agent_thread(name)}
    agent_idents.add(threading.get_ident())
    hidden: dict = {}  # code -> whether its file is the agent's own
    count_total = value_total = 0
    for (codes, thread, labels), (size, count) in run.totals.items():
        if thread in agent_idents:
            continue
        kept = []
        for code in codes:
            is_hidden = hidden.get(code)
            if is_hidden is None:
                is_hidden = hidden[code] = hidden_file(code.co_filename)
            if not is_hidden:
                kept.append(code)
        if not kept:
            continue  # all the agent's own frames: its work, not the host's
        value, samples = round(size), max(1, round(count))
        builder.add(builder.code_stack_indices(kept), value, samples,
                    names.get(thread, f"thread-{thread}"), labels)
        count_total += samples
        value_total += value
    builder.notes.append(f"allocations sampled every {alloc_sample_bytes()} bytes on average "
                         "(random exponential intervals), values scaled to unbiased totals; "
                         "objects of every size, every thread")
    if profile_type == "memory":
        builder.notes.append(f"sampled allocations still live at the window's end: "
                             f"~{value_total} bytes (estimate of the live heap that the sampler "
                             "tracked since it started)")
    if run.dropped:
        builder.notes.append(f"{run.dropped} sampled allocations were left out: the hook holds "
                             f"at most {MAX_RECORDS} at once")
    return builder.result(started_at=window.started_at, duration_seconds=elapsed,
                          sample_count=count_total)

