"""The service page through Django's test client: range, merged flame graph, diff, tenant scoping."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from tests.profiles.samples import completed_profile

from .factories import service_profile

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def windows(tenant, minutes, scale=None, service="checkout"):
    for minute in minutes:
        at = T0 + timedelta(minutes=minute)
        completed_profile(tenant, service_profile(scale, duration=60.0), service=service, started_at=at, continuous_slot=at)


def graph_data(html: str) -> dict:
    return json.loads(re.search(r'<script id="flamegraph-data" type="application/json">(.*?)</script>', html, re.S).group(1))


def url(service="checkout", **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{reverse('service-page', args=[service])}?{query}"


def test_the_page_merges_the_picked_range_into_one_flame_graph(member_client, tenant):
    windows(tenant.tenant, range(0, 10))
    html = member_client.get(url(**{"from": "2026-11-30T10:02:00Z", "to": "2026-11-30T10:05:00Z"})).content.decode()
    assert "3 profiles merged" in html and "100.0% of the range covered" in html
    data = graph_data(html)
    one_window = sum(ms for ms in (310, 140, 95, 40, 120, 260, 60, 80, 55, 45)) * 1_000_000
    assert data["nodes"][0][3] == 3 * one_window  # the root's value: three windows' CPU
    assert 'class="chart timeline"' in html and 'class="selection picked"' in html


def test_presets_end_at_the_latest_window(member_client, tenant):
    windows(tenant.tenant, range(0, 30))
    html = member_client.get(url(range="15m")).content.decode()
    assert "15 profiles merged" in html  # 10:15-10:30, the last window ends at 10:30
    assert "2026-11-30 10:15:00 – 2026-11-30 10:30:00 UTC" in html


def test_a_base_range_gives_the_differential_flame_graph(member_client, tenant):
    windows(tenant.tenant, range(0, 5))
    windows(tenant.tenant, range(60, 65), scale={"bm25": 3.0})
    html = member_client.get(url(**{
        "from": "2026-11-30T11:00:00Z", "to": "2026-11-30T11:05:00Z",
        "baseFrom": "2026-11-30T10:00:00Z", "baseTo": "2026-11-30T10:05:00Z",
    })).content.decode()
    assert "Differential flame graph" in html
    data = graph_data(html)
    assert data["differential"] is True
    bm25 = next(n for n in data["nodes"] if data["strings"][n[0]] == "bm25")
    assert bm25[3] == pytest.approx(3 * bm25[8])  # comparison value three times the base's


def test_another_tenants_service_is_a_404(member_client, other_tenant):
    windows(other_tenant.tenant, range(0, 2))
    assert member_client.get(url()).status_code == 404
    assert member_client.get(url(tenant=other_tenant.external_id)).status_code == 404


def bars(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<rect class="bar" x="([\d.]+)" y="([\d.]+)"', html)


def test_after_retention_the_timeline_and_the_merge_come_from_rollups(member_client, tenant, settings):
    from profiles import services
    from profiles.models import ContinuousProfile, ProfileResult

    ContinuousProfile.objects.create(tenant=tenant.tenant, service="checkout", profile_types=["cpu"], retention_days=7)
    windows(tenant.tenant, range(0, 120, 10))  # 10:00-12:00
    services.rollups_refresh(now=T0 + timedelta(hours=3), lookback=timedelta(days=1))
    page_url = url(tenant=tenant.external_id, **{"from": "2026-11-30T10:00:00Z", "to": "2026-11-30T12:00:00Z"})
    before = member_client.get(page_url).content.decode()
    services.profiles_purge_expired(now=T0 + timedelta(days=8))
    assert not ProfileResult.objects.exists()
    after = member_client.get(page_url).content.decode()
    assert "12 profiles merged" in after and "2 rollups + 0 windows read" in after
    assert graph_data(after)["nodes"][0][3] == graph_data(before)["nodes"][0][3]
    # One bar per window before; per 10 min rollup (one window each) after: the same bars.
    assert len(bars(before)) == 12 and bars(after) == bars(before)


@pytest.mark.parametrize("params", [
    {"from": "2026-13-45T10:00:00Z", "to": "2026-11-30T10:05:00Z"},
    {"engine": "no-such", "type": "heap"},
    {"baseFrom": "yesterday", "baseTo": "", "range": "2y"},
])
def test_bad_parameters_fall_back_to_defaults_rather_than_fail(member_client, tenant, params):
    windows(tenant.tenant, range(0, 3))
    response = member_client.get(reverse("service-page", args=["checkout"]), params)
    assert response.status_code == 200
    assert "3 profiles merged" in response.content.decode()  # the default: the last hour


def test_a_service_name_no_profile_can_have_is_a_404(member_client, tenant):
    assert member_client.get(reverse("service-page", args=["bad name"])).status_code == 404
