"""memory and alloc profiles with memray.

A ``memray.Tracker`` writes every allocation and free of the window to a temporary file
(overwritten, deleted afterwards); after the tracker exits the file is read back:

* memory: ``get_leaked_allocation_records(merge_threads=True)`` -- allocations made in the
  window and still live at its end, per stack. It is the heap's *growth* over the window, not
  the whole heap: memray cannot see what was allocated before its tracker started.
* alloc: every allocation record of ``get_allocation_records()`` (frees skipped), summed into
  bytes and count per stack as the file is streamed, so memory follows distinct stacks.

Options, measured (benchmarks/agent_overhead.py --design, 5 interleaved rounds, 2 cores):

==========================================  ==========  =====================================
memray configuration                        CPU ratio   note
==========================================  ==========  =====================================
default (chosen)                            1.9-2.0x    file read back in 0.1-0.2 s of CPU
``trace_python_allocators=True``            4.5x        +7.7 s of CPU to read its file back
aggregated file format                      2.2x        no ``get_allocation_records()``
==========================================  ==========  =====================================

Where the default's cost goes, per part of that workload run alone: call-heavy pure Python
(recursive templating, fib) 5.3x -- memray's per-call frame tracking --, allocation churn
1.4x, json/re/sha256 and lock traffic ~1.0x. So the budget of 1.5x holds for C-heavy or
allocation-heavy code and not for call-heavy code; nothing in memray's options changes the
per-call part.

The price of the default is that objects of up to 512 bytes come from pymalloc arenas
(1 MiB in 3.11): memray sees an arena when pymalloc maps it and charges the whole arena to
the stack that happened to need it; churn of small objects that reuses freed slots maps no
arena and is invisible. Larger objects are exact. The profile's notes say so. The aggregated
format was not cheaper and cannot replay individual allocations, which alloc needs.

memray walks the stacks of threads already running when its tracker starts, so their
stacks are whole. It reports ``co_name`` and the current line; the source file tells the
qualified name and def line (``_source.SourceResolver``), so a function is the same frame
here as in py-spy's profiles.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from . import _source, _tempfiles
from ._common import CollectorError, ProfileBuilder, Window

ENGINE = "memray"
_DEALLOCATORS = {1, 5, 15}  # AllocatorType PYMALLOC_FREE, FREE, MUNMAP
_AGENT_DIR = str(Path(__file__).resolve().parent.parent)  # agent/profiling_agent: our own frames
_ALL_THREADS = "all threads"
_MAX_STACK = 1024

#: See the module docstring: exact small-object attribution costs too much to be the default.
TRACE_PYTHON_ALLOCATORS = False
#: memray's aggregated file format (memory profiles only; alloc needs every record).
AGGREGATED = False
#: memray writes a record per allocation: a window ends early once its capture file holds this
#: much (PROFILING_MEMRAY_MAX_CAPTURE_BYTES), so a busy host's disk never fills.
DEFAULT_MAX_CAPTURE_BYTES = 1 << 30


def max_capture_bytes() -> int:
    try:
        value = int(os.environ.get("PROFILING_MEMRAY_MAX_CAPTURE_BYTES", ""))
    except ValueError:
        return DEFAULT_MAX_CAPTURE_BYTES
    return value if value > 0 else DEFAULT_MAX_CAPTURE_BYTES


def _capture_bytes(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# The tracker of the window in progress. A forked child inherits it half alive: memray's own
# fork hook stops its native side in the child, but its Python side keeps threading.Thread
# patched and the profile function set, so every later Tracker in the child fails an assertion.
_active_trackers: list = []
_inherited_trackers: list = []


def _note_inherited_tracker() -> None:
    # only noted: finishing it here could run before memray's own fork hook, while the native
    # tracker still looks alive, and destroying that joins a thread the child does not have
    _inherited_trackers.extend(_active_trackers)
    _active_trackers.clear()


os.register_at_fork(after_in_child=_note_inherited_tracker)


def _end_inherited_trackers() -> None:
    """In a forked child, before its first window: finish the parent's tracker (the parent's
    thread that would have is not in the child)."""
    while _inherited_trackers:
        tracker = _inherited_trackers.pop()
        try:
            import memray._memray as native

            native.tracker_creation_lock = threading.Lock()  # the parent's may have been held
            tracker.__exit__(None, None, None)  # its native side is already gone in the child
        except Exception:  # noqa: BLE001 - the child's window then reports memray's error
            pass


def collect(*, profile_type: str, duration: float, rate: float, window: Window) -> dict:
    try:
        import memray
    except ImportError as exc:
        raise CollectorError(f"memray is not installed here ({exc}); pip install memray") \
            from None
    _end_inherited_trackers()
    workdir = _tempfiles.private_dir("memray")
    path = os.path.join(workdir, "capture.bin")
    try:
        try:
            tracker = memray.Tracker(
                destination=memray.FileDestination(path, overwrite=True),
                native_traces=False,
                trace_python_allocators=TRACE_PYTHON_ALLOCATORS,
                follow_fork=False,
                memory_interval_ms=1000,
                **({"file_format": memray.FileFormat.AGGREGATED_ALLOCATIONS}
                   if AGGREGATED and profile_type == "memory" else {}),
            )
            tracker.__enter__()
        except Exception as exc:  # noqa: BLE001 - e.g. another Tracker active in the host
            raise CollectorError(f"memray could not start tracking: {exc!r}") from None
        _active_trackers.append(tracker)
        cap = max_capture_bytes()
        capped = False

        def over_cap() -> bool:
            nonlocal capped
            capped = _capture_bytes(path) >= cap  # the file shrinks when memray closes it
            return capped

        try:
            window.start()
            window.wait(until=over_cap, poll=0.25)
        finally:
            elapsed = window.elapsed
            _active_trackers.remove(tracker)
            tracker.__exit__(None, None, None)
        reader = memray.FileReader(path, report_progress=False)
        builder = ProfileBuilder(profile_type, ENGINE, rate)
        if profile_type == "memory":
            records = _aggregate(reader.get_leaked_allocation_records(merge_threads=True),
                                 builder, skip_frees=False)
            builder.notes.append(
                "memory = bytes allocated during the window and still live at its end (heap "
                "growth, leaks), not the whole heap: memray sees only allocations made after "
                "its tracker started")
        else:
            records = _aggregate(reader.get_allocation_records(), builder, skip_frees=True)
            builder.notes.append("alloc = all bytes (and allocations) made during the window")
        if capped:
            builder.notes.append(
                f"the window ended after {elapsed:.1f} s of {window.duration:g}: memray's capture "
                f"file reached its cap of {cap} bytes (PROFILING_MEMRAY_MAX_CAPTURE_BYTES)")
        builder.notes.append(
            "objects of up to 512 bytes are allocated from pymalloc arenas: memray sees each "
            "arena when it is mapped and charges it whole to the stack that needed it, so "
            "small-object churn that reuses freed memory is not visible; larger objects are "
            "exact (trace_python_allocators would be exact but was measured ~2x slower again)")
        return builder.result(started_at=window.started_at, duration_seconds=elapsed,
                              sample_count=records)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _aggregate(records, builder: ProfileBuilder, *, skip_frees: bool) -> int:
    """Sum size/count per stack; returns the number of allocations counted."""
    resolver = _source.shared()
    stacks: dict[int, tuple[int, ...] | None] = {}  # memray stack id -> our stack (None: ours)
    totals: dict[tuple[int, ...], list[int]] = {}
    counted = 0
    for record in records:
        if skip_frees and record.allocator in _DEALLOCATORS:
            continue
        stack_id = record.stack_id
        if stack_id in stacks:
            stack = stacks[stack_id]
        else:
            stack = stacks[stack_id] = _stack(record, builder, resolver)
        if stack is None:
            continue
        entry = totals.get(stack)
        if entry is None:
            entry = totals[stack] = [0, 0]
        entry[0] += record.size
        entry[1] += record.n_allocations
        counted += record.n_allocations
    for stack, (size, count) in totals.items():
        builder.add(stack, size, count, _ALL_THREADS)
    return counted


def _stack(record, builder: ProfileBuilder, resolver: _source.SourceResolver) -> tuple[int, ...] | None:
    try:
        trace = record.stack_trace(max_stacks=_MAX_STACK)
    except (NotImplementedError, ValueError, RuntimeError):
        trace = []
    if any(filename.startswith(_AGENT_DIR) for _, filename, _ in trace):
        return None  # the agent's own allocations (the collecting thread, the runtime)
    if not trace:
        return (builder.frame_marker("(no Python stack)"),)
    stack = []
    for function, filename, line in reversed(trace):  # memray gives the leaf first
        name, first = resolver.resolve(function, filename, line)
        stack.append(builder.frame(name, filename, first))
    return tuple(stack)
