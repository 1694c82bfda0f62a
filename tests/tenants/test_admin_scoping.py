"""A staff member of tenant A, whatever app permissions they hold, cannot see or touch tenant B.

The matrix: every non-empty set of apps (tenants, profiles) x every non-empty set of actions
(view, add, change, delete), plus no permission at all. For each, A's staff member tries B's
tenants, tokens, profiles, agents and continuous configurations through every admin door
(changelist, filter choices, change/history/delete pages, add with tenant=B, member self-add,
moving an own object to B, actions, autocomplete) and gets nothing. Superusers see everything.
With auth permissions, a staff user can neither become superuser nor touch other accounts.
"""

import itertools
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from profiles.models import AgentInstance, ContinuousProfile, ProfileResult, Status
from tenants.models import ApiToken, Tenant

pytestmark = pytest.mark.django_db

APPS = {
    "tenants": ("tenant", "apitoken"),
    "profiles": ("profileresult", "continuousprofile", "agentinstance"),
}
ACTIONS = ("view", "add", "change", "delete")
PERMISSION_SETS = [((), ())] + [
    (apps, actions)
    for apps in (("tenants",), ("profiles",), ("tenants", "profiles"))
    for n in range(1, len(ACTIONS) + 1)
    for actions in itertools.combinations(ACTIONS, n)
]

# Strings that only tenant B's objects carry: none may appear on any page A's staff can open.
B_ID, B_NAME, B_SERVICE, B_HOST = "tenant-b-9d1c", "Bravo Secret Corp", "bravo-billing", "bravo-host-1"


class World:
    """Tenants A and B, each with a token, a profile, an agent and a continuous configuration."""

    def __init__(self):
        self.a = Tenant.objects.create(external_id="tenant-a-17f0", name="Alpha Corp")
        self.b = Tenant.objects.create(external_id=B_ID, name=B_NAME)
        self.objects = {}
        for tenant, service, host in ((self.a, "alpha-web", "alpha-host-1"), (self.b, B_SERVICE, B_HOST)):
            token = ApiToken(tenant=tenant, scope="api", name=f"{service}-token")
            token.set_raw(ApiToken.generate_raw("api"))
            token.save()
            profile = ProfileResult.objects.create(
                tenant=tenant, service=service, profile_type="cpu", requested_duration_seconds=10,
                status=Status.COMPLETED, completed_at=timezone.now(),
            )
            agent = AgentInstance.objects.create(
                tenant=tenant, service=service, instance_id=uuid.uuid4().hex, host=host, pid=7,
            )
            config = ContinuousProfile.objects.create(tenant=tenant, service=service, profile_types=["cpu"])
            self.objects[tenant.pk] = {
                "tenant": tenant, "apitoken": token, "profileresult": profile,
                "agentinstance": agent, "continuousprofile": config,
            }

    def of(self, tenant, model):
        return self.objects[tenant.pk][model]


def app_of(model: str) -> str:
    return next(app for app, models in APPS.items() if model in models)


def admin_url(model: str, suffix: str = "") -> str:
    return f"/admin/{app_of(model)}/{model}/{suffix}"


def staff_of_a(world: World, apps, actions):
    user = get_user_model().objects.create_user("staff-a", password="x", is_staff=True)
    world.a.members.add(user)
    codenames = [f"{action}_{model}" for app in apps for model in APPS[app] for action in actions]
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def assert_nothing_of_b(response, where: str):
    assert response.status_code < 500, where
    html = response.content.decode()
    for marker in (B_ID, B_NAME, B_SERVICE, B_HOST):
        assert marker not in html, f"{where} shows {marker!r}"


def snapshot(world: World) -> dict:
    """Everything of B's that an attack could change."""
    b = world.b
    return {
        "tenant": Tenant.objects.filter(pk=b.pk).values("external_id", "name", "is_active").first(),
        "members": sorted(b.members.values_list("pk", flat=True)),
        "tokens": sorted(ApiToken.objects.filter(tenant=b).values_list("pk", "revoked_at", "name")),
        "profiles": sorted(ProfileResult.objects.filter(tenant=b).values_list("pk", "status")),
        "agents": sorted(AgentInstance.objects.filter(tenant=b).values_list("pk", flat=True)),
        "configs": sorted(ContinuousProfile.objects.filter(tenant=b).values_list("pk", "enabled", "sample_rate")),
        "tenants": sorted(Tenant.objects.values_list("external_id", flat=True)),
    }


@pytest.mark.parametrize(("apps", "actions"), PERMISSION_SETS, ids=lambda v: "+".join(v) or "none")
def test_staff_of_a_cannot_see_or_change_b(client, apps, actions):
    world = World()
    user = staff_of_a(world, apps, actions)
    client.force_login(user)
    before = snapshot(world)
    models = [m for models in APPS.values() for m in models]

    # Reading: changelists (with their tenant filters, also asked for B), and B's own pages.
    for model in models:
        for query in ("", f"?tenant={world.b.pk}", "?q=bravo", "?_popup=1"):
            assert_nothing_of_b(client.get(admin_url(model) + query, follow=True), f"{model} list {query}")
        pk = world.of(world.b, model).pk
        for suffix in ("change/", "history/", "delete/"):
            assert_nothing_of_b(client.get(admin_url(model, f"{pk}/{suffix}"), follow=True), f"{model} {suffix}")
    for field_of in (("tenants", "apitoken"), ("profiles", "continuousprofile"), ("profiles", "profileresult")):
        url = f"/admin/autocomplete/?app_label={field_of[0]}&model_name={field_of[1]}&field_name=tenant&term="
        assert_nothing_of_b(client.get(url), f"autocomplete {field_of}")

    # Writing into B: add with tenant=B, join B, edit B's objects, actions on B's rows.
    client.post(admin_url("apitoken", "add/"), {"tenant": world.b.pk, "scope": "api", "name": "stolen"})
    client.post(admin_url("continuousprofile", "add/"), {
        "tenant": world.b.pk, "service": "stolen-svc", "profile_types": ["cpu"],
        "sample_rate": 100, "retention_days": 30, "enabled": "on",
    })
    client.post(admin_url("tenant", "add/"), {
        "external_id": "fresh-tenant", "name": "", "is_active": "on", "members": [user.pk],
        "tokens-TOTAL_FORMS": 0, "tokens-INITIAL_FORMS": 0,
    })
    tenant_form = {
        "external_id": B_ID, "name": "renamed", "is_active": "on", "members": [user.pk],
        "tokens-TOTAL_FORMS": 0, "tokens-INITIAL_FORMS": 0,
    }
    client.post(admin_url("tenant", f"{world.b.pk}/change/"), tenant_form)
    client.post(admin_url("continuousprofile", f"{world.of(world.b, 'continuousprofile').pk}/change/"), {
        "profile_types": ["cpu"], "sample_rate": 999, "retention_days": 30,
    })
    for model, action in (
        ("apitoken", "revoke"), ("continuousprofile", "disable"), ("tenant", "delete_selected"),
        ("apitoken", "delete_selected"), ("profileresult", "delete_selected"),
        ("agentinstance", "delete_selected"), ("continuousprofile", "delete_selected"),
    ):
        client.post(admin_url(model), {
            "action": action, "_selected_action": [world.of(world.b, model).pk], "post": "yes",
        })
        client.post(admin_url(model, f"{world.of(world.b, model).pk}/delete/"), {"post": "yes"})

    # Moving A's own objects to B, and adding oneself (or anyone) to A's members.
    own_token, own_config = world.of(world.a, "apitoken"), world.of(world.a, "continuousprofile")
    client.post(admin_url("apitoken", f"{own_token.pk}/change/"), {"tenant": world.b.pk, "scope": "api", "name": "x"})
    client.post(admin_url("continuousprofile", f"{own_config.pk}/change/"), {
        "tenant": world.b.pk, "service": B_SERVICE, "profile_types": ["cpu"],
        "sample_rate": 100, "retention_days": 30, "enabled": "on",
    })
    outsider = get_user_model().objects.create_user("outsider", password="x", is_staff=True)
    client.post(admin_url("tenant", f"{world.a.pk}/change/"), {
        **tenant_form, "external_id": world.a.external_id, "members": [user.pk, outsider.pk],
    })

    assert snapshot(world) == before
    assert not ApiToken.objects.filter(name="stolen").exists()
    assert ApiToken.objects.get(pk=own_token.pk).tenant_id == world.a.pk
    assert ContinuousProfile.objects.get(pk=own_config.pk).tenant_id == world.a.pk
    assert list(world.a.members.all()) == [user]


@pytest.mark.parametrize("model", [m for models in APPS.values() for m in models])
def test_staff_of_a_with_view_permission_sees_a_and_only_a(client, model):
    """The positive half: scoping hides B, not A (so the matrix above cannot pass by hiding all)."""
    world = World()
    client.force_login(staff_of_a(world, (app_of(model),), ("view",)))
    html = client.get(admin_url(model)).content.decode()
    own = world.of(world.a, model)
    assert f"/{own.pk}/change/" in html
    assert f"/{world.of(world.b, model).pk}/change/" not in html and B_NAME not in html
    assert client.get(admin_url(model, f"{own.pk}/change/")).status_code == 200


@pytest.mark.parametrize("model", [m for models in APPS.values() for m in models])
def test_superuser_sees_every_tenant(client, model):
    world = World()
    client.force_login(get_user_model().objects.create_superuser("root", password="x"))
    html = client.get(admin_url(model)).content.decode()
    for tenant in (world.a, world.b):
        assert f"/{world.of(tenant, model).pk}/change/" in html
    assert B_NAME in html
    assert client.get(admin_url(model, f"{world.of(world.b, model).pk}/change/")).status_code == 200


def test_superuser_can_add_a_tenant_with_members(client):
    World()
    member = get_user_model().objects.create_user("new-member", password="x", is_staff=True)
    client.force_login(get_user_model().objects.create_superuser("root", password="x"))
    response = client.post(admin_url("tenant", "add/"), {
        "external_id": "fresh-tenant", "name": "", "is_active": "on", "members": [member.pk],
        "tokens-TOTAL_FORMS": 0, "tokens-INITIAL_FORMS": 0,
    })
    assert response.status_code == 302
    assert list(Tenant.objects.get(external_id="fresh-tenant").members.all()) == [member]


def test_staff_with_every_auth_permission_cannot_escape_their_tenant(client):
    """Membership, superuser and permissions are what scoping rests on: out of a staff user's reach."""
    world = World()
    user = staff_of_a(world, (), ())
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="auth"))
    superuser = get_user_model().objects.create_superuser("root", password="x")
    member_of_b = get_user_model().objects.create_user("b-member", password="x", is_staff=True)
    world.b.members.add(member_of_b)
    client.force_login(user)

    users = client.get("/admin/auth/user/").content.decode()
    assert f"/auth/user/{user.pk}/change/" in users
    assert "b-member" not in users and f"/auth/user/{superuser.pk}/change/" not in users
    for other in (superuser, member_of_b):
        client.post(f"/admin/auth/user/{other.pk}/password/", {"password1": "Taken-0ver!", "password2": "Taken-0ver!"})
        assert not get_user_model().objects.get(pk=other.pk).check_password("Taken-0ver!")
    client.post(f"/admin/auth/user/{user.pk}/change/", {
        "username": "staff-a", "is_active": "on", "is_staff": "on", "is_superuser": "on",
        "user_permissions": list(Permission.objects.values_list("pk", flat=True)),
        "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
    })
    client.post("/admin/auth/group/add/", {"name": "all", "permissions": list(Permission.objects.values_list("pk", flat=True))})
    client.post("/admin/auth/user/add/", {"username": "sock", "password1": "Sock-puppet-1", "password2": "Sock-puppet-1"})

    user.refresh_from_db()
    assert not user.is_superuser
    assert user.user_permissions.count() == Permission.objects.filter(content_type__app_label="auth").count()
    assert not get_user_model().objects.filter(username="sock").exists()
    assert client.get("/admin/auth/group/").status_code == 403
    assert_nothing_of_b(client.get("/admin/tenants/tenant/", follow=True), "tenants after the attempts")
