"""Celery tasks run under their task label, in a real worker (in this process) consuming the
real broker when one is configured (Redis in CI), else Celery's in-memory broker."""

from __future__ import annotations

import os
import threading

import pytest

celery = pytest.importorskip("celery")
from celery.contrib.testing.worker import start_worker  # noqa: E402
from profiling_agent import collectors, integrations  # noqa: E402
from profiling_agent.labels import current_labels, labels_of_thread  # noqa: E402
from profiling_agent.profile_format import LABEL_TASK  # noqa: E402

from .test_collectors import burn_cpu, needs_in_process  # noqa: E402

BROKER = os.environ.get("CELERY_BROKER_URL", "")
# not the current app: the platform's tasks (shared_task) must keep resolving to the platform's
app = celery.Celery("labels_test", broker=BROKER if BROKER.startswith("redis://") else "memory://",
                    backend="cache+memory://", set_as_current=False)
# a queue of its own, so the platform's workers on the same broker never take these tasks
app.conf.task_default_queue = f"labels-test-{os.getpid()}"

BURNED = {"reports.build": 0.0, "emails.send": 0.0}  # CPU seconds each task used
_burned_lock = threading.Lock()


@app.task(name="labels.current")
def labels_seen():
    # what the code sees and what a sampler in another thread reads for this thread
    return current_labels(), dict(labels_of_thread(threading.get_ident()))


def _burn(name: str, seconds: float) -> None:
    used = burn_cpu(seconds)
    with _burned_lock:
        BURNED[name] += used


@app.task(name="reports.build")
def build_report():
    _burn("reports.build", 0.06)


@app.task(name="emails.send")
def send_email():
    _burn("emails.send", 0.02)


def test_a_celery_task_runs_under_its_task_label():
    integrations.install()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        labels = labels_seen.delay().get(timeout=20)
    assert labels == [{LABEL_TASK: "labels.current"}, {LABEL_TASK: "labels.current"}]
    assert current_labels() == {}


@needs_in_process
def test_cpu_grouped_by_task_gives_each_task_its_share():
    integrations.install()
    stop = threading.Event()

    def produce() -> None:  # keeps the worker busy with ten pairs queued, never more
        pending = []
        while not stop.is_set():
            while len(pending) < 20:
                pending += [build_report.delay(), send_email.delay()]
            pending.pop(0).get(timeout=30)

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            with _burned_lock:
                before = dict(BURNED)
            profile = collectors.collect("cpu", duration_seconds=6, sample_rate=100)
            with _burned_lock:
                burned = {name: BURNED[name] - before[name] for name in BURNED}
        finally:
            stop.set()
            producer.join(30)
    assert profile["engine"] == "stack-sampler"
    by_task: dict[str, int] = {}
    for sample in profile["samples"]:
        task = sample.get("labels", {}).get(LABEL_TASK)
        if task is not None:
            by_task[task] = by_task.get(task, 0) + sample["value"]
    assert set(by_task) == {"reports.build", "emails.send"}
    expected = burned["reports.build"] / sum(burned.values())
    profiled = by_task["reports.build"] / sum(by_task.values())
    assert abs(profiled - expected) < 0.05, (by_task, burned, profile["notes"])
