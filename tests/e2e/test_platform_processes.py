"""Celery beat driving continuous profiling, and the platform's workers profiling themselves."""

import time

import pytest

from profiles.models import AgentInstance, ProfileResult
from tests.conftest import TenantFixture

from .conftest import API, BIN, wait_until

pytestmark = [pytest.mark.e2e]



def test_beat_runs_continuous_profiles_until_disabled(e2e):
    """The e2e platform runs beat with a 4 s period and back-to-back 4 s windows."""
    tenant = TenantFixture("e2e-continuous")
    e2e.start_agent(tenant, "svc-continuous", "service")
    status, body = e2e.request(
        "POST", f"{API}/continuous", tenant.api_raw, tenant.external_id,
        {"service": "svc-continuous", "profileTypes": ["cpu", "goroutine"], "sampleRate": 50, "retentionDays": 7},
    )
    assert status == 201, body
    runs = ProfileResult.objects.filter(tenant=tenant.tenant, service="svc-continuous", continuous=True)

    def two_slots_completed():
        done = runs.filter(status="completed")
        return done.values("continuous_slot").distinct().count() >= 2

    wait_until(two_slots_completed, 45, f"two completed slots\n{e2e.logs()}")
    for slot in runs.values_list("continuous_slot", flat=True).distinct():
        # one run per type per slot, whatever beat's timing did
        assert sorted(runs.filter(continuous_slot=slot).values_list("profile_type", flat=True)) == ["cpu", "goroutine"]
    assert runs.filter(status="completed", profile_type="cpu").first().sample_rate == 50

    status, _ = e2e.request(
        "PATCH", f"{API}/continuous/svc-continuous", tenant.api_raw, tenant.external_id, {"enabled": False}
    )
    assert status == 200
    count_when_disabled = runs.count()
    time.sleep(7)  # more than two periods
    assert runs.count() == count_when_disabled
    assert not runs.filter(status="running", phase="waiting").exists()


def test_a_worker_with_profiling_self_profiles_itself(e2e):
    tenant = TenantFixture("e2e-self")
    worker = e2e.start_process(
        "self-worker",
        [str(BIN / "celery"), "-A", "profiling_platform", "worker", "--pool", "prefork", "--concurrency", "1",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle", "-n", "self@%h"],
        PROFILING_SELF="1", PROFILING_SERVER_URL=e2e.url, PROFILING_TENANT_ID=tenant.external_id,
        PROFILING_TOKEN=tenant.agent_raw, PROFILING_POLL_SECONDS="0.5",
    )
    # The run is started once a worker process's agent has polled (booting can take a while).
    wait_until(
        lambda: AgentInstance.objects.filter(tenant=tenant.tenant, service="profiling-worker").exists(),
        60, f"the worker's agent to poll\n{e2e.logs()}",
    )
    assert worker.pid not in set(AgentInstance.objects.values_list("pid", flat=True))  # one poller: the child's
    status, body = e2e.request(
        "POST", f"{API}/start", tenant.api_raw, tenant.external_id,
        {"service": "profiling-worker", "profileType": "goroutine", "durationSeconds": 2},
    )
    assert status == 202, body
    body = e2e.wait_for(tenant, body["id"], lambda b: b.get("status") in ("completed", "failed"), timeout=60)
    assert body["status"] == "completed", f"{body['error']}\n{e2e.logs()}"
    # A prefork child claimed it: not the worker's parent process.
    assert body["instance"]["pid"] != worker.pid
    assert body["sampleCount"] > 0


def test_the_web_keeps_answering_when_postgresql_closes_its_connections(e2e):
    """Persistent connections that the server closed (a restart, an idle timeout,
    pg_terminate_backend) are noticed before a request uses them: no 500, no error."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the connection health check is PostgreSQL's")
    tenant = TenantFixture("e2e-db-restart")
    history = f"{API}/history?service=svc-db"
    for _ in range(24):  # every web thread of both workers holds a connection now
        status, body = e2e.request("GET", history, tenant.api_raw, tenant.external_id)
        assert status == 200, body
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert cursor.fetchall(), "no connection of the web to close"
    statuses = [e2e.request("GET", history, tenant.api_raw, tenant.external_id)[0]
                for _ in range(24)]
    assert statuses == [200] * 24, (statuses, e2e.logs()[-3000:])
