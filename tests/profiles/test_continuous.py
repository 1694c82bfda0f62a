"""Continuous profiling: the configuration API, and the beat task that turns it into runs."""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.db import IntegrityError, transaction
from profiling_agent.profile_format import (
    ENGINES_BY_TYPE,
)

from profiles import services, tasks
from profiles.models import ContinuousProfile, ProfileResult
from profiling_platform.celery import app as celery_app

BASE = "/api/v1/observability/profiling"
CONFIG = {"service": "ai-service", "profileTypes": ["cpu", "memory"]}
# A moment well inside a slot for any period used here.
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
POLL = {
    "service": "ai-service",
    "instance": {"id": "inst-1", "engines": {kind: list(e) for kind, e in ENGINES_BY_TYPE.items()}},
}


@pytest.fixture
def short_period(settings):
    settings.PROFILING_CONTINUOUS_PERIOD_SECONDS = 5
    settings.PROFILING_CONTINUOUS_WINDOW_SECONDS = 2
    return settings


def _post(client, **overrides):
    return client.post(f"{BASE}/continuous", {**CONFIG, **overrides}, format="json")


# --- the API ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_first_post_creates_with_defaults_and_a_second_updates(api_client):
    response = _post(api_client)
    assert response.status_code == 201
    body = response.json()
    assert body["service"] == "ai-service" and body["profileTypes"] == ["cpu", "memory"]
    assert (body["sampleRate"], body["retentionDays"], body["enabled"]) == (100, 30, True)
    assert body["createdAt"] and body["updatedAt"] and body["nextRunAt"]
    again = _post(api_client, profileTypes=["block"], sampleRate=19, retentionDays=7, enabled=False)
    assert again.status_code == 200
    body = again.json()
    assert (body["profileTypes"], body["sampleRate"], body["retentionDays"], body["enabled"]) == (["block"], 19, 7, False)
    assert body["nextRunAt"] is None
    assert ContinuousProfile.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"profileTypes": []}, "profileTypes"),
        ({"profileTypes": ["heap"]}, "profileTypes"),
        ({"profileTypes": ["cpu", "cpu"]}, "profileTypes"),
        ({"profileTypes": "cpu"}, "profileTypes"),
        ({"profileTypes": None}, "profileTypes"),
        ({"sampleRate": 0}, "sampleRate"),
        ({"sampleRate": 1001}, "sampleRate"),
        ({"retentionDays": 0}, "retentionDays"),
        ({"retentionDays": 3651}, "retentionDays"),
        ({"service": "bad service!"}, "service"),
        ({"service": ""}, "service"),
        ({"enabled": "maybe"}, "enabled"),
    ],
)
def test_invalid_configurations_are_400_with_the_field(api_client, overrides, field):
    response = _post(api_client, **overrides)
    assert response.status_code == 400
    assert field in response.json()["errors"] and field in response.json()["detail"]
    assert not ContinuousProfile.objects.exists()


@pytest.mark.django_db
def test_profile_types_are_required(api_client):
    response = api_client.post(f"{BASE}/continuous", {"service": "ai-service"}, format="json")
    assert response.status_code == 400 and "profileTypes" in response.json()["errors"]


@pytest.mark.django_db
def test_list_shows_only_this_tenants_configurations(api_client, other_tenant):
    _post(api_client, service="zeta")
    _post(api_client, service="alpha", profileTypes=["goroutine"])
    _post(other_tenant.client(), service="theirs")
    body = api_client.get(f"{BASE}/continuous").json()
    assert [c["service"] for c in body] == ["alpha", "zeta"]
    assert [c["service"] for c in other_tenant.client().get(f"{BASE}/continuous").json()] == ["theirs"]


@pytest.mark.django_db
def test_read_replace_change_and_delete_one(api_client):
    _post(api_client, sampleRate=50, retentionDays=90)
    url = f"{BASE}/continuous/ai-service"
    assert api_client.get(url).json()["sampleRate"] == 50

    patched = api_client.patch(url, {"enabled": False}, format="json")
    assert patched.status_code == 200
    assert (patched.json()["enabled"], patched.json()["sampleRate"], patched.json()["retentionDays"]) == (False, 50, 90)

    replaced = api_client.put(url, {"profileTypes": ["mutex"]}, format="json")
    assert replaced.status_code == 200
    body = replaced.json()  # PUT is a whole configuration: what is left out takes its default
    assert (body["profileTypes"], body["sampleRate"], body["retentionDays"], body["enabled"]) == (["mutex"], 100, 30, True)

    assert api_client.put(url, {"sampleRate": 10}, format="json").status_code == 400  # PUT needs profileTypes
    assert api_client.patch(url, {"profileTypes": []}, format="json").status_code == 400

    assert api_client.delete(url).status_code == 204
    assert api_client.get(url).status_code == 404
    assert not ContinuousProfile.objects.exists()


@pytest.mark.django_db
def test_a_configuration_cannot_be_renamed_through_its_url(api_client):
    _post(api_client)
    response = api_client.put(f"{BASE}/continuous/ai-service", {**CONFIG, "service": "billing"}, format="json")
    assert response.status_code == 400 and "service" in response.json()["errors"]
    same = api_client.put(f"{BASE}/continuous/ai-service", CONFIG, format="json")
    assert same.status_code == 200


@pytest.mark.django_db
def test_unknown_service_is_404(api_client):
    url = f"{BASE}/continuous/nobody"
    assert api_client.get(url).status_code == 404
    assert api_client.patch(url, {"enabled": False}, format="json").status_code == 404
    assert api_client.put(url, {"profileTypes": ["cpu"]}, format="json").status_code == 404
    assert api_client.delete(url).status_code == 404


@pytest.mark.django_db
def test_another_tenants_configuration_is_404(api_client, other_tenant):
    _post(api_client)
    theirs = other_tenant.client()
    url = f"{BASE}/continuous/ai-service"
    assert theirs.get(url).status_code == 404
    assert theirs.patch(url, {"enabled": False}, format="json").status_code == 404
    assert theirs.put(url, {"profileTypes": ["cpu"]}, format="json").status_code == 404
    assert theirs.delete(url).status_code == 404
    assert api_client.get(url).json()["enabled"] is True
    # Posting the same service name as another tenant creates that tenant's own configuration.
    assert _post(theirs).status_code == 201
    assert ContinuousProfile.objects.count() == 2


@pytest.mark.django_db
def test_agent_tokens_cannot_configure(agent_client):
    assert _post(agent_client).status_code == 403
    assert agent_client.get(f"{BASE}/continuous").status_code == 403


# --- dispatch ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_enabled_configuration_gets_one_run_per_type_per_slot(api_client, tenant, other_tenant, short_period):
    _post(api_client, sampleRate=25)
    _post(other_tenant.client(), service="billing", profileTypes=["block"])
    assert services.continuous_dispatch(now=T0 + timedelta(seconds=1)) == 3
    runs = ProfileResult.objects.filter(tenant=tenant.tenant).order_by("profile_type")
    assert [r.profile_type for r in runs] == ["cpu", "memory"]
    next_window = T0 + timedelta(seconds=5)  # created ahead: the window on the next 5 s boundary
    for run in runs:
        assert run.continuous is True and run.status == "running" and run.phase == "waiting"
        assert run.requested_duration_seconds == 2 and run.sample_rate == 25
        assert run.continuous_slot == run.scheduled_start_at == run.started_at == next_window
    # A doubled tick adds nothing.
    assert services.continuous_dispatch(now=T0 + timedelta(seconds=1)) == 0
    assert services.continuous_dispatch(now=T0 + timedelta(seconds=2)) == 0
    # A tick that drifted to just before a boundary already creates the window after next,
    # so the tick after it (just past the following boundary) leaves no window out.
    assert services.continuous_dispatch(now=T0 + timedelta(seconds=4.9)) == 3
    assert services.continuous_dispatch(now=T0 + timedelta(seconds=10.1)) == 3
    slots = sorted(set(ProfileResult.objects.values_list("continuous_slot", flat=True)))
    assert slots == [T0 + timedelta(seconds=s) for s in (5, 10, 15)]


@pytest.mark.django_db
def test_runs_are_visible_through_the_api_and_claimable_by_the_agent(api_client, agent_client, short_period):
    _post(api_client, profileTypes=["cpu"])
    services.continuous_dispatch()
    runs = agent_client.post(f"{BASE}/agent/poll", POLL, format="json").json()["runs"]
    assert runs and len(runs) == ProfileResult.objects.count()  # every window created ahead is within reach
    for run in runs:
        assert run["profileType"] == "cpu" and run["durationSeconds"] == 2 and run["continuous"] is True
        window = ProfileResult.objects.get(pk=run["id"]).continuous_slot
        assert run["startAt"] == window.timestamp()  # the agent begins at the window's start
        assert api_client.get(f"{BASE}/{run['id']}").json()["continuous"] is True
    history = api_client.get(f"{BASE}/history", {"service": "ai-service", "continuous": "true"}).json()
    assert sorted(item["id"] for item in history["items"]) == sorted(run["id"] for run in runs)


@pytest.mark.django_db
def test_disabling_stops_new_runs_at_once(api_client, agent_client, short_period):
    _post(api_client)
    assert services.continuous_dispatch(now=T0) == 2
    api_client.patch(f"{BASE}/continuous/ai-service", {"enabled": False}, format="json")
    # Runs that no agent claimed yet are withdrawn, so an agent polling now gets nothing.
    assert agent_client.post(f"{BASE}/agent/poll", POLL, format="json").json()["runs"] == []
    assert set(ProfileResult.objects.values_list("status", flat=True)) == {"failed"}
    assert "disabled" in ProfileResult.objects.first().error
    assert services.continuous_dispatch(now=T0 + timedelta(seconds=5)) == 0
    api_client.patch(f"{BASE}/continuous/ai-service", {"enabled": True}, format="json")
    assert services.continuous_dispatch(now=T0 + timedelta(seconds=10)) == 2


@pytest.mark.django_db
def test_dropping_a_type_withdraws_only_its_waiting_runs(api_client, short_period):
    _post(api_client)
    services.continuous_dispatch(now=T0)
    api_client.patch(f"{BASE}/continuous/ai-service", {"profileTypes": ["cpu"]}, format="json")
    statuses = dict(ProfileResult.objects.values_list("profile_type", "status"))
    assert statuses == {"cpu": "running", "memory": "failed"}


@pytest.mark.django_db
def test_deleting_stops_runs_and_keeps_stored_profiles(api_client, short_period):
    _post(api_client)
    services.continuous_dispatch(now=T0)
    api_client.delete(f"{BASE}/continuous/ai-service")
    assert services.continuous_dispatch(now=T0 + timedelta(seconds=5)) == 0
    assert ProfileResult.objects.count() == 2


@pytest.mark.django_db
def test_inactive_tenants_get_no_runs(api_client, tenant, short_period):
    _post(api_client)
    tenant.tenant.is_active = False
    tenant.tenant.save()
    assert services.continuous_dispatch(now=T0) == 0


@pytest.mark.django_db
def test_a_concurrent_tick_is_stopped_by_the_constraint_without_undoing_other_runs(api_client, monkeypatch, short_period):
    _post(api_client)
    _post(api_client, service="billing", profileTypes=["cpu"])
    services.profile_start(  # another tick got to this one first
        tenant=ContinuousProfile.objects.get(service="ai-service").tenant, service="ai-service",
        profile_type="memory", duration_seconds=2, continuous_slot=T0 + timedelta(seconds=5),
    )
    monkeypatch.setattr(services.continuous, "_slot_runs", lambda slots: set())  # as if it raced past the check
    assert services.continuous_dispatch(now=T0) == 2
    assert ProfileResult.objects.filter(continuous_slot=T0 + timedelta(seconds=5)).count() == 3


@pytest.mark.django_db
def test_the_database_refuses_two_runs_for_one_slot(tenant):
    kwargs = {"tenant": tenant.tenant, "service": "s", "profile_type": "cpu", "duration_seconds": 2, "continuous_slot": T0}
    services.profile_start(**kwargs)
    with pytest.raises(IntegrityError), transaction.atomic():
        services.profile_start(**kwargs)


@pytest.mark.django_db
def test_next_run_at_follows_the_slots(api_client, short_period, monkeypatch):
    from profiles.api import serializers

    monkeypatch.setattr(serializers.timezone, "now", lambda: T0 + timedelta(seconds=1))
    _post(api_client)
    assert api_client.get(f"{BASE}/continuous/ai-service").json()["nextRunAt"] == "2026-03-01T12:00:05Z"
    services.continuous_dispatch(now=T0 + timedelta(seconds=1))
    assert api_client.get(f"{BASE}/continuous/ai-service").json()["nextRunAt"] == "2026-03-01T12:00:05Z"
    assert api_client.get(f"{BASE}/continuous").json()[0]["nextRunAt"] == "2026-03-01T12:00:05Z"


@pytest.mark.django_db
def test_the_beat_task_dispatches(api_client, eager_celery, settings):
    settings.PROFILING_CONTINUOUS_PERIOD_SECONDS = 3600  # both ticks fall into one slot
    _post(api_client, profileTypes=["goroutine"])
    tasks.dispatch_continuous_profiles.delay()
    windows = ProfileResult.objects.filter(continuous=True, profile_type="goroutine").count()
    assert windows >= 1  # the next window (and the one after, past the middle of the hour)
    tasks.dispatch_continuous_profiles.delay()
    assert ProfileResult.objects.filter(continuous=True, profile_type="goroutine").count() == windows


def test_beat_schedules_dispatch_every_period_and_retention_daily():
    schedule = django_settings.CELERY_BEAT_SCHEDULE
    dispatch = schedule["dispatch-continuous-profiles"]
    assert dispatch["task"] == "profiles.tasks.dispatch_continuous_profiles"
    assert dispatch["schedule"].total_seconds() == django_settings.PROFILING_CONTINUOUS_PERIOD_SECONDS
    purge = schedule["purge-expired-profiles"]
    assert purge["task"] == "profiles.tasks.purge_expired_profiles"
    assert purge["schedule"].remaining_estimate(datetime.now(UTC)) <= timedelta(days=1)
    celery_app.loader.import_default_modules()
    for entry in schedule.values():
        assert entry["task"] in celery_app.tasks


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["%00", "a%00b", "bad%20name", "x" * 129])
def test_a_service_name_no_configuration_can_have_is_404(api_client, name):
    response = api_client.get(f"{BASE}/continuous/{name}")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
