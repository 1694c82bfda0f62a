"""Regression alerts with the real beat and worker: beat ticks the alert check, the worker runs it
and delivers the signed webhook to a receiver in this test. Windows are uploaded for runs of past
slots and processed by the worker (independent of how agents get their runs)."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from profiles import services
from profiles.models import Alert, AlertCheck, ProfileResult
from tests.conftest import TenantFixture
from tests.profiles.samples import claim_without_agent, gzip_json, sampled_cpu_profile
from tests.webhook_receiver import WebhookReceiver

from .conftest import API, wait_until

pytestmark = [pytest.mark.e2e]

WORKLOAD = {"render": 0.30, "query": 0.25, "serialize": 0.15, "log": 0.10, "auth": 0.08, "cache": 0.07, "idle": 0.05}



def _uploaded_window(e2e, tenant, raw: dict, service: str, at) -> ProfileResult:
    """A continuous window of `at`, claimed and uploaded as an agent would; the real worker processes it."""
    run = services.profile_start(
        tenant=tenant.tenant, service=service, profile_type="cpu", duration_seconds=60, continuous_slot=at
    )
    ProfileResult.objects.filter(pk=run.pk).update(started_at=at)
    lease = claim_without_agent(run)
    services.profile_accept_upload(profile=run, data=gzip_json(raw), lease=lease)
    wait_until(
        lambda: ProfileResult.objects.filter(pk=run.pk, status="completed").exists(),
        30, f"the worker to process window {at}\n{e2e.logs()}",
    )
    return run


def test_beat_raises_one_alert_delivers_one_webhook_and_resolves_it(e2e):
    tenant = TenantFixture("e2e-alerts")
    receiver = WebhookReceiver()
    try:
        status, webhook = e2e.request("PUT", f"{API}/alerts/webhook", tenant.api_raw, tenant.external_id, {"url": receiver.url})
        assert status == 200 and webhook["secret"], webhook
        status, _ = e2e.request(
            "POST", f"{API}/continuous", tenant.api_raw, tenant.external_id, {"service": "svc-alerts", "profileTypes": ["cpu"]}
        )
        assert status == 201
        rng = random.Random(21)
        start = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=3)
        windows = []

        def window(weights):
            """One more minute's window; returns once the beat-driven check has seen it."""
            at = start + timedelta(minutes=len(windows))
            raw = sampled_cpu_profile(weights, rng.randint(1500, 4500), rng)
            windows.append(_uploaded_window(e2e, tenant, raw, "svc-alerts", at))
            wait_until(
                lambda: AlertCheck.objects.filter(tenant=tenant.tenant, last_profile=windows[-1]).exists(),
                30, f"the alert check of window {len(windows)}\n{e2e.logs()}",
            )

        for _ in range(25):
            window(WORKLOAD)
        assert not Alert.objects.filter(tenant=tenant.tenant).exists()

        for _ in range(3):
            window(dict(WORKLOAD, auth=0.16))  # auth takes twice as long
        [alert] = Alert.objects.filter(tenant=tenant.tenant)
        assert alert.function == "auth" and alert.status == "open"
        receiver.wait_for(1)

        for _ in range(3):
            window(WORKLOAD)
        wait_until(lambda: Alert.objects.get(pk=alert.pk).status == "resolved", 30, "the alert to resolve")
        receiver.wait_for(2)
        events = receiver.events(webhook["secret"])
        assert len(receiver.requests) == 2 and [e["event"] for e in events] == ["alert.opened", "alert.resolved"]
        assert Alert.objects.filter(tenant=tenant.tenant).count() == 1

        status, listed = e2e.request("GET", f"{API}/alerts", tenant.api_raw, tenant.external_id)
        assert status == 200 and [a["function"] for a in listed["items"]] == ["auth"]
        status, log = e2e.request("GET", f"{API}/alerts/deliveries", tenant.api_raw, tenant.external_id)
        assert [d["status"] for d in log["items"]] == ["delivered", "delivered"]
    finally:
        receiver.close()
        e2e.request("DELETE", f"{API}/continuous/svc-alerts", tenant.api_raw, tenant.external_id)
