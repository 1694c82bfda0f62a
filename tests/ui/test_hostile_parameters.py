"""Every page and every admin changelist, fed malformed, missing and hostile parameters: never a 5xx.

A page answers junk with a 4xx, or ignores it (200, or the admin's redirect to `?e=1`). The walk
covers every route of profiles/urls.py and every model admin registered, so a new page or admin
is walked as soon as it exists. Run it on PostgreSQL too (CI does): NUL is only fatal there.
"""

import uuid
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from profiles import urls as page_urls
from profiles.signing import flamegraph_token

from .conftest import PASSWORD
from .factories import service_profile

pytestmark = pytest.mark.django_db

HOSTILE = [
    "", "\x00", "a\x00b", "x" * 5000, "-1", "0", "99999999999999999999999", "not-a-uuid",
    str(uuid.uuid4()), "%", "%ff%fe", "' OR 1=1 --", "<script>alert(1)</script>", "\U0001f525",
    "../../etc/passwd", "1e400", "NaN",
]

# The parameters each page reads (plus "unknown", which none reads).
PAGE_PARAMS = {
    "profile-list": ["tenant", "service", "profile_type", "status", "page"],
    "profile-page": ["sort", "labels", "groupBy"],
    "profile-status": [],
    "profile-download": ["labels", "groupBy"],
    "compare": ["p", "base", "comparison"],
    "history": ["type", "function"],
    "continuous": [],
    "flamegraph-shared": ["labels"],
    "services": [],
    "alerts": ["status", "page"],
    "service-page": ["tenant", "type", "from", "to", "range", "baseFrom", "baseTo", "engine", "labels", "groupBy"],
}
START_FIELDS = ["tenant", "service", "profile_type", "duration_seconds", "sample_rate", "engine"]
ADMIN_PARAMS = ["q", "o", "p", "e", "_popup", "_to_field", "all", "tenant", "service", "status__exact",
                "profile_type__exact", "started_at__gte", "started_at__lt", "started_at__year",
                "started_at__month", "started_at__day", "enabled__exact", "scope__exact", "is_active__exact"]


def query(name: str, value: str) -> str:
    return f"{quote(name)}={quote(value, safe='%')}"


def assert_handled(client, url: str, method: str = "get", data=None):
    response = getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)
    assert response.status_code < 500, f"{method.upper()} {url[:200]!r} -> {response.status_code}"
    return response


@pytest.fixture
def world(member, tenant, completed):
    profile = completed(tenant.tenant, service_profile())
    return {"profile": profile, "tenant": tenant.tenant}


def page_url(name: str, world) -> str:
    profile = world["profile"]
    args = {
        "profile-page": [profile.pk], "profile-status": [profile.pk],
        "profile-download": [profile.pk, "folded"],
        "history": [profile.tenant.external_id, profile.service],
        "service-page": [profile.service],
        "flamegraph-shared": [flamegraph_token(profile.pk)],
    }.get(name, [])
    return reverse(name, args=args)


def test_the_walk_knows_every_page():
    names = {pattern.name for pattern in page_urls.urlpatterns} - {"profile-start-page"}
    assert names == set(PAGE_PARAMS)


def test_pages_with_hostile_query_parameters(member_client, world):
    for name, params in PAGE_PARAMS.items():
        url = page_url(name, world)
        assert assert_handled(member_client, url).status_code == 200, url
        for param in [*params, "unknown"]:
            for value in HOSTILE:
                assert_handled(member_client, f"{url}?{query(param, value)}")
                assert_handled(member_client, f"{url}?{query(param, value)}&{query(param, value)}")
    # Two picks on compare where one is junk, empty or the same profile twice.
    pk = str(world["profile"].pk)
    for value in HOSTILE + [pk]:
        assert_handled(member_client, f"{reverse('compare')}?{query('p', value)}&{query('p', pk)}")
        assert_handled(member_client, f"{reverse('compare')}?{query('base', pk)}&{query('comparison', value)}")


def test_pages_with_hostile_path_parameters(member_client, world):
    profile = world["profile"]
    tenant, service = profile.tenant.external_id, profile.service
    for value in HOSTILE:
        if not value:
            continue
        part = quote(value, safe="%")
        for url in (
            f"/history/{part}/{service}/", f"/history/{tenant}/{part}/", f"/history/{part}/{part}/",
            f"/profiles/{part}/", f"/profiles/{profile.pk}/download/{part}", f"/flamegraph/{part}/",
            f"/profiles/{part}/status",
        ):
            response = assert_handled(member_client, url)
            if "%00" in url:
                assert response.status_code == 400, url
            elif "/profiles/" in url or "/flamegraph/" in url:
                assert response.status_code == 404, url


def test_the_reported_500s_are_answered(member_client, world):
    """`/compare/?p=&p=<uuid>` (an empty pick is no pick) and a NUL in a history service."""
    profile = world["profile"]
    response = member_client.get(f"{reverse('compare')}?p=&p={profile.pk}")
    assert response.status_code == 200 and response.context["base"] == profile
    assert response.context["comparison"] is None
    response = member_client.get(f"/history/{profile.tenant.external_id}/a%00b/")
    assert response.status_code == 400 and b"NUL" in response.content
    assert member_client.get(f"/history/{profile.tenant.external_id}/a%20b/").status_code == 404
    assert member_client.get(f"/history/bad%20tenant/{profile.service}/").status_code == 404


def test_start_form_with_hostile_fields(member_client, world):
    good = {"tenant": world["tenant"].pk, "service": "svc", "profile_type": "cpu", "duration_seconds": 5,
            "sample_rate": 50, "engine": ""}
    for field in START_FIELDS:
        for value in HOSTILE:
            response = assert_handled(member_client, reverse("profile-start-page"), "post", {**good, field: value})
            assert response.status_code in (302, 400)
        assert_handled(member_client, reverse("profile-start-page"), "post", {k: v for k, v in good.items() if k != field})


@pytest.fixture
def superuser_client(client, superuser, world):
    client.force_login(superuser)
    return client


def test_admin_changelists_and_pages_with_hostile_parameters(superuser_client, world):
    for model in admin.site._registry:
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert assert_handled(superuser_client, changelist).status_code == 200, changelist
        for param in [*ADMIN_PARAMS, "unknown"]:
            for value in HOSTILE:
                assert_handled(superuser_client, f"{changelist}?{query(param, value)}")
        for value in HOSTILE:
            if value:
                part = quote(value, safe="%")
                for suffix in ("change/", "history/", "delete/"):
                    assert_handled(superuser_client, f"{changelist}{part}/{suffix}")
            for field in ("tenant", "members", "user_permissions", "groups"):
                assert_handled(superuser_client, "/admin/autocomplete/?" + "&".join([
                    query("app_label", opts.app_label), query("model_name", opts.model_name),
                    query("field_name", field), query("term", value),
                ]))


def test_login_with_hostile_fields(client, world):
    get_user_model().objects.create_user("someone", password=PASSWORD)
    for value in HOSTILE:
        for data in ({"username": value, "password": PASSWORD}, {"username": "someone", "password": value}):
            assert_handled(client, reverse("login"), "post", data)
            assert_handled(client, reverse("admin:login"), "post", data)
        assert_handled(client, f"{reverse('login')}?{query('next', value)}")
