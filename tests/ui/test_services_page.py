"""The ops page /services/: every service of the user's tenants with its live agents."""

import pytest
from django.urls import reverse

from profiles import services


def _instance(tenant, service, pid):
    return services.agent_instance_record(
        tenant=tenant, service=service, collecting=[{"runId": "r1", "profileType": "cpu", "engine": "py-spy"}],
        instance={"id": f"i{pid}", "host": "web-1", "pid": pid, "python": "3.12.1", "agentVersion": "0.2.0",
                  "engines": {"cpu": ["py-spy", "yappi"]}},
    )


@pytest.mark.django_db
def test_services_page_lists_the_members_services_and_links_each(member_client, tenant, other_tenant):
    _instance(tenant.tenant, "checkout", 4242)
    _instance(other_tenant.tenant, "secret-svc", 99)
    page = member_client.get(reverse("services"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="/services/checkout/"' in html
    assert "pid 4242" in html and "py-spy, yappi" in html and "cpu (py-spy)" in html
    assert "secret-svc" not in html


@pytest.mark.django_db
def test_services_page_needs_a_login(client):
    response = client.get(reverse("services"))
    assert response.status_code == 302 and "login" in response["Location"]
