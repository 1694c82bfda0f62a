"""The authentication matrix of every API endpoint: 401 / 400 / 403 with readable JSON bodies."""

import pytest
from rest_framework.test import APIClient

from tenants.services import token_revoke

# Any tenant-scoped API endpoint will do; history needs only a query parameter.
URL = "/api/v1/observability/profiling/history?service=ai-service"


def _client(authorization=None, tenant_id=None) -> APIClient:
    client = APIClient()
    headers = {}
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    if tenant_id is not None:
        headers["HTTP_X_TENANT_ID"] = tenant_id
    client.credentials(**headers)
    return client


def _assert_401(response):
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["detail"]


@pytest.mark.django_db
def test_no_token_is_401_with_bearer_challenge(tenant):
    _assert_401(_client(tenant_id=tenant.external_id).get(URL))


@pytest.mark.django_db
def test_malformed_header_is_401(tenant):
    response = _client(f"Token {tenant.api_raw}", tenant.external_id).get(URL)
    _assert_401(response)
    assert "Malformed" in response.json()["detail"]


@pytest.mark.django_db
def test_unknown_token_is_401(tenant):
    response = _client("Bearer pp_api_not-a-real-token", tenant.external_id).get(URL)
    _assert_401(response)
    assert "Unknown" in response.json()["detail"]


@pytest.mark.django_db
def test_revoked_token_is_401(tenant):
    token_revoke(token=tenant.api_token)
    response = tenant.client().get(URL)
    _assert_401(response)
    assert "revoked" in response.json()["detail"]


@pytest.mark.django_db
def test_missing_tenant_header_is_400(tenant):
    response = _client(f"Bearer {tenant.api_raw}").get(URL)
    assert response.status_code == 400
    assert "X-Tenant-ID" in response.json()["detail"]


@pytest.mark.django_db
def test_token_of_another_tenant_is_403(tenant, other_tenant):
    response = _client(f"Bearer {other_tenant.api_raw}", tenant.external_id).get(URL)
    assert response.status_code == 403
    assert "tenant" in response.json()["detail"]


@pytest.mark.django_db
def test_agent_token_on_api_endpoint_is_403(tenant):
    response = _client(f"Bearer {tenant.agent_raw}", tenant.external_id).get(URL)
    assert response.status_code == 403
    assert "scope" in response.json()["detail"]


@pytest.mark.django_db
def test_inactive_tenant_is_403(tenant):
    tenant.tenant.is_active = False
    tenant.tenant.save()
    assert tenant.client().get(URL).status_code == 403


@pytest.mark.django_db
def test_valid_token_passes_and_records_last_use(tenant):
    assert tenant.api_token.last_used_at is None
    response = tenant.client().get(URL)
    assert response.status_code == 200
    tenant.api_token.refresh_from_db()
    assert tenant.api_token.last_used_at is not None


@pytest.mark.django_db
def test_tokens_are_stored_hashed(tenant):
    token = tenant.api_token
    token.refresh_from_db()
    assert tenant.api_raw not in (token.token_hash, token.prefix)
    assert len(token.token_hash) == 64
    assert tenant.api_raw.startswith(token.prefix)
