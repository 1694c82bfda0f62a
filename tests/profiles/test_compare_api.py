"""GET /compare: normalized per-function deltas between two completed profiles of one tenant."""

import random

import pytest
from profiling_agent.profile_format import DEFAULT_ENGINES

from profiles import services

from .samples import completed_profile, raw_profile, sampled_cpu_profile

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
    # Ten minutes at 100 Hz: 50,000 samples, so a 4 % move is far beyond sampling noise.
    base = completed_profile(tenant.tenant, raw_profile({"parse": 500 * S, "render": 100 * S}, duration=600))
    comparison = completed_profile(tenant.tenant, raw_profile({"parse": 520 * S, "render": 100 * S}, duration=600))
    default = _compare(api_client, base, comparison).json()
    assert default["regressions"] == [] and default["droppedAsNoise"] == 0
    strict = _compare(api_client, base, comparison, noiseThresholdPercent=1).json()
    assert [row["function"] for row in strict["regressions"]] == ["parse"]
    assert strict["regressions"][0]["significant"] is True
    assert strict["noiseThresholdPercent"] == 1.0


@pytest.mark.django_db
def test_a_move_beyond_the_threshold_but_within_sampling_noise_is_dropped_and_counted(api_client, tenant):
    # 5,000 vs 5,200 samples: +4 % is about 2 standard deviations, expected by chance among functions.
    base = completed_profile(tenant.tenant, raw_profile({"parse": 50 * S, "render": 10 * S}))
    comparison = completed_profile(tenant.tenant, raw_profile({"parse": 52 * S, "render": 10 * S}))
    body = _compare(api_client, base, comparison, noiseThresholdPercent=1).json()
    assert body["regressions"] == [] and body["droppedAsNoise"] == 1
    assert "sampling noise" in body["note"]
    listed = _compare(api_client, base, comparison, noiseThresholdPercent=1, includeNoise="true").json()
    [row] = listed["regressions"]
    assert row["function"] == "parse" and row["significant"] is False
    # The noise is the standard deviation of the delta: sqrt(5000 + 5200) samples of 10 ms, per second.
    assert row["noise"] == pytest.approx((10_200**0.5) * 0.01 * S / 60)


@pytest.mark.django_db
def test_memory_is_compared_as_bytes_not_per_second(api_client, tenant):
    # memray records every allocation: no sampling noise stands behind these values
    exact = {"engine": "memray"}
    long = completed_profile(tenant.tenant, raw_profile({"cache": 4_000_000}, profile_type="memory", duration=60) | exact)
    short = completed_profile(tenant.tenant, raw_profile({"cache": 8_000_000}, profile_type="memory", duration=30) | exact)
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


WORKLOAD = {"render": 0.35, "query": 0.3, "serialize": 0.2, "log": 0.1, "auth": 0.05}


@pytest.mark.django_db
def test_the_same_workload_under_more_load_has_no_significant_change_by_share(api_client, tenant):
    rng = random.Random(12)
    quiet = completed_profile(tenant.tenant, sampled_cpu_profile(WORKLOAD, 2_500, rng))
    busy = completed_profile(tenant.tenant, sampled_cpu_profile(WORKLOAD, 5_000, rng))

    body = _compare(api_client, quiet, busy, normalization="share").json()
    assert body["normalization"] == "share" and body["valueUnit"] == "fraction of the profile total"
    assert body["regressions"] == [] and body["improvements"] == []
    # What a load change looks like per second: everything "slower", overall +100 %.
    per_second = _compare(api_client, quiet, busy).json()
    assert per_second["normalization"] == "perSecond" and len(per_second["regressions"]) == len(WORKLOAD)


@pytest.mark.django_db
def test_an_injected_2x_slowdown_is_significant_by_share(api_client, tenant):
    rng = random.Random(7)
    base = completed_profile(tenant.tenant, sampled_cpu_profile(WORKLOAD, 2_500, rng))
    slower = completed_profile(tenant.tenant, sampled_cpu_profile(dict(WORKLOAD, query=0.6), 5_000, rng))

    body = _compare(api_client, base, slower, normalization="share").json()
    [regression] = body["regressions"]
    assert regression["function"] == "query" and regression["significant"] is True
    assert regression["deltaPercent"] > 30  # 30 % -> 46 % of the profile


@pytest.mark.django_db
def test_profiles_of_different_services_are_400_unless_allowed(api_client, tenant):
    web = completed_profile(tenant.tenant, raw_profile({"parse": S}), service="web")
    worker = completed_profile(tenant.tenant, raw_profile({"parse": S}), service="worker")
    refused = _compare(api_client, web, worker)
    assert refused.status_code == 400
    assert "different services (web and worker)" in refused.json()["detail"]
    assert "allowMismatch=true" in refused.json()["detail"]
    allowed = _compare(api_client, web, worker, allowMismatch="true")
    assert allowed.status_code == 200
    assert "different services" in allowed.json()["mismatch"] and "Compared although" in allowed.json()["note"]


@pytest.mark.django_db
def test_profiles_of_different_engines_are_400_unless_allowed(api_client, tenant):
    rng = random.Random(3)
    sampled = completed_profile(tenant.tenant, sampled_cpu_profile(WORKLOAD, 1_000, rng))
    traced = completed_profile(tenant.tenant, sampled_cpu_profile(WORKLOAD, 1_000, rng, engine="yappi"))
    refused = _compare(api_client, sampled, traced)
    assert refused.status_code == 400 and f"different engines ({DEFAULT_ENGINES['cpu']} and yappi)" in refused.json()["detail"]
    allowed = _compare(api_client, sampled, traced, allowMismatch="true").json()
    assert (allowed["baseEngine"], allowed["comparisonEngine"]) == (DEFAULT_ENGINES["cpu"], "yappi")


@pytest.mark.django_db
def test_memory_has_no_per_second_rate(api_client, tenant):
    a = completed_profile(tenant.tenant, raw_profile({"cache": 4_000_000}, profile_type="memory"))
    b = completed_profile(tenant.tenant, raw_profile({"cache": 8_000_000}, profile_type="memory"))
    response = _compare(api_client, a, b, normalization="perSecond")
    assert response.status_code == 400 and "normalization=share" in response.json()["detail"]
    assert _compare(api_client, a, b, normalization="share").json()["normalization"] == "share"


@pytest.mark.django_db
def test_durations_are_whole_seconds_with_the_precise_value_beside(api_client, tenant):
    raw = raw_profile({"parse": S})
    raw["durationSeconds"] = 59.73
    base = completed_profile(tenant.tenant, raw)
    body = _compare(api_client, base, base).json()
    assert body["baseDurationSeconds"] == 60 and isinstance(body["baseDurationSeconds"], int)
    assert body["baseDurationSecondsPrecise"] == 59.73
    result = api_client.get(f"{BASE}/{base.pk}").json()
    assert result["durationSeconds"] == 60 and result["durationSecondsPrecise"] == 59.73
