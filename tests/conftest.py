import os
import shutil

import pytest
from rest_framework.test import APIClient

from tenants.models import TokenScope
from tenants.services import tenant_get_or_create, token_create


def pytest_unconfigure(config):
    """The run's data folder (tests/settings.py) goes with the run, removed by the process that made it."""
    if os.environ.get("PROFILING_TEST_RUN_DIR_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ["PROFILING_TEST_RUN_DIR"], ignore_errors=True)


class TenantFixture:
    """A tenant with one token of each scope and ready-made clients."""

    def __init__(self, external_id: str):
        self.tenant, _ = tenant_get_or_create(external_id=external_id, name=f"Tenant {external_id}")
        self.api_token, self.api_raw = token_create(tenant=self.tenant, scope=TokenScope.API)
        self.agent_token, self.agent_raw = token_create(tenant=self.tenant, scope=TokenScope.AGENT)

    @property
    def external_id(self) -> str:
        return self.tenant.external_id

    def client(self, scope: str = TokenScope.API) -> APIClient:
        raw = self.api_raw if scope == TokenScope.API else self.agent_raw
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_X_TENANT_ID=self.external_id)
        return client


@pytest.fixture
def tenant(db) -> TenantFixture:
    return TenantFixture("550e8400")


@pytest.fixture
def other_tenant(db) -> TenantFixture:
    return TenantFixture("other-7f3a")


@pytest.fixture
def api_client(tenant) -> APIClient:
    return tenant.client()


@pytest.fixture
def agent_client(tenant) -> APIClient:
    return tenant.client(TokenScope.AGENT)
