import io
import json

import pytest
from django.core.management import CommandError, call_command

from tenants.models import ApiToken, Tenant, hash_token


def _run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_create_tenant_json_prints_exactly_one_object_with_working_tokens():
    output = _run("create_tenant", "550e8400", "--name", "Acme", "--json")
    data = json.loads(output)  # the whole stdout is one JSON document
    assert set(data) == {"tenantId", "apiToken", "agentToken"}
    assert data["tenantId"] == "550e8400"
    api = ApiToken.objects.get(token_hash=hash_token(data["apiToken"]))
    agent = ApiToken.objects.get(token_hash=hash_token(data["agentToken"]))
    assert (api.scope, agent.scope) == ("api", "agent")
    assert api.tenant.name == "Acme"


@pytest.mark.django_db
def test_create_tenant_reuses_an_existing_tenant():
    _run("create_tenant", "550e8400", "--json")
    _run("create_tenant", "550e8400", "--json")
    assert Tenant.objects.filter(external_id="550e8400").count() == 1
    assert ApiToken.objects.filter(tenant__external_id="550e8400").count() == 4


@pytest.mark.django_db
def test_create_tenant_rejects_a_bad_id():
    with pytest.raises(CommandError, match="tenant id"):
        _run("create_tenant", "bad id!")


@pytest.mark.django_db
def test_create_token_issues_one_more_of_the_scope():
    _run("create_tenant", "550e8400", "--json")
    raw = _run("create_token", "550e8400", "--scope", "agent").strip()
    assert ApiToken.objects.get(token_hash=hash_token(raw)).scope == "agent"


@pytest.mark.django_db
def test_create_token_for_unknown_tenant_fails_clearly():
    with pytest.raises(CommandError, match="No tenant"):
        _run("create_token", "nobody")
