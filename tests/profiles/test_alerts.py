"""Regression alerts over continuous windows created through the real pipeline (the detector
and its service; the e2e test drives them with a real beat and worker)."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from profiles import services
from profiles.models import Alert, AlertPolicy, ContinuousProfile, WebhookDelivery
from tests.webhook_receiver import WebhookReceiver

from .samples import completed_profile, sampled_cpu_profile

BASE = "/api/v1/observability/profiling"
WORKLOAD = {"render": 0.30, "query": 0.25, "serialize": 0.15, "log": 0.10, "auth": 0.08, "cache": 0.07, "idle": 0.05}


class Service:
    """One service's continuous windows, a minute apart, each checked for alerts as it lands."""

    def __init__(self, tenant, name="checkout", seed=1):
        self.tenant = tenant
        self.config = ContinuousProfile.objects.create(tenant=tenant, service=name, profile_types=["cpu"])
        self.rng = random.Random(seed)
        self.start = timezone.now().replace(microsecond=0) - timedelta(hours=2)
        self.count = 0

    def window(self, weights=WORKLOAD, *, check=True) -> int:
        at = self.start + timedelta(minutes=self.count)
        self.count += 1
        load = self.rng.randint(1500, 4500)  # the load changes from minute to minute; the code does not
        completed_profile(self.tenant, sampled_cpu_profile(weights, load, self.rng), service=self.config.service,
                          started_at=at, continuous_slot=at)
        return services.alerts_check_all() if check else 0


@pytest.fixture
def receiver(settings):
    settings.PROFILING_WEBHOOK_ALLOW_PRIVATE = True
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(3))
def test_no_alert_over_many_unchanged_windows_under_changing_load(tenant, seed):
    service = Service(tenant.tenant, seed=seed)
    assert sum(service.window() for _ in range(40)) == 0
    assert Alert.objects.count() == 0


@pytest.mark.django_db
def test_a_regression_raises_one_alert_one_webhook_and_resolves_when_removed(
    tenant, api_client, receiver, eager_celery, django_capture_on_commit_callbacks
):
    webhook, _ = services.alert_webhook_set(tenant=tenant.tenant, url=receiver.url)
    service = Service(tenant.tenant)
    for _ in range(15):
        service.window()
    slow_auth = dict(WORKLOAD, auth=0.16)  # auth takes twice as long per request
    with django_capture_on_commit_callbacks(execute=True):
        opened = [service.window(slow_auth) for _ in range(4)]
    assert opened == [1, 0, 0, 0]  # deduplicated while it persists
    [alert] = Alert.objects.all()
    assert (alert.function, alert.status, alert.service) == ("auth", "open", "checkout")
    assert alert.baseline_share == pytest.approx(0.08, abs=0.01) and alert.current_share == pytest.approx(0.148, abs=0.02)

    [event] = receiver.events(webhook.secret)  # one request, and its signature verifies
    assert len(receiver.requests) == 1
    assert event["event"] == "alert.opened" and event["alert"]["function"] == "auth"
    assert event["alert"]["risePercent"] > 50

    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            service.window()
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.resolved_at is not None
    assert [e["event"] for e in receiver.events(webhook.secret)] == ["alert.opened", "alert.resolved"]
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == ["delivered", "delivered"]

    listed = api_client.get(f"{BASE}/alerts").json()
    [item] = listed["items"]
    assert item["function"] == "auth" and item["status"] == "resolved"
    assert f"base={alert.baseline_profile_id}" in item["compareUrl"] and f"comparison={alert.profile_id}" in item["compareUrl"]


@pytest.mark.django_db
def test_a_failing_receiver_is_retried_and_every_attempt_logged(tenant, settings, eager_celery, django_capture_on_commit_callbacks):
    settings.PROFILING_WEBHOOK_ALLOW_PRIVATE = True
    receiver = WebhookReceiver(statuses=[500, 503])
    try:
        webhook, _ = services.alert_webhook_set(tenant=tenant.tenant, url=receiver.url)
        service = Service(tenant.tenant, seed=4)
        for _ in range(10):
            service.window()
        with django_capture_on_commit_callbacks(execute=True):
            assert service.window(dict(WORKLOAD, query=0.5)) == 1
        [delivery] = WebhookDelivery.objects.all()
        assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 3, 200)
        assert len(receiver.requests) == 3 and len(receiver.events(webhook.secret)) == 3
    finally:
        receiver.close()


@pytest.mark.django_db
def test_a_receiver_that_never_answers_ends_as_failed(tenant, settings, eager_celery, django_capture_on_commit_callbacks):
    settings.PROFILING_WEBHOOK_ALLOW_PRIVATE = True
    services.alert_webhook_set(tenant=tenant.tenant, url="http://127.0.0.1:9/nothing-listens-here")
    service = Service(tenant.tenant, seed=5)
    for _ in range(10):
        service.window()
    with django_capture_on_commit_callbacks(execute=True):
        service.window(dict(WORKLOAD, query=0.5))
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.status == "failed" and delivery.attempts == services.WEBHOOK_MAX_ATTEMPTS
    assert delivery.error


@pytest.mark.django_db
def test_the_threshold_is_per_configuration(tenant):
    service = Service(tenant.tenant, seed=2)
    AlertPolicy.objects.create(config=service.config, threshold_percent=150)
    for _ in range(10):
        service.window()
    # auth doubles (+85 % of its share): significant, but below this configuration's 150 %.
    assert service.window(dict(WORKLOAD, auth=0.16)) == 0
    assert service.window(dict(WORKLOAD, auth=0.40)) == 1


@pytest.mark.django_db
def test_the_day_before_baseline_compares_with_the_same_hour_yesterday(tenant):
    service = Service(tenant.tenant, seed=3)
    AlertPolicy.objects.create(config=service.config, baseline="dayBefore")
    service.start -= timedelta(days=1)
    for _ in range(10):  # yesterday, around this hour: auth is slow then too
        service.window(dict(WORKLOAD, auth=0.16), check=False)
    service.start += timedelta(days=1)
    for _ in range(5):
        assert service.window(dict(WORKLOAD, auth=0.16)) == 0  # the same as a day earlier
    assert Alert.objects.count() == 0


@pytest.mark.django_db
def test_alerts_are_listed_for_their_tenant_only(tenant, other_tenant, api_client):
    service = Service(other_tenant.tenant)
    for _ in range(10):
        service.window()
    service.window(dict(WORKLOAD, query=0.6))
    assert Alert.objects.filter(tenant=other_tenant.tenant).count() == 1
    assert api_client.get(f"{BASE}/alerts").json()["items"] == []
    assert len(other_tenant.client().get(f"{BASE}/alerts").json()["items"]) == 1
    theirs = Alert.objects.get()
    assert api_client.get(f"{BASE}/alerts/{theirs.pk}").status_code == 404
    assert other_tenant.client().get(f"{BASE}/alerts/{theirs.pk}").json()["function"] == "query"


@pytest.mark.django_db
def test_a_redirecting_receiver_is_not_followed(tenant, settings, eager_celery, django_capture_on_commit_callbacks):
    settings.PROFILING_WEBHOOK_ALLOW_PRIVATE = True
    target = WebhookReceiver()
    redirecting = WebhookReceiver(statuses=[307] * 10, location=target.url)
    try:
        services.alert_webhook_set(tenant=tenant.tenant, url=redirecting.url)
        service = Service(tenant.tenant, seed=6)
        for _ in range(10):
            service.window()
        with django_capture_on_commit_callbacks(execute=True):
            service.window(dict(WORKLOAD, query=0.5))
        [delivery] = WebhookDelivery.objects.all()
        assert delivery.status == "failed" and delivery.response_status == 307
        assert target.requests == []
    finally:
        target.close()
        redirecting.close()
