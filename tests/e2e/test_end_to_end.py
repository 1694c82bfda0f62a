"""A profile's whole life with real processes: web, Celery worker and beat, agents in real programs."""

import gzip
import json

import pytest

from profiles import demo
from profiles.models import ProfileResult
from tests.conftest import TenantFixture

from .conftest import API

pytestmark = [pytest.mark.e2e]

# What each mode of the workload makes hot, per profile type (see profiles/demo.py).
EXPECTED_TOP = {
    "cpu": "burn_cpu",
    "memory": "hoard",
    "alloc": "churn",
    "mutex": "contend",
    "block": "nap",
}


def _start(e2e, tenant, service, profile_type, seconds=3, **extra):
    status, body = e2e.request(
        "POST", f"{API}/start", tenant.api_raw, tenant.external_id,
        {"service": service, "profileType": profile_type, "durationSeconds": seconds, "sampleRate": 100, **extra},
    )
    assert status == 202, body
    return body["id"]


def _finished(body):
    return body.get("status") in ("completed", "failed")


@pytest.mark.parametrize("profile_type", sorted(EXPECTED_TOP))
def test_each_type_finds_the_function_the_program_makes_hot(e2e, profile_type):
    tenant = TenantFixture("e2e-types")
    service = f"svc-{profile_type}"
    e2e.start_agent(tenant, service, profile_type)
    profile_id = _start(e2e, tenant, service, profile_type)
    body = e2e.wait_for(tenant, profile_id, _finished)
    assert body["status"] == "completed", f"{body['error']}\n{e2e.logs()}"
    assert body["sampleCount"] > 0
    top = body["topFunctions"][0]
    assert top["function"] == EXPECTED_TOP[profile_type], body["topFunctions"][:5]
    assert body["instance"]["pid"] > 0 and body["engine"]


def test_goroutine_profile_counts_the_programs_threads(e2e):
    tenant = TenantFixture("e2e-threads")
    e2e.start_agent(tenant, "svc-threads", "goroutine")
    profile_id = _start(e2e, tenant, "svc-threads", "goroutine")
    body = e2e.wait_for(tenant, profile_id, _finished)
    assert body["status"] == "completed", body["error"]
    park = next(f for f in body["topFunctions"] if f["function"] == "park")
    # The program runs its main thread and PARKED_THREADS parked ones; agent threads are not counted.
    expected = 100 * demo.PARKED_THREADS / (demo.PARKED_THREADS + 1)
    assert abs(park["totalPercent"] - expected) < 5
    with ProfileResult.objects.get(pk=profile_id).payload.open("rb") as fh:
        raw = json.loads(gzip.decompress(fh.read()))
    parked = {s["thread"] for s in raw["samples"] if s["thread"].startswith("parked-")}
    assert len(parked) == demo.PARKED_THREADS


def test_two_instances_of_a_service_only_one_claims(e2e):
    tenant = TenantFixture("e2e-pair")
    agents = [e2e.start_agent(tenant, "svc-pair", "cpu") for _ in range(2)]
    profile_id = _start(e2e, tenant, "svc-pair", "cpu", seconds=2)
    body = e2e.wait_for(tenant, profile_id, _finished)
    assert body["status"] == "completed", body["error"]
    assert body["instance"]["pid"] in {a.pid for a in agents}
    assert ProfileResult.objects.filter(service="svc-pair").count() == 1


def test_without_an_agent_the_run_fails_with_the_reason(e2e):
    tenant = TenantFixture("e2e-ghost")
    profile_id = _start(e2e, tenant, "ghost", "cpu", seconds=1)
    body = e2e.wait_for(tenant, profile_id, _finished, timeout=30)
    assert body["status"] == "failed"
    assert body["error"] == "no agent of service ghost has polled in the last 60 s (never)"


def test_agent_killed_mid_window_fails_the_run_and_nothing_hangs(e2e):
    tenant = TenantFixture("e2e-killed")
    agent = e2e.start_agent(tenant, "svc-killed", "cpu")
    profile_id = _start(e2e, tenant, "svc-killed", "cpu", seconds=4)
    # mid-window: the agent has reported progress on it
    e2e.wait_for(tenant, profile_id, lambda b: b.get("phase") == "collecting" and b.get("progress", 0) > 0, timeout=30)
    agent.kill()
    body = e2e.wait_for(tenant, profile_id, _finished, timeout=60)
    assert body["status"] == "failed"
    assert "did not upload" in body["error"]
