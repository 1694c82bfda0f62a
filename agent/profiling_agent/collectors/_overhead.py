"""The profile's ``overheadPercent``: the agent's CPU over the whole process's CPU in a window.

The agent's CPU is that of its threads (named ``profiles-agent*``, the thread that collects,
native threads an engine started, registered with ``register_native_threads``) and of the
child processes an engine ran and waited for (py-spy). Per-thread CPU comes from
``/proc/self/task/<tid>/schedstat``; where that is missing (not Linux) no figure is given.
An allocation hook's cost is paid inside the host's own threads: the part it can time (recording
a sampled allocation's stack) is added with ``add_cpu_in_host_threads``; its per-call check
cannot be timed without costing more than it does: benchmarks/agent_overhead.py measures it.
"""

from __future__ import annotations

import os
import threading
import time

from ._common import is_agent_thread

_native_agent_tids: set[int] = set()
_in_host_threads_ns = 0  # agent work done inside the host's threads, process-wide, so far


def add_cpu_in_host_threads(ns: int) -> None:
    global _in_host_threads_ns
    _in_host_threads_ns += ns


def register_native_threads(tids: set[int]) -> None:
    """Native threads (no ``threading.Thread``) that belong to an engine of the agent."""
    _native_agent_tids.update(tids)


def forget_native_threads(tids: set[int]) -> None:
    _native_agent_tids.difference_update(tids)


def task_ids() -> set[int]:
    try:
        return {int(name) for name in os.listdir("/proc/self/task")}
    except (OSError, ValueError):
        return set()


def thread_cpu_ns(tid: int) -> int | None:
    try:
        with open(f"/proc/self/task/{tid}/schedstat", "rb") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _agent_tids(collecting_tid: int) -> set[int]:
    tids = {collecting_tid} | _native_agent_tids
    for thread in threading.enumerate():
        native = getattr(thread, "native_id", None)
        if native is not None and is_agent_thread(thread.name):
            tids.add(native)
    return tids


def _children_cpu_s() -> float:
    times = os.times()
    return times.children_user + times.children_system


class OverheadMeter:
    """Started when a window starts, read when it ends, from the collecting thread."""

    def __init__(self) -> None:
        self._collecting_tid = threading.get_native_id()
        self._agent_start = self._agent_now()
        self._in_host_start = _in_host_threads_ns
        self._process_start = time.process_time_ns()
        self._children_start = _children_cpu_s()

    def _agent_now(self) -> dict[int, int]:
        readings = {}
        for tid in _agent_tids(self._collecting_tid):
            value = thread_cpu_ns(tid)
            if value is not None:
                readings[tid] = value
        return readings

    def percent(self, *, count_children: bool = False) -> float | None:
        """Agent CPU / process CPU in percent (rounded to 0.01), or None when unknown."""
        if not self._agent_start:
            return None
        now = self._agent_now()
        # a thread first seen at the end was started in the window: all of its CPU counts
        agent_ns = sum(value - self._agent_start.get(tid, 0) for tid, value in now.items())
        agent_ns += _in_host_threads_ns - self._in_host_start
        process_ns = time.process_time_ns() - self._process_start
        if count_children:
            children_ns = int((_children_cpu_s() - self._children_start) * 1e9)
            agent_ns += children_ns
            process_ns += children_ns
        if process_ns <= 0:
            return None
        return round(min(10_000.0, max(0.0, 100.0 * agent_ns / process_ns)), 2)
