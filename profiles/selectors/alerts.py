"""Reads for regression alerts: the list, one alert's diff link, the delivery log."""

from urllib.parse import urlencode

from django.db.models import QuerySet
from django.urls import reverse

from ..models import Alert, AlertPolicy, ContinuousProfile


def alert_list(*, queryset: QuerySet, filters: dict) -> QuerySet:
    """The caller's (tenant-scoped) alerts, newest first, filtered by status and service."""
    qs = queryset
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("service"):
        qs = qs.filter(service=filters["service"])
    return qs.order_by("-opened_at", "-id")


def alert_compare_url(alert: Alert) -> str | None:
    """The compare page of the baseline window against the latest window seen, by share."""
    if not (alert.baseline_profile_id and alert.profile_id):
        return None
    query = {"base": alert.baseline_profile_id, "comparison": alert.profile_id, "normalization": "share"}
    return f"{reverse('compare')}?{urlencode(query)}"


def alert_policy_for(*, config: ContinuousProfile) -> AlertPolicy:
    """The configuration's policy, or an unsaved one holding the defaults."""
    return getattr(config, "alert_policy", None) or AlertPolicy(config=config)
