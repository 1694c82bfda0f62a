"""The agent's collectors find what a workload makes hot, obey the contract, and fail cleanly.

Plain functions, no database, no Django: .ci/agent-pythons runs this module on every CPython
with ``pytest -p no:django --noconftest``. Each profile window is 1-2 s.
"""

from __future__ import annotations

import _thread
import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the repository root, when pytest is run without it on the path
    sys.path.insert(0, str(ROOT))

from profiling_agent import collectors  # noqa: E402
from profiling_agent.collectors import alloc_sampler, ddprof, locks, pyspy, threads  # noqa: E402
from profiling_agent.collectors._source import SourceResolver  # noqa: E402

# where the agent under test is installed (the source tree, or site-packages with its compiled
# hook): the programs these tests start import that one
AGENT_PATH = str(Path(collectors.__file__).resolve().parents[2])
IN_PROCESS = ddprof.available()
needs_in_process = pytest.mark.skipif(not IN_PROCESS,
                                      reason="the in-process sampler's extra is not installed")
needs_alloc_hook = pytest.mark.skipif(not alloc_sampler.available(),
                                      reason="the agent was built without its allocation hook")
needs_memray = pytest.mark.skipif(not __import__("importlib").util.find_spec("memray"),
                                  reason="memray is not installed")
MEMORY_ENGINES = [pytest.param("alloc-sampler", marks=needs_alloc_hook),
                  pytest.param("memray", marks=needs_memray)]

# --- helpers ---------------------------------------------------------------------------------


@contextmanager
def running(*targets: Callable[[threading.Event], None], names: list[str] | None = None):
    """Run each target(stop_event) in its own thread for the duration of the block."""
    stop = threading.Event()
    started = [threading.Thread(target=t, args=(stop,), daemon=True,
                                name=(names[i] if names else t.__name__))
               for i, t in enumerate(targets)]
    for thread in started:
        thread.start()
    try:
        time.sleep(0.2)
        yield started
    finally:
        stop.set()
        for thread in started:
            thread.join(10)


def check_raw(profile: dict, profile_type: str, engine: str) -> None:
    """Structure every consumer relies on; also the server's own validator when present."""
    assert profile["format"] == "pyprof-raw/1"
    assert profile["profileType"] == profile_type
    assert profile["engine"] == engine
    assert profile["unit"] == {"cpu": "nanoseconds", "block": "nanoseconds",
                               "mutex": "nanoseconds", "memory": "bytes", "alloc": "bytes",
                               "goroutine": "count"}[profile_type]
    assert isinstance(profile["sampleRate"], int)
    assert profile["durationSeconds"] > 0 and profile["startedAt"] > 1.6e9
    frames = profile["frames"]
    seen = set()
    for sample in profile["samples"]:
        assert sample["stack"] and all(0 <= i < len(frames) for i in sample["stack"])
        assert len(sample["stack"]) <= 512
        assert isinstance(sample["value"], int) and sample["value"] >= 0
        assert isinstance(sample["count"], int) and sample["count"] >= 0
        labels = sample.get("labels", {})
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        key = (tuple(sample["stack"]), sample["thread"], tuple(sorted(labels.items())))
        assert key not in seen, "identical (stack, thread, labels) samples must be aggregated"
        seen.add(key)
    for frame in frames:
        assert set(frame) == {"function", "file", "line"}
    try:
        from profiles.analysis.model import Profile
    except ImportError:  # the analysis package is another part; validate when it is there
        return
    Profile.from_raw(profile)


def totals(profile: dict, *, by: str = "function") -> dict[str, int]:
    """Self+children value per function (once per sample), or per thread with by='thread'."""
    out: dict[str, int] = {}
    for sample in profile["samples"]:
        if by == "thread":
            keys = {sample["thread"]}
        else:
            keys = {profile["frames"][i]["function"] for i in sample["stack"]}
        for key in keys:
            out[key] = out.get(key, 0) + sample["value"]
    return out


def share(profile: dict, function: str, among: set[str]) -> float:
    """``function``'s total as a fraction of the summed totals of the ``among`` functions."""
    values = totals(profile)
    whole = sum(values.get(name, 0) for name in among)
    return values.get(function, 0) / whole if whole else 0.0


# --- workloads --------------------------------------------------------------------------------

KEPT: list = []


class Grower:
    @staticmethod
    def _decorate(fn):
        return fn

    @_decorate
    def grow(self, stop: threading.Event) -> None:
        """Keeps what it allocates: the memory profile's culprit."""
        while not stop.is_set():
            KEPT.append(bytearray(20_000))
            time.sleep(0.002)


def grower(stop: threading.Event) -> None:
    Grower().grow(stop)


def churner(stop: threading.Event) -> None:
    """Allocates a lot and keeps nothing: the alloc profile's culprit."""
    while not stop.is_set():
        for _ in range(30):
            buffer = bytearray(50_000)
            del buffer
        time.sleep(0.001)


def spinner(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


def napper(stop: threading.Event) -> None:
    while not stop.is_set():
        time.sleep(0.02)


# --- memory / alloc ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine", MEMORY_ENGINES)
def test_memory_blames_the_function_that_keeps_allocations(engine):
    KEPT.clear()
    with running(grower, churner):
        profile = collectors.collect("memory", duration_seconds=2, sample_rate=100,
                                     engine=engine)
    KEPT.clear()
    check_raw(profile, "memory", engine)
    assert share(profile, "Grower.grow", {"Grower.grow", "churner"}) > 0.9, totals(profile)
    # 2 s of 20 kB every ~2 ms: several MB live at the end of the window
    assert totals(profile)["Grower.grow"] > 5_000_000
    if engine == "memray":
        assert any("growth" in note for note in profile["notes"])
        assert any("512 bytes" in note for note in profile["notes"])
    else:
        assert any("still live" in note for note in profile["notes"])
    grow_frame = next(f for f in profile["frames"] if f["function"] == "Grower.grow")
    assert grow_frame["line"] == Grower.grow.__code__.co_firstlineno  # def line, via the source


@pytest.mark.parametrize("engine", MEMORY_ENGINES)
def test_alloc_blames_the_churner(engine):
    KEPT.clear()
    with running(grower, churner):
        profile = collectors.collect("alloc", duration_seconds=2, sample_rate=100,
                                     engine=engine)
    KEPT.clear()
    check_raw(profile, "alloc", engine)
    assert share(profile, "churner", {"Grower.grow", "churner"}) > 0.8, totals(profile)
    churn_counts = sum(s["count"] for s in profile["samples"]
                       if any(profile["frames"][i]["function"] == "churner" for i in s["stack"]))
    assert churn_counts > 1000  # 30 allocations a millisecond or so
    assert profile["sampleCount"] >= churn_counts


def test_source_resolver_gives_qualname_and_first_line():
    resolver = SourceResolver()
    code = Grower.grow.__code__
    inside = code.co_firstlineno + 5
    assert resolver.resolve("grow", code.co_filename, inside) == (
        "Grower.grow", code.co_firstlineno)
    assert resolver.resolve("<module>", code.co_filename, 40) == ("<module>", 1)
    assert resolver.resolve("gone", "/no/such/file.py", 7) == ("gone", 7)



def test_source_resolver_follows_the_source_when_its_bytecode_cache_is_stale(tmp_path):
    """Names and def lines come from the file's bytecode cache when it matches the source and
    from the source itself when it changed since (a deploy that rewrote the file)."""
    import importlib.util
    import py_compile

    module_file = tmp_path / "resolver_target.py"
    module_file.write_text("class Shop:\n    @staticmethod\n    def checkout():\n"
                           "        total = 1\n        return [x for x in range(total)]\n")
    # the cache the interpreter writes at import (timestamp-checked, its default)
    py_compile.compile(str(module_file), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    assert Path(importlib.util.cache_from_source(str(module_file))).exists()
    assert SourceResolver().resolve("checkout", str(module_file), 4) == ("Shop.checkout", 2)

    before = module_file.stat()
    module_file.write_text("import os\n\n\nclass Shop:\n    @staticmethod\n    def checkout():\n"
                           "        total = 1\n        return total\n")
    os.utime(module_file, (before.st_atime, before.st_mtime + 10))
    assert SourceResolver().resolve("checkout", str(module_file), 7) == ("Shop.checkout", 5)


# --- mutex ------------------------------------------------------------------------------------


@pytest.fixture
def lock_profiler():
    installed = collectors.install_lock_profiler()
    yield
    if installed:
        collectors.uninstall_lock_profiler()


def _lock_workload(lock):
    def holder(stop: threading.Event) -> None:
        while not stop.is_set():
            with lock:
                time.sleep(0.005)
            time.sleep(0.001)

    def wait_in_with_lock(stop: threading.Event) -> None:
        while not stop.is_set():
            with lock:
                pass

    return holder, wait_in_with_lock


def test_mutex_blames_the_function_waiting_in_with_lock(lock_profiler):
    lock = threading.Lock()  # created after installation, like a service's locks
    holder, waiter = _lock_workload(lock)
    with running(holder, waiter):
        profile = collectors.collect("mutex", duration_seconds=2, sample_rate=100)
    check_raw(profile, "mutex", "lock-wrapper")
    values = totals(profile)
    waited = values.get("_lock_workload.<locals>.wait_in_with_lock", 0)
    # the waiter waits whenever the holder holds (5 ms of every ~7-12 ms, GIL hand-overs
    # included); the holder rarely waits
    assert waited > 0.25 * 2e9, values
    assert waited > 3 * values.get("_lock_workload.<locals>.holder", 0)
    assert profile["sampleCount"] == sum(s["count"] for s in profile["samples"]) > 50
    leaf = {profile["frames"][s["stack"][-1]]["function"] for s in profile["samples"]}
    assert "_lock_workload.<locals>.wait_in_with_lock" in leaf  # the `with` line's function


def test_yappi_wall_misses_with_lock_waits_and_the_wrapper_does_not(lock_profiler):
    """The measurement behind the lock wrapper: yappi (wall clock) puts the wait of a
    ``with lock:`` into the caller's own time, as if it were computing."""
    import yappi

    raw_lock = _thread.allocate_lock()  # a plain C lock, as without the wrapper
    holder, waiter = _lock_workload(raw_lock)
    yappi.set_clock_type("wall")
    yappi.start(builtins=True)
    try:
        with running(holder, waiter):
            time.sleep(1.0)
    finally:
        yappi.stop()
    stats = {s.full_name: s for s in yappi.get_func_stats()}
    yappi.clear_stats()
    waiter_stat = next(s for s in stats.values()
                       if s.name.endswith("wait_in_with_lock"))
    lock_time = sum(s.ttot for s in stats.values()
                    if "lock" in s.name.lower() and ("enter" in s.name or "acquire" in s.name))
    # the waiter waited most of the second, all of it as its own "self" time
    assert waiter_stat.tsub > 0.5
    assert lock_time < 0.1 * waiter_stat.tsub

    wrapped = threading.Lock()
    holder, waiter = _lock_workload(wrapped)
    with running(holder, waiter):
        profile = collectors.collect("mutex", duration_seconds=1, sample_rate=100)
    assert totals(profile).get("_lock_workload.<locals>.wait_in_with_lock", 0) > 0.25e9


def test_lock_wrapper_keeps_lock_semantics(lock_profiler):
    lock = threading.Lock()
    assert isinstance(lock, locks._ProfiledLock)
    assert lock.acquire() and lock.locked()
    assert not lock.acquire(False)
    started = time.perf_counter()
    assert not lock.acquire(timeout=0.05)
    assert time.perf_counter() - started >= 0.04
    lock.release()
    assert not lock.locked()

    rlock = threading.RLock()
    with rlock, rlock:  # reentrant
        assert rlock._is_owned()
    condition = threading.Condition()  # built on a wrapped RLock
    box = []

    def produce():
        with condition:
            box.append(1)
            condition.notify()

    with condition:
        threading.Timer(0.05, produce).start()
        assert condition.wait_for(lambda: box, timeout=5)
    event = threading.Event()
    threading.Timer(0.05, event.set).start()
    assert event.wait(5)

    collectors.uninstall_lock_profiler()
    assert not isinstance(threading.Lock(), locks._ProfiledLock)
    assert collectors.install_lock_profiler()


@pytest.mark.skipif(locks._lockwrap is None, reason="already the Python path here")
def test_the_lock_wrappers_python_path_passes_the_same_tests():
    """Where the agent was built without a C compiler, the wrapper's uncontended path is Python:
    the waits it records and the lock's semantics are the same."""
    code = (
        "import sys\n"
        "sys.modules['profiling_agent.collectors._lockwrap'] = None  # as if never built\n"
        "import pytest\n"
        "from profiling_agent.collectors import locks\n"
        "assert locks._lockwrap is None\n"
        f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-c', '/dev/null', '--noconftest',"
        f" {__file__!r}, '-k', 'mutex_blames or keeps_lock_semantics']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=AGENT_PATH),
                          cwd=str(Path(__file__).parent))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout, proc.stdout[-2000:]


def test_mutex_without_agent_installation_notes_the_blind_spot():
    assert not collectors.lock_profiler_installed()
    profile = collectors.collect("mutex", duration_seconds=0.3, sample_rate=100)
    check_raw(profile, "mutex", "lock-wrapper")
    assert any("installed only for this window" in note for note in profile["notes"])
    assert not collectors.lock_profiler_installed()  # restored afterwards


# --- block / goroutine ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", [pytest.param("stack-sampler", marks=needs_in_process),
                                    "thread-sampler"])
def test_block_blames_the_sleeping_thread(engine):
    with running(napper, spinner):
        profile = collectors.collect("block", duration_seconds=2, sample_rate=100,
                                     engine=engine)
    check_raw(profile, "block", engine)
    values = totals(profile)
    by_thread = totals(profile, by="thread")
    assert values.get("napper", 0) > 0.8 * 2e9, values  # asleep nearly the whole window
    assert values.get("napper", 0) > 2 * values.get("spinner", 0)
    assert "MainThread" not in by_thread  # the collecting thread is the agent's
    sleeping_leaf = {profile["frames"][s["stack"][-1]]["function"] for s in profile["samples"]
                     if s["thread"] == "napper"}
    assert sleeping_leaf == {"napper"}


def burn_cpu(seconds: float) -> float:
    """Spin until this thread used ``seconds`` of CPU (its own clock); returns what it used."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass
    return time.thread_time() - start


def loop_with_pending_tasks(ready: threading.Event, *coroutines):
    """A thread target for `running`: an asyncio loop whose main() keeps tasks pending until
    stopped, one per coroutine function (default: three that only wait); `ready` is set once
    each has run to its first await."""

    async def pending_task() -> None:
        await asyncio.sleep(60)

    def event_loop(stop: threading.Event) -> None:
        async def main() -> None:
            tasks = [asyncio.ensure_future(make()) for make in coroutines or [pending_task] * 3]
            await asyncio.sleep(0)  # the new tasks run to their first await before main resumes
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()

        asyncio.run(main())

    return event_loop


def test_goroutine_counts_every_thread_and_asyncio_task():
    def idle(stop: threading.Event) -> None:
        stop.wait()

    loop_ready = threading.Event()

    event_loop = loop_with_pending_tasks(loop_ready)

    names = [f"idle-{i}" for i in range(5)] + ["loop"]
    with running(*([idle] * 5), event_loop, names=names):
        assert loop_ready.wait(5)
        # Every thread but this one and the agent's, including any an earlier test left running.
        live_threads = [
            t for t in threading.enumerate()
            if t is not threading.current_thread() and not t.name.startswith("profiles-agent")
        ]
        profile = collectors.collect("goroutine", duration_seconds=2, sample_rate=100,
                                     engine="thread-sampler")
    check_raw(profile, "goroutine", "thread-sampler")
    per_thread = {}
    for sample in profile["samples"]:
        per_thread[sample["thread"]] = per_thread.get(sample["thread"], 0) + sample["count"]
    snapshots = per_thread["idle-0"]
    assert snapshots == 2  # 1 Hz at most over 2 s
    assert all(per_thread[f"idle-{i}"] == snapshots for i in range(5))
    assert per_thread["loop"] == snapshots
    # three pending tasks and main(), which is suspended in its own sleep between snapshots
    assert per_thread["asyncio tasks"] == 4 * snapshots
    assert "MainThread" not in per_thread
    assert len(live_threads) >= len(names)
    workload_threads = len(live_threads)
    assert profile["sampleCount"] == sum(per_thread.values())
    assert sum(v for k, v in per_thread.items() if k != "asyncio tasks") \
        == snapshots * workload_threads
    task_leaves = {profile["frames"][s["stack"][-1]]["function"] for s in profile["samples"]
                   if s["thread"] == "asyncio tasks"}
    assert task_leaves == {"sleep"}  # outermost coroutine first, asyncio.sleep innermost


@needs_in_process
def test_stack_sampler_goroutine_sees_every_thread_and_the_tasks_of_a_running_loop():
    from profiling_agent.collectors import ddprof

    # a sampler still running from an earlier test's window keeps tracking that test's loops
    ddprof._session.shutdown()
    loop_ready = threading.Event()

    event_loop = loop_with_pending_tasks(loop_ready)

    def idle(stop: threading.Event) -> None:
        stop.wait()

    names = ["idle-0", "idle-1", "loop"]
    with running(idle, idle, event_loop, names=names):  # the loop runs before the sampler
        assert loop_ready.wait(5)
        profile = collectors.collect("goroutine", duration_seconds=2, sample_rate=100)
    check_raw(profile, "goroutine", "stack-sampler")
    per_thread: dict[str, int] = {}
    for sample in profile["samples"]:
        per_thread[sample["thread"]] = per_thread.get(sample["thread"], 0) + sample["count"]
    assert per_thread["idle-0"] > 5 and per_thread["idle-1"] > 5, per_thread
    assert "MainThread" not in per_thread
    pending = [s for s in profile["samples"]
               if any(profile["frames"][i]["function"].endswith("pending_task")
                      for i in s["stack"])]
    assert len({s["thread"] for s in pending}) == 3, per_thread  # one per pending task


@needs_in_process
def test_a_thread_starts_through_one_sampler_wrapper_however_often_the_sampler_restarted():
    """ddtrace wraps the thread bootstrap at every start; three restarts once meant three
    wrappers around every new thread's life."""
    import ddtrace.profiling.collector.threading as dd_threading

    for _ in range(3):
        ddprof._session.shutdown()
        collectors.collect("goroutine", duration_seconds=0.2, sample_rate=50,
                           engine="stack-sampler")
    wrappers = []

    def count_wrappers() -> None:
        frame = sys._getframe()
        while frame is not None:
            wrappers.append(frame.f_code.co_filename == dd_threading.__file__)
            frame = frame.f_back

    thread = threading.Thread(target=count_wrappers)
    thread.start()
    thread.join()
    assert sum(wrappers) == 1


@needs_in_process
def test_stack_sampler_goroutine_sees_a_hundred_threads_in_every_pass():
    """A thread leak must read as one: ddtrace samples 25 threads a pass by default (picked at
    random), so 100 threads looked like 25 in the goroutine profile (each seen in a quarter of
    the passes); the agent has it sample every thread."""
    names = [f"leaked-{i}" for i in range(100)]

    def idle(stop: threading.Event) -> None:
        stop.wait()

    with running(*([idle] * len(names)), names=names):
        # 4 s: a hundred threads a pass cost enough that the governor slows the sampler to ~3
        # passes a second, and 2 s windows saw 6 passes, too few to tell all from a quarter
        profile = collectors.collect("goroutine", duration_seconds=4, sample_rate=50)
    # a hundred threads cost the governor's budget and slowed the sampler, which speeds up
    # again only twofold a second: the next test starts from a fresh one (on 3.10 the next
    # cpu window saw 12 samples in 1.5 s at 100 Hz)
    ddprof._session.shutdown()
    check_raw(profile, "goroutine", "stack-sampler")
    per_thread: dict[str, int] = {}
    for sample in profile["samples"]:
        per_thread[sample["thread"]] = per_thread.get(sample["thread"], 0) + sample["count"]
    seen = [per_thread.get(name, 0) for name in names]
    # every thread in each pass: all as often as the most seen (a pass may end the window
    # between two threads); 25 of 100 a pass would give each about a quarter of the passes
    assert min(seen) >= max(seen) - 1 > 5, sorted(seen)


# --- cpu --------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", [pytest.param("stack-sampler", marks=needs_in_process),
                                    "py-spy"])
def test_cpu_drops_agent_threads_and_finds_the_hot_thread(engine):
    readings: list[tuple[float, float]] = []  # (epoch, the spinner's CPU clock)

    def timed_spinner(stop: threading.Event) -> None:
        while not stop.is_set():
            for _ in range(20):
                sum(range(1000))
            readings.append((time.time(), time.thread_time()))

    def agent_busy(stop: threading.Event) -> None:
        spinner(stop)

    with running(timed_spinner, agent_busy, names=["spinner", "profiles-agent-busy"]):
        profile = collectors.collect("cpu", duration_seconds=1.5, sample_rate=100,
                                     engine=engine)
    start, end = profile["startedAt"], profile["startedAt"] + profile["durationSeconds"]
    inside = [cpu for at, cpu in readings if start <= at <= end]
    used = inside[-1] - inside[0]
    check_raw(profile, "cpu", engine)
    assert 0 <= profile["overheadPercent"] < 100
    by_thread = totals(profile, by="thread")
    assert "profiles-agent-busy" not in by_thread
    assert "MainThread" not in by_thread
    # the spinner's real CPU time in the window, by its own clock
    assert 0.8 * used < by_thread.get("spinner", 0) / 1e9 < 1.2 * used, (by_thread, used)
    assert profile["sampleCount"] > 20
    spin_frame = next(f for f in profile["frames"] if f["function"].endswith("timed_spinner"))
    assert spin_frame["line"] == timed_spinner.__code__.co_firstlineno
    assert spin_frame["file"] == __file__


def test_cpu_yappi_counts_calls_exactly_and_rebuilds_stacks():
    calls = 2000

    def leaf() -> int:
        return sum(range(50))

    def caller(stop: threading.Event) -> None:
        import yappi

        while not yappi.is_running() and not stop.is_set():
            time.sleep(0.01)
        for _ in range(calls):
            leaf()
        stop.wait()  # still inside caller() when the window closes

    with running(caller):
        profile = collectors.collect("cpu", duration_seconds=1.0, sample_rate=100,
                                     engine="yappi")
    check_raw(profile, "cpu", "yappi")
    frames = profile["frames"]
    leaf_samples = [s for s in profile["samples"]
                    if frames[s["stack"][-1]]["function"].endswith("leaf")]
    assert sum(s["count"] for s in leaf_samples) == calls
    for sample in leaf_samples:  # root first: ... caller -> leaf
        names = [frames[i]["function"] for i in sample["stack"]]
        assert names[-2].endswith("caller"), names
    assert "MainThread" not in totals(profile, by="thread")


# --- contract ---------------------------------------------------------------------------------


def collect_in_threads(runs: list[dict]) -> list:
    """Start every run at once, each in its own thread; profile or CollectorError per run."""
    results: list = [None] * len(runs)

    def run(index: int) -> None:
        try:
            results[index] = collectors.collect(**runs[index])
        except collectors.CollectorError as exc:
            results[index] = exc

    threads_ = [threading.Thread(target=run, args=(i,)) for i in range(len(runs))]
    for thread in threads_:
        thread.start()
    for thread in threads_:
        thread.join(60)
    return results


@needs_in_process
def test_every_type_at_once_from_different_threads():
    KEPT.clear()
    with running(spinner, napper, grower, churner):
        results = collect_in_threads([
            {"profile_type": kind, "duration_seconds": 2, "sample_rate": 100}
            for kind in collectors.ENGINES])
    KEPT.clear()
    for kind, result in zip(collectors.ENGINES, results, strict=True):
        assert isinstance(result, dict), f"{kind}: {result}"
        check_raw(result, kind, collectors.DEFAULT_ENGINES[kind])
    by_type = dict(zip(collectors.ENGINES, results, strict=True))
    assert totals(by_type["cpu"], by="thread").get("spinner", 0) > 0.3e9
    assert totals(by_type["block"]).get("napper", 0) > 1e9
    assert totals(by_type["memory"]).get("Grower.grow", 0) > 1_000_000
    assert totals(by_type["alloc"]).get("churner", 0) > 10_000_000
    assert {"spinner", "napper", "grower"} <= set(totals(by_type["goroutine"], by="thread"))


@contextmanager
def cpu_window_underway(**window):
    """A cpu window collecting in another thread; the block runs once it reported its first
    progress (about 1 s in) and ends when the window has; yields [profile]."""
    results: list = [None]
    underway = threading.Event()

    def collect() -> None:
        results[0] = collectors.collect("cpu", progress=lambda _: underway.set(), **window)

    thread = threading.Thread(target=collect)
    thread.start()
    assert underway.wait(10)
    try:
        yield results
    finally:
        thread.join(30)


@needs_in_process
def test_an_on_demand_run_inside_a_longer_window_is_served_by_the_same_sampler():
    with running(spinner):
        with cpu_window_underway(duration_seconds=3, sample_rate=100) as results:
            short = collectors.collect("cpu", duration_seconds=1, sample_rate=100)
    long = results[0]
    spin_long = totals(long, by="thread")["spinner"]
    spin_short = totals(short, by="thread")["spinner"]
    # both saw the spinner, each for its own window: about 1/3 of the long one in the short one
    assert 0.15 < spin_short / spin_long < 0.6, (spin_short, spin_long)


@needs_in_process
def test_the_stack_sampler_keeps_the_requested_rate_when_its_profiler_restarts():
    """A fresh profiler, one kept from the window before, one after a stop and start (as in a
    forked child), and a memory run joining a cpu run: ddtrace's adaptive sampling sampled a
    fresh process's first window at 2-4 times the rate asked and, after a restart, at
    ~1,000 Hz."""

    def spinner_rate(profile: dict) -> float:
        samples = sum(sample["count"] for sample in profile["samples"]
                      if sample["thread"] == "spinner")
        return samples / profile["durationSeconds"]

    profiles = []
    ddprof._session.shutdown()  # a fresh profiler: not one an earlier test's threads slowed
    with running(spinner):
        for restart in (False, False, True):
            if restart:
                ddprof._session.shutdown()  # stops the profiler: the next window restarts it
            profiles.append(collectors.collect("cpu", duration_seconds=1, sample_rate=50))
        with cpu_window_underway(duration_seconds=2, sample_rate=50) as results:
            collectors.collect("memory", duration_seconds=0.5, sample_rate=50)  # joins the cpu run
        profiles.append(results[0])
    rates = [spinner_rate(profile) for profile in profiles]
    # the spinner runs all the time: about 50 samples a second at the fixed interval (44-54
    # measured), fewer only where the sampler's budget slowed it (its cost on a busy thread at
    # 50 Hz is near the budget); adaptive sampling gave 148-185 in the first window and
    # 567-1,568 after a restart
    assert all(50 / 4 < rate < 50 * 1.3 for rate in rates), (
        rates, [profile["overheadPercent"] for profile in profiles],
        [[note for note in profile["notes"] if "Hz" in note or "slowed" in note] for profile in profiles])


@needs_in_process
def test_between_runs_the_stack_sampler_slows_to_its_idle_interval():
    """The profiler outlives its runs (a restart samples wrong for a while), but between runs
    it samples at the idle interval, not the rate asked: kept at 100 Hz, an idle agent paid
    ~1.75 % of a core after its first cpu profile, for the rest of its life."""
    def interval_and_rate_asked() -> tuple[float, float]:
        """The sampler's interval and the one the rate asked would give, governor included."""
        with ddprof._session.lock:
            return ddprof._session.interval, min(ddprof._session.slowdown / 100,
                                                 ddprof.SAMPLER_MAX_INTERVAL_SECONDS)

    with running(spinner):
        with cpu_window_underway(duration_seconds=2, sample_rate=100):
            during, asked_during = interval_and_rate_asked()
        between, asked_between = interval_and_rate_asked()
        with cpu_window_underway(duration_seconds=2, sample_rate=100):
            next_run, asked_next = interval_and_rate_asked()
    assert during == asked_during and next_run == asked_next  # runs: the rate asked
    # between them: the idle interval, or slower if the governor slowed the sampler further
    assert between == max(ddprof.SAMPLER_IDLE_INTERVAL_SECONDS, asked_between)


@needs_in_process
def test_a_sampler_that_would_take_a_core_is_slowed_to_its_budget():
    """200 threads parked 100 frames deep, sampled at the 1,000 Hz the API allows: sampling at
    the rate asked would keep a core busy (measured: the whole core, 36 passes a second, when
    ddtrace sampled 25 of the threads a pass). The governor slows it within a second, down to
    its floor of one pass a second (a pass over every thread costs 36 ms on CPython 3.11, 57 ms
    on 3.10, more than the budget allows); in the next window the idle process's CPU, the
    profile's decoding included, is a small part of a core (measured 3-5 % on 3.11-3.13, 8-12 %
    on 3.10, against the whole core ungoverned), and the profile says sampling was slowed."""
    release = threading.Event()

    def parked(depth: int) -> None:
        if depth:
            return parked(depth - 1)
        release.wait()

    threads_ = [threading.Thread(target=parked, args=(100,), daemon=True, name=f"parked-{i}")
                for i in range(200)]
    for thread in threads_:
        thread.start()
    try:
        collectors.collect("goroutine", duration_seconds=3, sample_rate=1000)  # the governor acts
        began_cpu, began = time.process_time(), time.monotonic()
        profile = collectors.collect("goroutine", duration_seconds=4, sample_rate=1000)
        cores = (time.process_time() - began_cpu) / (time.monotonic() - began)
    finally:
        release.set()
        for thread in threads_:
            thread.join(10)
    slowed = [note for note in profile["notes"] if "sampling slowed" in note]
    assert slowed, profile["notes"]
    assert cores < 0.2, (cores, slowed)
    # still sampled, every thread
    assert {name for name in totals(profile, by="thread") if name.startswith("parked-")} == {
        thread.name for thread in threads_}


@needs_in_process
def test_the_pinned_ddtrace_writes_what_the_agent_reads(monkeypatch):
    """The contract with ddtrace's local pprof files: a release that changes them fails here."""
    import ddtrace

    assert ddtrace.__version__ == ddprof.DDTRACE_VERSION
    flushed = []
    decode = ddprof._pprof.decode
    monkeypatch.setattr(ddprof._pprof, "decode",
                        lambda data: flushed.append(decode(data)) or flushed[-1])
    with running(spinner):
        collectors.collect("cpu", duration_seconds=1, sample_rate=100)
    assert flushed
    needed = {"cpu-time", "cpu-samples", "wall-time", "wall-samples"}
    samples = [s for profile in flushed for s in profile.samples]
    for profile in flushed:
        assert needed <= set(profile.sample_types), profile.sample_types
    assert any(isinstance(s.labels.get("thread id"), int)
               and isinstance(s.labels.get("thread native id"), int)
               and s.labels.get("thread name") == "spinner" for s in samples)
    spinner_frames = [f for s in samples for f in s.stack if f[0] == "spinner"]
    assert spinner_frames and all(f[1] == __file__ and f[2] > 0 for f in spinner_frames)


@needs_in_process
def test_the_in_process_sampler_leaves_the_hosts_signal_handlers_alone():
    import signal

    def handler(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        collectors.collect("cpu", duration_seconds=0.3, sample_rate=100)  # from the main thread
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


@needs_memray
def test_exclusive_engines_refuse_naming_the_busy_one():
    results = collect_in_threads([
        {"profile_type": "memory", "duration_seconds": 1.5, "sample_rate": 100,
         "engine": "memray"},
        {"profile_type": "cpu", "duration_seconds": 0.3, "sample_rate": 100,
         "engine": "yappi", "stop_event": None},
    ])
    refused = [r for r in results if isinstance(r, collectors.CollectorError)]
    assert len(refused) == 1, results
    assert "already collecting" in refused[0].reason
    assert "memray" in refused[0].reason and "yappi" in refused[0].reason
    # free again once the other finished
    collectors.collect("cpu", duration_seconds=0.2, sample_rate=100, engine="yappi")


def _child_collects(profile_type: str, engine: str) -> int:
    """Exit status of a child forked now that collects once (killed after 30 s: a deadlock)."""
    pid = os.fork()
    if pid == 0:
        try:
            collectors.collect(profile_type, duration_seconds=0.3, sample_rate=100,
                               engine=engine)
            os._exit(0)
        except BaseException:
            os._exit(1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return -9


FORK_CASES = [("goroutine", "thread-sampler"), ("block", "thread-sampler"),
              ("mutex", "lock-wrapper"),
              pytest.param("cpu", "stack-sampler", marks=needs_in_process),
              pytest.param("memory", "alloc-sampler", marks=needs_alloc_hook)]


@pytest.mark.parametrize("profile_type,engine", FORK_CASES)
def test_a_child_forked_mid_collection_can_collect(profile_type, engine):
    underway = threading.Event()  # set by the window's first progress report (about 1 s in)
    background = threading.Thread(target=collectors.collect, args=(profile_type,),
                                  kwargs={"duration_seconds": 2, "sample_rate": 100,
                                          "engine": engine, "progress": lambda _: underway.set()})
    background.start()
    assert underway.wait(10)
    status = _child_collects(profile_type, engine)
    background.join(30)
    assert status == 0


def test_a_child_forked_while_the_lock_profiler_holds_its_lock_does_not_deadlock(lock_profiler):
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with locks._state_lock:
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    try:
        status = _child_collects("mutex", "lock-wrapper")
    finally:
        release.set()
        holder.join(10)
    assert status == 0


def test_the_lock_profiler_keeps_isinstance_and_typing(lock_profiler):
    wrapped, reentrant = threading.Lock(), threading.RLock()
    assert isinstance(wrapped, locks._ProfiledLock)
    assert isinstance(wrapped, threading.Lock)
    assert not isinstance(wrapped, threading.RLock)
    assert isinstance(reentrant, threading.RLock)
    assert isinstance(_thread.allocate_lock(), threading.Lock)  # an unwrapped lock too
    assert not isinstance(object(), threading.Lock)
    optional = threading.Lock | None  # annotations written as on 3.13
    assert isinstance(None, optional) and isinstance(wrapped, optional)


@pytest.mark.parametrize("profile_type,engine", [("block", None), ("cpu", "py-spy"),
                                                 ("memory", None)])
def test_stop_event_ends_the_window_early(profile_type, engine):
    stop = threading.Event()
    threading.Timer(0.8, stop.set).start()
    started = time.perf_counter()
    with running(spinner):
        profile = collectors.collect(profile_type, duration_seconds=30, sample_rate=100,
                                     engine=engine, stop_event=stop)
    assert time.perf_counter() - started < 6
    assert profile["durationSeconds"] < 3
    check_raw(profile, profile_type, engine or collectors.DEFAULT_ENGINES[profile_type])


def test_progress_is_reported_about_once_a_second():
    seen: list[float] = []
    collectors.collect("block", duration_seconds=2.2, sample_rate=50, progress=seen.append)
    assert 2 <= len(seen) <= 4
    assert seen == sorted(seen) and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)


def test_a_failing_progress_callback_does_not_break_collection():
    def broken(_fraction: float) -> None:
        raise RuntimeError("agent bug")

    with running(napper):
        profile = collectors.collect("goroutine", duration_seconds=1.2, sample_rate=1,
                                     progress=broken)
    assert profile["samples"]


@pytest.mark.parametrize("kwargs,message", [
    ({"profile_type": "heap"}, "unknown profile type"),
    ({"engine": "yappi"}, "cannot collect 'block'"),
    ({"duration_seconds": 0}, "duration_seconds"),
    ({"duration_seconds": float("nan")}, "duration_seconds"),
    ({"sample_rate": -1}, "sample_rate"),
    ({"sample_rate": "fast"}, "numbers"),
])
def test_bad_arguments_are_collector_errors(kwargs, message):
    args = {"profile_type": "block", "duration_seconds": 1, "sample_rate": 100} | kwargs
    profile_type = args.pop("profile_type")
    with pytest.raises(collectors.CollectorError, match=message):
        collectors.collect(profile_type, **args)


def test_unexpected_failures_become_collector_errors(monkeypatch):
    def explode(**_kwargs):
        raise ValueError("boom")

    monkeypatch.setattr(threads, "collect_block", explode)
    with pytest.raises(collectors.CollectorError, match="thread-sampler: ValueError: boom"):
        collectors.collect("block", duration_seconds=1, sample_rate=100, engine="thread-sampler")


def test_missing_pyspy_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(pyspy, "find_pyspy", lambda: None)
    with pytest.raises(collectors.CollectorError, match="pip install py-spy.*yappi"):
        collectors.collect("cpu", duration_seconds=1, sample_rate=100, engine="py-spy")


def test_ptrace_refusal_says_how_to_fix(monkeypatch, tmp_path):
    fake = tmp_path / "py-spy"
    fake.write_text("#!/bin/sh\necho 'Error: Permission Denied: Try running again with "
                    "elevated permissions' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(pyspy, "find_pyspy", lambda: str(fake))
    with pytest.raises(collectors.CollectorError) as caught:
        collectors.collect("cpu", duration_seconds=1, sample_rate=100, engine="py-spy")
    reason = caught.value.reason
    assert "CAP_SYS_PTRACE" in reason and '"yappi"' in reason and "Permission" in reason


def test_available_engines_lists_what_can_run_here():
    engines = collectors.available_engines()
    assert set(engines) == set(collectors.ENGINES)
    assert engines["cpu"] == ["stack-sampler", "py-spy", "yappi"]
    assert engines["memory"] == engines["alloc"] == ["alloc-sampler", "memray"]
    assert engines["block"] == engines["goroutine"] == ["stack-sampler", "thread-sampler"]


def test_no_temporary_files_are_left_behind(monkeypatch, tmp_path):
    import tempfile

    # A private temp folder, so that other processes' files cannot blur the check.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for engine in collectors.available_engines()["cpu"]:
        collectors.collect("cpu", duration_seconds=0.5, sample_rate=100, engine=engine)
    for engine in collectors.available_engines()["alloc"]:
        collectors.collect("alloc", duration_seconds=0.3, sample_rate=100, engine=engine)
    if "stack-sampler" in collectors.available_engines()["cpu"]:
        from profiling_agent.collectors import ddprof

        ddprof._session.shutdown()  # the shared profiler lives until the interpreter exits
    assert list(tmp_path.iterdir()) == []


def test_threads_waiting_on_a_wrapped_lock_show_their_own_frame_not_the_wrapper(lock_profiler):
    lock = threading.Lock()  # wrapped: created after installation

    def holder(stop: threading.Event) -> None:
        with lock:
            stop.wait()

    def waiter_fn(stop: threading.Event) -> None:
        lock.acquire(timeout=2)

    with running(holder, names=["holder"]):
        time.sleep(0.1)
        with running(waiter_fn, names=["waiter"]):
            profile = collectors.collect("goroutine", duration_seconds=1, sample_rate=1)
    leaves = {profile["frames"][s["stack"][-1]]["function"] for s in profile["samples"] if s["thread"] == "waiter"}
    assert {name.rsplit(".", 1)[-1] for name in leaves} == {"waiter_fn"}
    files = {f["file"] for f in profile["frames"]}
    assert locks.__file__ not in files


# --- programs that know the truth -------------------------------------------------------------

PROGRAMS = Path(__file__).parent / "programs"


def run_json(command: list[str], env_extra: dict[str, str] | None = None, **kwargs) -> dict:
    env = dict(os.environ, PYTHONPATH=AGENT_PATH, **(env_extra or {}))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env,
                          **kwargs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_alloc_hook
def test_memory_and_alloc_see_the_main_thread_under_the_wrapper_and_small_objects():
    # sampled every 128 KiB, not the default 512: at 512 the main leak's live share ranged over
    # 57-77 % for a true 66.5 % in twelve runs (CI failed at 10.3 points off); at 128, 60-68 %
    result = run_json([sys.executable, "-m", "profiling_agent", "run", "--",
                       str(PROGRAMS / "memory_truth.py"), "--duration", "4"],
                      env_extra={"PROFILING_ALLOC_SAMPLE_BYTES": "131072"})
    report = json.dumps(result, indent=1)
    # both leaks appear, in their proportions: the main thread's too, under the wrapper
    for name, measured in result["measuredLive"].items():
        assert result["profiledLive"][name] > 0.05, report
        assert abs(result["profiledLive"][name] - measured) <= 0.10, report
    # small objects (233 bytes, pymalloc's pools) are seen with their share of allocated bytes
    measured = result["measuredAllocated"]["small_churn"]
    assert abs(result["profiledAllocated"]["small_churn"] - measured) <= 0.10, report


@needs_alloc_hook
def test_the_allocation_hook_survives_what_crashes_careless_hooks():
    """Sampling about every 256 bytes through deallocators that allocate while their frame is
    torn down, generators, exceptions in flight, cycles and collections, threads, asyncio tasks
    and snapshots taken meanwhile, then a restart and tracemalloc over the hook, with Python's
    debug allocator checks on (-X dev): the program ends normally and its samples are
    labelled."""
    result = run_json([sys.executable, "-X", "dev", str(PROGRAMS / "alloc_hook_stress.py")],
                      env_extra={"PYTHONMALLOC": "debug"})
    assert result["snapshots"] > 1 and result["allocations"] > 10_000, result
    assert result["labelled"] > 0.9 * result["allocations"], result  # all but main's own
    assert result["stopped"] is True, result
    # max_records=10: ten recorded, the rest of the 1,000 sampled kept buffers counted as left out
    assert result["after_restart"]["allocations"] == 10 and result["after_restart"]["dropped"] > 100
    assert result["stopped_under_tracemalloc"] is False and result["tracemalloc_traces"], result


def _as_nobody() -> list[str]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the program as an unprivileged user")
    command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    if subprocess.run([*command, sys.executable, "-c", "import profiling_agent"], cwd="/",
                      env=dict(os.environ, PYTHONPATH=AGENT_PATH),
                      capture_output=True).returncode != 0:
        pytest.skip(f"user nobody cannot run {sys.executable} (e.g. under root's home)")
    return command


@needs_in_process
def test_cpu_completes_for_a_program_that_forbids_being_traced():
    result = run_json([*_as_nobody(), sys.executable, str(PROGRAMS / "untraceable.py"),
                       "stack-sampler"], cwd="/")
    assert result["error"] is None, result
    assert result["busySeconds"] > 0 and result["sampleCount"] > 10, result  # the busy thread


def test_pyspy_fails_with_its_clear_message_on_a_program_that_forbids_being_traced():
    if pyspy.find_pyspy() is None:
        pytest.skip("py-spy is not installed")
    result = run_json([*_as_nobody(), sys.executable, str(PROGRAMS / "untraceable.py"),
                       "py-spy"], cwd="/")
    assert result["error"] is not None, result
    assert "CAP_SYS_PTRACE" in result["error"] and '"yappi"' in result["error"], result
