"""GET /history: a service's profiles newest first, filters, cursor pages and per-function trends."""

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from profiling_agent.profile_format import DEFAULT_ENGINES

from profiles import services
from profiles.models import ProfileResult

from .samples import completed_profile, raw_profile

BASE = "/api/v1/observability/profiling"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
S = 1_000_000_000


def _run(tenant, minutes: int, *, service="ai-service", profile_type="cpu", continuous=False, failed=False):
    slot = T0 + timedelta(minutes=minutes) if continuous else None
    profile = services.profile_start(
        tenant=tenant, service=service, profile_type=profile_type, duration_seconds=10, continuous_slot=slot
    )
    if failed:
        services.profile_fail(profile=profile, error="no agent")
    ProfileResult.objects.filter(pk=profile.pk).update(started_at=T0 + timedelta(minutes=minutes))
    return str(profile.pk)


def _history(client, **params):
    response = client.get(f"{BASE}/history", {"service": "ai-service", **params})
    assert response.status_code == 200, response.json()
    return response.json()


def _ids(body):
    return [item["id"] for item in body["items"]]


@pytest.mark.django_db
def test_newest_first_with_the_seed_fields_and_the_normalized_total(api_client, tenant):
    older = completed_profile(tenant.tenant, raw_profile({"work": 30 * S}, duration=60), started_at=T0)
    newer = completed_profile(tenant.tenant, raw_profile({"work": 15 * S}, duration=10), started_at=T0 + timedelta(hours=1))
    _run(tenant.tenant, 0, service="billing")
    body = _history(api_client)
    assert body["service"] == "ai-service"
    assert _ids(body) == [str(newer.pk), str(older.pk)]
    item = body["items"][0]
    assert item["profileType"] == "cpu" and item["status"] == "completed" and item["continuous"] is False
    assert item["startedAt"] == "2026-03-01T13:00:00Z" and item["durationSeconds"] == 10
    assert item["unit"] == "nanoseconds" and item["totalValue"] == 15 * S
    assert item["normalizedTotal"] == pytest.approx(1.5 * S)  # 15 s of cpu per 10 s
    assert body["items"][1]["normalizedTotal"] == pytest.approx(0.5 * S)
    assert item["function"] is None


@pytest.mark.django_db
def test_filters_by_type_status_time_and_continuous(api_client, tenant):
    cpu = _run(tenant.tenant, 0)
    block = _run(tenant.tenant, 1, profile_type="block")
    failed = _run(tenant.tenant, 2, failed=True)
    continuous = _run(tenant.tenant, 3, continuous=True)
    assert _ids(_history(api_client, profileType="block")) == [block]
    assert _ids(_history(api_client, status="failed")) == [failed]
    assert _ids(_history(api_client, status="running", profileType="cpu")) == [continuous, cpu]
    assert _ids(_history(api_client, continuous="true")) == [continuous]
    assert _ids(_history(api_client, continuous="false")) == [failed, block, cpu]
    # from is inclusive, to exclusive.
    window = _history(api_client, **{"from": "2026-03-01T12:01:00Z", "to": "2026-03-01T12:03:00Z"})
    assert _ids(window) == [failed, block]
    assert _ids(_history(api_client, **{"from": "2026-03-01T12:02:00+00:00"})) == [continuous, failed]
    assert _ids(_history(api_client, to="2026-03-01T12:01:00Z")) == [cpu]
    assert len(_ids(_history(api_client))) == 4


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, field",
    [
        ({"profileType": "heap"}, "profileType"),
        ({"status": "done"}, "status"),
        ({"continuous": "maybe"}, "continuous"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01T00:00:00Z"}, "to"),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
        ({"service": "bad service!"}, "service"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(api_client, params, field):
    response = api_client.get(f"{BASE}/history", {"service": "ai-service", **params})
    assert response.status_code == 400
    assert field in response.json()["errors"] and field in response.json()["detail"]


@pytest.mark.django_db
def test_service_is_required(api_client):
    response = api_client.get(f"{BASE}/history")
    assert response.status_code == 400 and "service" in response.json()["errors"]


@pytest.mark.django_db
def test_cursor_pages_walk_the_whole_history_once(api_client, tenant):
    expected = [_run(tenant.tenant, minute) for minute in range(7)][::-1]
    # Two runs at the same instant must not be lost or repeated across a page boundary.
    twin = services.profile_start(tenant=tenant.tenant, service="ai-service", profile_type="cpu", duration_seconds=10)
    ProfileResult.objects.filter(pk=twin.pk).update(started_at=T0 + timedelta(minutes=3))
    seen, pages = [], 0
    body = _history(api_client, pageSize=3)
    while True:
        pages += 1
        assert len(body["items"]) <= 3
        seen.extend(_ids(body))
        if not body["next"]:
            break
        cursor = parse_qs(urlparse(body["next"]).query)["cursor"][0]
        body = _history(api_client, pageSize=3, cursor=cursor)
    assert pages == 3 and len(seen) == 8 and len(set(seen)) == 8
    assert [i for i in seen if i != str(twin.pk)] == expected
    # Filters carry over in the next link.
    first = _history(api_client, pageSize=2, profileType="cpu")
    assert "profileType=cpu" in first["next"] and first["previous"] is None


@pytest.mark.django_db
def test_the_next_link_goes_back_in_time_and_previous_returns(api_client, tenant):
    ids = [_run(tenant.tenant, minute) for minute in range(4)][::-1]
    first = _history(api_client, pageSize=2)
    second = api_client.get(first["next"]).json()
    assert _ids(second) == ids[2:]
    assert _ids(api_client.get(second["previous"]).json()) == ids[:2]


@pytest.mark.django_db
def test_an_invalid_cursor_is_404_not_500(api_client):
    response = api_client.get(f"{BASE}/history", {"service": "ai-service", "cursor": "garbage"})
    assert response.status_code == 404 and "cursor" in response.json()["detail"].lower()


@pytest.mark.django_db
def test_function_trend_gives_share_and_normalized_value_per_profile(api_client, tenant):
    for hour, parse_seconds in enumerate([10, 20, 40]):
        completed_profile(
            tenant.tenant, raw_profile({"parse": parse_seconds * S, "render": 10 * S}, duration=20),
            started_at=T0 + timedelta(hours=hour),
        )
    completed_profile(tenant.tenant, raw_profile({"render": 10 * S}, duration=20), started_at=T0 + timedelta(hours=3))
    body = _history(api_client, function="parse")
    points = [item["function"] for item in body["items"]]
    assert [p["normalizedSelf"] for p in points] == pytest.approx([0, 2 * S, 1 * S, 0.5 * S])
    assert [p["selfPercent"] for p in points] == [0.0, 80.0, 66.67, 50.0]
    assert [p["inTopFunctions"] for p in points] == [False, True, True, True]
    assert all(p["function"] == "parse" for p in points)


@pytest.mark.django_db
def test_another_tenant_sees_none_of_the_history(api_client, tenant, other_tenant):
    _run(tenant.tenant, 0)
    assert _history(other_tenant.client())["items"] == []
    assert len(_history(api_client)["items"]) == 1


@pytest.mark.django_db
def test_history_needs_an_api_token(agent_client):
    assert agent_client.get(f"{BASE}/history", {"service": "ai-service"}).status_code == 403


@pytest.mark.django_db
def test_every_item_names_its_engine_and_whole_seconds(api_client, tenant):
    sampled = raw_profile({"work": 30 * S}, duration=59.6)
    traced = raw_profile({"work": 30 * S}, duration=60)
    traced["engine"] = "yappi"
    completed_profile(tenant.tenant, sampled, started_at=T0)
    completed_profile(tenant.tenant, traced, started_at=T0 + timedelta(minutes=1))
    items = _history(api_client)["items"]
    assert [item["engine"] for item in items] == ["yappi", DEFAULT_ENGINES["cpu"]]
    assert [item["durationSeconds"] for item in items] == [60, 60]
    assert [item["durationSecondsPrecise"] for item in items] == [60.0, 59.6]
