"""labels= and groupBy= on results, range merges, compares and exports; labelled uploads."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from profiles import services
from profiles.analysis import parse_pprof

from .samples import completed_profile, labelled_profile

BASE = "/api/v1/observability/profiling"
MS = 1_000_000
ITEMS = {"route": "api/items/", "view": "shop.views.items"}
ORDERS = {"route": "api/orders/", "view": "shop.views.orders"}
MAIL = {"task": "shop.tasks.send_mail"}
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def rows(orders_ms: int = 500) -> list:
    return [
        ("list_items", 300 * MS, ITEMS, "MainThread"),
        ("serialize", 100 * MS, ITEMS, "worker"),
        ("list_orders", orders_ms * MS, ORDERS, "MainThread"),
        ("send", 50 * MS, MAIL, "celery"),
        ("housekeeping", 50 * MS, {}, "MainThread"),
    ]


def iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def selfs(body) -> dict:
    return {row["function"]: row["self"] for row in body["topFunctions"] if row["self"]}


@pytest.fixture
def profile(tenant):
    return completed_profile(tenant.tenant, labelled_profile(rows(), labels_overflow=2))


@pytest.mark.django_db
def test_a_result_filtered_by_route_holds_only_that_endpoints_functions(api_client, profile):
    body = api_client.get(f"{BASE}/{profile.pk}", {"labels": "route:api/items/"}).json()
    assert selfs(body) == {"list_items": 300 * MS, "serialize": 100 * MS}
    assert body["totalValue"] == 400 * MS
    assert body["sampleCount"] == 40
    assert body["labels"] == {"filter": {"route": "api/items/"}, "groupBy": None, "groups": None, "overflow": 2}
    assert "labels=route" in body["flameGraphUrl"]


@pytest.mark.django_db
def test_a_result_without_labels_is_unchanged_and_says_no_filter(api_client, profile):
    body = api_client.get(f"{BASE}/{profile.pk}").json()
    assert body["labels"] is None
    assert body["totalValue"] == 1000 * MS
    assert set(selfs(body)) == {"list_items", "serialize", "list_orders", "send", "housekeeping"}


@pytest.mark.django_db
def test_a_result_grouped_by_route_gives_each_endpoint_its_share(api_client, profile):
    body = api_client.get(f"{BASE}/{profile.pk}", {"groupBy": "route"}).json()
    assert [(g["value"], g["percent"]) for g in body["labels"]["groups"]] == [
        ("api/orders/", 50.0), ("api/items/", 40.0), (None, 10.0),
    ]
    by_task = api_client.get(f"{BASE}/{profile.pk}", {"groupBy": "task"}).json()["labels"]["groups"]
    assert [(g["value"], g["percent"]) for g in by_task] == [(None, 95.0), ("shop.tasks.send_mail", 5.0)]


@pytest.mark.django_db
def test_a_filter_on_the_thread_and_a_grouping_combine(api_client, profile):
    body = api_client.get(f"{BASE}/{profile.pk}", {"labels": "thread:MainThread", "groupBy": "route"}).json()
    assert body["totalValue"] == 850 * MS
    assert [(g["value"], g["total"]) for g in body["labels"]["groups"]] == [
        ("api/orders/", 500 * MS), ("api/items/", 300 * MS), (None, 50 * MS),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field", "text"),
    [
        ({"labels": "route"}, "labels", "is not key:value"),
        ({"labels": "route:a,route:b"}, "labels", "given twice"),
        ({"groupBy": "route:a"}, "groupBy", "is not a label key"),
    ],
)
def test_bad_label_syntax_is_a_400_with_readable_text_everywhere(api_client, profile, params, field, text):
    urls = [
        (f"{BASE}/{profile.pk}", {}),
        (f"{BASE}/{profile.pk}/export", {"format": "folded"}),
        (f"{BASE}/merge", {"service": "ai-service", "profileType": "cpu", "from": iso(T0), "to": iso(T0 + timedelta(hours=1))}),
        (f"{BASE}/compare", {"baseProfileId": profile.pk, "comparisonProfileId": profile.pk}),
    ]
    for url, query in urls:
        response = api_client.get(url, {**query, **params})
        assert response.status_code == 400, (url, response.content[:300])
        assert text in " ".join(response.json()["errors"][field]), url
        assert text in response.json()["detail"], url
        assert "ErrorDetail" not in response.content.decode()


@pytest.mark.django_db
def test_another_tenants_profile_stays_404_with_labels(profile, other_tenant):
    response = other_tenant.client().get(f"{BASE}/{profile.pk}", {"labels": "route:api/items/"})
    assert response.status_code == 404


def window(tenant, minute: int, orders_ms: int = 500):
    at = T0 + timedelta(minutes=minute)
    return completed_profile(tenant, labelled_profile(rows(orders_ms)), started_at=at, continuous_slot=at)


def merge(client, **params):
    return client.get(f"{BASE}/merge", {
        "service": "ai-service", "profileType": "cpu", "from": iso(T0), "to": iso(T0 + timedelta(minutes=30)), **params,
    })


@pytest.mark.django_db
def test_a_range_merge_filters_and_groups_by_label_the_same_from_windows_and_from_rollups(api_client, tenant):
    for minute in range(20):
        window(tenant.tenant, minute)
    before = merge(api_client, labels="route:api/orders/", groupBy="view").json()
    assert before["sources"]["rollups"] == 0
    assert selfs(before) == {"list_orders": 20 * 500 * MS}
    assert before["labels"]["groups"] == [
        {"value": "shop.views.orders", "total": 20 * 500 * MS, "percent": 100.0, "sampleCount": 20 * 50},
    ]
    services.rollups_refresh(now=T0 + timedelta(days=1), lookback=timedelta(days=30))
    after = merge(api_client, labels="route:api/orders/", groupBy="view").json()
    assert after["sources"]["rollups"] >= 1
    for field in ("topFunctions", "totalValue", "sampleCount", "labels"):
        assert after[field] == before[field], field
    grouped = merge(api_client, groupBy="route").json()["labels"]["groups"]
    assert [(g["value"], g["percent"]) for g in grouped] == [("api/orders/", 50.0), ("api/items/", 40.0), (None, 10.0)]


@pytest.mark.django_db
def test_a_compare_filtered_to_one_endpoint_shows_only_its_change(api_client, tenant):
    base = completed_profile(tenant.tenant, labelled_profile(rows(orders_ms=500)))
    slower = completed_profile(tenant.tenant, labelled_profile(rows(orders_ms=1000)))
    query = {"baseProfileId": base.pk, "comparisonProfileId": slower.pk, "groupBy": "route"}
    orders = api_client.get(f"{BASE}/compare", {**query, "labels": "route:api/orders/"}).json()
    assert [r["function"] for r in orders["regressions"]] == ["list_orders"]
    assert orders["overallDelta"] == pytest.approx(100.0)
    assert orders["labels"]["filter"] == {"route": "api/orders/"}
    items = api_client.get(f"{BASE}/compare", {**query, "labels": "route:api/items/"}).json()
    assert items["regressions"] == [] and items["overallDelta"] == pytest.approx(0.0)
    grouped = api_client.get(f"{BASE}/compare", query).json()["labels"]
    assert [(g["value"], g["percent"]) for g in grouped["baseGroups"]] == [
        ("api/orders/", 50.0), ("api/items/", 40.0), (None, 10.0),
    ]
    assert grouped["comparisonGroups"][0] == {
        "value": "api/orders/", "total": 1000 * MS, "percent": round(100 * 1000 / 1500, 2), "sampleCount": 100,
    }


@pytest.mark.django_db
def test_a_compare_of_two_ranges_accepts_labels(api_client, tenant):
    for minute in range(5):
        window(tenant.tenant, minute, orders_ms=500)
        window(tenant.tenant, 60 + minute, orders_ms=1000)
    body = api_client.get(f"{BASE}/compare", {
        "service": "ai-service", "profileType": "cpu", "labels": "route:api/orders/",
        "baseFrom": iso(T0), "baseTo": iso(T0 + timedelta(minutes=5)),
        "comparisonFrom": iso(T0 + timedelta(minutes=60)), "comparisonTo": iso(T0 + timedelta(minutes=65)),
    }).json()
    assert [r["function"] for r in body["regressions"]] == ["list_orders"]
    assert body["overallDelta"] == pytest.approx(100.0)


# --- exports --------------------------------------------------------------------------------------


def export(client, profile, **params):
    response = client.get(f"{BASE}/{profile.pk}/export", params)
    assert response.status_code == 200, response.content[:300]
    return response


@pytest.mark.django_db
def test_pprof_samples_carry_their_labels_besides_the_thread(api_client, profile):
    decoded = parse_pprof(export(api_client, profile, format="pprof").content)
    by_leaf = {s["stack"][0]: s["labels"] for s in decoded["samples"]}
    assert by_leaf["list_items"] == {"thread": "MainThread", "route": "api/items/", "view": "shop.views.items"}
    assert by_leaf["send"] == {"thread": "celery", "task": "shop.tasks.send_mail"}
    assert by_leaf["housekeeping"] == {"thread": "MainThread"}


@pytest.mark.django_db
def test_pprof_with_a_filter_holds_only_the_matching_samples(api_client, profile):
    decoded = parse_pprof(export(api_client, profile, format="pprof", labels="task:shop.tasks.send_mail").content)
    assert [s["stack"] for s in decoded["samples"]] == [["send", "main"]]


@pytest.mark.django_db
def test_speedscope_grouped_by_route_has_one_profile_per_endpoint(api_client, profile):
    doc = json.loads(export(api_client, profile, format="speedscope", groupBy="route").content)
    names = {p["name"]: p["endValue"] for p in doc["profiles"]}
    assert names == {"route=api/orders/": 500 * MS, "route=api/items/": 400 * MS, "route=(none)": 100 * MS}
    assert doc["profiles"][0]["name"] == "route=api/orders/"


@pytest.mark.django_db
def test_folded_grouped_by_route_starts_each_stack_with_its_endpoint(api_client, profile):
    text = export(api_client, profile, format="folded", groupBy="route").content.decode()
    lines = set(text.splitlines())
    assert "route=api/items/;main (/app/app.py:1);list_items (/app/app.py:10) 300000000" in lines
    assert "main (/app/app.py:1);housekeeping (/app/app.py:50) 50000000" in lines
    filtered = export(api_client, profile, format="folded", labels="route:api/orders/").content.decode()
    assert filtered == "main (/app/app.py:1);list_orders (/app/app.py:30) 500000000\n"


@pytest.mark.django_db
def test_a_merged_range_exports_grouped_by_label(api_client, tenant):
    for minute in range(3):
        window(tenant.tenant, minute)
    response = merge(api_client, format="speedscope", groupBy="task")
    doc = json.loads(response.content)
    assert {p["name"]: p["endValue"] for p in doc["profiles"]} == {
        "task=(none)": 3 * 950 * MS, "task=shop.tasks.send_mail": 3 * 50 * MS,
    }


@pytest.mark.django_db
def test_a_filter_that_matches_nothing_is_an_empty_answer_not_an_error(api_client, tenant, profile):
    other = completed_profile(tenant.tenant, labelled_profile(rows(orders_ms=1000)))
    result = api_client.get(f"{BASE}/{profile.pk}", {"labels": "route:nowhere/"})
    assert result.status_code == 200
    assert (result.json()["topFunctions"], result.json()["totalValue"]) == ([], 0)
    compare = api_client.get(f"{BASE}/compare", {
        "baseProfileId": profile.pk, "comparisonProfileId": other.pk, "labels": "route:nowhere/",
    })
    assert compare.status_code == 200, compare.content[:300]
    body = compare.json()
    assert (body["regressions"], body["improvements"], body["labels"]["filter"]) == ([], [], {"route": "nowhere/"})
