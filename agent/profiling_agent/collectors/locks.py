"""Mutex profile: time spent waiting for contended ``threading`` locks, per acquiring stack.

Why a wrapper and not yappi: yappi does not see the wait of ``with lock:`` -- the C
``lock.__enter__`` is no call event worth a frame, so the wait lands in the caller's own time,
indistinguishable from computation (shared/PROFILERS.md; tests/agent/test_collectors.py
``test_yappi_wall_misses_with_lock_waits_and_the_wrapper_does_not`` measures both).

How: ``install_lock_profiler()`` replaces the factories ``threading.Lock`` and
``threading.RLock`` with ones that return a thin wrapper around the real C lock. Every acquire
first tries the real lock without blocking (one C call); only when that fails -- the lock is
contended -- and a window is recording, the blocking acquire is timed and the caller's stack
captured. The uncontended path is C (``_lockwrap.c``, built with the agent; the same in Python
where it could not be built): an uncontended acquire costs one C call more, and ``release`` is
the real lock's bound C method stored on the wrapper.

Why install at agent start (the runtime calls ``install_lock_profiler()``): only locks created
after installation are wrapped, and most locks that matter (connection pools, queues, caches,
``threading.Condition``/``Event``/``Semaphore`` internals) are created once, early. Installed
only for the window, a mutex profile would see almost nothing of a running service. The price
while no window records: an uncontended ``with lock:`` went from 250 to 544 ns and
acquire+release from 135 to 413 ns in a micro-benchmark; on the service-like workload of
benchmarks/agent_overhead.py (40,000 ``with lock:`` in ~1.5 s) the "mutex-idle" row was 0.95x,
i.e. below that machine's +-20 % noise.

Deliberately not wrapped: ``threading._allocate_lock`` (the waiter locks of
``Condition.wait``, ``Event.wait``, ``queue.get``) -- waiting there is waiting for a
notification, not for a mutex, and belongs in the block profile; the thread-state locks
behind ``Thread.join``; and ``_thread.allocate_lock`` callers such as the import system.
Names bound before installation (``from threading import Lock`` at import time) keep the
original factory.

The replacements are classes whose ``isinstance`` answers for the real lock type too: on 3.13
``threading.Lock`` is a class (``_thread.lock``), and code that checks ``isinstance(x,
threading.Lock)`` or writes ``threading.Lock | None`` must keep working.

Several mutex runs may record at once: the table is cumulative while any records, and each run
keeps the difference between the table at its end and at its start. A child forked while a
thread held the table's lock gets a fresh lock and an empty table.
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time

from ..labels import labels_of_thread
from ._common import (
    AGENT_THREAD_PREFIX,
    MAX_SAMPLES,
    ProfileBuilder,
    Window,
    code_stack,
    hide_frames_of,
)

ENGINE = "lock-wrapper"
hide_frames_of(__file__)  # a thread waiting for a lock shows its caller, not the wrapper

_state_lock = _thread.allocate_lock()  # a real lock: it guards the wrapper's own tables
_original: dict[str, object] = {}
_installed_at: float | None = None
_recorders = 0  # mutex runs recording now
_installed_by_collect = False  # installed by a run (not by the agent): removed after the last
_excluded_idents: set[int] = set()  # the threads that collect: they only wait
_stats: dict[tuple, list[int]] = {}  # cumulative while any run records
_OVERFLOW = ((), "", ())
_perf_ns = time.perf_counter_ns
_getframe = sys._getframe
_active: dict = getattr(threading, "_active", {})


def _contended(lock, timeout: float, depth: int) -> bool:
    """Slow path: the lock was busy. Time the blocking acquire only while recording."""
    if not _recorders:
        return lock.acquire(True, timeout)
    started = _perf_ns()
    acquired = lock.acquire(True, timeout)
    waited = _perf_ns() - started
    _record(_getframe(depth), waited)
    return acquired


def _record(frame, waited_ns: int) -> None:
    ident = _thread.get_ident()
    if ident in _excluded_idents:
        return
    thread = _active.get(ident)  # no lock taken: a plain dict read under the GIL
    name = thread.name if thread is not None else f"thread-{ident}"
    if name.startswith(AGENT_THREAD_PREFIX):
        return
    key = (code_stack(frame), name, labels_of_thread(ident))  # the waiter's labels, at the wait
    with _state_lock:
        entry = _stats.get(key)
        if entry is None:
            if len(_stats) >= MAX_SAMPLES:
                key = _OVERFLOW
                entry = _stats.get(key)
            if entry is None:
                entry = _stats[key] = [0, 0]
        entry[0] += waited_ns
        entry[1] += 1


try:  # the uncontended path in C, built with the agent where a compiler was at hand
    from . import _lockwrap
except ImportError:
    _lockwrap = None

if _lockwrap is not None:
    _lockwrap.set_slow_path(_contended)

    class _Uncontended(_lockwrap.LockWrapper):
        __slots__ = ()
else:
    class _Uncontended:  # the same in Python: two Python frames more per `with lock:`
        __slots__ = ("_lock", "_try", "release", "__weakref__")

        def __init__(self, lock):
            self._lock = lock
            self._try = lock.acquire
            self.release = lock.release

        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
            if self._try(False):
                return True
            if not blocking:
                return False
            return _contended(self._lock, timeout, 2)

        def __enter__(self) -> bool:
            if self._try(False):
                return True
            return _contended(self._lock, -1, 2)

        def __exit__(self, exc_type, exc, tb) -> None:
            self.release()


class _ProfiledLock(_Uncontended):
    """Behaves as the wrapped lock: acquire, ``with`` and release go to it (``release`` is the
    real lock's own bound method), anything else is looked up on it."""

    __slots__ = ()

    def __getattr__(self, name: str):
        # locked(), _is_owned(), _release_save(), _acquire_restore(), _at_fork_reinit() ...:
        # Condition looks these up on its lock, so a wrapped RLock must expose them.
        if name == "_lock":  # instance made without __init__ (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._lock, name)

    def __repr__(self) -> str:
        return f"<profiled {self._lock!r}>"

    def __reduce__(self):
        # like the real lock: not copyable (a copy would silently share the lock)
        raise TypeError(f"cannot pickle {type(self._lock).__name__!r} object")


class _LockFactoryType(type):
    """``isinstance(x, threading.Lock)`` holds for wrapped and unwrapped locks alike."""

    def __instancecheck__(cls, obj) -> bool:
        real = cls._real_type
        if isinstance(obj, _ProfiledLock):
            obj = obj._lock
        return real is not None and isinstance(obj, real)


class _ProfiledLockFactory(metaclass=_LockFactoryType):
    _factory = None  # the original threading.Lock / RLock
    _real_type: type | None = None  # the type of what it returns

    def __new__(cls, *args, **kwargs):
        return _ProfiledLock(cls._factory(*args, **kwargs))


def _factory_for(original) -> type:
    name = getattr(original, "__name__", "Lock")
    return _LockFactoryType(name, (_ProfiledLockFactory,), {
        "_factory": staticmethod(original), "_real_type": type(original()),
        "__module__": "threading", "__qualname__": name})


def _reset_after_fork() -> None:
    global _state_lock, _recorders, _installed_by_collect
    _state_lock = _thread.allocate_lock()
    _stats.clear()
    _excluded_idents.clear()
    _recorders = 0
    _installed_by_collect = False


os.register_at_fork(after_in_child=_reset_after_fork)


def install_lock_profiler() -> bool:
    """Wrap locks created from now on. Idempotent; returns True when it installed."""
    global _installed_at
    with _state_lock:
        if _original:
            return False
        _original["Lock"] = threading.Lock
        _original["RLock"] = threading.RLock
        _original["wrapped Lock"] = threading.Lock = _factory_for(_original["Lock"])
        _original["wrapped RLock"] = threading.RLock = _factory_for(_original["RLock"])
        _installed_at = time.time()
        return True


def uninstall_lock_profiler() -> bool:
    """Restore the factories (if nobody replaced ours since). Existing wrappers keep working."""
    global _installed_at
    with _state_lock:
        if not _original:
            return False
        if threading.Lock is _original["wrapped Lock"]:
            threading.Lock = _original["Lock"]
        if threading.RLock is _original["wrapped RLock"]:
            threading.RLock = _original["RLock"]
        _original.clear()
        _installed_at = None
        return True


def lock_profiler_installed() -> bool:
    return bool(_original)


def _start_recording() -> dict[tuple, tuple[int, int]]:
    """Count this run in; returns the table as it is now (the run's zero)."""
    global _recorders, _installed_by_collect
    installed = install_lock_profiler()
    with _state_lock:
        if installed:
            _installed_by_collect = True
        if _recorders == 0:
            _stats.clear()
        _recorders += 1
        _excluded_idents.add(threading.get_ident())
        return {key: (entry[0], entry[1]) for key, entry in _stats.items()}


def _stop_recording(start: dict[tuple, tuple[int, int]]) -> dict[tuple, tuple[int, int]]:
    """Count this run out; returns what was recorded since its start."""
    global _recorders, _installed_by_collect
    with _state_lock:
        _recorders -= 1
        _excluded_idents.discard(threading.get_ident())
        stats = {}
        for key, (waited, count) in _stats.items():
            before = start.get(key, (0, 0))
            if count > before[1]:
                stats[key] = (waited - before[0], count - before[1])
        uninstall = _recorders == 0 and _installed_by_collect
        if _recorders == 0:
            _stats.clear()
            _installed_by_collect = False
    if uninstall:
        uninstall_lock_profiler()
    return stats


def collect(*, profile_type: str, duration: float, rate: float, window: Window) -> dict:
    installed_at = _installed_at
    installed_here = installed_at is None
    window.start()
    start = _start_recording()
    try:
        window.wait()
    finally:
        elapsed = window.elapsed
        stats = _stop_recording(start)
    builder = ProfileBuilder(profile_type, ENGINE, rate)
    contended = 0
    for (codes, thread, labels), (waited_ns, count) in stats.items():
        if codes:
            stack = builder.code_stack_indices(codes)
        else:
            stack = (builder.frame_marker("(stacks over the limit)"),)
            thread = thread or "(several)"
        builder.add(stack, waited_ns, count, thread, labels)
        contended += count
    if installed_here:
        builder.notes.append(
            "the lock profiler was installed only for this window: locks created before it "
            "started are not observed (the agent normally installs it at start)")
    elif installed_at is not None:
        builder.notes.append(
            f"locks created before the lock profiler was installed "
            f"({max(0.0, window.started_at - installed_at):.0f} s before this window) "
            "are not observed")
    builder.notes.append(
        "wall time of contended threading.Lock/RLock acquires (including `with lock:`); "
        "Condition/Event/queue waits for a notification are in the block profile instead")
    return builder.result(started_at=window.started_at, duration_seconds=elapsed,
                          sample_count=contended)
