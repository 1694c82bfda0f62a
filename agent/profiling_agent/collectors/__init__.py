"""Profile collectors of the in-process agent: ``collect()`` returns one pyprof-raw/1 dict.

Contract (notes/CONTRACT.md, sections 1 and 3): one collection at a time per process (yappi
and memray install the same per-thread hook and silently break each other), every failure
surfaces as ``CollectorError(reason)``, ``stop_event`` ends the window early with what was
collected, ``progress(fraction)`` is called about once a second.

Engines (one module each; the third-party ones are imported only when used):

=========  ==================  ==============================================================
type       engine              how
=========  ==================  ==============================================================
cpu        py-spy (default)    external sampler of this pid (``pyspy.py``)
cpu        yappi               deterministic, CPU clock, stacks rebuilt from call edges
memory     memray              live-at-end allocations made in the window (``memray_mem.py``)
alloc      memray              every allocation in the window, per stack
mutex      lock-wrapper        contended ``threading`` lock acquires (``locks.py``)
block      thread-sampler      off-CPU wall time per stack (``threads.py``)
goroutine  thread-sampler      live threads (and asyncio tasks) per stack, at snapshots
=========  ==================  ==============================================================
"""

from __future__ import annotations

import _thread
import importlib.util
import os
import threading
from collections.abc import Callable

from ..profile_format import DEFAULT_ENGINES, ENGINES_BY_TYPE
from ._common import AGENT_THREAD_PREFIX, CollectorError, Window, validate_window
from .locks import install_lock_profiler, lock_profiler_installed, uninstall_lock_profiler

__all__ = [
    "AGENT_THREAD_PREFIX",
    "DEFAULT_ENGINES",
    "ENGINES",
    "CollectorError",
    "available_engines",
    "collect",
    "install_lock_profiler",
    "lock_profiler_installed",
    "uninstall_lock_profiler",
]

ENGINES = ENGINES_BY_TYPE

# A raw _thread lock: never one of the lock profiler's wrappers, whatever is installed.
_collect_lock = _thread.allocate_lock()


def _reset_after_fork() -> None:
    """A child forked mid-collection inherits the lock held by a thread it does not have."""
    global _collect_lock
    _collect_lock = _thread.allocate_lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _runner(profile_type: str, engine: str) -> Callable[..., dict]:
    if engine == "py-spy":
        from . import pyspy

        return pyspy.collect
    if engine == "yappi":
        from . import yappi_cpu

        return yappi_cpu.collect
    if engine == "memray":
        from . import memray_mem

        return memray_mem.collect
    if engine == "lock-wrapper":
        from . import locks

        return locks.collect
    from . import threads

    return threads.collect_block if profile_type == "block" else threads.collect_goroutine


def available_engines() -> dict[str, list[str]]:
    """Engines that can run here, per type, for the agent to advertise. Cheap: no attach test
    (ptrace permission is only known by trying; a refusal comes back as a CollectorError)."""
    from .pyspy import find_pyspy

    usable = {"lock-wrapper", "thread-sampler"}
    if find_pyspy() is not None:
        usable.add("py-spy")
    for module, engine in (("yappi", "yappi"), ("memray", "memray")):
        if importlib.util.find_spec(module) is not None:
            usable.add(engine)
    return {kind: [e for e in engines if e in usable] for kind, engines in ENGINES.items()}


def collect(profile_type: str, *, duration_seconds: float, sample_rate: float,
            engine: str | None = None, stop_event: threading.Event | None = None,
            progress: Callable[[float], object] | None = None) -> dict:
    """Collect one profile of this process and return it as a pyprof-raw/1 dict.

    Blocks the calling thread for about ``duration_seconds`` (less when ``stop_event`` is
    set). Raises ``CollectorError`` and nothing else.
    """
    if profile_type not in ENGINES:
        raise CollectorError(f"unknown profile type {profile_type!r}; expected one of "
                             f"{', '.join(ENGINES)}")
    engine = engine or DEFAULT_ENGINES[profile_type]
    if engine not in ENGINES[profile_type]:
        raise CollectorError(f"engine {engine!r} cannot collect {profile_type!r} profiles; "
                             f"use one of {', '.join(ENGINES[profile_type])}")
    duration, rate = validate_window(duration_seconds, sample_rate)
    if not _collect_lock.acquire(False):
        raise CollectorError("another profile is already being collected in this process")
    try:
        window = Window(duration, stop_event, progress)
        result = _runner(profile_type, engine)(profile_type=profile_type, duration=duration,
                                               rate=rate, window=window)
        window.report(force=True)
        return result
    except CollectorError:
        raise
    except Exception as exc:  # noqa: BLE001 - the contract: only CollectorError escapes
        raise CollectorError(f"{engine}: {type(exc).__name__}: {exc}") from exc
    finally:
        _collect_lock.release()
