"""The in-process engines, on Datadog's profiler (``ddtrace``, pinned): the one module that knows it.

``stack-sampler`` (cpu, block, goroutine): ddtrace's native sampler thread reads every thread's
Python stack from inside the process without taking the GIL (safe memory copies), so
pure-Python code is seen as it runs, and no ptrace is needed. Each sample carries the CPU time
its thread used since that thread's previous sample (the thread's CPU clock) and the wall time
in between: cpu is weighted by the first, block by wall minus CPU, goroutine counts the
(sample pass, thread or asyncio task) observations. One sampler serves the three types.

(memory and alloc come from the agent's own allocation hook: ``alloc_sampler.py``.)

Labels (``profiling_labels``, the Django route, the Celery task) reach the stack sampler's
samples through ddtrace's span link, its native per-thread tag meant for tracing spans: while the
profiler runs, every labels publish links the publishing thread to an id standing for its label
set (``_LabelLinks``), the sampler writes that id into each of the thread's samples as the
``span id`` label, and the flush turns ids back into labels. So a sample carries the labels its
thread ran under when it was taken. A sampled asyncio task takes its own labels where it set any.

Known bias: the CPU a thread used since its previous sample goes to the stack it shows now, so
CPU spent just before a thread stops (a sleep, a GIL hand-over) lands where it waits: bursts far
shorter than the sample interval show up in their caller's pause, and with threads contending
for the GIL a few points move from the busy functions to the loop that calls them
(tests/agent/test_cpu_ground_truth.py measures it). Label totals escape it: per thread, each
label set's CPU is set to what the thread's clock showed inside its blocks (labels.LabelCpu).

Why ddtrace (measured, shared/PROFILERS.md and benchmarks/agent_overhead.py): its stack sampler
cost 1.004x CPU and matched a program's own ``time.thread_time()`` accounting within 3 points;
echion attributed as well but spins (1.5x); py-spy needs ptrace and a child process.

How it is driven: tracing, telemetry, remote config and its lock collector are off (the agent's
lock-wrapper owns mutex); profiles are written as zstd pprof files into a private temporary
folder, only when this module flushes: at every run's start and end and every few seconds.
The profiler is started once per process and kept sampling (a resume after a pause sampled
wrong for a while), at a fixed interval that a governor of ours slows when the sampler costs
more than its budget (ddtrace's adaptive sampling went 2-4x over the rate asked, and to
~1,000 Hz after a restart).
Each flush's samples go to every run collecting at that moment, so concurrent runs of these
types share one sampler. The files are decoded by the agent's own reader (``_pprof.py``); the
contract tests in tests/agent/test_collectors.py fail when a ddtrace release changes them.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import glob
import importlib.util
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterable

from .. import labels as labels_api
from . import _overhead, _pprof, _source, _tempfiles, threads
from ._common import (
    CollectorError,
    ProfileBuilder,
    ThreadCpu,
    Window,
    agent_thread_name,
    hidden_file,
    hide_folder,
    hide_frames_of,
    is_agent_thread,
)

STACK_ENGINE = "stack-sampler"
DDTRACE_VERSION = "4.16.0"
FLUSH_EVERY_SECONDS = 5.0
# The sampler's CPU budget: its threads' CPU at most this share of the rest of the process's (the
# 1 % Datadog's adaptive sampling aims at), or this share of one core, whichever allows more (an
# idle host keeps the rate asked: its sampler costs little in absolute terms). Checked every
# SAMPLER_GOVERN_SECONDS; over it, the interval grows, up to SAMPLER_MAX_INTERVAL_SECONDS.
SAMPLER_BUDGET_PERCENT = 1.0
SAMPLER_FLOOR_CORE_PERCENT = 0.5
SAMPLER_GOVERN_SECONDS = 1.0
SAMPLER_MAX_INTERVAL_SECONDS = 1.0  # a pass a second at least: every window sees its threads
# With no run collecting, the profiler keeps running (see _Session) but slowly: at the rate asked
# an idle agent paid ~1.75 % of a core after its first cpu profile, forever. Not slower: a run's
# first sample of each thread carries the CPU since the pass before it joined (at most this).
SAMPLER_IDLE_INTERVAL_SECONDS = 0.05
IDLE_FLUSH_SECONDS = 60.0  # while idle, what the sampler gathered is dropped this often (memory)
_MAX_FRAMES = 128
_MAX_THREADS = 1000  # the most ddtrace takes



def available() -> bool:
    """Whether the pinned ddtrace loads here. Loads it (once: ~0.4 s of CPU), so that the
    agent pays for the import when it starts and advertises its engines, not in a window."""
    if importlib.util.find_spec("ddtrace") is None or (
            importlib.util.find_spec("zstandard") is None
            and importlib.util.find_spec("compression.zstd") is None):
        return False
    try:
        _session.load()
    except CollectorError:
        return False
    return True


def _decompress(data: bytes) -> bytes:
    try:
        from compression import zstd  # Python 3.14+

        return zstd.decompress(data)
    except ImportError:
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30)


def _import_ddtrace():
    """Import ddtrace's profiler configured for local files only; the host's environment is
    restored afterwards (ddtrace reads its settings once, at import)."""
    settings = {
        "DD_TRACE_ENABLED": "false",
        "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
        "DD_REMOTE_CONFIGURATION_ENABLED": "false",
        "DD_PROFILING_ENABLE_CODE_PROVENANCE": "false",
        "DD_PROFILING_TIMELINE_ENABLED": "false",
        "DD_PROFILING_EXCEPTION_ENABLED": "false",
        "DD_PROFILING_LOCK_ENABLED": "false",
        # Python frames only, on every version (3.12+ would add C functions such as time.sleep)
        "DD_PROFILING_STACK_NATIVE_FRAMES": "false",
        "DD_PROFILING_UPLOAD_INTERVAL": "86400",  # we flush ourselves
        "DD_PROFILING_MAX_FRAMES": str(_MAX_FRAMES),
        # every thread in every pass (ddtrace's default: 25 picked at random, so a leak past 25
        # threads read as 25 in the goroutine profile); the governor bounds what passes cost.
        # A private setting: its name starts with an underscore.
        "_DD_PROFILING_STACK_MAX_THREADS": str(_MAX_THREADS),
        "DD_PROFILING_OUTPUT_PPROF": "profile",  # set per start: see _Session._start
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        import ddtrace
        from ddtrace.internal.datadog.profiling.stack import _stack
        from ddtrace.internal.settings.profiling import config
        from ddtrace.profiling import Profiler
    except Exception as exc:  # noqa: BLE001 - a broken install disables the engine
        raise CollectorError(f"the in-process sampler (ddtrace) cannot load: {exc}") from exc
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if ddtrace.__version__ != DDTRACE_VERSION:
        raise CollectorError(f"the in-process sampler needs ddtrace=={DDTRACE_VERSION}, found "
                             f"{ddtrace.__version__} (pip install 'profiling-platform-agent[inprocess]')")
    hide_folder(os.path.dirname(ddtrace.__file__))
    # ddtrace wraps the bootstrap of threads started after its profiler: that frame is not the
    # host's in the pure-Python samplers' stacks either
    from ddtrace.profiling.collector import threading as dd_threading

    hide_frames_of(dd_threading.__file__)
    return Profiler, _stack, config


@contextlib.contextmanager
def _host_signal_handlers_kept():
    """ddtrace, started from the main thread, wraps SIGTERM/SIGINT (and turns an ignored or
    default SIGTERM into an exit): the host's handlers are the host's business, put them back."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only change in the main thread: ddtrace leaves them
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)


_THREAD_METHODS = ("_bootstrap_inner", "_set_native_id")
# (the methods ddtrace's latest start found, the wrappers it put in their place)
_ddtrace_thread_wrapping: tuple[dict, dict] | None = None


def _thread_methods() -> dict:
    return {name: threading.Thread.__dict__.get(name) for name in _THREAD_METHODS}


@contextlib.contextmanager
def _thread_methods_wrapped_once():
    """ddtrace wraps Thread._bootstrap_inner and _set_native_id at every start and never unwraps
    them: after N restarts (a fork, a shutdown) every thread's start and end went through N
    wrappers (8 deep in a CI traceback). Its previous wrappers are taken off first, unless
    something wrapped them since."""
    global _ddtrace_thread_wrapping
    if _ddtrace_thread_wrapping is not None:
        found, wrappers = _ddtrace_thread_wrapping
        if _thread_methods() == wrappers:
            for name, method in found.items():
                if method is not None:
                    setattr(threading.Thread, name, method)
    found = _thread_methods()
    try:
        yield
    finally:
        _ddtrace_thread_wrapping = (found, _thread_methods())


def _track_running_event_loops(_stack) -> None:
    """ddtrace learns of an event loop when it starts running; loops already running when the
    sampler (re)starts are found through their pending tasks, so their tasks are sampled."""
    loops = {}
    for task in threads.pending_tasks():
        try:
            loop = task.get_loop()
            thread_id = getattr(loop, "_thread_id", None)  # set while the loop runs
        except Exception:  # noqa: BLE001 - a foreign task-like object
            continue
        if thread_id is not None:
            loops[id(loop)] = (thread_id, loop)
    for thread_id, loop in loops.values():
        try:
            _stack.track_asyncio_loop(thread_id, loop)
        except Exception:  # noqa: BLE001 - best effort: the threads are sampled regardless
            pass


_LABELS = "labels"  # the key a decoded sample's label set is kept under (ddtrace has none such)
_LABEL_ID_MASK = (1 << 63) - 1  # ids stay positive in pprof's signed numeric labels
_LABEL_IDS_KEPT = 4096  # the id table is pruned past this many label sets


class _LabelLinks:
    """Label sets <-> the ids the native sampler tags samples with (see the module docstring).

    An id is the label set's hash, so the same labels entered by many requests are one entry.
    The table keeps every id a sample could still carry: published since the previous flush,
    or held by a thread now. Threads that were inside a block when the profiler started have not
    linked yet (ddtrace starts with no links): until they publish again, their samples take the
    labels they held at the start.
    """

    def __init__(self) -> None:
        self.stack = None  # ddtrace's native module, while the profiler runs
        self.ids: dict[int, labels_api.Labels] = {}
        self.recent: set[int] = set()  # published since the previous flush
        self.held_at_start: dict[int, labels_api.Labels] = {}

    @staticmethod
    def _id(labels: labels_api.Labels) -> int:
        return hash(labels) & _LABEL_ID_MASK or 1

    def link(self, labels: labels_api.Labels) -> None:
        """Called by every labels publish, in the publishing thread; never raises."""
        stack = self.stack
        if stack is None:
            return
        if self.held_at_start:
            self.held_at_start.pop(threading.get_ident(), None)
        try:
            if labels:
                label_id = self._id(labels)
                self.ids[label_id] = labels  # before the link: a sample never carries an unknown id
                self.recent.add(label_id)
                stack.link_span(label_id, label_id, None)
            else:
                stack.clear_span()
        except Exception:  # noqa: BLE001 - a tag lost is a sample unlabelled, never the host's error
            pass

    def started(self, stack) -> None:
        self.held_at_start = labels_api.threads_labelled()
        self.stack = stack
        labels_api.set_sampler_link(self.link)

    def stopped(self) -> None:
        labels_api.set_sampler_link(None)
        self.stack = None
        self.held_at_start = {}

    def begin_flush(self) -> set[int]:
        recent, self.recent = self.recent, set()
        return recent

    def label(self, profile: _pprof.Profile, recent: set[int]) -> None:
        """Put each sample's label set under ``_LABELS``; then prune the table."""
        tasks = {}
        if any("task id" in sample.labels for sample in profile.samples):
            tasks = {id(task): task for task in threads.pending_tasks()}
        for sample in profile.samples:
            tags = sample.labels
            task = tasks.get(tags.get("task id"))
            labels = labels_api.labels_of_task(task) if task is not None else ()
            if not labels:
                label_id = tags.get("span id")
                labels = (self.ids.get(label_id, ()) if label_id
                          else self.held_at_start.get(tags.get("thread id"), ()))
            tags[_LABELS] = labels
        self.prune(recent)

    def prune(self, recent: set[int]) -> None:
        """Drop the ids no sample can still carry, once the table is large."""
        if len(self.ids) > _LABEL_IDS_KEPT:
            keep = recent | self.recent | {self._id(labels) for labels in
                                           labels_api.threads_labelled().values()}
            for label_id in [label_id for label_id in self.ids if label_id not in keep]:
                self.ids.pop(label_id, None)


class _Run:
    """What one collect() call gathers from the shared sampler's flushes."""

    def __init__(self, rate: float):
        self.rate = rate
        self.flushes: list[_pprof.Profile] = []
        self.error: str | None = None


class _Session:
    """The process's one ddtrace profiler: started by the first run, then kept sampling at the
    rate asked, slowed only to keep within its CPU budget (``_govern``), and between runs at the
    idle interval (SAMPLER_IDLE_INTERVAL_SECONDS), not stopped: one resumed after
    ``pause_sampling`` sampled wrong for a while (the block shares of Django routes came 10
    points off after a resume)."""

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()  # raw: never a lock-profiler wrapper
        self.runs: set[_Run] = set()
        self.profiler = None
        self.folder = ""  # private, while the profiler runs
        self.native_tids: set[int] = set()
        self.classes = None
        self.label_links = _LabelLinks()
        self.interval = 0.01  # the native sampler's, in seconds
        self.slowdown = 1.0  # the interval over the one asked, set by _govern
        self.cost_mark: tuple[float, float, float] | None = None  # (wall, process CPU, sampler CPU)
        self.governor_stop: threading.Event | None = None  # ends the governor's thread
        self.flushed_at = 0.0  # time.monotonic() of the latest flush

    def load(self) -> None:
        with self.lock:
            if self.classes is None:
                self.classes = _import_ddtrace()

    def join(self, run: _Run) -> None:
        self.load()
        with self.lock:
            # what was sampled before this run joined belongs to the runs already collecting
            self._flush()
            self.runs.add(run)
            if self.profiler is None:
                self._start()
            self._set_rate()

    def leave(self, run: _Run) -> None:
        with self.lock:
            self._flush()
            self.runs.discard(run)
            self._set_rate()

    def shutdown(self) -> None:
        """At the interpreter's exit: the native sampler thread is joined now, while Python
        still runs; one left to the C++ runtime's teardown aborts the host ("terminate called
        without an active exception", seen when a process exited within the idle grace)."""
        with self.lock:
            self.runs = set()
            self._stop()

    def tick(self) -> None:
        """A run's periodic flush: each flush serves every run, so with several runs collecting
        (all six types at once) one flush per period does, not one per run."""
        with self.lock:
            if time.monotonic() - self.flushed_at >= FLUSH_EVERY_SECONDS / 2:
                self._flush()

    def _start(self) -> None:
        self._stop()
        self._wait_for_native_sampler_to_end()  # the previous one, or a forked child's
        profiler_class, _stack, config = self.classes
        self.folder = _tempfiles.private_dir("ddtrace")
        config.output_pprof = os.path.join(self.folder, "profile")  # read at every start
        before = _overhead.task_ids()
        profiler = profiler_class(_memory_collector_enabled=False)
        with _host_signal_handlers_kept(), _thread_methods_wrapped_once():
            profiler.start()
        _track_running_event_loops(_stack)
        self.label_links.started(_stack)
        self.native_tids = _overhead.task_ids() - before
        _overhead.register_native_threads(self.native_tids)
        self.profiler = profiler
        self.slowdown = 1.0  # a new profiler starts at the rate asked; its governor judges it
        self._start_governor()

    def _end_profiler(self, flush: bool) -> None:
        if self.governor_stop is not None:
            self.governor_stop.set()
            self.governor_stop = None
        profiler, self.profiler = self.profiler, None
        self.label_links.stopped()
        profiler.stop(flush=flush)

    def _stop(self) -> None:
        if self.profiler is not None:
            self._end_profiler(flush=True)  # written and discarded: nothing left for the next start
            _overhead.forget_native_threads(self.native_tids)
            self.native_tids = set()
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = ""

    def _wait_for_native_sampler_to_end(self) -> None:
        """ddtrace's stop only asks its native sampler thread to end; a profiler started before
        that thread is gone fails to start its stack collector ("cannot change max frames while
        the stack sampler is running") and samples nothing. The setting it refuses while the
        thread runs is the test: accepted means ended (it takes up to a sample interval)."""
        _stack = self.classes[1]
        deadline = time.monotonic() + 1.0 + 2 * self.interval
        while True:
            try:
                _stack.set_max_frames(_MAX_FRAMES)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    return  # the next start reports its failure in the profile
                time.sleep(0.002)

    def _set_rate(self) -> None:
        """A fixed interval: that of the highest sampleRate asked, times ``slowdown``; with no
        run collecting, the idle interval.

        ddtrace's adaptive sampling is off: measured, it sampled a fresh process's first windows
        at 2-4 times the rate asked (185 Hz for 50, at 5.6 % of the process's CPU, CPython 3.11;
        148-166 Hz on 3.13) and, once a profiler had been stopped and another started (after a
        fork, or a shutdown), at ~1,000 Hz whatever was asked; the fixed interval keeps the rate
        asked (46-64 Hz for 50) at 1.2-1.9 %."""
        self.interval = min(self.slowdown / self._rate_asked(), SAMPLER_MAX_INTERVAL_SECONDS)
        if not self.runs:
            self.interval = max(self.interval, SAMPLER_IDLE_INTERVAL_SECONDS)
        _stack = self.classes[1]
        _stack.set_adaptive_sampling(False)
        _stack.set_interval(self.interval)

    def _rate_asked(self) -> float:
        return max((r.rate for r in self.runs), default=100.0)

    def _start_governor(self) -> None:
        """A thread that checks the sampler's cost every SAMPLER_GOVERN_SECONDS while it runs."""
        self.cost_mark = self._cost_now()
        stop = self.governor_stop = threading.Event()

        def govern() -> None:
            while not stop.wait(SAMPLER_GOVERN_SECONDS):
                with self.lock:
                    if not stop.is_set():
                        self._govern()

        thread = threading.Thread(target=govern, name=agent_thread_name("sampler-governor"), daemon=True)
        thread.start()

    def _cost_now(self) -> tuple[float, float, float]:
        """(wall, the process's CPU, ddtrace's threads' CPU), in seconds."""
        sampler = sum(_overhead.thread_cpu_ns(tid) or 0 for tid in self.native_tids) / 1e9
        return time.monotonic(), time.process_time(), sampler

    def _govern(self) -> None:
        """When the sampler's threads used more CPU than their budget since the last look, slow
        sampling in proportion; when less, speed it back up towards the rate asked. A sampler's
        cost grows with the rate, the threads and their stacks' depth, so a step lands near the
        budget. (ddtrace's adaptive sampling, which would do this, is off: see _set_rate.)"""
        mark = self.cost_mark
        if time.monotonic() - mark[0] < 3 * self.interval:
            return  # too few sampling passes since the last look to tell their cost
        self.cost_mark = now = self._cost_now()
        if not self.runs and now[0] - self.flushed_at >= IDLE_FLUSH_SECONDS:
            self._flush()
        wall, spent = now[0] - mark[0], now[2] - mark[2]
        host = max(now[1] - mark[1] - spent, 0.0)
        allowed = max(SAMPLER_BUDGET_PERCENT / 100 * host, SAMPLER_FLOOR_CORE_PERCENT / 100 * wall)
        # slowed at once, sped up at most twofold a look: one cheap look is no reason to burn a core
        slowdown = max(self.slowdown * spent / allowed, self.slowdown / 2, 1.0)
        slowdown = min(slowdown, SAMPLER_MAX_INTERVAL_SECONDS * self._rate_asked())
        if abs(slowdown - self.slowdown) > 0.05 * self.slowdown:
            self.slowdown = slowdown
            self._set_rate()

    def _files(self, suffix: str) -> list[str]:
        return sorted(glob.glob(os.path.join(self.folder, f"profile.*{suffix}")))

    def _discard_files(self) -> None:
        for path in self._files(""):
            try:
                os.remove(path)
            except OSError:
                pass

    def _flush(self) -> None:
        if self.profiler is None:
            return
        self.flushed_at = time.monotonic()
        recent_labels = self.label_links.begin_flush()
        self.profiler._scheduler.flush()
        if not self.runs:  # no run collecting: what was sampled is no one's, dropped undecoded
            self._discard_files()
            self.label_links.prune(recent_labels)
            return
        paths = self._files(".pprof")
        profiles = []
        for path in paths:
            try:
                with open(path, "rb") as handle:
                    profiles.append(_pprof.decode(_decompress(handle.read())))
            except (OSError, ValueError) as exc:
                for run in self.runs:
                    run.error = f"the in-process sampler wrote an unreadable profile: {exc}"
        self._discard_files()
        for profile in profiles:
            self.label_links.label(profile, recent_labels)
            for run in self.runs:
                run.flushes.append(profile)

    def reset_after_fork(self) -> None:
        """A forked child has none of its parent's runs and must not wait for its lock."""
        self.lock = _thread.allocate_lock()
        self.runs = set()
        self.governor_stop = None  # so is the governor
        if self.profiler is not None:
            try:
                self._end_profiler(flush=False)  # ddtrace restarted its sampler in the child
            except Exception:  # noqa: BLE001 - nothing a child could do about it
                pass
        self.profiler = None
        _overhead.forget_native_threads(self.native_tids)
        self.native_tids = set()
        self.folder = ""  # the parent's: it removes it


_session = _Session()
os.register_at_fork(after_in_child=_session.reset_after_fork)
atexit.register(_session.shutdown)


def _thread_name(labels: dict, names: dict[int, str]) -> str:
    ident = labels.get("thread id")
    name = labels.get("task name") or (names.get(ident) if isinstance(ident, int) else None)
    return str(name or labels.get("thread name") or f"thread-{ident}")


def _collect(profile_type: str, rate: float, window: Window, cpu: ThreadCpu,
             label_cpu: labels_api.LabelCpu | None) -> tuple[_Run, float]:
    run = _Run(rate)
    _session.join(run)
    window.start()
    cpu.start()
    if label_cpu is not None:
        label_cpu.start(cpu.clocks(cpu.base))

    def tick() -> None:
        _session.tick()
        cpu.update(every=0.0)

    try:
        window.wait_ticking(FLUSH_EVERY_SECONDS, tick)
    finally:
        elapsed = window.elapsed
        cpu.update(every=0.0)
        if label_cpu is not None:
            label_cpu.stop(cpu.clocks(cpu.last))
        _session.leave(run)
    if run.error:
        raise CollectorError(run.error)
    return run, elapsed


def _reroot_torn_stacks(kept: list, builder: ProfileBuilder) -> list:
    """The sampler copies a running thread's frame chain without stopping it, so a copy taken
    while the thread pushes and pops frames can continue, past the frames it read right, into
    stale memory: a deep recursion's samples came back rooted in ``_fib`` or in long-freed
    ``ast`` frames instead of the thread's entry (5-12 % of a busy thread's CPU), and the
    function that called the recursion lost a third of its share. Per thread (and task), the
    root most of its samples share is its entry; a sample rooted elsewhere is torn, and its
    weight goes to the complete stacks of that thread (and labels) ending in the same leaf
    frame, in proportion to theirs (its count to the heaviest). A torn stack with no such
    match stays."""
    groups: dict[tuple, list] = {}
    for entry in kept:
        groups.setdefault(entry[3:], []).append(entry)
    out: list = []
    torn = moved = total = 0.0
    for entries in groups.values():
        roots: dict[int, int] = {}
        for stack, _value, count, *_ in entries:
            roots[stack[0]] = roots.get(stack[0], 0) + count
        entry_root = max(roots, key=roots.__getitem__)
        complete_by_leaf: dict[int, list] = {}
        for entry in entries:
            if entry[0][0] == entry_root:
                complete_by_leaf.setdefault(entry[0][-1], []).append(entry)
        for entry in entries:
            stack, value, count, *rest = entry
            total += value
            if stack[0] == entry_root:
                out.append(entry)
                continue
            torn += value
            matches = complete_by_leaf.get(stack[-1])
            if not matches:
                out.append(entry)
                continue
            moved += value
            weight = sum(match[1] for match in matches)
            heaviest = max(matches, key=lambda match: match[1])
            for match in matches:
                out.append((match[0], value * match[1] / weight,
                            count if match is heaviest else 0, *rest))
    if torn > 0:
        builder.notes.append(
            f"{100 * torn / total:.1f} % of the sampled time came with a torn stack (copied while "
            f"its thread ran); {100 * moved / total:.1f} % was put back on the thread's complete "
            "stacks that end in the same frame")
    return out


def _scale_to_thread_clocks(kept: list, cpu: ThreadCpu, label_cpu: labels_api.LabelCpu,
                            builder: ProfileBuilder) -> list:
    """Per thread, the samples' weights are scaled to the CPU time its clock shows for the
    window, so per-thread totals are exact whatever the sampler missed at the window's edges or
    between passes it skipped (the samples held 96-115 % of the clocks in the tests here).
    Inside a thread, each label set's samples are scaled to the CPU the thread's clock showed
    inside its blocks (``label_cpu``), and the rest of the thread's samples to the rest of its
    clock; the split of each part among its stacks stays the samples'."""
    if not cpu.available:
        return kept
    sampled: dict[tuple, float] = {}  # (tid, labels) -> the samples' CPU
    for _stack, value, _count, _name, tid, labels in kept:
        sampled[(tid, labels)] = sampled.get((tid, labels), 0.0) + value
    exact = {} if label_cpu.full else label_cpu.used
    factors: dict[tuple, float] = {}
    rest_sampled: dict[object, float] = {}  # per thread: the samples not set by a label's clock
    rest_clock: dict[object, float] = {}
    unseen_ns = labelled_ns = 0.0
    for (tid, labels), used in exact.items():
        labelled_ns += used
        if (tid, labels) not in sampled:
            unseen_ns += used  # a block no sample saw (shorter than a sample interval)
    for (tid, labels), total in sampled.items():
        if not isinstance(tid, int) or cpu.used_ns(tid) <= 0 or total <= 0:
            continue
        rest_clock.setdefault(tid, float(cpu.used_ns(tid)))
        used = exact.get((tid, labels), 0) if tid not in label_cpu.asyncio_threads else 0
        if labels and used > 0:
            factors[(tid, labels)] = used / total
            rest_clock[tid] -= used
        else:
            rest_sampled[tid] = rest_sampled.get(tid, 0.0) + total
    for (tid, labels), total in sampled.items():
        if tid in rest_sampled and (tid, labels) not in factors and total > 0:
            factors[(tid, labels)] = max(0.0, rest_clock[tid]) / rest_sampled[tid]
    clocks = sum(cpu.used_ns(tid) for tid in rest_clock)
    if clocks > 0:
        held = 100 * sum(total for (tid, _), total in sampled.items() if tid in rest_clock) / clocks
        builder.notes.append("per-thread totals set to each thread's CPU clock over the window "
                             f"(the samples' own CPU deltas held {held:.0f} % of it)")
    if labelled_ns > 0:
        builder.notes.append(
            "per thread, each label set's total set to the CPU its thread's clock showed inside "
            f"its blocks ({100 * unseen_ns / labelled_ns:.1f} % of it was in blocks no sample saw)")
    if label_cpu.full:
        builder.notes.append("too many (thread, label set) pairs to clock: label totals are the "
                             "samples'")
    return [(stack, value * factors.get((tid, labels), 1.0), count, thread, tid, labels)
            for stack, value, count, thread, tid, labels in kept]


def _leave_out_runqueue_waits(kept: list, cpu: ThreadCpu, elapsed_ns: int,
                              builder: ProfileBuilder) -> list:
    """Time runnable but waiting for a core is not blocking (a busy loop on a loaded 2-core
    machine showed 60 % "off-CPU" from it alone): per thread, the samples' off-CPU time is cut
    down to at most the window minus its CPU and run-queue time, proportionally."""
    sampled: dict[object, float] = {}
    for sample in kept:
        sampled[sample[4]] = sampled.get(sample[4], 0.0) + sample[1]
    if not cpu.available:
        return kept
    factors = {}
    for tid, total in sampled.items():
        if isinstance(tid, int) and tid in cpu.last and total > 0:
            off_cpu = elapsed_ns - cpu.used_ns(tid) - cpu.runqueue_ns(tid)
            factors[tid] = min(1.0, max(0.0, off_cpu) / total)
    builder.notes.append("per thread, time runnable but waiting for a core is left out")
    return [(stack, value * factors.get(tid, 1.0), count, thread, tid, labels)
            for stack, value, count, thread, tid, labels in kept]


def _value_columns(profile: _pprof.Profile, names: Iterable[str]) -> list[int]:
    try:
        return [profile.sample_types.index(name) for name in names]
    except ValueError:
        raise CollectorError(
            f"the in-process sampler's profile lacks sample types {list(names)} (has "
            f"{profile.sample_types}); ddtrace=={DDTRACE_VERSION} is required") from None


def collect(*, profile_type: str, duration: float, rate: float, window: Window) -> dict:
    engine = STACK_ENGINE
    cpu = ThreadCpu()
    label_cpu = labels_api.LabelCpu() if profile_type == "cpu" else None
    run, elapsed = _collect(profile_type, rate, window, cpu, label_cpu)
    builder = ProfileBuilder(profile_type, engine, rate)
    names = {t.ident: t.name for t in threading.enumerate() if t.ident is not None}
    # the agent's threads and the one that called collect() (it only waits) are left out
    agent_idents = {ident for ident, name in names.items() if is_agent_thread(name)}
    agent_idents.add(threading.get_ident())
    columns = {
        "cpu": ("cpu-time", "cpu-samples"),
        "block": ("wall-time", "cpu-time", "wall-samples"),
        "goroutine": ("wall-samples",),
    }[profile_type]
    resolver = _source.shared()

    def frame(function: str, file: str, line: int) -> int:
        # ddtrace gives the qualified name and the line running; the raw format the def line
        short = function.rsplit(".", 1)[-1]
        name, first = resolver.resolve(short, file, line)
        if name == short and first == line:  # not resolved: keep ddtrace's qualified name
            name = function
        return builder.frame(name, file, first)

    passes: dict[int, int] = {}
    # (stack, value, count, thread name, thread native id, labels)
    kept: list[tuple[tuple[int, ...], float, int, str, object, tuple]] = []
    for profile in run.flushes:
        index = _value_columns(profile, columns)
        passes_column = profile.sample_types.index("wall-samples")
        for sample in profile.samples:
            ident = sample.labels.get("thread id")
            if isinstance(ident, int) and "task name" not in sample.labels:
                passes[ident] = passes.get(ident, 0) + sample.values[passes_column]
            values = [sample.values[i] for i in index]
            if profile_type == "block":
                value, count = values[0] - values[1], values[2]
            elif profile_type == "goroutine":
                value = count = values[0]
            else:
                value, count = values
            if value <= 0:
                continue
            if ident in agent_idents:
                continue
            stack = tuple(frame(*item) for item in sample.stack if not hidden_file(item[1]))
            if not stack:
                continue  # all the agent's own frames: its work, not the host's
            kept.append((stack, value, count, _thread_name(sample.labels, names),
                         sample.labels.get("thread native id"),
                         sample.labels.get(_LABELS, ())))
    kept = _reroot_torn_stacks(kept, builder)
    if profile_type == "cpu":
        kept = _scale_to_thread_clocks(kept, cpu, label_cpu, builder)
    elif profile_type == "block":
        kept = _leave_out_runqueue_waits(kept, cpu, int(elapsed * 1e9), builder)
    count_total = 0
    for stack, value, count, thread, _tid, labels in kept:
        builder.add(stack, value, count, thread, labels)
        count_total += count
    reached = max(passes.values(), default=0) / elapsed if elapsed > 0 else 0.0
    builder.notes.append(f"in-process stack sampler: {reached:.0f} Hz reached per thread "
                         f"({rate:g} Hz requested), no ptrace")
    if _session.slowdown > 1.0:
        builder.notes.append(
            f"sampling slowed {_session.slowdown:.1f}x at the window's end to keep the sampler "
            f"within {SAMPLER_BUDGET_PERCENT:g} % of the process's CPU (or "
            f"{SAMPLER_FLOOR_CORE_PERCENT:g} % of a core)")
    if profile_type == "cpu":
        builder.notes.append("each sample weighted by the CPU time its thread used since its "
                             "previous sample (thread CPU clock)")
    elif profile_type == "block":
        builder.notes.append("off-CPU time: each sample's wall time minus its thread's CPU time "
                             "(sleep, I/O, lock and GIL waits)")
    else:
        builder.notes.append("value = number of (sample pass, thread or asyncio task) "
                             "observations")
    return builder.result(started_at=window.started_at, duration_seconds=elapsed,
                          sample_count=count_total)
