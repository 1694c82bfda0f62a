"""Pieces every collector shares: the error type, the frame/sample table, the collection window.

Nothing here imports Django or any third-party package: the collectors must load inside any
Python 3.10+ program, and the optional engines (yappi, memray, py-spy) are imported lazily by
their own modules so a missing one only disables that engine.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from types import CodeType, FrameType

from ..profile_format import (
    FORMAT,
    LABEL_OVERFLOW_VALUE,
    MAX_LABEL_VALUES_PER_KEY,
    MAX_STACK_DEPTH,
    UNIT_BY_TYPE,
)
from ..profile_format import MAX_FRAMES as SERVER_MAX_FRAMES
from ..profile_format import MAX_SAMPLES as SERVER_MAX_SAMPLES
from . import _source

#: Threads whose name starts with this belong to the agent; every collector drops them so the
#: profile shows the host program, not the profiler. The agent runtime names its threads so.
AGENT_THREAD_PREFIX = "profiles-agent"

# The collectors stay well inside the server's limits, folding the excess into marker frames,
# so an upload is never refused for its size and the collector's memory stays bounded.
MAX_FRAMES = SERVER_MAX_FRAMES * 3 // 4
MAX_SAMPLES = SERVER_MAX_SAMPLES * 2 // 5
MAX_DEPTH = MAX_STACK_DEPTH
_KEEP_ROOT = 255  # when a stack is too deep: this many root frames, a marker, the leaf rest

UNITS = UNIT_BY_TYPE


class CollectorError(Exception):
    """Any failure to collect a profile; ``reason`` is meant for a human reading the failed run."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def is_agent_thread(name: str | None) -> bool:
    return bool(name) and name.startswith(AGENT_THREAD_PREFIX)


def agent_thread_name(role: str) -> str:
    return f"{AGENT_THREAD_PREFIX}-{role}"


def thread_names() -> dict[int, str]:
    """``threading`` ident -> name of every live thread (dummy threads included)."""
    return {t.ident: t.name for t in threading.enumerate() if t.ident is not None}


# Files whose frames are the agent's own, not the program's: the lock profiler's wrapper sits on
# the stack of every thread waiting for a lock. Stacks leave them out (the caller is the leaf).
_HIDDEN_FILES: set[str] = set()


def hide_frames_of(filename: str) -> None:
    _HIDDEN_FILES.add(filename)


# Folders whose frames are the agent's (or its engines') own, for the in-process samplers: left
# out of every stack, while the rest of the stack stays (the wrapper's frames sit under the
# host's main thread).
_HIDDEN_FOLDERS: list[str] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep]
_RUNPY = os.path.join(os.path.dirname(os.__file__), "runpy.py")


def hide_folder(folder: str) -> None:
    _HIDDEN_FOLDERS.append(folder.rstrip(os.sep) + os.sep)


def hidden_file(file: str) -> bool:
    """Whether frames of ``file`` are the agent's own (its package, an engine's, runpy)."""
    return file == _RUNPY or any(file.startswith(folder) for folder in _HIDDEN_FOLDERS)


def code_stack(frame: FrameType | None, limit: int = 4 * MAX_DEPTH) -> tuple[CodeType, ...]:
    """Code objects of ``frame`` and its callers, root first, without the agent's own frames.

    Code objects rather than (name, file, line) tuples: they are hashable, cheap to collect in
    a hot path, and ``co_firstlineno`` is exactly the def line the raw format asks for.
    """
    codes = []
    while frame is not None and len(codes) < limit:
        if frame.f_code.co_filename not in _HIDDEN_FILES:
            codes.append(frame.f_code)
        frame = frame.f_back
    codes.reverse()
    return tuple(codes)


class ProfileBuilder:
    """Interns frames and aggregates samples as they arrive.

    Memory grows with the number of distinct (stack, thread) pairs, never with the number of
    samples, and both tables are capped (see MAX_FRAMES / MAX_SAMPLES) with marker frames
    taking what does not fit, so a long window on a program with endless distinct stacks
    cannot exhaust the host's memory or produce an upload the server refuses.
    """

    def __init__(self, profile_type: str, engine: str, sample_rate: float):
        self.profile_type = profile_type
        self.engine = engine
        self.sample_rate = sample_rate
        self.frames: list[dict] = []
        self._frame_index: dict[tuple[str, str, int], int] = {}
        self._code_index: dict[CodeType, int] = {}
        self._samples: dict[tuple[tuple[int, ...], str, tuple], list[int]] = {}
        self.notes: list[str] = []
        self._label_values: dict[str, set[str]] = {}  # key -> distinct values seen (capped)
        self.labels_overflow = 0  # samples that had a label value replaced by the overflow one
        self._overflow_frames = False
        self._overflow_samples = False

    # -- frames -----------------------------------------------------------------------------
    def frame(self, function: str, file: str, line: int) -> int:
        key = (function, file, int(line))
        index = self._frame_index.get(key)
        if index is None:
            if len(self.frames) >= MAX_FRAMES:
                self._overflow_frames = True
                return self.frame_marker("(frames over the limit)")
            index = len(self.frames)
            self.frames.append({"function": key[0], "file": key[1], "line": key[2]})
            self._frame_index[key] = index
        return index

    def frame_marker(self, text: str) -> int:
        key = (text, "", 0)
        index = self._frame_index.get(key)
        if index is None:  # markers bypass the cap: there are only a handful of them
            index = len(self.frames)
            self.frames.append({"function": text, "file": "", "line": 0})
            self._frame_index[key] = index
        return index

    def code_frame(self, code: CodeType) -> int:
        index = self._code_index.get(code)
        if index is None:
            name = getattr(code, "co_qualname", None)  # 3.11+
            if name is None:  # 3.10: the qualified name from the source, as other engines give
                name = _source.shared().resolve(code.co_name, code.co_filename,
                                            code.co_firstlineno)[0]
            index = self.frame(name, code.co_filename, code.co_firstlineno)
            self._code_index[code] = index
        return index

    def code_stack_indices(self, codes: Iterable[CodeType]) -> tuple[int, ...]:
        code_frame = self.code_frame
        return tuple(code_frame(code) for code in codes)

    # -- samples ----------------------------------------------------------------------------
    def add(self, stack: tuple[int, ...], value: int | float, count: int, thread: str,
            labels: tuple = ()) -> None:
        """``labels`` is sorted ((key, value), ...), as profiling_agent.labels keeps them."""
        if labels:
            labels = self._capped(labels, count)
        if not stack:
            stack = (self.frame_marker("(no Python frames)"),)
        elif len(stack) > MAX_DEPTH:
            marker = self.frame_marker("(stack truncated)")
            keep_leaf = MAX_DEPTH - _KEEP_ROOT - 1
            stack = stack[:_KEEP_ROOT] + (marker,) + stack[-keep_leaf:]
        key = (stack, thread, labels)
        entry = self._samples.get(key)
        if entry is None:
            if len(self._samples) >= MAX_SAMPLES:
                self._overflow_samples = True
                key = ((self.frame_marker("(stacks over the limit)"),), thread, labels)
                entry = self._samples.get(key)
            if entry is None:
                entry = self._samples[key] = [0, 0]
        entry[0] += value
        entry[1] += count

    def _capped(self, labels: tuple, count: int) -> tuple:
        """Past MAX_LABEL_VALUES_PER_KEY distinct values of a key, new values become
        LABEL_OVERFLOW_VALUE, so an id used as a label cannot blow up the profile."""
        out = []
        replaced = False
        for key, value in labels:
            seen = self._label_values.setdefault(key, set())
            if value not in seen:
                if len(seen) >= MAX_LABEL_VALUES_PER_KEY:
                    value = LABEL_OVERFLOW_VALUE
                    replaced = True
                else:
                    seen.add(value)
            out.append((key, value))
        if replaced:
            self.labels_overflow += max(int(count), 1)
            return tuple(out)
        return labels

    @property
    def total_count(self) -> int:
        return sum(entry[1] for entry in self._samples.values())

    # -- result -----------------------------------------------------------------------------
    def result(self, *, started_at: float, duration_seconds: float, sample_count: int) -> dict:
        notes = list(self.notes)
        if self._overflow_frames:
            notes.append(f"more than {MAX_FRAMES} distinct frames: the rest are merged into one")
        if self._overflow_samples:
            notes.append(f"more than {MAX_SAMPLES} distinct stacks: the rest are merged into one")
        if self.labels_overflow:
            notes.append(f"more than {MAX_LABEL_VALUES_PER_KEY} distinct values of a label: "
                         f"{self.labels_overflow} samples carry {LABEL_OVERFLOW_VALUE!r} instead")
        samples = []
        for (stack, thread, labels), (value, count) in self._samples.items():
            value = int(round(value))
            if value <= 0 and count <= 0:
                continue
            sample = {"stack": list(stack), "value": value, "count": int(count), "thread": thread}
            if labels:
                sample["labels"] = dict(labels)
            samples.append(sample)
        samples.sort(key=lambda s: -s["value"])
        extra = {"labelsOverflow": self.labels_overflow} if self.labels_overflow else {}
        return {
            "format": FORMAT,
            "profileType": self.profile_type,
            "engine": self.engine,
            "unit": UNITS[self.profile_type],
            "startedAt": round(started_at, 3),
            "durationSeconds": round(max(duration_seconds, 0.0), 3),
            "sampleRate": int(round(self.sample_rate)),  # an integer (Hz) in the raw format
            "sampleCount": int(sample_count),
            "frames": self.frames,
            "samples": samples,
            "notes": notes,
            **extra,
        }


class ThreadCpu:
    """CPU nanoseconds (and run-queue wait: runnable, waiting for a core) per native thread id
    over the window, from ``/proc/self/task/<tid>/schedstat`` (first two fields, ns).

    Read at the start, about once a second (so a thread that exits mid-window keeps its last
    reading) and at the end. A thread first seen after the start was created in the window,
    so its whole CPU time counts.
    """

    def __init__(self) -> None:
        self.base: dict[int, tuple[int, int]] = {}
        self.last: dict[int, tuple[int, int]] = {}
        self.available = False
        self._last_read = 0.0

    @staticmethod
    def _read_all() -> dict[int, tuple[int, int]]:
        out = {}
        try:
            tids = os.listdir("/proc/self/task")
        except OSError:
            return out
        for tid in tids:
            try:
                with open(f"/proc/self/task/{tid}/schedstat", "rb") as handle:
                    fields = handle.read().split()
                out[int(tid)] = (int(fields[0]), int(fields[1]))
            except (OSError, ValueError, IndexError):
                continue
        return out

    def start(self) -> None:
        self.base = self._read_all()
        self.last = dict(self.base)
        self.available = bool(self.base)
        self._last_read = time.perf_counter()

    def update(self, every: float = 1.0) -> None:
        now = time.perf_counter()
        if self.available and now - self._last_read >= every:
            self._last_read = now
            self.last.update(self._read_all())

    def clocks(self, reading: dict[int, tuple[int, int]]) -> dict[int, int]:
        """native id -> CPU ns of ``reading`` (``base`` or ``last``)."""
        return {tid: fields[0] for tid, fields in reading.items()}

    def used_ns(self, tid: int) -> int:
        return max(0, self.last.get(tid, (0, 0))[0] - self.base.get(tid, (0, 0))[0])

    def runqueue_ns(self, tid: int) -> int:
        return max(0, self.last.get(tid, (0, 0))[1] - self.base.get(tid, (0, 0))[1])


class Window:
    """The collection window: wall-clock bounds, early stop and progress reports.

    ``wait()`` returns at once on a ``stop_event``, polls an engine-specific end condition, and
    calls ``progress(fraction)`` about once a second; a
    progress callback that raises is ignored (it belongs to the agent, not the profile).
    """

    def __init__(self, duration_seconds: float, stop_event: threading.Event | None,
                 progress: Callable[[float], object] | None):
        self.duration = duration_seconds
        self.stop_event = stop_event
        self.progress = progress
        self.started_at = time.time()
        self._t0 = time.perf_counter()
        self._last_progress = self._t0

    def start(self, started_at: float | None = None, perf: float | None = None) -> None:
        """(Re)start the window now, or at a moment an engine observed (epoch, perf_counter)."""
        self.started_at = time.time() if started_at is None else started_at
        self._t0 = time.perf_counter() if perf is None else perf
        self._last_progress = self._t0

    @property
    def started_perf(self) -> float:
        return self._t0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    @property
    def stopped(self) -> bool:
        return self.stop_event is not None and self.stop_event.is_set()

    def report(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.progress is None or (not force and now - self._last_progress < 1.0):
            return
        self._last_progress = now
        try:
            self.progress(min(1.0, max(0.0, (now - self._t0) / self.duration)))
        except Exception:  # noqa: BLE001 - the agent's callback must not break collection
            pass

    def wait(self, until: Callable[[], bool] | None = None, poll: float = 0.1,
             wake_at: float | None = None) -> None:
        """Until the window ends, is stopped, ``until()`` holds (polled every ``poll`` s) or
        ``elapsed`` reaches ``wake_at``. Without ``until`` it sleeps until the next of those
        moments or progress report: a collecting thread that woke ten times a second took the
        GIL from the host's threads as often, for nothing."""
        while True:
            elapsed = self.elapsed
            remaining = self.duration - elapsed
            if remaining <= 0 or self.stopped or (until is not None and until()) or (
                    wake_at is not None and elapsed >= wake_at):
                return
            self.report()
            timeout = remaining
            if until is not None:
                timeout = min(timeout, poll)
            if wake_at is not None:
                timeout = min(timeout, wake_at - elapsed)
            if self.progress is not None:
                next_report = 1.0 - (time.perf_counter() - self._last_progress)
                timeout = min(timeout, max(next_report, 0.01))
            if self.stop_event is not None:
                self.stop_event.wait(timeout)
            else:
                time.sleep(timeout)

    def wait_ticking(self, every: float, tick: Callable[[], object]) -> None:
        """Wait for the window's end, calling ``tick`` about every ``every`` seconds meanwhile
        (the first after a random 0.8-1.2 of it: windows started together do not tick together)."""
        due = every * random.uniform(0.8, 1.2)
        while True:
            self.wait(wake_at=due)
            if self.stopped or self.elapsed >= self.duration:
                return
            tick()
            due = self.elapsed + every


def validate_window(duration_seconds: object, sample_rate: object) -> tuple[float, float]:
    try:
        duration = float(duration_seconds)  # type: ignore[arg-type]
        rate = float(sample_rate)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise CollectorError(f"duration_seconds and sample_rate must be numbers: {exc}") from None
    if not math.isfinite(duration) or duration <= 0 or duration > 24 * 3600:
        raise CollectorError(f"duration_seconds must be in (0, 86400], got {duration_seconds!r}")
    if not math.isfinite(rate) or rate <= 0 or rate > 10_000:
        raise CollectorError(f"sample_rate must be in (0, 10000] Hz, got {sample_rate!r}")
    return duration, rate
