"""The label picker and the "by endpoint / by task" table on the profile and service pages."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from tests.profiles.samples import completed_profile, labelled_profile

pytestmark = pytest.mark.django_db

MS = 1_000_000
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
ROWS = [
    ("list_items", 300 * MS, {"route": "api/items/"}, "MainThread"),
    ("list_orders", 500 * MS, {"route": "api/orders/"}, "MainThread"),
    ("send_mail", 150 * MS, {"task": "shop.tasks.send_mail"}, "celery"),
    ("housekeeping", 50 * MS, {}, "MainThread"),
]


def graph_root(html: str) -> int:
    data = json.loads(re.search(r'<script id="flamegraph-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    return data["nodes"][0][3]


def functions(html: str) -> list[str]:
    return re.findall(r'<td class="fn"><code>([^<]+)</code>', html)


def group_rows(html: str) -> list[tuple[str, str]]:
    table = html.split('id="label-groups"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr>\s*<td>.*?(?:<code>|\(no \w+\))([^<]*).*?<span class=\"pct\">([^<]+)</span>", table, re.S)


@pytest.fixture
def profile(tenant):
    return completed_profile(tenant.tenant, labelled_profile(ROWS), service="checkout")


def detail(client, profile, **params):
    response = client.get(reverse("profile-page", args=[profile.pk]), params)
    assert response.status_code == 200
    return response.content.decode()


def test_the_picker_offers_the_profiles_labels_and_the_table_its_endpoints(member_client, profile):
    html = detail(member_client, profile)
    assert '<option value="route:api/orders/">' in html and '<option value="task:shop.tasks.send_mail">' in html
    assert '<option value="thread:celery">' in html
    assert "By endpoint" in html and "By task" in html
    assert 'id="label-groups"' not in html  # no table until a grouping is picked
    assert graph_root(html) == 1000 * MS


def test_a_label_filter_cuts_the_flame_graph_and_the_functions(member_client, profile):
    html = detail(member_client, profile, labels="route:api/orders/")
    assert graph_root(html) == 500 * MS
    assert "list_orders" in functions(html) and "list_items" not in functions(html)
    assert "Showing only samples with <code>route:api/orders/</code>" in html
    assert 'value="route:api/orders/"' in html  # the picker keeps the filter


def test_grouping_by_route_lists_each_endpoint_with_its_share_linking_to_its_filter(member_client, profile):
    html = detail(member_client, profile, groupBy="route")
    assert group_rows(html) == [("api/orders/", "50.0%"), ("api/items/", "30.0%"), ("", "20.0%")]
    assert "(no route)" in html
    assert "?labels=route%3Aapi%2Forders%2F&amp;groupBy=route" in html  # a row links to its filter
    by_task = detail(member_client, profile, groupBy="task", labels="thread:celery")
    assert group_rows(by_task) == [("shop.tasks.send_mail", "100.0%")]


def test_a_bad_filter_is_explained_and_the_whole_profile_shown(member_client, profile):
    html = detail(member_client, profile, labels="route")
    assert "Label filter ignored" in html and "is not key:value" in html
    assert graph_root(html) == 1000 * MS


def test_the_service_page_filters_and_groups_the_merged_range(member_client, tenant):
    for minute in range(3):
        at = T0 + timedelta(minutes=minute)
        completed_profile(tenant.tenant, labelled_profile(ROWS), service="checkout", started_at=at, continuous_slot=at)
    base = {"tenant": tenant.tenant.external_id, "type": "cpu", "from": "2026-11-30T10:00:00Z", "to": "2026-11-30T10:03:00Z"}
    response = member_client.get(reverse("service-page", args=["checkout"]), {**base, "labels": "task:shop.tasks.send_mail"})
    html = response.content.decode()
    assert graph_root(html) == 3 * 150 * MS
    assert '<option value="route:api/items/">' in html
    grouped = member_client.get(reverse("service-page", args=["checkout"]), {**base, "groupBy": "route"}).content.decode()
    assert group_rows(grouped) == [("api/orders/", "50.0%"), ("api/items/", "30.0%"), ("", "20.0%")]
    assert graph_root(grouped) == 3 * 1000 * MS


def test_the_shared_link_of_a_filtered_result_shows_the_filtered_flame_graph(client, api_client, profile):
    url = api_client.get(f"/api/v1/observability/profiling/{profile.pk}", {"labels": "route:api/items/"}).json()["flameGraphUrl"]
    html = client.get(url).content.decode()
    assert graph_root(html) == 300 * MS
    assert "Showing only samples with <code>route:api/items/</code>" in html


def test_downloads_from_a_filtered_page_are_of_the_filtered_samples(member_client, profile):
    html = detail(member_client, profile, labels="route:api/items/", groupBy="route")
    link = re.search(r'href="([^"]*/download/folded[^"]*)"', html).group(1).replace("&amp;", "&")
    folded = member_client.get(link).content.decode()
    assert folded == "route=api/items/;main (/app/app.py:1);list_items (/app/app.py:10) 300000000\n"
