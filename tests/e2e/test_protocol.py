"""The run protocol with real processes: an outage of the web, every type at once, continuous windows."""

import gzip
import json
import signal
import time
import urllib.request
from datetime import timedelta

import pytest
from profiling_agent.profile_format import PROFILE_TYPES

from profiles.models import AgentInstance, ProfileResult
from tests.conftest import TenantFixture

from .conftest import API, BIN, CONTINUOUS_PERIOD_SECONDS, _free_port, wait_until

pytestmark = [pytest.mark.e2e]


def _start(e2e, tenant, service, profile_type, seconds=2):
    status, body = e2e.request(
        "POST", f"{API}/start", tenant.api_raw, tenant.external_id,
        {"service": service, "profileType": profile_type, "durationSeconds": seconds},
    )
    assert status == 202, body
    return body["id"]


def _agent_polled(tenant, service):
    return lambda: AgentInstance.objects.filter(tenant=tenant.tenant, service=service).exists()


def _serving(url):
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_the_web_down_for_60_s_while_an_agent_uploads_the_run_completes(e2e):
    tenant = TenantFixture("e2e-outage")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    web_command = [str(BIN / "gunicorn"), "profiling_platform.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    grace = {"PROFILING_UPLOAD_GRACE_SECONDS": "120"}  # the claim's deadline outlasts the outage
    web = e2e.start_process("outage-web", web_command, **grace)
    wait_until(lambda: _serving(url), 60, "the outage web to serve")
    e2e.start_agent(tenant, "svc-outage", "cpu", seconds=300, url=url)
    wait_until(_agent_polled(tenant, "svc-outage"), 30, "the agent to poll")
    profile_id = _start(e2e, tenant, "svc-outage", "cpu", seconds=4)
    e2e.wait_for(tenant, profile_id, lambda b: b.get("phase") == "collecting", timeout=30)
    web.send_signal(signal.SIGTERM)  # the web goes down mid-window: the upload meets a closed port
    web.wait(30)
    assert not _serving(url)
    time.sleep(60)  # the outage itself
    assert ProfileResult.objects.get(pk=profile_id).phase == "collecting"
    e2e.start_process("outage-web-again", web_command, **grace)
    body = e2e.wait_for(tenant, profile_id, lambda b: b.get("status") in ("completed", "failed"), timeout=90)
    assert body["status"] == "completed", f"{body['error']}\n{e2e.logs()}"
    assert body["sampleCount"] > 0


def test_all_six_types_started_at_once_on_one_service_complete(e2e):
    tenant = TenantFixture("e2e-six")
    e2e.start_agent(tenant, "svc-six", "service")
    wait_until(_agent_polled(tenant, "svc-six"), 30, "the agent to poll")
    ids = {kind: _start(e2e, tenant, "svc-six", kind) for kind in PROFILE_TYPES}
    for kind, profile_id in ids.items():
        body = e2e.wait_for(tenant, profile_id, lambda b: b.get("status") in ("completed", "failed"), timeout=90)
        assert body["status"] == "completed", f"{kind}: {body['error']}\n{e2e.logs()}"


def _window(profile: ProfileResult) -> tuple[float, float]:
    """(start, end) of the collected window, as the agent recorded it in the raw profile."""
    with profile.payload.open("rb") as fh:
        raw = json.loads(gzip.decompress(fh.read()))
    return raw["startedAt"], raw["startedAt"] + raw["durationSeconds"]


def test_continuous_all_six_types_back_to_back_windows_and_an_on_demand_run_beside_them(e2e):
    tenant = TenantFixture("e2e-windows")
    e2e.start_agent(tenant, "svc-windows", "service", seconds=300)
    wait_until(_agent_polled(tenant, "svc-windows"), 30, "the agent to poll")
    status, body = e2e.request(
        "POST", f"{API}/continuous", tenant.api_raw, tenant.external_id,
        {"service": "svc-windows", "profileTypes": list(PROFILE_TYPES), "sampleRate": 50},
    )
    assert status == 201, body
    period = timedelta(seconds=CONTINUOUS_PERIOD_SECONDS)
    runs = ProfileResult.objects.filter(tenant=tenant.tenant, service="svc-windows", continuous=True)
    on_demand = None

    def consecutive_pairs():
        done = {(r.profile_type, r.continuous_slot): r for r in runs.filter(status="completed")}
        return {
            kind: (first, second)
            for (kind, slot), first in done.items()
            if (second := done.get((kind, slot + period)))
        }

    def every_type_has_two_consecutive_windows():
        nonlocal on_demand
        if on_demand is None and runs.filter(phase="collecting").exists():
            on_demand = _start(e2e, tenant, "svc-windows", "cpu")  # while windows are collected
        return set(consecutive_pairs()) == set(PROFILE_TYPES)

    wait_until(every_type_has_two_consecutive_windows, 90, f"two consecutive windows of every type\n{e2e.logs()}")
    for kind, (first, second) in consecutive_pairs().items():
        (_, first_end), (second_start, _) = _window(first), _window(second)
        assert abs(second_start - first_end) <= 1.0, (kind, first_end, second_start)
    body = e2e.wait_for(tenant, on_demand, lambda b: b.get("status") in ("completed", "failed"), timeout=60)
    assert body["status"] == "completed", body["error"]
    e2e.request("PATCH", f"{API}/continuous/svc-windows", tenant.api_raw, tenant.external_id, {"enabled": False})
