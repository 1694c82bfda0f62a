"""GET /merge and /compare over time ranges, rollups and their retention."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from profiling_agent.profile_format import DEFAULT_ENGINES

from profiles import services
from profiles.models import ContinuousProfile, ProfileResult, ProfileRollup

from .samples import completed_profile, raw_profile

BASE = "/api/v1/observability/profiling"
S = 1_000_000_000
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def window(tenant, minute: float, leaves: dict[str, int], *, engine: str | None = None, service="ai-service"):
    """A completed 60 s continuous cpu window starting `minute` minutes after T0."""
    raw = raw_profile(leaves, duration=60.0)
    if engine:
        raw["engine"] = engine
    return completed_profile(tenant, raw, service=service, started_at=at(minute), continuous_slot=at(minute))


def leaves_of(minute: int) -> dict[str, int]:
    """Different values per window, so a missing or doubled window changes the sums."""
    return {"parse": (minute % 7 + 1) * S // 10, "render": (minute % 3 + 1) * S // 20, "io": (minute % 5) * S // 50}


def merge(client, start, end, **params):
    return client.get(f"{BASE}/merge", {"service": "ai-service", "profileType": "cpu", "from": iso(start), "to": iso(end), **params})


def expected(minutes) -> dict:
    """Per-function self values and the total of the given windows, added by hand."""
    per_function: Counter = Counter()
    for minute in minutes:
        per_function.update(leaves_of(minute))
    return {"total": sum(per_function.values()), "self": {k: v for k, v in per_function.items() if v}}


def function_selfs(body) -> dict:
    return {row["function"]: row["self"] for row in body["topFunctions"] if row["self"]}


@pytest.mark.django_db
def test_a_range_cutting_windows_at_both_ends_merges_them_whole_and_equals_their_sum(api_client, tenant):
    for minute in range(10):
        window(tenant.tenant, minute, leaves_of(minute))
    # 10:00:30-10:05:30 overlaps the windows of minutes 0 (cut) to 5 (cut): six windows, whole.
    response = merge(api_client, at(0.5), at(5.5))
    assert response.status_code == 200, response.json()
    body = response.json()
    want = expected(range(6))
    assert body["profileCount"] == 6
    assert body["totalValue"] == want["total"]
    assert function_selfs(body) == want["self"]
    main = next(row for row in body["topFunctions"] if row["function"] == "main")
    assert main["total"] == want["total"] and main["totalPercent"] == 100.0
    assert body["durationSeconds"] == 360.0  # covered time: six whole windows
    assert body["coverage"] == 1.0
    assert body["engine"] == DEFAULT_ENGINES["cpu"] and body["unit"] == "nanoseconds"
    assert body["from"] == "2026-11-30T10:00:30Z" and body["to"] == "2026-11-30T10:05:30Z"
    assert "/services/ai-service/" in body["flameGraphUrl"]


@pytest.mark.django_db
def test_a_range_with_gaps_merges_what_is_there_and_reports_its_coverage(api_client, tenant):
    for minute in (0, 1, 5):
        window(tenant.tenant, minute, leaves_of(minute))
    body = merge(api_client, at(0), at(10)).json()
    assert body["profileCount"] == 3
    assert body["totalValue"] == expected((0, 1, 5))["total"]
    assert function_selfs(body) == expected((0, 1, 5))["self"]
    assert body["coverage"] == pytest.approx(0.3)  # 3 minutes of 10
    assert body["durationSeconds"] == 180.0


@pytest.mark.django_db
def test_an_empty_range_is_an_empty_merge(api_client, tenant):
    body = merge(api_client, at(0), at(60)).json()
    assert body["profileCount"] == 0 and body["topFunctions"] == [] and body["flameGraphUrl"] is None
    assert body["coverage"] == 0.0


@pytest.mark.django_db
def test_rollups_answer_for_whole_periods_with_the_same_result_as_the_raw_windows(api_client, tenant):
    minutes = range(-10, 80)  # 09:50 to 11:19, one window a minute
    for minute in minutes:
        window(tenant.tenant, minute, leaves_of(minute))
    start, end = at(-5.5), at(72.5)  # ragged at both ends; 10:00-11:00 and several 10 min periods whole
    before = merge(api_client, start, end).json()
    assert before["sources"]["windows"] == before["profileCount"] == 79  # minutes -6 .. 72
    written = services.rollups_refresh(now=at(24 * 60 + 30), lookback=timedelta(days=30))
    assert written > 0
    after = merge(api_client, start, end).json()
    assert after["sources"]["rollups"] >= 1 and after["sources"]["windows"] < 25
    assert after["sources"]["bytesRead"] > 0
    for field in ("profileCount", "totalValue", "sampleCount", "durationSeconds", "topFunctions", "coverage"):
        assert after[field] == before[field], field
    assert after["totalValue"] == expected(range(-6, 73))["total"]
    # Running the task again writes nothing: every rollup is fresh.
    assert services.rollups_refresh(now=at(24 * 60 + 30), lookback=timedelta(days=30)) == 0


@pytest.mark.django_db
def test_a_window_that_arrives_after_its_rollup_is_still_merged(api_client, tenant):
    for minute in range(0, 60, 2):
        window(tenant.tenant, minute, leaves_of(minute))
    services.rollups_refresh(now=at(120), lookback=timedelta(days=1))
    hour = ProfileRollup.objects.get(period_seconds=3600)
    assert hour.profile_count == 30
    window(tenant.tenant, 31, leaves_of(31))  # late: its period's rollups are now stale
    body = merge(api_client, at(0), at(60)).json()
    assert body["profileCount"] == 31
    assert body["totalValue"] == expected([*range(0, 60, 2), 31])["total"]
    services.rollups_refresh(now=at(121), lookback=timedelta(days=1))
    hour.refresh_from_db()
    assert hour.profile_count == 31
    rebuilt = merge(api_client, at(0), at(60)).json()
    assert rebuilt["sources"] == {**rebuilt["sources"], "rollups": 1, "windows": 0}
    assert rebuilt["totalValue"] == body["totalValue"]


@pytest.mark.django_db
def test_a_range_across_two_engines_is_refused_until_one_is_picked(api_client, tenant):
    window(tenant.tenant, 0, {"parse": S})
    window(tenant.tenant, 1, {"parse": 3 * S}, engine="yappi")
    response = merge(api_client, at(0), at(2))
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert DEFAULT_ENGINES["cpu"] in detail and "yappi" in detail and "engine=" in detail
    picked = merge(api_client, at(0), at(2), engine="yappi").json()
    assert picked["profileCount"] == 1 and picked["totalValue"] == 3 * S and picked["engine"] == "yappi"


@pytest.mark.django_db
def test_another_tenants_range_is_empty_and_its_compare_is_404(api_client, tenant, other_tenant):
    window(other_tenant.tenant, 0, {"parse": S})
    body = merge(api_client, at(0), at(1)).json()
    assert body["profileCount"] == 0 and body["totalValue"] == 0
    response = api_client.get(f"{BASE}/compare", {
        "service": "ai-service", "profileType": "cpu",
        "baseFrom": iso(at(0)), "baseTo": iso(at(1)), "comparisonFrom": iso(at(0)), "comparisonTo": iso(at(1)),
    })
    assert response.status_code == 404 and "holds no completed" in response.json()["detail"]


@pytest.mark.django_db
def test_compare_of_two_ranges_finds_the_regression_injected_in_one(api_client, tenant):
    for minute in range(0, 5):
        window(tenant.tenant, minute, {"parse": 6 * S, "render": 3 * S})
    for minute in range(60, 63):  # an hour later parse takes twice as long; fewer windows
        window(tenant.tenant, minute, {"parse": 12 * S, "render": 3 * S})
    response = api_client.get(f"{BASE}/compare", {
        "service": "ai-service", "profileType": "cpu",
        "baseFrom": iso(at(0)), "baseTo": iso(at(5)), "comparisonFrom": iso(at(60)), "comparisonTo": iso(at(63)),
    })
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["baseProfile"] == "2026-11-30T10:00:00Z/2026-11-30T10:05:00Z"
    assert body["comparisonProfile"] == "2026-11-30T11:00:00Z/2026-11-30T11:03:00Z"
    [regression] = body["regressions"]
    assert regression["function"] == "parse"
    assert regression["baseValue"] == pytest.approx(0.1 * S)  # per second: 30 s over 300 s
    assert regression["comparisonValue"] == pytest.approx(0.2 * S)
    assert regression["deltaPercent"] == 100.0
    assert body["improvements"] == []
    assert body["baseDurationSeconds"] == 300.0 and body["comparisonDurationSeconds"] == 180.0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, field",
    [
        ({"from": "2026-11-30T11:00:00Z", "to": "2026-11-30T10:00:00Z"}, "from"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-11-30T10:00:00Z"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"profileType": "heap"}, "profileType"),
        ({"format": "svg"}, "format"),
    ],
)
def test_bad_range_input_is_a_400_naming_the_field(api_client, params, field):
    query = {"service": "ai-service", "profileType": "cpu", "from": iso(at(0)), "to": iso(at(60)), **params}
    response = api_client.get(f"{BASE}/merge", query)
    assert response.status_code == 400
    assert field in response.json()["errors"]


@pytest.mark.django_db
def test_compare_needs_two_ids_or_two_whole_ranges(api_client):
    response = api_client.get(f"{BASE}/compare", {"service": "ai-service", "profileType": "cpu", "baseFrom": iso(at(0))})
    assert response.status_code == 400
    assert {"baseTo", "comparisonFrom", "comparisonTo"} <= set(response.json()["errors"])


@pytest.mark.django_db
def test_the_merge_exports_as_folded_stacks(api_client, tenant):
    window(tenant.tenant, 0, {"parse": 2 * S, "render": S})
    window(tenant.tenant, 1, {"parse": S})
    response = merge(api_client, at(0), at(2), format="folded")
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('.folded.txt"')
    lines = dict(line.rsplit(" ", 1) for line in response.content.decode().splitlines())
    main, parse, render = "main (/app/app.py:1)", "parse (/app/app.py:10)", "render (/app/app.py:20)"
    assert lines == {f"{main};{parse}": str(3 * S), f"{main};{render}": str(S)}


@pytest.mark.django_db
def test_a_range_needing_too_many_raw_windows_is_a_409(api_client, tenant, settings):
    settings.PROFILING_MERGE_MAX_RAW_WINDOWS = 2
    for minute in range(3):
        window(tenant.tenant, minute, {"parse": S})
    response = merge(api_client, at(0), at(3))
    assert response.status_code == 409 and "rollups are not built yet" in response.json()["detail"]


@pytest.mark.django_db
def test_retention_removes_raw_windows_and_keeps_rollups_for_their_own_period(api_client, tenant, settings, media_root):
    ContinuousProfile.objects.create(tenant=tenant.tenant, service="ai-service", profile_types=["cpu"], retention_days=7)
    settings.PROFILING_ROLLUP_RETENTION_DAYS = 30
    for minute in range(0, 60, 5):
        window(tenant.tenant, minute, leaves_of(minute))
    services.rollups_refresh(now=at(61), lookback=timedelta(days=1))
    before = merge(api_client, at(0), at(60)).json()

    services.profiles_purge_expired(now=T0 + timedelta(days=8))
    services.rollups_purge_expired(now=T0 + timedelta(days=8))
    assert not ProfileResult.objects.exists()
    assert not list((media_root / "profiles").rglob("*.json.gz"))
    after = merge(api_client, at(0), at(60)).json()
    assert after["sources"] == {**after["sources"], "rollups": 1, "windows": 0}
    assert after["totalValue"] == before["totalValue"] and after["topFunctions"] == before["topFunctions"]

    services.rollups_purge_expired(now=T0 + timedelta(days=31))
    assert not ProfileRollup.objects.exists()
    assert not list((media_root / "rollups").rglob("*.json.gz"))
    assert merge(api_client, at(0), at(60)).json()["profileCount"] == 0


@pytest.mark.django_db
def test_beat_runs_the_rollup_task_which_builds_the_closed_periods(api_client, tenant, eager_celery):
    from django.conf import settings as django_settings

    from profiles.tasks import rollup_profiles

    entry = django_settings.CELERY_BEAT_SCHEDULE["rollup-profiles"]
    assert entry["task"] == "profiles.tasks.rollup_profiles"
    assert entry["schedule"] == timedelta(seconds=django_settings.PROFILING_ROLLUP_PERIOD_SECONDS)
    for minute in range(0, 10):
        window(tenant.tenant, minute, leaves_of(minute))  # completed just now, in a closed period
    rollup_profiles.delay()
    assert sorted(ProfileRollup.objects.values_list("period_seconds", "profile_count")) == [(600, 10), (3600, 10), (21600, 10), (86400, 10)]
    assert merge(api_client, at(0), at(10)).json()["sources"] == {"rollups": 1, "windows": 0, "bytesRead": ProfileRollup.objects.get(period_seconds=600).size_bytes}
