"""Django requests get the view and route labels without any change to the settings.

Three pairs of views of known cost: two that wait (off CPU) for known times, for block profiles
grouped by route, two that use known CPU (their own thread clock), for cpu profiles, and two
that allocate known bytes, for alloc profiles."""

from __future__ import annotations

import sys
import threading
import time

import pytest

pytest.importorskip("pytest_django")  # the agent's own CI runs these tests without Django
from django.http import HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402
from profiling_agent import collectors, integrations  # noqa: E402
from profiling_agent.profile_format import LABEL_ROUTE, LABEL_VIEW  # noqa: E402

from .test_collectors import burn_cpu, needs_alloc_hook, needs_in_process  # noqa: E402

pytestmark = pytest.mark.urls(__name__)

# what each view spent, one (epoch at the end of the call, view, amount) a call: the profile's
# window is compared with the calls that ended inside it (building the profile afterwards can
# take a while, during which the views go on)
WAITED: list[tuple[float, str, float]] = []  # seconds each view waited
BURNED: list[tuple[float, str, float]] = []  # CPU seconds each view used
ALLOCATED: list[tuple[float, str, float]] = []  # bytes each view allocated


def _wait(name: str, seconds: float) -> HttpResponse:
    start = time.perf_counter()
    time.sleep(seconds)
    WAITED.append((time.time(), name, time.perf_counter() - start))
    return HttpResponse(name)


def cheap_view(request, pk):
    return _wait("cheap", 0.01)


def costly_view(request):
    return _wait("costly", 0.03)


def _burn(name: str, seconds: float) -> HttpResponse:
    BURNED.append((time.time(), name, burn_cpu(seconds)))
    return HttpResponse(name)


def cheap_cpu_view(request, pk):
    return _burn("cheap", 0.02)


def costly_cpu_view(request):
    return _burn("costly", 0.06)


def _allocate(name: str, buffers: int) -> HttpResponse:
    # a megabyte or more a request: Django's own few kilobytes per request (also under the
    # route's labels) are a rounding error beside them. Buffers of 100 kB, under glibc's mmap
    # threshold: 1 and 3 MB buffers, each an mmap and munmap, starved one of the two request
    # threads for whole windows while ddtrace's stack sampler ran (1 request served of 30,000)
    data = [bytes(100_000) for _ in range(buffers)]
    ALLOCATED.append((time.time(), name, sum(map(sys.getsizeof, data))))
    return HttpResponse(name)


def cheap_alloc_view(request, pk):
    return _allocate("cheap", 10)


def costly_alloc_view(request):
    return _allocate("costly", 30)


urlpatterns = [
    path("items/<int:pk>/", cheap_view),
    path("report/", costly_view),
    path("cpu/items/<int:pk>/", cheap_cpu_view),
    path("cpu/report/", costly_cpu_view),
    path("alloc/items/<int:pk>/", cheap_alloc_view),
    path("alloc/report/", costly_alloc_view),
]


def _profile_while_serving(urls: tuple[str, ...], profile_type: str, engine: str | None,
                           spent: list[tuple[float, str, float]]) -> tuple[dict, dict[str, float]]:
    """One client thread per URL requests it in a loop while a window collects; returns the
    profile and what each view spent during the window."""
    stop = threading.Event()

    def drive(url: str) -> None:
        client = Client()
        while not stop.is_set():
            assert client.get(url).status_code == 200

    workers = [threading.Thread(target=drive, args=(url,), daemon=True) for url in urls]
    for worker in workers:
        worker.start()
    try:
        profile = collectors.collect(profile_type, duration_seconds=6, sample_rate=100,
                                     engine=engine)
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
    start, end = profile["startedAt"], profile["startedAt"] + profile["durationSeconds"]
    during = {"cheap": 0.0, "costly": 0.0}
    for at, name, amount in spent:
        if start <= at <= end:
            during[name] += amount
    return profile, during


def _by_route(profile: dict) -> tuple[dict[str, int], set[str]]:
    by_route: dict[str, int] = {}
    views = set()
    for sample in profile["samples"]:
        labels = sample.get("labels", {})
        if LABEL_ROUTE in labels:
            by_route[labels[LABEL_ROUTE]] = by_route.get(labels[LABEL_ROUTE], 0) + sample["value"]
            views.add(labels[LABEL_VIEW])
    return by_route, views


# profile type -> (URLs, their routes, their views, what the views spent), cheap one first:
# views that use CPU for cpu profiles, views that wait for block profiles
_ROUTE_CASES = {
    "cpu": (("/cpu/items/7/", "/cpu/report/"), ("cpu/items/<int:pk>/", "cpu/report/"),
            ("cheap_cpu_view", "costly_cpu_view"), BURNED),
    "block": (("/items/7/", "/report/"), ("items/<int:pk>/", "report/"),
              ("cheap_view", "costly_view"), WAITED),
    "alloc": (("/alloc/items/7/", "/alloc/report/"), ("alloc/items/<int:pk>/", "alloc/report/"),
              ("cheap_alloc_view", "costly_alloc_view"), ALLOCATED),
}


@pytest.mark.parametrize(("profile_type", "engine"), [
    pytest.param("cpu", "stack-sampler", marks=needs_in_process),
    ("block", "thread-sampler"),
    pytest.param("block", "stack-sampler", marks=needs_in_process),
    pytest.param("alloc", "alloc-sampler", marks=needs_alloc_hook),
])
def test_grouped_by_route_gives_each_view_its_share(settings, profile_type, engine):
    settings.ALLOWED_HOSTS = ["testserver"]
    integrations.install()
    urls, (cheap_route, costly_route), view_names, spent = _ROUTE_CASES[profile_type]
    profile, during = _profile_while_serving(urls, profile_type, engine, spent)
    assert profile["engine"] == engine
    by_route, views = _by_route(profile)
    assert views == {f"{__name__}.{name}" for name in view_names}
    assert set(by_route) == {cheap_route, costly_route}
    expected_costly = during["costly"] / sum(during.values())
    profiled_costly = by_route[costly_route] / sum(by_route.values())
    assert abs(profiled_costly - expected_costly) < 0.05, (by_route, during)


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
