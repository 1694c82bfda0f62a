"""GET /compare: normalized per-function deltas between two completed profiles of one tenant."""

import pytest

from profiles import services

from .samples import completed_profile, raw_profile

BASE = "/api/v1/observability/profiling"
S = 1_000_000_000  # one second in nanoseconds


def _compare(client, base, comparison, **params):
    query = {"baseProfileId": str(base.pk), "comparisonProfileId": str(comparison.pk), **params}
    return client.get(f"{BASE}/compare", query)


@pytest.mark.django_db
def test_a_function_made_twice_as_slow_is_a_regression_with_the_right_delta(api_client, tenant):
    base = completed_profile(tenant.tenant, raw_profile({"parse": 30 * S, "render": 12 * S, "io": 6 * S}))
    slower = completed_profile(tenant.tenant, raw_profile({"parse": 60 * S, "render": 12 * S, "io": 6 * S}))
    response = _compare(api_client, base, slower)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["baseProfile"] == str(base.pk) and body["comparisonProfile"] == str(slower.pk)
    assert body["profileType"] == "cpu" and body["unit"] == "nanoseconds"
    assert body["normalization"] == "perSecond" and "per second" in body["note"]
    assert body["improvements"] == []
    [regression] = body["regressions"]
    assert regression["function"] == "parse" and regression["file"] == "/app/app.py" and regression["line"] == 10
    # 30 s of cpu in 60 s -> 0.5 s per second; doubled -> 1 s per second.
    assert regression["baseValue"] == pytest.approx(0.5 * S)
    assert regression["comparisonValue"] == pytest.approx(1.0 * S)
    assert regression["delta"] == pytest.approx(0.5 * S)
    assert regression["deltaPercent"] == 100.0
    assert regression["status"] == "changed"
    assert body["unchanged"] == 3  # render, io and main (a caller, self 0 on both sides)
    assert body["overallDelta"] == 62.5  # 48 s -> 78 s of cpu in the same 60 s


@pytest.mark.django_db
def test_a_30_s_profile_compares_fairly_with_a_60_s_one(api_client, tenant):
    minute = completed_profile(tenant.tenant, raw_profile({"parse": 30 * S, "render": 12 * S}, duration=60))
    half = completed_profile(tenant.tenant, raw_profile({"parse": 15 * S, "render": 6 * S}, duration=30))
    body = _compare(api_client, minute, half).json()
    assert body["regressions"] == [] and body["improvements"] == []
    assert body["overallDelta"] == 0.0
    assert body["baseDurationSeconds"] == 60 and body["comparisonDurationSeconds"] == 30


@pytest.mark.django_db
def test_improvements_and_functions_on_one_side_only(api_client, tenant):
    base = completed_profile(tenant.tenant, raw_profile({"parse": 30 * S, "legacy": 10 * S, "io": 5 * S}))
    comparison = completed_profile(tenant.tenant, raw_profile({"parse": 15 * S, "fastpath": 2 * S, "io": 5 * S}))
    body = _compare(api_client, base, comparison).json()
    improvements = {row["function"]: row for row in body["improvements"]}
    assert set(improvements) == {"parse", "legacy"}
    assert improvements["parse"]["deltaPercent"] == -50.0 and improvements["parse"]["status"] == "changed"
    assert improvements["legacy"]["status"] == "removed" and improvements["legacy"]["comparisonValue"] == 0
    # Sorted by the size of the change: parse (-0.25 s/s) before legacy (-0.167 s/s).
    assert [row["function"] for row in body["improvements"]] == ["parse", "legacy"]
    [added] = body["regressions"]
    assert added["function"] == "fastpath" and added["status"] == "added"
    assert added["deltaPercent"] is None and added["baseValue"] == 0


@pytest.mark.django_db
def test_the_noise_threshold_decides_what_is_unchanged(api_client, tenant):
    base = completed_profile(tenant.tenant, raw_profile({"parse": 50 * S, "render": 10 * S}))
    comparison = completed_profile(tenant.tenant, raw_profile({"parse": 52 * S, "render": 10 * S}))  # +4 %
    assert _compare(api_client, base, comparison).json()["regressions"] == []
    strict = _compare(api_client, base, comparison, noiseThresholdPercent=1).json()
    assert [row["function"] for row in strict["regressions"]] == ["parse"]
    assert strict["noiseThresholdPercent"] == 1.0


@pytest.mark.django_db
def test_memory_is_compared_as_bytes_not_per_second(api_client, tenant):
    long = completed_profile(tenant.tenant, raw_profile({"cache": 4_000_000}, profile_type="memory", duration=60))
    short = completed_profile(tenant.tenant, raw_profile({"cache": 8_000_000}, profile_type="memory", duration=30))
    body = _compare(api_client, long, short).json()
    assert body["normalization"] == "none" and body["unit"] == "bytes"
    [regression] = body["regressions"]
    assert (regression["baseValue"], regression["comparisonValue"]) == (4_000_000, 8_000_000)
    assert body["overallDelta"] == 100.0


@pytest.mark.django_db
def test_profiles_of_different_types_are_400(api_client, tenant):
    cpu = completed_profile(tenant.tenant, raw_profile({"parse": S}))
    block = completed_profile(tenant.tenant, raw_profile({"parse": S}, profile_type="block"))
    response = _compare(api_client, cpu, block)
    assert response.status_code == 400
    assert "cpu" in response.json()["detail"] and "block" in response.json()["detail"]


@pytest.mark.django_db
def test_a_profile_that_is_not_completed_is_409(api_client, tenant):
    done = completed_profile(tenant.tenant, raw_profile({"parse": S}))
    running = services.profile_start(tenant=tenant.tenant, service="ai-service", profile_type="cpu", duration_seconds=10)
    for base, comparison in ((done, running), (running, done)):
        response = _compare(api_client, base, comparison)
        assert response.status_code == 409
        assert "running" in response.json()["detail"]
    services.profile_fail(profile=running, error="no agent")
    assert _compare(api_client, done, running).status_code == 409


@pytest.mark.django_db
def test_a_completed_profile_whose_file_is_gone_is_409_not_500(api_client, tenant):
    base = completed_profile(tenant.tenant, raw_profile({"parse": S}))
    comparison = completed_profile(tenant.tenant, raw_profile({"parse": 2 * S}))
    comparison.payload.storage.delete(comparison.payload.name)
    response = _compare(api_client, base, comparison)
    assert response.status_code == 409 and "missing" in response.json()["detail"]


@pytest.mark.django_db
def test_another_tenants_profile_is_404(api_client, tenant, other_tenant):
    mine = completed_profile(tenant.tenant, raw_profile({"parse": S}))
    theirs = completed_profile(other_tenant.tenant, raw_profile({"parse": S}))
    assert _compare(api_client, mine, theirs).status_code == 404
    assert _compare(api_client, theirs, mine).status_code == 404
    assert _compare(other_tenant.client(), mine, mine).status_code == 404
    assert _compare(api_client, mine, mine).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, field",
    [
        ({"comparisonProfileId": "00000000-0000-0000-0000-000000000000"}, "baseProfileId"),
        ({"baseProfileId": "00000000-0000-0000-0000-000000000000"}, "comparisonProfileId"),
        ({"baseProfileId": "nope", "comparisonProfileId": "00000000-0000-0000-0000-000000000000"}, "baseProfileId"),
        (
            {
                "baseProfileId": "00000000-0000-0000-0000-000000000000",
                "comparisonProfileId": "00000000-0000-0000-0000-000000000000",
                "noiseThresholdPercent": "-1",
            },
            "noiseThresholdPercent",
        ),
    ],
)
def test_missing_or_invalid_parameters_are_400(api_client, query, field):
    response = api_client.get(f"{BASE}/compare", query)
    assert response.status_code == 400
    assert field in response.json()["errors"]


@pytest.mark.django_db
def test_compare_needs_an_api_token(agent_client, tenant):
    profile = completed_profile(tenant.tenant, raw_profile({"parse": S}))
    assert _compare(agent_client, profile, profile).status_code == 403


@pytest.mark.django_db
def test_a_rate_profile_of_zero_seconds_is_400_not_500(api_client, tenant):
    base = completed_profile(tenant.tenant, raw_profile({"parse": S}))
    empty = completed_profile(tenant.tenant, raw_profile({"parse": S}, duration=0))
    response = _compare(api_client, base, empty)
    assert response.status_code == 400 and "normalized" in response.json()["detail"]
