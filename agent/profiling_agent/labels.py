"""Labels on samples: ``with profiling_labels(customer="acme"):`` or ``@profiling_labels(...)``.

The labels live in a ContextVar, so a block inside an asyncio task or a thread stays on it,
nested blocks merge (inner values win) and leaving a block restores the outer labels.

Samplers run in their own thread and cannot read another thread's ContextVar, so entering
and leaving a block also writes a frozen copy into ``_by_thread`` (thread ident -> labels),
which a sampler reads without a lock (one dict read under the GIL). That copy is the labels
of the block a thread entered last: with asyncio, while several tasks take turns on one
thread, it is the labels of whichever task last entered or left a block, not necessarily the
task that runs at sample time. So inside an asyncio task the labels are also kept per task
(``_by_task``, weak keys) and the goroutine sampler, which samples each pending task, reads
them there (``labels_of_task``): a task's own Context is not readable before Python 3.12.

A native sampler (ddtrace's, collectors/ddprof.py) cannot read ``_by_thread`` while it samples:
while it runs it registers a ``sampler_link`` that every publish calls in the publishing thread,
so the sampler tags that thread's samples from then on.

A hook that runs in the profiled thread itself reads the ContextVar, which inside asyncio is
the running task's: yappi's tag callback (``running_labels``), and the allocation hook of the
alloc-sampler, from C (``context_var``).

A sampler gives each sample the CPU its thread used since the previous one, so the last
moments of a label block land on the next sample, after the block: per block, about half a
sample interval moves to whatever runs next (20 ms Celery tasks lost 38 % of their CPU that way
at 100 Hz on a busy machine). While a ``LabelCpu`` meter runs, every publish also reads the
publishing thread's CPU clock, so the meter knows each (thread, label set)'s CPU exactly and
the cpu engine sets its samples' totals to it.
"""

from __future__ import annotations

import _thread
import contextvars
import functools
import inspect
import sys
import threading
import time
import weakref
from collections.abc import Callable

from .profile_format import LABEL_THREAD, MAX_LABEL_CHARS, MAX_LABEL_KEYS

Labels = tuple  # sorted ((key, value), ...): hashable, so it can be part of an aggregation key

_current: contextvars.ContextVar[Labels] = contextvars.ContextVar("profiling_labels", default=())
_by_thread: dict[int, Labels] = {}
_by_task: weakref.WeakKeyDictionary[object, Labels] = weakref.WeakKeyDictionary()
_sampler_link: Callable[[Labels], None] | None = None  # see the module docstring
_meters: tuple[LabelCpu, ...] = ()  # running LabelCpu meters (a tuple: replaced, never mutated)
_meters_lock = _thread.allocate_lock()  # raw: never a lock-profiler wrapper


def _validated(labels: dict) -> dict[str, str]:
    for key, value in labels.items():
        if key == LABEL_THREAD:  # the platform refuses an upload whose labels hold it
            raise ValueError(f"label {key!r} is every sample's own thread name: choose another key")
        if not isinstance(value, str):
            raise TypeError(f"label {key!r}: the value must be a string, not {type(value).__name__}")
        if not key or len(key) > MAX_LABEL_CHARS or len(value) > MAX_LABEL_CHARS:
            raise ValueError(f"label {key!r}: keys (non-empty) and values take at most "
                             f"{MAX_LABEL_CHARS} characters")
    return labels


def _merged(outer: Labels, inner: dict[str, str]) -> Labels:
    merged = dict(outer)
    merged.update(inner)
    if len(merged) > MAX_LABEL_KEYS:
        raise ValueError(f"at most {MAX_LABEL_KEYS} labels at once, got {sorted(merged)}")
    return tuple(sorted(merged.items()))


class profiling_labels:  # noqa: N801 - used like a function: with profiling_labels(...)
    """Context manager and decorator that adds labels to the samples taken inside it."""

    def __init__(self, **labels: str) -> None:
        self._labels = _validated(labels)
        self._tokens: list[contextvars.Token] = []  # one per (re-entrant) use

    def __enter__(self) -> profiling_labels:
        labels = _merged(_current.get(), self._labels)
        self._tokens.append(_current.set(labels))
        _publish(labels)
        return self

    def __exit__(self, *exc) -> None:
        _current.reset(self._tokens.pop())
        _publish(_current.get())

    def __call__(self, function):
        if inspect.iscoroutinefunction(function):  # the block must span the awaits
            @functools.wraps(function)
            async def async_wrapper(*args, **kwargs):
                with profiling_labels(**self._labels):
                    return await function(*args, **kwargs)
            return async_wrapper

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with profiling_labels(**self._labels):  # a fresh one: safe across threads
                return function(*args, **kwargs)
        return wrapper


def set_labels(**labels: str) -> contextvars.Token:
    """Merge labels into the current context until ``reset_labels(token)`` (for hooks that
    start and end in two calls, such as request or task signals)."""
    labels_now = _merged(_current.get(), _validated(labels))
    token = _current.set(labels_now)
    _publish(labels_now)
    return token


def reset_labels(token: contextvars.Token) -> None:
    _current.reset(token)
    _publish(_current.get())


_used = False  # any labels seen in this process: engines without labels then say so


def labels_used() -> bool:
    return _used


def _publish(labels: Labels) -> None:
    """Make the labels visible to samplers: for this thread and, in asyncio, this task."""
    global _used
    if labels:
        _used = True
        _by_thread[threading.get_ident()] = labels
    else:  # keeps the dict as small as the set of threads inside a block
        _by_thread.pop(threading.get_ident(), None)
    link = _sampler_link
    if link is not None:
        link(labels)
    meters = _meters
    if meters:
        cpu_now = time.thread_time_ns()
        native_id = threading.get_native_id()
        for meter in meters:
            meter.switch(native_id, labels, cpu_now)
    asyncio = sys.modules.get("asyncio")  # never imported here: only a program using it has tasks
    if asyncio is not None:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop in this thread
            return
        if task is not None:
            for meter in meters:  # the thread's labels are then whichever task published last
                meter.asyncio_threads.add(native_id)
            if labels:
                _by_task[task] = labels
            else:
                _by_task.pop(task, None)


def current_labels() -> dict[str, str]:
    return dict(_current.get())


#: The labels of the code running now, for hooks that run in the thread being profiled (yappi's
#: tag callback, at every call): this thread's, or inside asyncio the running task's, Context.
#: The ContextVar's own get: a C call, so no Python frame is added to every call.
running_labels = _current.get


def context_var() -> contextvars.ContextVar[Labels]:
    """The ContextVar itself, for a hook in C that reads it at the moment it runs."""
    return _current


def labels_of_thread(ident: int) -> Labels:
    """The labels the thread ``ident`` runs under (see the module docstring), for samplers."""
    return _by_thread.get(ident, ())


def labels_of_task(task) -> Labels:
    return _by_task.get(task, ())


def threads_labelled() -> dict[int, Labels]:
    """thread ident -> labels, of every thread inside a labels block now."""
    return dict(_by_thread)


def set_sampler_link(link: Callable[[Labels], None] | None) -> None:
    """Register (or, with None, remove) the function every publish calls; it must not raise."""
    global _sampler_link
    _sampler_link = link


class LabelCpu:
    """The CPU time each (native thread id, label set) used between ``start()`` and ``stop()``,
    read from the thread's CPU clock at every label change (see the module docstring). Threads
    where asyncio tasks published are listed in ``asyncio_threads``: their figures mix tasks."""

    MAX_ENTRIES = 4096  # past it, ``full`` is set and new (thread, labels) pairs are not counted

    def __init__(self) -> None:
        self.used: dict[tuple[int, Labels], int] = {}
        self.asyncio_threads: set[int] = set()
        self.full = False
        self._open: dict[int, tuple[Labels, int]] = {}  # native id -> (labels, CPU ns at entry)
        self._lock = _thread.allocate_lock()

    def start(self, clocks: dict[int, int]) -> None:
        """``clocks``: native thread id -> CPU ns now, of every thread (the window's own
        reading), for the threads already inside a block, whose segment starts now."""
        global _meters
        with _meters_lock:
            _meters = (*_meters, self)
        alive = {thread.ident: thread.native_id for thread in threading.enumerate()}
        for ident, labels in threads_labelled().items():
            native_id = alive.get(ident)
            if native_id in clocks:
                with self._lock:  # a publish since registering opened a newer segment: it stays
                    self._open.setdefault(native_id, (labels, clocks[native_id]))

    def switch(self, native_id: int, labels: Labels, cpu_now: int) -> None:
        with self._lock:
            previous = self._open.pop(native_id, None)
            if previous is not None:
                self._add(native_id, previous[0], cpu_now - previous[1])
            if labels:
                self._open[native_id] = (labels, cpu_now)

    def _add(self, native_id: int, labels: Labels, cpu_ns: int) -> None:
        key = (native_id, labels)
        if key in self.used:
            self.used[key] += max(0, cpu_ns)
        elif len(self.used) < self.MAX_ENTRIES:
            self.used[key] = max(0, cpu_ns)
        else:
            self.full = True

    def stop(self, clocks: dict[int, int]) -> dict[tuple[int, Labels], int]:
        """``clocks`` as for start(), read at the window's end: they close the open segments."""
        global _meters
        with _meters_lock:
            _meters = tuple(meter for meter in _meters if meter is not self)
        with self._lock:
            for native_id, (labels, started) in self._open.items():
                if native_id in clocks:
                    self._add(native_id, labels, clocks[native_id] - started)
            self._open = {}
        return self.used
