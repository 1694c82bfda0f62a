"""Labels on the yappi cpu engine: each call counts under the labels in force when it began.

The workloads burn CPU in loops that make no calls, so yappi slows them little and their own
``time.thread_time()`` readings are the truth the profile is held to. Each window is 1-2 s.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from profiling_agent import collectors, profiling_labels
from profiling_agent.collectors.yappi_cpu import MAX_LABEL_SETS
from profiling_agent.labels import current_labels
from profiling_agent.profile_format import LABEL_OVERFLOW_VALUE

from .test_collectors import check_raw, loop_with_pending_tasks, running

pytest.importorskip("yappi")


def burn(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i
    return total


def yappi_cpu(seconds: float, until: threading.Event | None = None) -> dict:
    profile = collectors.collect("cpu", duration_seconds=seconds, sample_rate=100,
                                 engine="yappi", stop_event=until)
    check_raw(profile, "cpu", "yappi")
    return profile


def labels_of(sample: dict) -> tuple:
    return tuple(sorted(sample.get("labels", {}).items()))


def labels_by_function(profile: dict, thread: str) -> dict[str, set]:
    """Function (any frame of the stack, its short name) -> the label sets of its samples."""
    out: dict[str, set] = {}
    for sample in profile["samples"]:
        if sample["thread"] != thread:
            continue
        for index in sample["stack"]:
            name = profile["frames"][index]["function"].rsplit(".", 1)[-1]
            out.setdefault(name, set()).add(labels_of(sample))
    return out


def test_each_label_value_gets_its_share_of_the_cpu():
    readings: list[tuple[float, str, float]] = []  # (epoch at the end, path, CPU seconds)

    def heavy_path() -> None:
        burn(180_000)

    def light_path() -> None:
        burn(60_000)

    def unlabelled_path() -> None:
        burn(60_000)

    def timed(path: str, work) -> None:
        started = time.thread_time()
        work()
        readings.append((time.time(), path, time.thread_time() - started))

    def worker(stop: threading.Event) -> None:
        while not stop.is_set():
            with profiling_labels(path="heavy"):
                timed("heavy", heavy_path)
            with profiling_labels(path="light"):
                timed("light", light_path)
            timed("none", unlabelled_path)

    with running(worker, names=["worker"]):
        profile = yappi_cpu(2)
    start, end = profile["startedAt"], profile["startedAt"] + profile["durationSeconds"]
    measured: dict[str, float] = {}
    for at, path, seconds in readings:
        if start <= at <= end:
            measured[path] = measured.get(path, 0.0) + seconds
    profiled: dict[str, int] = {}
    for sample in profile["samples"]:
        if sample["thread"] == "worker":
            path = sample.get("labels", {}).get("path", "none")
            profiled[path] = profiled.get(path, 0) + sample["value"]
    report = {path: (round(measured[path] / sum(measured.values()), 3),
                     round(profiled.get(path, 0) / sum(profiled.values()), 3))
              for path in measured}
    for measured_share, profiled_share in report.values():
        assert abs(profiled_share - measured_share) <= 0.05, report
    print("path: (measured share, profiled share)", report)
    assert set(profiled) == {"heavy", "light", "none"}
    # the labelled stacks keep their callers outside the block, as the unlabelled ones do
    frames = profile["frames"]
    for sample in profile["samples"]:
        names = [frames[i]["function"] for i in sample["stack"]]
        if names[-1].endswith("burn"):
            assert any(name.endswith("worker") for name in names), names


def outer_work() -> None:
    burn(20_000)


def inner_work() -> None:
    burn(20_000)


def unlabelled_work() -> None:
    burn(20_000)


def test_nested_labels_in_two_threads_and_none_outside_the_blocks():
    def acme(stop: threading.Event) -> None:
        while not stop.is_set():
            with profiling_labels(customer="acme"):
                outer_work()
                with profiling_labels(plan="pro"):
                    inner_work()
            unlabelled_work()

    def globex(stop: threading.Event) -> None:
        while not stop.is_set():
            with profiling_labels(customer="globex"):
                outer_work()

    def plain(stop: threading.Event) -> None:
        while not stop.is_set():
            unlabelled_work()

    with running(acme, globex, plain, names=["acme-worker", "globex-worker", "plain-worker"]):
        profile = yappi_cpu(1.5)
    acme_co, globex_co, pro = ("customer", "acme"), ("customer", "globex"), ("plan", "pro")
    # on a miss, what each thread of the profile held (one CI run found no outer_work in globex)
    seen = {thread: labels_by_function(profile, thread)
            for thread in {sample["thread"] for sample in profile["samples"]}}
    in_acme = seen.get("acme-worker", {})
    assert in_acme.get("outer_work") == {(acme_co,)}, seen
    assert in_acme.get("inner_work") == {(acme_co, pro)}, seen
    assert in_acme.get("unlabelled_work") == {()}, seen
    assert seen.get("globex-worker", {}).get("outer_work") == {(globex_co,)}, seen
    assert {labels_of(s) for s in profile["samples"] if s["thread"] == "plain-worker"} == {()}
    assert "does not attach labels" not in " ".join(profile["notes"])


def test_a_label_set_inside_an_asyncio_task_stays_on_that_task():
    ready = threading.Event()

    def acme_burn() -> None:
        burn(5_000)

    def globex_burn() -> None:
        burn(5_000)

    async def acme_task() -> None:
        with profiling_labels(customer="acme"):
            while True:
                acme_burn()
                await asyncio.sleep(0)  # the other task runs between the bursts

    async def globex_task() -> None:
        with profiling_labels(customer="globex"):
            while True:
                globex_burn()
                await asyncio.sleep(0)

    with running(loop_with_pending_tasks(ready, acme_task, globex_task), names=["loop"]):
        assert ready.wait(5)
        profile = yappi_cpu(1.5)
    seen = labels_by_function(profile, "loop")
    assert seen["acme_burn"] == {(("customer", "acme"),)}
    assert seen["globex_burn"] == {(("customer", "globex"),)}
    assert current_labels() == {}


def test_more_label_sets_than_the_cap_become_other_and_are_counted():
    import yappi

    done = threading.Event()  # ends the window

    def many_customers(stop: threading.Event) -> None:
        i = 0  # counts only the blocks yappi saw: 1000 (region, customer) pairs, 25 x 40
        while i < 1_000 and not stop.is_set():
            with profiling_labels(region=f"r{i % 25}", customer=f"c{i // 25}"):
                burn(100)
            if yappi.is_running():
                i += 1
        done.set()

    with running(many_customers, names=["busy"]):
        profile = yappi_cpu(30, until=done)
    assert done.is_set()
    label_sets = {labels_of(s) for s in profile["samples"] if s["thread"] == "busy"}
    assert len(label_sets) <= MAX_LABEL_SETS + 1  # the first pairs as they are, then one more
    assert (("customer", LABEL_OVERFLOW_VALUE), ("region", LABEL_OVERFLOW_VALUE)) in label_sets
    assert profile["labelsOverflow"] > 0
    assert any("distinct label sets" in note for note in profile["notes"])
