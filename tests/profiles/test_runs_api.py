"""Start a profile, the agent claims, uploads, and the result appears: the API side of a run."""

from datetime import timedelta

import pytest
from django.utils import timezone
from profiling_agent.profile_format import DEFAULT_ENGINES

from profiles import services
from profiles.models import ENGINES_BY_TYPE, ProfileResult

from .samples import gzip_json, raw_cpu_profile

BASE = "/api/v1/observability/profiling"
START = {"service": "ai-service", "profileType": "cpu", "durationSeconds": 60, "sampleRate": 100}


def _start(client, **overrides):
    return client.post(f"{BASE}/start", {**START, **overrides}, format="json")


ENGINES = {kind: list(engines) for kind, engines in ENGINES_BY_TYPE.items()}


def _poll(client, service="ai-service", pid=1, instance_id=None, engines=None, collecting=()):
    instance = {"id": instance_id or f"inst-{pid}", "host": "h", "pid": pid, "engines": engines or ENGINES}
    body = {"service": service, "instance": instance, "collecting": list(collecting)}
    return client.post(f"{BASE}/agent/poll", body, format="json")


def _claim(client, **poll):
    """Poll once; the one run it claims (id, lease)."""
    [run] = _poll(client, **poll).json()["runs"]
    return run["id"], run["lease"]


def _agent_post(client, profile_id, action, lease, body=None):
    headers = {"HTTP_X_PROFILING_LEASE": lease} if lease is not None else {}
    if action == "upload":
        return client.generic(
            "POST", f"{BASE}/agent/runs/{profile_id}/upload", body, content_type="application/json",
            HTTP_CONTENT_ENCODING="gzip", **headers,
        )
    return client.post(f"{BASE}/agent/runs/{profile_id}/{action}", body, format="json", **headers)


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
def test_poll_claims_the_run_exactly_once_with_a_lease_and_the_servers_deadline(api_client, agent_client, settings):
    profile_id = _start(api_client, durationSeconds=5).json()["id"]
    first = _poll(agent_client, pid=1).json()
    second = _poll(agent_client, pid=2).json()
    [run] = first["runs"]
    assert second["runs"] == []
    assert run["id"] == profile_id and run["profileType"] == "cpu" and run["engine"] == DEFAULT_ENGINES["cpu"]
    assert run["durationSeconds"] == 5 and run["sampleRate"] == 100 and run["lease"]
    assert run["deadline"] - run["startAt"] == 5 + settings.PROFILING_UPLOAD_GRACE_SECONDS
    stored = ProfileResult.objects.get(pk=profile_id)
    assert stored.phase == "collecting" and stored.claimed_by == "inst-1"
    assert stored.lease_hash == services.lease_hash(run["lease"]) != run["lease"]
    assert stored.instance["pid"] == 1


@pytest.mark.django_db
def test_poll_only_hands_out_runs_of_its_service_and_tenant(api_client, agent_client, other_tenant):
    _start(api_client, service="billing")
    assert _poll(agent_client, service="ai-service").json()["runs"] == []
    assert _poll(other_tenant.client("agent"), service="billing").json()["runs"] == []
    assert len(_poll(agent_client, service="billing").json()["runs"]) == 1


@pytest.mark.django_db
def test_poll_needs_an_instance_id(agent_client):
    response = agent_client.post(f"{BASE}/agent/poll", {"service": "s", "instance": {"pid": 1}}, format="json")
    assert response.status_code == 400 and response.json()["errors"]["instance"] == ["id: This field is required."]


@pytest.mark.django_db
def test_runs_go_only_to_an_instance_that_lists_their_engine(api_client, agent_client):
    yappi = _start(api_client, engine="yappi", durationSeconds=5).json()["id"]
    assert _poll(agent_client, pid=1, engines={"cpu": ["py-spy"]}).json()["runs"] == []
    assert [r["id"] for r in _poll(agent_client, pid=2, engines={"cpu": ["py-spy", "yappi"]}).json()["runs"]] == [yappi]


@pytest.mark.django_db
def test_several_runs_at_once_but_exclusive_engines_one_at_a_time(api_client, agent_client):
    for kind in ("cpu", "block", "goroutine", "mutex"):
        _start(api_client, profileType=kind, durationSeconds=5)
    _start(api_client, profileType="memory", engine="memray", durationSeconds=5)
    _start(api_client, profileType="alloc", engine="memray", durationSeconds=5)
    runs = _poll(agent_client).json()["runs"]
    kinds = sorted(r["profileType"] for r in runs)
    assert kinds[:4] == ["block", "cpu", "goroutine", "mutex"] or set(kinds) >= {"block", "cpu", "goroutine", "mutex"}
    assert len(runs) == 5 and len([r for r in runs if r["engine"] == "memray"]) == 1
    assert _poll(agent_client).json()["runs"] == []  # the other memray run waits for the first
    memray = next(r for r in runs if r["engine"] == "memray")
    _agent_post(agent_client, memray["id"], "fail", memray["lease"], {"error": "done"})
    [other] = _poll(agent_client).json()["runs"]
    assert other["engine"] == "memray" and other["id"] != memray["id"]


@pytest.mark.django_db
def test_at_most_eight_runs_collect_per_instance(api_client, agent_client):
    for _ in range(10):
        _start(api_client, profileType="block", durationSeconds=5)
    assert len(_poll(agent_client).json()["runs"]) == 8
    assert _poll(agent_client).json()["runs"] == []
    assert len(_poll(agent_client, pid=2).json()["runs"]) == 2  # another instance takes the rest


@pytest.mark.django_db
def test_a_run_is_claimed_at_most_15_s_before_it_starts(tenant, agent_client):
    soon, later = (timezone.now() + timedelta(seconds=s) for s in (10, 40))
    for when in (soon, later):
        services.profile_start(tenant=tenant.tenant, service="ai-service", profile_type="cpu", duration_seconds=5, continuous_slot=when)
    [run] = _poll(agent_client).json()["runs"]
    assert run["startAt"] == soon.timestamp()
    assert run["deadline"] == (soon + timedelta(seconds=5 + 300)).timestamp()


@pytest.mark.django_db
def test_starting_without_a_live_agent_warns_and_with_one_does_not(api_client, agent_client):
    body = _start(api_client).json()
    assert body["status"] == "running"
    assert body["warnings"] == [
        "no agent of service ai-service has polled in the last 60 s (never); the run waits 30 s for one to claim it"
    ]
    _poll(agent_client)
    assert _start(api_client).json()["warnings"] == []


@pytest.mark.django_db
def test_a_run_no_live_agent_can_collect_fails_at_once(api_client, agent_client):
    _poll(agent_client, engines={"cpu": ["py-spy"], "memory": []})
    response = _start(api_client, profileType="memory", engine="memray", durationSeconds=5)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"] == "no live agent can run engine memray for memory (they offer none)"


@pytest.mark.django_db
@pytest.mark.parametrize("engine, profile_type", [("yappi", "cpu"), ("memray", "memory")])
def test_heavy_engines_are_capped(api_client, engine, profile_type):
    response = _start(api_client, profileType=profile_type, engine=engine, durationSeconds=301)
    assert response.status_code == 400
    assert "at most 300 s" in response.json()["errors"]["durationSeconds"][0]
    assert _start(api_client, profileType=profile_type, engine=engine, durationSeconds=300).status_code == 202


@pytest.mark.django_db
def test_upload_completes_the_run_with_top_functions(api_client, agent_client, eager_celery, django_capture_on_commit_callbacks):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _, lease = _claim(agent_client)
    assert _agent_post(agent_client, profile_id, "progress", lease, {"progress": 0.5}).status_code == 204
    assert api_client.get(f"{BASE}/{profile_id}").json()["progress"] == 0.5
    with django_capture_on_commit_callbacks(execute=True):
        response = _agent_post(agent_client, profile_id, "upload", lease, gzip_json(raw_cpu_profile()))
    assert response.status_code == 202
    body = api_client.get(f"{BASE}/{profile_id}").json()
    assert body["status"] == "completed"
    assert body["sampleCount"] > 0
    assert body["topFunctions"][0]["function"] == "hot"
    assert body["flameGraphUrl"]


@pytest.mark.django_db
def test_the_agents_measured_overhead_is_shown_with_the_result(api_client, agent_client, eager_celery, django_capture_on_commit_callbacks):
    ids = []
    for overhead in (0.42, None):
        profile_id = _start(api_client, durationSeconds=2).json()["id"]
        ids.append(profile_id)
        _, lease = _claim(agent_client)
        raw = raw_cpu_profile() | ({} if overhead is None else {"overheadPercent": overhead})
        with django_capture_on_commit_callbacks(execute=True):
            _agent_post(agent_client, profile_id, "upload", lease, gzip_json(raw))
    measured, unknown = (api_client.get(f"{BASE}/{profile_id}").json() for profile_id in ids)
    assert measured["status"] == "completed" and measured["overheadPercent"] == 0.42
    assert unknown["status"] == "completed" and unknown["overheadPercent"] is None


@pytest.mark.django_db
@pytest.mark.parametrize("action, body", [
    ("progress", {"progress": 0.5}), ("fail", {"error": "x"}), ("upload", None),
])
def test_progress_upload_and_fail_refuse_a_missing_or_wrong_lease(api_client, agent_client, action, body):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _claim(agent_client)
    payload = gzip_json(raw_cpu_profile()) if action == "upload" else body
    for lease in (None, "not-the-lease"):
        response = _agent_post(agent_client, profile_id, action, lease, payload)
        assert response.status_code == 409
        assert "not leased to this agent" in response.json()["detail"]
    stored = ProfileResult.objects.get(pk=profile_id)
    assert (stored.status, stored.phase) == ("running", "collecting")


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["progress", "fail", "upload"])
def test_another_tenants_run_is_404_for_the_agent_endpoints(api_client, agent_client, other_tenant, action):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _, lease = _claim(agent_client)
    body = gzip_json(raw_cpu_profile()) if action == "upload" else {"progress": 0.1, "error": "x"}
    assert _agent_post(other_tenant.client("agent"), profile_id, action, lease, body).status_code == 404


@pytest.mark.django_db
def test_progress_on_a_run_no_longer_collecting_is_409(api_client, agent_client, settings):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _, lease = _claim(agent_client)
    services.profiles_reap_overdue(now=timezone.now() + timedelta(seconds=2 + settings.PROFILING_UPLOAD_GRACE_SECONDS + 1))
    response = _agent_post(agent_client, profile_id, "progress", lease, {"progress": 0.7})
    assert response.status_code == 409 and "no longer collected" in response.json()["detail"]


@pytest.mark.django_db
def test_malformed_upload_is_400_naming_the_field_and_the_run_stays_collecting(api_client, agent_client):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _, lease = _claim(agent_client)
    bad = raw_cpu_profile()
    bad["samples"][0]["stack"] = [0, 99]
    response = _agent_post(agent_client, profile_id, "upload", lease, gzip_json(bad))
    assert response.status_code == 400
    assert "samples[0].stack[1]" in response.json()["detail"] and "99" in response.json()["detail"]
    body = api_client.get(f"{BASE}/{profile_id}").json()
    assert (body["status"], body["phase"]) == ("running", "collecting")


@pytest.mark.django_db
def test_upload_over_the_limit_is_413(api_client, agent_client, settings):
    settings.PROFILING_MAX_UPLOAD_BYTES = 1000
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _, lease = _claim(agent_client)
    response = _agent_post(agent_client, profile_id, "upload", lease, b"\x1f\x8b" + b"x" * 5000)
    assert response.status_code == 413
    assert ProfileResult.objects.get(pk=profile_id).phase == "collecting"


@pytest.mark.django_db
def test_upload_to_an_unclaimed_or_failed_run_is_409(api_client, agent_client):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    response = _agent_post(agent_client, profile_id, "upload", "any", gzip_json(raw_cpu_profile()))
    assert response.status_code == 409


@pytest.mark.django_db
def test_agent_failure_is_reported_on_the_result(api_client, agent_client):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _, lease = _claim(agent_client)
    assert _agent_post(agent_client, profile_id, "fail", lease, {"error": "memray: out of disk"}).status_code == 204
    body = api_client.get(f"{BASE}/{profile_id}").json()
    assert body["status"] == "failed" and "memray: out of disk" in body["error"]
    again = _agent_post(agent_client, profile_id, "fail", lease, {"error": "twice"})
    assert again.status_code == 409 and api_client.get(f"{BASE}/{profile_id}").json()["error"] == "agent: memray: out of disk"


@pytest.mark.django_db
def test_fail_after_an_accepted_upload_is_409_and_the_upload_stands(api_client, agent_client):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _, lease = _claim(agent_client)
    assert _agent_post(agent_client, profile_id, "upload", lease, gzip_json(raw_cpu_profile())).status_code == 202
    assert _agent_post(agent_client, profile_id, "fail", lease, {"error": "late"}).status_code == 409
    stored = ProfileResult.objects.get(pk=profile_id)
    assert (stored.status, stored.phase, stored.error) == ("running", "processing", "")


@pytest.mark.django_db
def test_reaper_tells_why_a_run_was_not_claimed(api_client, agent_client, tenant, settings):
    nobody = _start(api_client, service="nobody-home").json()["id"]
    busy = _start(api_client, profileType="memory", engine="memray", durationSeconds=5).json()["id"]
    other_memray = _start(api_client, profileType="alloc", engine="memray", durationSeconds=5).json()["id"]
    [claimed] = [r for r in _poll(agent_client).json()["runs"] if r["engine"] == "memray"]
    _poll(agent_client, collecting=[{"runId": claimed["id"], "profileType": claimed["profileType"], "engine": "memray"}])
    waiting = other_memray if claimed["id"] == busy else busy
    later = timezone.now() + timedelta(seconds=settings.PROFILING_CLAIM_TIMEOUT_SECONDS + 1)
    assert services.profiles_reap_overdue(now=later) == 2
    assert api_client.get(f"{BASE}/{nobody}").json()["error"] == (
        "no agent of service nobody-home has polled in the last 60 s (never)"
    )
    reason = api_client.get(f"{BASE}/{waiting}").json()["error"]
    assert reason.startswith(f"agents of service ai-service were busy with {claimed['profileType']} (memray)")
    much_later = later + timedelta(seconds=5 + settings.PROFILING_UPLOAD_GRACE_SECONDS)
    assert services.profiles_reap_overdue(now=much_later) == 1
    assert "did not upload" in api_client.get(f"{BASE}/{claimed['id']}").json()["error"]


@pytest.mark.django_db
def test_reaper_names_the_last_poll_of_a_service_whose_agents_went_away(api_client, agent_client, settings):
    _poll(agent_client, engines={"cpu": ENGINES["cpu"]})
    stale = timezone.now() + timedelta(seconds=settings.PROFILING_AGENT_LIVE_SECONDS + 1)
    profile = services.profile_start(
        tenant=ProfileResult._meta.get_field("tenant").related_model.objects.get(external_id="550e8400"),
        service="ai-service", profile_type="cpu", duration_seconds=5,
    )
    services.profiles_reap_overdue(now=stale + timedelta(seconds=settings.PROFILING_CLAIM_TIMEOUT_SECONDS))
    profile.refresh_from_db()
    assert profile.error.startswith("no agent of service ai-service has polled in the last 60 s (last poll at 20")


@pytest.mark.django_db
def test_flamegraph_link_opens_without_login_and_rejects_tampering(api_client, agent_client, client, eager_celery, django_capture_on_commit_callbacks):
    profile_id = _start(api_client, durationSeconds=2).json()["id"]
    _, lease = _claim(agent_client)
    with django_capture_on_commit_callbacks(execute=True):
        _agent_post(agent_client, profile_id, "upload", lease, gzip_json(raw_cpu_profile()))
    url = api_client.get(f"{BASE}/{profile_id}").json()["flameGraphUrl"]
    page = client.get(url)
    assert page.status_code == 200
    assert b"hot" in page.content
    assert client.get(url[:-3] + "xx/").status_code == 404


@pytest.mark.django_db
def test_a_run_naming_no_engine_gets_a_light_engine_the_live_agents_offer(api_client, agent_client):
    # an agent installed without the in-process extra (no stack-sampler) or a C compiler (no
    # alloc-sampler)
    _poll(agent_client, engines={"cpu": ["py-spy", "yappi"], "goroutine": ["thread-sampler"], "memory": ["memray"]})
    cpu = _start(api_client, durationSeconds=5).json()
    goroutine = _start(api_client, profileType="goroutine", durationSeconds=5).json()
    assert (cpu["status"], cpu["engine"]) == ("running", "py-spy")
    assert (goroutine["status"], goroutine["engine"]) == ("running", "thread-sampler")
    memory = _start(api_client, profileType="memory", durationSeconds=5).json()  # memray is never picked silently
    assert memory["status"] == "failed"
    assert memory["error"] == f"no live agent can run engine {DEFAULT_ENGINES['memory']} for memory (they offer memray)"
