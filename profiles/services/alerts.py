"""Writes for regression alerts: checking continuous windows, opening and resolving alerts,
the tenant's webhook and its signed deliveries."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import socket
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from profiling_agent.profile_format import EXACT_ENGINES

from tenants.models import Tenant

from ..analysis.regressions import find_regressions, has_recovered, stored_window_shares
from ..models import (
    Alert,
    AlertBaseline,
    AlertCheck,
    AlertPolicy,
    AlertStatus,
    AlertWebhook,
    ContinuousProfile,
    DeliveryStatus,
    ProfileResult,
    Status,
    WebhookDelivery,
)
from ..selectors import alert_policy_for

logger = logging.getLogger(__name__)

# Enough windows that their spread means something. A check reads at most MAX_BASELINE_WINDOWS
# windows' top functions, spread evenly over the baseline period (a day of 1-minute windows is
# 1440; every 12th still estimates their spread and costs a twelfth: benchmarks/alert_check.py).
MIN_BASELINE_WINDOWS = 5
MAX_BASELINE_WINDOWS = 120
MAX_BASELINE_SCAN = 10_000
DAY = timedelta(days=1)
DAY_BEFORE_SPAN = timedelta(minutes=30)  # each side of the same time a day earlier
WEBHOOK_TIMEOUT_SECONDS = 10
WEBHOOK_MAX_ATTEMPTS = 6
SIGNATURE_HEADER = "X-Profiling-Signature"


class WebhookRefused(ValueError):
    """The webhook URL is not one the platform will call (scheme, or a private address)."""


def alerts_check_all() -> int:
    """Check the newest windows of every enabled continuous configuration; returns alerts opened."""
    opened = 0
    configs = ContinuousProfile.objects.filter(enabled=True).select_related("tenant", "alert_policy")
    for config in configs:
        policy = alert_policy_for(config=config)
        if not policy.enabled:
            continue
        for profile_type in config.profile_types:
            opened += alerts_check_service(config=config, policy=policy, profile_type=profile_type)
    return opened


def _windows(config: ContinuousProfile, profile_type: str):
    return ProfileResult.objects.filter(
        tenant=config.tenant,
        service=config.service,
        profile_type=profile_type,
        continuous=True,
        status=Status.COMPLETED,
    ).only("id", "engine", "started_at", "total_value", "sample_count", "top_functions")


def _shares(profile: ProfileResult):
    return stored_window_shares(
        profile.top_functions,
        total_value=profile.total_value,
        sample_count=profile.sample_count,
        exact=profile.engine in EXACT_ENGINES,
    )


@transaction.atomic
def alerts_check_service(*, config: ContinuousProfile, policy: AlertPolicy, profile_type: str) -> int:
    """Compare the newest `policy.latest_windows` windows with the baseline; open, update and
    resolve this service's alerts. Idempotent: a window already checked is not checked again.
    Returns how many alerts were opened."""
    check, _ = AlertCheck.objects.get_or_create(tenant=config.tenant, service=config.service, profile_type=profile_type)
    check = AlertCheck.objects.select_for_update().get(pk=check.pk)
    latest = list(_windows(config, profile_type).order_by("-started_at", "-id")[: policy.latest_windows])
    if len(latest) < policy.latest_windows or check.last_profile_id == latest[0].pk:
        return 0
    check.last_profile = latest[0]
    check.checked_at = timezone.now()
    check.save(update_fields=["last_profile", "checked_at"])

    # Engines attribute time differently: only windows of the newest window's engine compare.
    same_engine = _windows(config, profile_type).filter(engine=latest[0].engine)
    latest = [w for w in latest if w.engine == latest[0].engine]
    oldest_latest = latest[-1].started_at
    if policy.baseline == AlertBaseline.DAY_BEFORE:
        moment = latest[0].started_at - DAY
        baseline_qs = same_engine.filter(started_at__gte=moment - DAY_BEFORE_SPAN, started_at__lt=moment + DAY_BEFORE_SPAN)
    else:
        baseline_qs = same_engine.filter(started_at__gte=oldest_latest - DAY, started_at__lt=oldest_latest)
    ids = list(baseline_qs.order_by("-started_at").values_list("pk", flat=True)[:MAX_BASELINE_SCAN])
    chosen = ids[:: max(1, math.ceil(len(ids) / MAX_BASELINE_WINDOWS))]
    baseline = list(same_engine.filter(pk__in=chosen).order_by("-started_at"))
    if len(baseline) < MIN_BASELINE_WINDOWS:
        return 0

    regressions, shares = find_regressions(
        [_shares(w) for w in baseline], [_shares(w) for w in latest], threshold_percent=policy.threshold_percent
    )
    now = timezone.now()
    open_alerts = {
        (a.function, a.file, a.line): a
        for a in Alert.objects.select_for_update().filter(
            tenant=config.tenant, service=config.service, profile_type=profile_type, status=AlertStatus.OPEN
        )
    }
    opened = 0
    for regression in regressions:
        alert = open_alerts.pop(regression.key, None)
        if alert is None:
            function, file, line = regression.key
            alert = Alert.objects.create(
                tenant=config.tenant, service=config.service, profile_type=profile_type,
                function=function, file=file, line=line,
                baseline=policy.baseline, threshold_percent=policy.threshold_percent,
                baseline_share=regression.baseline.share, baseline_variance=regression.baseline.window_variance,
                baseline_windows=regression.baseline.windows, current_share=regression.share,
                peak_share=regression.share, profile=latest[0], baseline_profile=baseline[0],
                opened_at=now, last_seen_at=now,
            )
            _alert_event(alert=alert, event="alert.opened")
            opened += 1
        else:
            _alert_seen(alert=alert, share=regression.share, profile=latest[0], now=now)
    # Open alerts whose function no longer regresses: resolved once back near their own baseline.
    for key, alert in open_alerts.items():
        share = shares[key].value if key in shares else 0.0
        if has_recovered(alert.baseline_share, share, threshold_percent=alert.threshold_percent):
            alert.status = AlertStatus.RESOLVED
            alert.current_share = share
            alert.resolved_at = now
            alert.profile = latest[0]
            alert.save(update_fields=["status", "current_share", "resolved_at", "profile"])
            _alert_event(alert=alert, event="alert.resolved")
        else:
            _alert_seen(alert=alert, share=share, profile=latest[0], now=now)
    return opened


def _alert_seen(*, alert: Alert, share: float, profile: ProfileResult, now) -> None:
    alert.current_share = share
    alert.peak_share = max(alert.peak_share, share)
    alert.profile = profile
    alert.last_seen_at = now
    alert.save(update_fields=["current_share", "peak_share", "profile", "last_seen_at"])


@transaction.atomic
def alert_policy_set(
    *, config: ContinuousProfile, enabled: bool, baseline: str, threshold_percent: float, latest_windows: int
) -> AlertPolicy:
    policy, _ = AlertPolicy.objects.update_or_create(
        config=config,
        defaults={
            "enabled": enabled,
            "baseline": baseline,
            "threshold_percent": threshold_percent,
            "latest_windows": latest_windows,
        },
    )
    return policy


# --- webhook ---------------------------------------------------------------------------------


def webhook_check_url(url: str) -> None:
    """Refuse URLs the platform must not call: not http(s), or (unless allowed by the
    PROFILING_WEBHOOK_ALLOW_PRIVATE setting) a loopback, private or link-local address."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise WebhookRefused("The webhook URL must be an http:// or https:// URL with a host.")
    if settings.PROFILING_WEBHOOK_ALLOW_PRIVATE:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parsed.hostname, parsed.port or 443)}
    except OSError:
        raise WebhookRefused(f"The webhook host {parsed.hostname} does not resolve.") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            raise WebhookRefused(f"The webhook host {parsed.hostname} is a private address ({ip}).")


@transaction.atomic
def alert_webhook_set(*, tenant: Tenant, url: str, enabled: bool = True, rotate_secret: bool = False) -> tuple[AlertWebhook, bool]:
    """Create or change the tenant's webhook; a new one (or `rotate_secret`) gets a new secret.
    Returns (webhook, whether the secret is new, so the caller shows it)."""
    webhook_check_url(url)
    webhook = AlertWebhook.objects.select_for_update().filter(tenant=tenant).first()
    new_secret = webhook is None or rotate_secret
    if webhook is None:
        webhook = AlertWebhook(tenant=tenant)
    webhook.url = url
    webhook.enabled = enabled
    if new_secret:
        webhook.secret = secrets.token_hex(32)
    webhook.save()
    return webhook, new_secret


def alert_webhook_delete(*, webhook: AlertWebhook) -> None:
    webhook.delete()


def webhook_signature(secret: str, body: bytes) -> str:
    """The signature header's value: "sha256=" and the hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def alert_payload(alert: Alert, event: str) -> dict:
    return {
        "event": event,
        "alert": {
            "id": str(alert.pk),
            "service": alert.service,
            "profileType": alert.profile_type,
            "function": alert.function,
            "file": alert.file,
            "line": alert.line,
            "status": alert.status,
            "baselineShare": alert.baseline_share,
            "currentShare": alert.current_share,
            "risePercent": round(alert.rise_percent, 2),
            "thresholdPercent": alert.threshold_percent,
            "openedAt": alert.opened_at.isoformat(),
            "resolvedAt": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "profileId": str(alert.profile_id) if alert.profile_id else None,
            "baselineProfileId": str(alert.baseline_profile_id) if alert.baseline_profile_id else None,
        },
    }


def _alert_event(*, alert: Alert, event: str) -> WebhookDelivery | None:
    """Log a delivery of the event to the tenant's webhook and queue it (after commit)."""
    from ..tasks import deliver_alert_webhook

    webhook = AlertWebhook.objects.filter(tenant=alert.tenant, enabled=True).first()
    if webhook is None:
        return None
    delivery = WebhookDelivery.objects.create(
        tenant=alert.tenant, alert=alert, event=event, url=webhook.url,
        body=json.dumps(alert_payload(alert, event), sort_keys=True),
    )
    deliver_alert_webhook.delay_on_commit(str(delivery.pk))
    return delivery


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as an error: it could lead to an address the URL check refused."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class DeliveryFailed(Exception):
    """This attempt failed (network error or non-2xx answer); the task retries it later."""


def webhook_deliver(*, delivery_id, final_attempt: bool) -> None:
    """One attempt to POST a logged delivery. Raises DeliveryFailed when it should be retried;
    on the final attempt the delivery is marked failed instead. A delivered one is not resent."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return
        webhook = AlertWebhook.objects.filter(tenant=delivery.tenant_id).first()
        delivery.attempts += 1
        delivery.save(update_fields=["attempts"])
    if webhook is None:
        _delivery_done(delivery, status=DeliveryStatus.FAILED, error="the tenant's webhook was removed")
        return
    body = delivery.body.encode()
    request = urllib.request.Request(
        delivery.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "profiling-platform-alerts/1",
            SIGNATURE_HEADER: webhook_signature(webhook.secret, body),
            "X-Profiling-Event": delivery.event,
            "X-Profiling-Delivery": str(delivery.pk),
        },
    )
    try:
        webhook_check_url(delivery.url)
        with _OPENER.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status, error = exc.code, f"HTTP {exc.code}"
    except (OSError, WebhookRefused) as exc:
        status, error = None, str(exc) or type(exc).__name__
    else:
        error = ""
    if status is not None and 200 <= status < 300:
        _delivery_done(delivery, status=DeliveryStatus.DELIVERED, response_status=status)
        return
    if final_attempt:
        _delivery_done(delivery, status=DeliveryStatus.FAILED, response_status=status, error=error)
        return
    WebhookDelivery.objects.filter(pk=delivery.pk).update(response_status=status, error=error)
    raise DeliveryFailed(error)


def _delivery_done(delivery: WebhookDelivery, *, status: str, response_status: int | None = None, error: str = "") -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(
        status=status,
        response_status=response_status,
        error=error[:2000],
        delivered_at=timezone.now() if status == DeliveryStatus.DELIVERED else None,
    )
