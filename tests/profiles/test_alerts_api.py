"""The alert settings endpoints: a service's policy and the tenant's webhook."""

import pytest

from profiles.models import AlertWebhook, ContinuousProfile

BASE = "/api/v1/observability/profiling"


@pytest.fixture
def config(tenant):
    return ContinuousProfile.objects.create(tenant=tenant.tenant, service="checkout", profile_types=["cpu"])


@pytest.mark.django_db
def test_a_policy_reads_its_defaults_and_is_replaced(api_client, config):
    url = f"{BASE}/alerts/policies/checkout"
    assert api_client.get(url).json() == {"enabled": True, "baseline": "trailing24h", "thresholdPercent": 10.0, "latestWindows": 1}
    response = api_client.put(url, {"baseline": "dayBefore", "thresholdPercent": 25, "latestWindows": 3}, format="json")
    assert response.status_code == 200
    assert api_client.get(url).json() == {"enabled": True, "baseline": "dayBefore", "thresholdPercent": 25.0, "latestWindows": 3}


@pytest.mark.django_db
def test_a_bad_policy_is_a_readable_400(api_client, config):
    response = api_client.put(f"{BASE}/alerts/policies/checkout", {"baseline": "lastWeek", "latestWindows": 0}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["errors"] == {
        "baseline": ['"lastWeek" is not a valid choice.'],
        "latestWindows": ["Ensure this value is greater than or equal to 1."],
    }


@pytest.mark.django_db
def test_another_tenants_policy_is_404(other_tenant, config):
    response = other_tenant.client().get(f"{BASE}/alerts/policies/checkout")
    assert response.status_code == 404
    assert response.json()["detail"] == "No continuous-profiling configuration for this service."


@pytest.mark.django_db
def test_the_webhook_secret_is_shown_when_set_and_rotated_only(api_client, settings):
    settings.PROFILING_WEBHOOK_ALLOW_PRIVATE = True
    created = api_client.put(f"{BASE}/alerts/webhook", {"url": "http://127.0.0.1:9000/hook"}, format="json").json()
    assert len(created["secret"]) == 64 and created["secretPrefix"] == created["secret"][:6] + "…"
    read = api_client.get(f"{BASE}/alerts/webhook").json()
    assert read["secret"] is None and read["url"] == "http://127.0.0.1:9000/hook"
    changed = api_client.put(f"{BASE}/alerts/webhook", {"url": "http://127.0.0.1:9001/hook"}, format="json").json()
    assert changed["secret"] is None and AlertWebhook.objects.get().secret == created["secret"]
    rotated = api_client.put(
        f"{BASE}/alerts/webhook", {"url": "http://127.0.0.1:9001/hook", "rotateSecret": True}, format="json"
    ).json()
    assert rotated["secret"] not in (None, created["secret"])
    assert api_client.delete(f"{BASE}/alerts/webhook").status_code == 204
    assert api_client.get(f"{BASE}/alerts/webhook").json() == {"detail": "No alert webhook is set for this tenant."}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url, message",
    [
        ("http://127.0.0.1:8088/hook", "private address"),
        ("http://10.1.2.3/hook", "private address"),
        ("ftp://example.com/hook", "must be an http:// or https:// URL"),
    ],
)
def test_a_webhook_to_a_private_address_or_other_scheme_is_refused(api_client, settings, url, message):
    settings.PROFILING_WEBHOOK_ALLOW_PRIVATE = False
    response = api_client.put(f"{BASE}/alerts/webhook", {"url": url}, format="json")
    assert response.status_code == 400 and message in response.json()["errors"]["url"][0]
    assert not AlertWebhook.objects.exists()


@pytest.mark.django_db
def test_one_tenants_webhook_is_not_anothers(api_client, other_tenant, settings):
    settings.PROFILING_WEBHOOK_ALLOW_PRIVATE = True
    api_client.put(f"{BASE}/alerts/webhook", {"url": "http://127.0.0.1:9000/hook"}, format="json")
    assert other_tenant.client().get(f"{BASE}/alerts/webhook").status_code == 404
    assert other_tenant.client().get(f"{BASE}/alerts/deliveries").json()["items"] == []


@pytest.mark.django_db
def test_a_bad_alert_filter_is_a_readable_400(api_client):
    response = api_client.get(f"{BASE}/alerts", {"status": "closed"})
    assert response.status_code == 400
    assert response.json()["detail"] == 'Invalid request. status: "closed" is not a valid choice.'
    assert api_client.get(f"{BASE}/alerts/not-a-uuid").json() == {"detail": "alert not found"}
