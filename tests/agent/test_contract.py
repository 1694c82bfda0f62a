"""Contract tests: the real agent client and runtime against the real API (live server, real database).

What tests/agent/test_runtime.py checks against its fault-injecting fake, these check against the
platform itself, so the two cannot drift apart.
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from profiling_agent import start
from profiling_agent.client import AgentClient, ConflictError, NotFoundError
from profiling_agent.profile_format import DEFAULT_ENGINES, ENGINES_BY_TYPE

from profiles import services
from profiles.models import AgentInstance, ProfileResult
from profiling_platform.celery import app as celery_app
from tests.profiles.samples import raw_cpu_profile

from .test_runtime import FakeCollector

ENGINES = {kind: list(ENGINES_BY_TYPE[kind]) for kind in ("cpu", "block")}


@pytest.fixture
def eager_celery():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def platform(live_server, tenant, eager_celery, media_root):
    return live_server, tenant


def _client(live_server, tenant) -> AgentClient:
    return AgentClient(live_server.url, tenant.tenant.external_id, tenant.agent_raw, timeout=10)


def _instance(instance_id="contract-1", pid=7):
    return {"id": instance_id, "host": "test-host", "pid": pid, "python": "3.x", "agentVersion": "0.2.0",
            "engines": ENGINES}


def _start(tenant, profile_type="cpu", duration=2, service="svc"):
    return services.profile_start(tenant=tenant.tenant, service=service, profile_type=profile_type,
                                  duration_seconds=duration)


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.mark.django_db(transaction=True)
def test_poll_records_the_instance_and_claims_with_a_lease(platform):
    live_server, tenant = platform
    run = _start(tenant)
    client = _client(live_server, tenant)
    result = client.poll("svc", _instance(), [])
    [assignment] = result.runs
    assert assignment.id == str(run.pk) and assignment.profile_type == "cpu" and assignment.engine == DEFAULT_ENGINES["cpu"]
    assert assignment.lease and assignment.deadline - assignment.start_at == 2 + 300
    assert client.poll("svc", _instance("contract-2", pid=8), []).runs == []  # claimed once
    instance = AgentInstance.objects.get(instance_id="contract-1")
    assert (instance.host, instance.pid, instance.engines) == ("test-host", 7, ENGINES)
    stored = ProfileResult.objects.get(pk=run.pk)
    assert stored.claimed_by == "contract-1" and stored.phase == "collecting"


@pytest.mark.django_db(transaction=True)
def test_progress_upload_and_the_result(platform):
    live_server, tenant = platform
    run = _start(tenant)
    client = _client(live_server, tenant)
    [assignment] = client.poll("svc", _instance(), []).runs
    client.progress(assignment.id, assignment.lease, 0.5)
    assert ProfileResult.objects.get(pk=run.pk).progress == 0.5
    client.upload(assignment.id, assignment.lease, raw_cpu_profile())
    stored = ProfileResult.objects.get(pk=run.pk)
    assert stored.status == "completed" and stored.top_functions[0]["function"] == "hot"
    with pytest.raises(ConflictError):  # a second upload is refused
        client.upload(assignment.id, assignment.lease, raw_cpu_profile())


@pytest.mark.django_db(transaction=True)
def test_fail_with_the_lease(platform):
    live_server, tenant = platform
    run = _start(tenant)
    client = _client(live_server, tenant)
    [assignment] = client.poll("svc", _instance(), []).runs
    client.fail(assignment.id, assignment.lease, "py-spy: permission denied")
    stored = ProfileResult.objects.get(pk=run.pk)
    assert (stored.status, stored.error) == ("failed", "agent: py-spy: permission denied")
    with pytest.raises(ConflictError):
        client.progress(assignment.id, assignment.lease, 0.9)


@pytest.mark.django_db(transaction=True)
def test_every_call_without_the_runs_lease_is_refused(platform, other_tenant):
    live_server, tenant = platform
    run = _start(tenant)
    client = _client(live_server, tenant)
    [assignment] = client.poll("svc", _instance(), []).runs
    for call in (
        lambda lease: client.progress(assignment.id, lease, 0.1),
        lambda lease: client.upload(assignment.id, lease, raw_cpu_profile()),
        lambda lease: client.fail(assignment.id, lease, "not mine"),
    ):
        with pytest.raises(ConflictError) as refused:
            call("a-lease-of-someone-else")
        assert "not leased to this agent" in refused.value.detail
    stranger = AgentClient(live_server.url, other_tenant.tenant.external_id, other_tenant.agent_raw)
    with pytest.raises(NotFoundError):
        stranger.progress(assignment.id, assignment.lease, 0.1)
    stored = ProfileResult.objects.get(pk=run.pk)
    assert (stored.status, stored.phase) == ("running", "collecting")


@pytest.mark.django_db(transaction=True)
def test_the_runtime_collects_and_uploads_through_the_real_api(platform):
    live_server, tenant = platform
    runs = [_start(tenant, kind, duration=1) for kind in ("cpu", "block")]
    handle = start("svc", live_server.url, tenant.tenant.external_id, tenant.agent_raw, poll_seconds=0.1,
                   collector=FakeCollector(), engines=ENGINES, lock_profiler=False, progress_seconds=0.1,
                   handle_sigterm=False)
    try:
        _wait(lambda: ProfileResult.objects.filter(pk__in=[r.pk for r in runs], status="completed").count() == 2)
    finally:
        handle.stop(timeout=5)
    instance = AgentInstance.objects.get(service="svc")
    assert instance.instance_id == handle.instance_id and instance.pid > 0


@pytest.mark.django_db(transaction=True)
def test_a_run_reaped_while_collected_is_dropped_by_the_agent(platform):
    live_server, tenant = platform
    run = _start(tenant, duration=60)
    handle = start("svc", live_server.url, tenant.tenant.external_id, tenant.agent_raw, poll_seconds=0.1,
                   collector=FakeCollector(), engines=ENGINES, lock_profiler=False, progress_seconds=0.1,
                   handle_sigterm=False)
    try:
        _wait(lambda: ProfileResult.objects.get(pk=run.pk).progress > 0)
        assert services.profiles_reap_overdue(now=timezone.now() + timedelta(seconds=60 + 301)) == 1
        _wait(lambda: handle.stats()["runsDropped"] == 1)  # progress got 409: stopped and dropped
        assert handle.stats()["activeRuns"] == [] and handle.running
    finally:
        handle.stop(timeout=5)
    stored = ProfileResult.objects.get(pk=run.pk)
    assert stored.status == "failed" and "did not upload" in stored.error  # the reaper's reason stands
