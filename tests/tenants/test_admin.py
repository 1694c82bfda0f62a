"""The admin issues a token by showing it once and storing only its hash; revoking works."""

import re

import pytest
from django.contrib.auth.models import User

from tenants.models import ApiToken, hash_token


@pytest.fixture
def admin_client(client, db):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only"))
    return client


@pytest.mark.django_db
def test_adding_a_token_in_the_admin_shows_it_once(admin_client, tenant):
    response = admin_client.post(
        "/admin/tenants/apitoken/add/", {"tenant": tenant.tenant.pk, "scope": "agent", "name": "ci"}, follow=True
    )
    assert response.status_code == 200
    shown = re.findall(r"pp_agent_[A-Za-z0-9_-]{20,}", response.content.decode())
    assert len(shown) == 1
    token = ApiToken.objects.get(name="ci")
    assert token.token_hash == hash_token(shown[0]) and token.scope == "agent"
    # Never again: the change page shows only the masked prefix.
    page = admin_client.get(f"/admin/tenants/apitoken/{token.pk}/change/").content.decode()
    assert shown[0] not in page and token.prefix in page


@pytest.mark.django_db
def test_revoke_action_revokes_the_selected_tokens(admin_client, tenant):
    admin_client.post(
        "/admin/tenants/apitoken/",
        {"action": "revoke", "_selected_action": [tenant.api_token.pk]},
        follow=True,
    )
    tenant.api_token.refresh_from_db()
    assert tenant.api_token.revoked_at is not None
    assert tenant.client().get("/api/v1/observability/profiling/history?service=x").status_code == 401
