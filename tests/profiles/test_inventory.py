"""The live inventory: GET /services (tenant scoped) and what it says about each service's agents."""

from datetime import timedelta

import pytest
from django.utils import timezone
from profiling_agent.profile_format import ENGINES_BY_TYPE

from profiles import services
from profiles.models import AgentInstance

from .samples import completed_profile, raw_cpu_profile

BASE = "/api/v1/observability/profiling"
ENGINES = {kind: list(ENGINES_BY_TYPE[kind]) for kind in ("cpu", "block")}


def _poll(client, service, instance_id, pid, collecting=()):
    body = {
        "service": service,
        "instance": {"id": instance_id, "host": "web-1", "pid": pid, "python": "3.12.1", "agentVersion": "0.2.0",
                     "engines": ENGINES},
        "collecting": list(collecting),
    }
    response = client.post(f"{BASE}/agent/poll", body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


@pytest.mark.django_db
def test_services_lists_live_instances_what_they_collect_and_the_last_profile(api_client, agent_client, tenant, settings):
    completed_profile(tenant.tenant, raw_cpu_profile(), service="checkout")
    services.profile_start(tenant=tenant.tenant, service="checkout", profile_type="block", duration_seconds=5)
    [run] = _poll(agent_client, "checkout", "a1", 11)["runs"]
    _poll(agent_client, "checkout", "a1", 11, [{"runId": run["id"], "profileType": "block", "engine": "thread-sampler"}])
    _poll(agent_client, "checkout", "gone", 12)
    stale = timezone.now() - timedelta(seconds=settings.PROFILING_AGENT_LIVE_SECONDS + 1)
    AgentInstance.objects.filter(instance_id="gone").update(last_poll_at=stale)
    _poll(agent_client, "search", "b1", 21)

    response = api_client.get(f"{BASE}/services")
    assert response.status_code == 200
    by_name = {entry["service"]: entry for entry in response.json()}
    assert set(by_name) == {"checkout", "search"}
    [live] = by_name["checkout"]["instances"]  # the stale one is left out
    assert (live["id"], live["host"], live["pid"], live["python"], live["agentVersion"]) == ("a1", "web-1", 11, "3.12.1", "0.2.0")
    assert live["engines"] == ENGINES
    assert live["collecting"] == [{"runId": run["id"], "profileType": "block", "engine": "thread-sampler"}]
    assert live["lastPollAt"]
    assert by_name["checkout"]["lastProfile"]["profileType"] == "block"  # the newest, still running
    assert by_name["search"]["lastProfile"] is None and by_name["search"]["instances"][0]["pid"] == 21


@pytest.mark.django_db
def test_services_is_tenant_scoped_and_needs_an_api_token(api_client, agent_client, other_tenant):
    _poll(agent_client, "checkout", "a1", 11)
    assert other_tenant.client().get(f"{BASE}/services").json() == []
    assert agent_client.get(f"{BASE}/services").status_code == 403


@pytest.mark.django_db
def test_one_instance_is_one_row_however_often_it_polls(agent_client):
    for _ in range(3):
        _poll(agent_client, "checkout", "a1", 11)
    assert AgentInstance.objects.count() == 1
