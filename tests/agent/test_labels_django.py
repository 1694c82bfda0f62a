"""Django requests get the view and route labels without any change to the settings.

The views wait (off CPU) for known times and the block profile is grouped by route: the
CPU stack sampler (ddtrace) does not attach labels yet, the thread sampler does."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("pytest_django")  # the agent's own CI runs these tests without Django
from django.http import HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402
from profiling_agent import collectors, integrations  # noqa: E402
from profiling_agent.profile_format import LABEL_ROUTE, LABEL_VIEW  # noqa: E402

pytestmark = pytest.mark.urls(__name__)

WAITED: dict[str, float] = {"cheap": 0.0, "costly": 0.0}  # seconds each view waited
_waited_lock = threading.Lock()


def _wait(name: str, seconds: float) -> HttpResponse:
    start = time.perf_counter()
    time.sleep(seconds)
    with _waited_lock:
        WAITED[name] += time.perf_counter() - start
    return HttpResponse(name)


def cheap_view(request, pk):
    return _wait("cheap", 0.01)


def costly_view(request):
    return _wait("costly", 0.03)


urlpatterns = [
    path("items/<int:pk>/", cheap_view),
    path("report/", costly_view),
]


def test_block_grouped_by_route_gives_each_view_its_share(settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    integrations.install()
    stop = threading.Event()

    def drive(url: str) -> None:
        client = Client()
        while not stop.is_set():
            assert client.get(url).status_code == 200

    workers = [threading.Thread(target=drive, args=(url,), daemon=True)
               for url in ("/items/7/", "/report/")]
    for worker in workers:
        worker.start()
    try:
        profile = collectors.collect("block", duration_seconds=3, sample_rate=100,
                                     engine="thread-sampler")
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
    by_route: dict[str, int] = {}
    views = set()
    for sample in profile["samples"]:
        labels = sample.get("labels", {})
        if LABEL_ROUTE in labels:
            by_route[labels[LABEL_ROUTE]] = by_route.get(labels[LABEL_ROUTE], 0) + sample["value"]
            views.add(labels[LABEL_VIEW])
    assert views == {f"{__name__}.cheap_view", f"{__name__}.costly_view"}
    measured = sum(WAITED.values())
    profiled = sum(by_route.values())
    # the measured waits cover the whole run, the profile one window: compare shares
    expected_costly = WAITED["costly"] / measured
    assert abs(by_route["report/"] / profiled - expected_costly) < 0.05, (by_route, WAITED)
    assert set(by_route) == {"items/<int:pk>/", "report/"}


def test_a_request_whose_labels_are_full_is_served_unlabelled(settings):
    """Every label slot taken by the host's own labels: the request still succeeds."""
    from profiling_agent import profiling_labels
    from profiling_agent.labels import current_labels
    from profiling_agent.profile_format import MAX_LABEL_KEYS

    settings.ALLOWED_HOSTS = ["testserver"]
    integrations.install()
    full = {f"k{i}": "v" for i in range(MAX_LABEL_KEYS)}
    with profiling_labels(**full):
        response = Client().get("/report/")
        assert current_labels() == full
    assert response.status_code == 200 and response.content == b"costly"
