"""Drives the allocation hook where a careless hook crashes its host, sampling about every
256 bytes: objects whose __del__ allocates while their frame's locals are torn down, deep
recursion, generators, exceptions in flight, reference cycles and garbage collections, threads
coming and going, asyncio tasks under their own labels, snapshots taken meanwhile, a restart,
and tracemalloc installed over the hook. Prints a JSON summary; a crash is a non-zero exit."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import tracemalloc
import weakref

from profiling_agent.collectors import _allochook
from profiling_agent.labels import context_var, profiling_labels


class AllocatesWhenDeleted:
    def __del__(self):
        [str(i) * 3 for i in range(20)]
        sys._getframe()


class Cycle:
    def __init__(self):
        self.me = self
        self.data = bytearray(300)


def teardown(depth: int):
    a = AllocatesWhenDeleted()  # noqa: F841 - deleted with this frame
    b = [AllocatesWhenDeleted() for _ in range(2)]  # noqa: F841
    return teardown(depth - 1) if depth else None


def numbers():
    for i in range(100):
        yield [i] * 20


def raising(depth: int) -> str:
    try:
        if depth:
            raising(depth - 1)
        raise ValueError("x" * 100)
    except ValueError as exc:
        return repr(exc) + str(depth)


def worker(index: int) -> None:
    with profiling_labels(worker=str(index)):
        for round_ in range(100):
            teardown(10)
            list(numbers())
            raising(20)
            for _ in range(100):
                Cycle()
            weakref.ref(Cycle())
            if round_ % 20 == 0:
                gc.collect()


async def labelled_task(index: int) -> None:
    with profiling_labels(task=str(index)):
        for _ in range(200):
            [bytes(100) for _ in range(10)]
            await asyncio.sleep(0)


async def tasks() -> None:
    await asyncio.gather(*(labelled_task(index) for index in range(4)))


def main() -> None:
    summary = {"allocations": 0, "labelled": 0, "snapshots": 0}
    _allochook.start(mean_bytes=256.0, max_frames=128, max_records=50_000,
                     labels_var=context_var())
    done = threading.Event()

    def take(allocations: list) -> None:
        summary["snapshots"] += 1
        summary["allocations"] += len(allocations)
        summary["labelled"] += sum(1 for record in allocations if record[4])

    def snapshots() -> None:  # while the others allocate
        while not done.wait(0.005):
            take(_allochook.snapshot(True, True)[0])

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(3)]
    threads.append(threading.Thread(target=snapshots))
    for thread in threads:
        thread.start()
    asyncio.run(tasks())
    for thread in threads[:-1]:
        thread.join()
    done.set()
    threads[-1].join()
    take(_allochook.snapshot(True, True)[0])
    summary["stopped"] = _allochook.stop()
    _allochook.start(mean_bytes=1024.0, max_frames=8, max_records=10, labels_var=None)
    kept = [bytes(2000) for _ in range(1000)]
    allocations, live, dropped, _ns = _allochook.snapshot(True, True)
    summary["after_restart"] = {"allocations": len(allocations), "live": len(live),
                                "dropped": dropped}
    tracemalloc.start()  # wraps our hook: stopping ours must leave it in place
    kept += [bytes(500) for _ in range(1000)]
    summary["stopped_under_tracemalloc"] = _allochook.stop()
    summary["tracemalloc_traces"] = len(tracemalloc.take_snapshot().traces) > 0
    tracemalloc.stop()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
