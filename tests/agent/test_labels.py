"""Labels on samples: profiling_labels and the collectors that attach them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from profiling_agent import collectors, profiling_labels
from profiling_agent.collectors import alloc_sampler
from profiling_agent.collectors._common import ProfileBuilder
from profiling_agent.labels import current_labels
from profiling_agent.profile_format import (
    LABEL_OVERFLOW_VALUE,
    MAX_LABEL_CHARS,
    MAX_LABEL_KEYS,
    MAX_LABEL_VALUES_PER_KEY,
)

from .test_collectors import (  # noqa: F401 - a fixture
    _lock_workload,
    burn_cpu,
    check_raw,
    lock_profiler,
    loop_with_pending_tasks,
    needs_alloc_hook,
    needs_in_process,
    needs_memray,
    running,
)

# The engines of block and goroutine: both attach labels.
WAIT_ENGINES = ["thread-sampler", pytest.param("stack-sampler", marks=needs_in_process)]


def labels_by_thread(profile: dict) -> dict[str, set]:
    out: dict[str, set] = {}
    for sample in profile["samples"]:
        out.setdefault(sample["thread"], set()).add(
            tuple(sorted(sample.get("labels", {}).items())))
    return out


def test_blocks_nest_merge_and_restore():
    with profiling_labels(customer="acme", plan="free"):
        with profiling_labels(plan="pro", region="eu"):
            assert current_labels() == {"customer": "acme", "plan": "pro", "region": "eu"}
        assert current_labels() == {"customer": "acme", "plan": "free"}
    assert current_labels() == {}


def test_the_decorator_labels_each_call():
    @profiling_labels(job="report")
    def work():
        return current_labels()

    assert work() == {"job": "report"}
    assert current_labels() == {}


def test_the_decorator_on_a_coroutine_function_spans_its_awaits():
    @profiling_labels(job="sync")
    async def work():
        await asyncio.sleep(0)
        return current_labels()

    assert asyncio.run(work()) == {"job": "sync"}


def test_bad_labels_are_refused_with_a_readable_message():
    with pytest.raises(TypeError, match="must be a string"):
        profiling_labels(customer=42)
    with pytest.raises(ValueError, match=f"at most {MAX_LABEL_CHARS} characters"):
        profiling_labels(customer="x" * (MAX_LABEL_CHARS + 1))
    with pytest.raises(ValueError, match="own thread name"):
        profiling_labels(thread="worker-1")  # the sample's thread is the label "thread" already
    too_many = {f"k{i}": "v" for i in range(MAX_LABEL_KEYS + 1)}
    with pytest.raises(ValueError, match=f"at most {MAX_LABEL_KEYS} labels"):
        with profiling_labels(**too_many):
            pass


def labelled(customer: str, body):
    def target(stop: threading.Event) -> None:
        with profiling_labels(customer=customer):
            body(stop)
    return target


def nap(stop: threading.Event) -> None:
    while not stop.is_set():
        time.sleep(0.02)


@pytest.mark.parametrize("engine", WAIT_ENGINES)
@pytest.mark.parametrize("profile_type", ["block", "goroutine"])
def test_block_and_goroutine_samples_carry_their_threads_labels(profile_type, engine):
    # the threads enter their blocks before the sampler starts (the stack sampler's native tags
    # start empty) and stay in them
    with running(labelled("acme", nap), labelled("globex", nap), nap,
                 names=["acme-worker", "globex-worker", "plain-worker"]):
        profile = collectors.collect(profile_type, duration_seconds=2, sample_rate=50,
                                     engine=engine)
    check_raw(profile, profile_type, engine)
    seen = labels_by_thread(profile)
    assert seen["acme-worker"] == {(("customer", "acme"),)}
    assert seen["globex-worker"] == {(("customer", "globex"),)}
    assert seen["plain-worker"] == {()}


@pytest.mark.usefixtures("lock_profiler")
def test_mutex_samples_carry_the_waiting_threads_labels():
    holder, waiter = _lock_workload(threading.Lock())
    with running(labelled("holder-co", holder), labelled("waiter-co", waiter),
                 names=["holder", "waiter"]):
        profile = collectors.collect("mutex", duration_seconds=2, sample_rate=100)
    check_raw(profile, "mutex", "lock-wrapper")
    seen = labels_by_thread(profile)
    assert seen["waiter"] == {(("customer", "waiter-co"),)}
    assert seen.get("holder", {(("customer", "holder-co"),)}) == {(("customer", "holder-co"),)}


@needs_in_process
@pytest.mark.xfail(
    strict=False,
    reason="known miss (issue 12): ddtrace reads a thread's tag a moment after its stack, so "
    "under load a sample near a block's edge can carry the other side's labels; measured in CI "
    "on a busy machine: 17.6 % of a 20 ms labelled segment's CPU came unlabelled, quiet: under 5 %")
def test_stack_sampler_cpu_samples_carry_the_labels_their_thread_ran_under():
    """One thread switches ten times a second between a block labelled a, one labelled b and
    unlabelled work, each in its own function: the CPU sampled in each function carries that
    function's labels. (How well the sampler splits CPU between short segments is the
    ground-truth tests' business; the Django and Celery tests hold the shares to 5 points.)"""

    def in_a() -> None:
        burn_cpu(0.06)

    def in_b() -> None:
        burn_cpu(0.02)

    def unlabelled() -> None:
        burn_cpu(0.02)

    def switcher(stop: threading.Event) -> None:
        while not stop.is_set():
            with profiling_labels(customer="a"):
                in_a()
            with profiling_labels(customer="b"):
                in_b()
            unlabelled()

    with running(switcher, names=["switcher"]):
        profile = collectors.collect("cpu", duration_seconds=6, sample_rate=100)
    check_raw(profile, "cpu", "stack-sampler")
    expected = {"in_a": "a", "in_b": "b", "unlabelled": ""}
    cpu: dict[tuple[str, str], int] = {}  # (function, label) -> CPU
    for sample in profile["samples"]:
        functions = {profile["frames"][index]["function"].rsplit(".", 1)[-1]
                     for index in sample["stack"]}
        for function in functions & expected.keys():
            key = (function, sample.get("labels", {}).get("customer", ""))
            cpu[key] = cpu.get(key, 0) + sample["value"]
    for function, label in expected.items():
        total = sum(value for (name, _), value in cpu.items() if name == function)
        assert total > 0, cpu
        # a sample taken within a moment of a block's edge may read the labels of the other
        # side (seen: up to 5 % of a 20 ms segment's CPU)
        assert cpu.get((function, label), 0) / total > 0.9, (function, cpu, profile["notes"])
    assert "stack-sampler does not attach labels: its samples carry none" not in profile["notes"]


@needs_in_process
def test_stack_sampler_gives_short_labelled_bursts_their_whole_cpu():
    """5 ms labelled bursts between 20 ms unlabelled sleeps: a sampler alone puts most of a
    burst's CPU on the sample taken during the sleep that follows (75 % was seen there), so the
    labelled share of the thread's CPU must come from its CPU clock read at the blocks' edges."""
    spent = {"labelled": 0.0, "thread": 0.0}  # CPU seconds so far, updated by the thread
    spent_lock = threading.Lock()

    def bursts(stop: threading.Event) -> None:
        while not stop.is_set():
            with profiling_labels(customer="bursty"):
                used = burn_cpu(0.005)
            time.sleep(0.02)
            with spent_lock:
                spent["labelled"] += used
                spent["thread"] = time.thread_time()

    with running(bursts, names=["bursts"]):
        with spent_lock:
            before = dict(spent)
        profile = collectors.collect("cpu", duration_seconds=5, sample_rate=100)
        with spent_lock:
            after = dict(spent)
    check_raw(profile, "cpu", "stack-sampler")
    mine = [sample for sample in profile["samples"] if sample["thread"] == "bursts"]
    labelled = sum(sample["value"] for sample in mine
                   if sample.get("labels", {}).get("customer") == "bursty")
    profiled = labelled / sum(sample["value"] for sample in mine)
    expected = (after["labelled"] - before["labelled"]) / (after["thread"] - before["thread"])
    assert abs(profiled - expected) < 0.05, (profiled, expected, profile["notes"])


@pytest.mark.parametrize("engine", WAIT_ENGINES)
def test_a_label_set_inside_an_asyncio_task_stays_on_that_task(engine):
    ready = threading.Event()

    async def acme_waits() -> None:
        with profiling_labels(customer="acme"):
            await asyncio.sleep(60)

    async def globex_waits() -> None:
        with profiling_labels(customer="globex"):
            await asyncio.sleep(60)

    event_loop = loop_with_pending_tasks(ready, acme_waits, globex_waits)
    with running(event_loop, names=["loop"]):
        assert ready.wait(5)
        profile = collectors.collect("goroutine", duration_seconds=2, sample_rate=100,
                                     engine=engine)
    check_raw(profile, "goroutine", engine)
    by_function: dict[str, set] = {}
    for sample in profile["samples"]:
        for index in sample["stack"]:
            function = profile["frames"][index]["function"]
            by_function.setdefault(function, set()).add(
                tuple(sorted(sample.get("labels", {}).items())))
    here = "test_a_label_set_inside_an_asyncio_task_stays_on_that_task.<locals>."
    assert by_function[here + "acme_waits"] == {(("customer", "acme"),)}
    assert by_function[here + "globex_waits"] == {(("customer", "globex"),)}
    assert current_labels() == {}  # nothing leaked into this thread's context


def test_values_past_the_cap_become_the_overflow_value_and_are_counted():
    builder = ProfileBuilder("cpu", "thread-sampler", 100)
    stack = (builder.frame("work", "app.py", 1),)
    extra = 30
    for i in range(MAX_LABEL_VALUES_PER_KEY + extra):
        builder.add(stack, 10, 2, "MainThread", (("customer", f"c{i}"),))
    profile = builder.result(started_at=time.time(), duration_seconds=1, sample_count=0)
    values = {s["labels"]["customer"] for s in profile["samples"]}
    assert len(values) == MAX_LABEL_VALUES_PER_KEY + 1
    assert LABEL_OVERFLOW_VALUE in values
    overflow = [s for s in profile["samples"] if s["labels"]["customer"] == LABEL_OVERFLOW_VALUE]
    assert len(overflow) == 1 and overflow[0]["count"] == 2 * extra  # merged into one sample
    assert profile["labelsOverflow"] == 2 * extra
    assert any(LABEL_OVERFLOW_VALUE in note for note in profile["notes"])
    # a value seen before the cap was reached keeps being itself
    builder.add(stack, 10, 1, "MainThread", (("customer", "c0"),))
    assert builder.labels_overflow == 2 * extra


@needs_memray
def test_an_engine_without_labels_says_so_once_labels_are_in_use():
    with profiling_labels(customer="acme"):  # labels have been used in this process
        pass
    with running(nap, names=["plain-worker"]):
        profile = collectors.collect("memory", duration_seconds=1, sample_rate=50,
                                     engine="memray")
    check_raw(profile, "memory", "memray")
    assert "memray does not attach labels: its samples carry none" in profile["notes"]
    assert not any("labels" in sample for sample in profile["samples"])


@needs_alloc_hook
@pytest.mark.parametrize("profile_type", ["memory", "alloc"])
def test_allocations_carry_the_labels_they_were_made_under(profile_type, monkeypatch):
    """Two threads keep 20 kB buffers under their own labels (2 : 1), a third keeps them with no
    labels, and two asyncio tasks of one loop take turns keeping buffers under theirs (1 : 1):
    the sampled bytes of each label set come out in those proportions, each task's on its own
    task although they share a thread. Each keeper counts what it keeps."""
    unit = 20_000
    kept: list = []
    made: dict[str, int] = {}  # label value ("" for none) -> bytes kept in the window
    recording = threading.Event()

    def keep(customer: str, units: int) -> None:
        kept.extend(bytes(unit) for _ in range(units))
        if recording.is_set():
            made[customer] = made.get(customer, 0) + units * unit

    def keeper(customer: str, units: int):
        def target(stop: threading.Event) -> None:
            if customer:
                with profiling_labels(customer=customer):
                    while not stop.wait(0.005):  # a steady pace: a keep every 5 ms
                        keep(customer, units)
            else:
                while not stop.wait(0.005):
                    keep(customer, units)
        return target

    def tasks(stop: threading.Event) -> None:
        async def task(customer: str) -> None:
            with profiling_labels(customer=customer):
                while not stop.is_set():
                    keep(customer, 1)
                    await asyncio.sleep(0.005)

        async def main() -> None:
            await asyncio.gather(task("task-a"), task("task-b"))

        asyncio.run(main())

    # sampled every 32 KiB (~1,500 samples in the window; at the default 512 KiB, ~100, so
    # a share of 1/6 varied by ~4 points from sampling alone); the hook restarts to take it
    monkeypatch.setenv("PROFILING_ALLOC_SAMPLE_BYTES", "32768")
    alloc_sampler._session.shutdown()
    with running(keeper("big", 2), keeper("small", 1), keeper("", 1), tasks,
                 names=["big", "small", "plain", "loop"]):
        recording.set()
        profile = collectors.collect(profile_type, duration_seconds=3, sample_rate=100,
                                     engine="alloc-sampler")
        recording.clear()
    check_raw(profile, profile_type, "alloc-sampler")
    assert "does not attach labels" not in " ".join(profile["notes"])
    keepers = {"big", "small", "plain", "loop"}
    sampled: dict[str, float] = {}
    for sample in profile["samples"]:
        if sample["thread"] not in keepers:
            continue
        functions = {profile["frames"][index]["function"] for index in sample["stack"]}
        if not any(name.endswith("keep") for name in functions):
            continue
        customer = sample.get("labels", {}).get("customer", "")
        sampled[customer] = sampled.get(customer, 0) + sample["value"]
        expected_thread = {"": "plain", "task-a": "loop", "task-b": "loop"}.get(customer, customer)
        assert sample["thread"] == expected_thread, (sample, sampled)
    total_made, total_sampled = sum(made.values()), sum(sampled.values())
    shares = {customer: (round(sampled.get(customer, 0) / total_sampled, 3),
                         round(made[customer] / total_made, 3)) for customer in made}
    # (memory: what the keepers kept since the hook started, a moment before the window, is
    # live at its end; at their steady rates the shares are the same)
    for profiled, measured in shares.values():
        assert profiled > 0 and abs(profiled - measured) <= 0.08, shares


@needs_alloc_hook
def test_a_label_block_ends_for_its_thread_while_allocations_are_sampled(monkeypatch):
    """Leaving a block deletes the labels variable (ContextVar.reset to no value); the hook
    sampling an allocation made in that deletion once left the block's labels on the thread
    afterwards (every block of 2,000, sampling every allocation), through a dangling pointer."""
    import contextvars

    other = contextvars.ContextVar("another_of_the_hosts")  # a deletion then allocates
    monkeypatch.setenv("PROFILING_ALLOC_SAMPLE_BYTES", "16")  # nearly every allocation
    alloc_sampler._session.shutdown()
    left_behind: list[dict] = []
    blocks = 0

    def enter_and_leave(stop: threading.Event) -> None:
        nonlocal blocks
        other.set("set")
        while not stop.is_set():
            with profiling_labels(customer=f"c{blocks % 50}"):
                blocks += 1
                payload = [bytes(64) for _ in range(4)]  # labelled allocations
            if current_labels():
                left_behind.append(current_labels())
            del payload

    with running(enter_and_leave, names=["blocks"]):
        profile = collectors.collect("alloc", duration_seconds=1, sample_rate=100,
                                     engine="alloc-sampler")
    alloc_sampler._session.shutdown()  # back to the default sampling for later tests
    assert blocks > 100
    assert left_behind == []
    labelled = [s for s in profile["samples"] if s["thread"] == "blocks" and "labels" in s]
    assert labelled and all(s["labels"]["customer"].startswith("c") for s in labelled)
