"""Start a profile, the agent claims, uploads, and the result appears: the API side of a run."""

from datetime import timedelta

import pytest
from django.utils import timezone

from profiles import services
from profiles.models import ProfileResult

from .samples import gzip_json, raw_cpu_profile

BASE = "/api/v1/observability/profiling"
START = {"service": "ai-service", "profileType": "cpu", "durationSeconds": 60, "sampleRate": 100}


def _start(client, **overrides):
    return client.post(f"{BASE}/start", {**START, **overrides}, format="json")


def _poll(client, service="ai-service", pid=1):
    return client.post(f"{BASE}/agent/poll", {"service": service, "instance": {"host": "h", "pid": pid}}, format="json")


@pytest.mark.django_db
def test_start_returns_202_running_with_location(api_client):
    response = _start(api_client)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "running"
    assert body["service"] == "ai-service" and body["profileType"] == "cpu"
    assert body["durationSeconds"] == 60 and body["sampleCount"] == 0
    assert body["flameGraphUrl"] is None
    assert response["Location"].endswith(f"{BASE}/{body['id']}")
    assert api_client.get(response["Location"]).json()["id"] == body["id"]


@pytest.mark.django_db
def test_sample_rate_defaults_to_100(api_client):
    body = api_client.post(f"{BASE}/start", {"service": "s", "profileType": "memory", "durationSeconds": 5}, format="json").json()
    assert body["sampleRate"] == 100


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"profileType": "heap"}, "profileType"),
        ({"durationSeconds": 0}, "durationSeconds"),
        ({"durationSeconds": 3601}, "durationSeconds"),
        ({"sampleRate": 0}, "sampleRate"),
        ({"sampleRate": 1001}, "sampleRate"),
        ({"service": ""}, "service"),
        ({"service": "bad service!"}, "service"),
        ({"service": "x" * 129}, "service"),
        ({"engine": "memray"}, "engine"),
    ],
)
def test_start_rejects_bad_input_with_a_message(api_client, overrides, field):
    response = _start(api_client, **overrides)
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"]
    assert field in body["detail"]
    assert not ProfileResult.objects.exists()


@pytest.mark.django_db
def test_start_rejects_non_json_body(api_client):
    response = api_client.post(f"{BASE}/start", "service=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


@pytest.mark.django_db
def test_agent_token_cannot_start(agent_client):
    assert _start(agent_client).status_code == 403


@pytest.mark.django_db
def test_api_token_cannot_poll(api_client):
    assert _poll(api_client).status_code == 403


@pytest.mark.django_db
def test_another_tenants_profile_is_404(api_client, other_tenant):
    profile_id = _start(api_client).json()["id"]
    assert other_tenant.client().get(f"{BASE}/{profile_id}").status_code == 404
    assert api_client.get(f"{BASE}/{profile_id}").status_code == 200


@pytest.mark.django_db
def test_unknown_or_malformed_id_is_404(api_client):
    assert api_client.get(f"{BASE}/not-a-uuid").status_code == 404
    assert api_client.get(f"{BASE}/00000000-0000-0000-0000-000000000000").status_code == 404


@pytest.mark.django_db
def test_poll_claims_the_run_exactly_once(api_client, agent_client):
    profile_id = _start(api_client, durationSeconds=5).json()["id"]
    first = _poll(agent_client, pid=1).json()
    second = _poll(agent_client, pid=2).json()
    assert first["run"] == {"id": profile_id, "profileType": "cpu", "durationSeconds": 5, "sampleRate": 100, "engine": None}
    assert second["run"] is None
    body = api_client.get(f"{BASE}/{profile_id}").json()
    assert body["phase"] == "collecting" and body["instance"]["pid"] == 1


@pytest.mark.django_db
def test_poll_only_hands_out_runs_of_its_service_and_tenant(api_client, agent_client, other_tenant):
    _start(api_client, service="billing")
    assert _poll(agent_client, service="ai-service").json()["run"] is None
    assert _poll(other_tenant.client("agent"), service="billing").json()["run"] is None
    assert _poll(agent_client, service="billing").json()["run"] is not None


@pytest.mark.django_db
def test_upload_completes_the_run_with_top_functions(api_client, agent_client, eager_celery, django_capture_on_commit_callbacks):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _poll(agent_client)
    assert agent_client.post(f"{BASE}/agent/runs/{profile_id}/progress", {"progress": 0.5}, format="json").status_code == 204
    assert api_client.get(f"{BASE}/{profile_id}").json()["progress"] == 0.5
    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client.generic(
            "POST", f"{BASE}/agent/runs/{profile_id}/upload", gzip_json(raw_cpu_profile()),
            content_type="application/json", HTTP_CONTENT_ENCODING="gzip",
        )
    assert response.status_code == 202
    body = api_client.get(f"{BASE}/{profile_id}").json()
    assert body["status"] == "completed", body["error"]
    assert body["sampleCount"] == 100
    assert body["durationSeconds"] == 2.0
    assert body["completedAt"] is not None
    top = body["topFunctions"][0]
    assert (top["function"], top["selfPercent"]) == ("hot", 90.0)
    assert set(top) == {"function", "file", "line", "self", "total", "selfPercent", "totalPercent"}
    assert body["flameGraphUrl"].startswith("http://testserver/flamegraph/")


@pytest.mark.django_db
def test_the_agents_measured_overhead_is_shown_with_the_result(api_client, agent_client, eager_celery, django_capture_on_commit_callbacks):
    ids = [_start(api_client, durationSeconds=2).json()["id"] for _ in range(2)]
    for profile_id, overhead in zip(ids, (0.42, None), strict=True):
        _poll(agent_client)
        raw = raw_cpu_profile() | ({} if overhead is None else {"overheadPercent": overhead})
        with django_capture_on_commit_callbacks(execute=True):
            agent_client.generic("POST", f"{BASE}/agent/runs/{profile_id}/upload", gzip_json(raw),
                                 content_type="application/json", HTTP_CONTENT_ENCODING="gzip")
    measured, unknown = (api_client.get(f"{BASE}/{profile_id}").json() for profile_id in ids)
    assert measured["status"] == "completed" and measured["overheadPercent"] == 0.42
    assert unknown["status"] == "completed" and unknown["overheadPercent"] is None


@pytest.mark.django_db
def test_malformed_upload_fails_the_run_with_the_reason(api_client, agent_client, eager_celery, django_capture_on_commit_callbacks):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _poll(agent_client)
    bad = raw_cpu_profile()
    bad["samples"][0]["stack"] = [0, 99]
    with django_capture_on_commit_callbacks(execute=True):
        agent_client.generic("POST", f"{BASE}/agent/runs/{profile_id}/upload", gzip_json(bad), content_type="application/json")
    body = api_client.get(f"{BASE}/{profile_id}").json()
    assert body["status"] == "failed"
    assert "rejected" in body["error"] and "99" in body["error"]


@pytest.mark.django_db
def test_upload_over_the_limit_is_413(api_client, agent_client, settings):
    settings.PROFILING_MAX_UPLOAD_BYTES = 1000
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _poll(agent_client)
    response = agent_client.generic("POST", f"{BASE}/agent/runs/{profile_id}/upload", b"\x1f\x8b" + b"x" * 5000, content_type="application/json")
    assert response.status_code == 413
    assert ProfileResult.objects.get(pk=profile_id).phase == "collecting"


@pytest.mark.django_db
def test_upload_to_an_unclaimed_or_failed_run_is_409(api_client, agent_client):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    response = agent_client.generic("POST", f"{BASE}/agent/runs/{profile_id}/upload", gzip_json(raw_cpu_profile()), content_type="application/json")
    assert response.status_code == 409


@pytest.mark.django_db
def test_agent_failure_is_reported_on_the_result(api_client, agent_client):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _poll(agent_client)
    agent_client.post(f"{BASE}/agent/runs/{profile_id}/fail", {"error": "memray: out of disk"}, format="json")
    body = api_client.get(f"{BASE}/{profile_id}").json()
    assert body["status"] == "failed" and "memray: out of disk" in body["error"]


@pytest.mark.django_db
def test_reaper_fails_unclaimed_and_unfinished_runs_with_reasons(api_client, agent_client, settings):
    unclaimed = _start(api_client, service="nobody-home").json()["id"]
    claimed = _start(api_client, durationSeconds=5).json()["id"]
    _poll(agent_client)
    later = timezone.now() + timedelta(seconds=settings.PROFILING_CLAIM_TIMEOUT_SECONDS + 1)
    assert services.profiles_reap_overdue(now=later) == 1
    body = api_client.get(f"{BASE}/{unclaimed}").json()
    assert body["status"] == "failed"
    assert body["error"].startswith("no agent of service nobody-home claimed the run")
    much_later = later + timedelta(seconds=5 + settings.PROFILING_UPLOAD_GRACE_SECONDS)
    assert services.profiles_reap_overdue(now=much_later) == 1
    assert "did not upload" in api_client.get(f"{BASE}/{claimed}").json()["error"]


@pytest.mark.django_db
def test_flamegraph_link_opens_without_login_and_rejects_tampering(api_client, agent_client, client, eager_celery, django_capture_on_commit_callbacks):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _poll(agent_client)
    with django_capture_on_commit_callbacks(execute=True):
        agent_client.generic("POST", f"{BASE}/agent/runs/{profile_id}/upload", gzip_json(raw_cpu_profile()), content_type="application/json")
    url = api_client.get(f"{BASE}/{profile_id}").json()["flameGraphUrl"]
    page = client.get(url)
    assert page.status_code == 200
    assert b"hot" in page.content
    assert client.get(url[:-3] + "xx/").status_code == 404
