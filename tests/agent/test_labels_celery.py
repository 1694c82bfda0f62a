"""A Celery task runs under its task label, in a real (in-process) worker."""

from __future__ import annotations

import threading

import pytest

celery = pytest.importorskip("celery")
from celery.contrib.testing.worker import start_worker  # noqa: E402
from profiling_agent import integrations  # noqa: E402
from profiling_agent.labels import current_labels, labels_of_thread  # noqa: E402
from profiling_agent.profile_format import LABEL_TASK  # noqa: E402

# not the current app: the platform's tasks (shared_task) must keep resolving to the platform's
app = celery.Celery("labels_test", broker="memory://", backend="cache+memory://", set_as_current=False)


@app.task(name="reports.build")
def build_report():
    # what the code sees and what a sampler in another thread reads for this thread
    return current_labels(), dict(labels_of_thread(threading.get_ident()))


def test_a_celery_task_runs_under_its_task_label():
    integrations.install()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        labels = build_report.delay().get(timeout=20)
    assert labels == [{LABEL_TASK: "reports.build"}, {LABEL_TASK: "reports.build"}]
    assert current_labels() == {}
