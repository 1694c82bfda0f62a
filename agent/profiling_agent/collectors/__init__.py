"""Profile collectors of the in-process agent: ``collect()`` returns one pyprof-raw/1 dict.

Contract: any number of ``collect()`` calls may run at once, from different threads, of any
types; runs of the same in-process sampler share it (an on-demand cpu run during a continuous
window is served from the same samples). yappi and memray install the same per-thread hook
and silently break each other, so one of them at a time: a second is refused with a
``CollectorError`` naming the busy one. Every failure surfaces as ``CollectorError(reason)``,
``stop_event`` ends the window early with what was collected, ``progress(fraction)`` is called
about once a second. Every profile carries ``overheadPercent`` (``_overhead.py``).

Engines (one module each; the third-party ones are imported only when used):

=========  ==================  ==============================================================
type       engine              how
=========  ==================  ==============================================================
cpu        stack-sampler (d.)  in-process GIL-free sampler, CPU-clock weights (``ddprof.py``)
cpu        py-spy              external sampler of this pid, needs ptrace (``pyspy.py``)
cpu        yappi               deterministic, CPU clock, stacks rebuilt from call edges
memory     alloc-sampler (d.)  sampled allocations live at the window's end (``alloc_sampler.py``)
memory     memray              exact: live-at-end allocations made in the window
alloc      alloc-sampler (d.)  every sampled allocation in the window (bytes, count)
alloc      memray              exact: every allocation in the window, per stack
mutex      lock-wrapper        contended ``threading`` lock acquires (``locks.py``)
block      stack-sampler (d.)  wall minus CPU time of each sample
block      thread-sampler      off-CPU wall time per stack, pure Python (``threads.py``)
goroutine  stack-sampler (d.)  threads and asyncio tasks seen per sample pass
goroutine  thread-sampler      live threads (and asyncio tasks) per stack, at snapshots
=========  ==================  ==============================================================
"""

from __future__ import annotations

import _thread
import importlib.util
import os
import threading
from collections.abc import Callable

from ..labels import labels_used
from ..profile_format import DEFAULT_ENGINES, ENGINES_BY_TYPE, EXCLUSIVE_ENGINES
from ._common import AGENT_THREAD_PREFIX, CollectorError, Window, validate_window
from ._overhead import OverheadMeter
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

# Raw _thread locks: never one of the lock profiler's wrappers, whatever is installed.
_exclusive_lock = _thread.allocate_lock()  # guards _exclusive_busy
_exclusive_busy: str | None = None  # the exclusive engine collecting now, if any


def _reset_after_fork() -> None:
    """A child forked mid-collection has none of its parent's runs, and must not wait for a
    lock held by a thread it does not have."""
    global _exclusive_lock, _exclusive_busy
    _exclusive_lock = _thread.allocate_lock()
    _exclusive_busy = None


def _claim_exclusive(engine: str) -> None:
    global _exclusive_busy
    with _exclusive_lock:
        if _exclusive_busy is not None:
            raise CollectorError(f"{_exclusive_busy} is already collecting in this process: "
                                 f"{engine} and {_exclusive_busy} install the same per-thread "
                                 "hook, so they run one at a time")
        _exclusive_busy = engine


def _release_exclusive() -> None:
    global _exclusive_busy
    with _exclusive_lock:
        _exclusive_busy = None


os.register_at_fork(after_in_child=_reset_after_fork)


def _runner(profile_type: str, engine: str) -> Callable[..., dict]:
    if engine == "stack-sampler":
        from . import ddprof

        return ddprof.collect
    if engine == "alloc-sampler":
        from . import alloc_sampler

        return alloc_sampler.collect
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
    from . import alloc_sampler
    from .ddprof import available as in_process_available
    from .pyspy import find_pyspy

    usable = {"lock-wrapper", "thread-sampler"}
    if in_process_available():
        usable.add("stack-sampler")
    if alloc_sampler.available():
        usable.add("alloc-sampler")
    if find_pyspy() is not None:
        usable.add("py-spy")
    for module, engine in (("yappi", "yappi"), ("memray", "memray")):
        if importlib.util.find_spec(module) is not None:
            usable.add(engine)
    return {kind: [e for e in engines if e in usable] for kind, engines in ENGINES.items()}


#: The engines whose samples carry profiling_labels (the others see no Python context: py-spy
#: and memray sample from outside).
LABELLED_ENGINES = frozenset({"thread-sampler", "lock-wrapper", "stack-sampler", "alloc-sampler",
                              "yappi"})


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
    exclusive = engine in EXCLUSIVE_ENGINES
    if exclusive:
        _claim_exclusive(engine)
    try:
        window = Window(duration, stop_event, progress)
        meter = OverheadMeter()
        result = _runner(profile_type, engine)(profile_type=profile_type, duration=duration,
                                               rate=rate, window=window)
        overhead = meter.percent(count_children=engine == "py-spy")
        if overhead is not None:
            result["overheadPercent"] = overhead
        if engine not in LABELLED_ENGINES and labels_used():
            result["notes"].append(f"{engine} does not attach labels: its samples carry none")
        window.report(force=True)
        return result
    except CollectorError:
        raise
    except Exception as exc:  # noqa: BLE001 - the contract: only CollectorError escapes
        raise CollectorError(f"{engine}: {type(exc).__name__}: {exc}") from exc
    finally:
        if exclusive:
            _release_exclusive()
