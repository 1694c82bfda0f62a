"""Retention: purge expired profiles, rollups and their files (tiered: rollups outlive raw windows),
agent instances gone silent, resolved alerts and old webhook deliveries."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..models import (
    ARTIFACT_SUFFIXES,
    AgentInstance,
    Alert,
    AlertStatus,
    ContinuousProfile,
    ProfileResult,
    ProfileRollup,
    Status,
    WebhookDelivery,
    artifact_name,
)

logger = logging.getLogger(__name__)

PURGE_BATCH = 500


def profiles_purge_expired(*, now=None) -> int:
    """Delete expired profiles, rows and stored files. Returns how many were deleted.

    Continuous profiles of a configured service live `retentionDays`; on-demand profiles, and
    continuous ones of a service whose configuration is gone, live
    PROFILING_DEFAULT_RETENTION_DAYS. Age is counted from `started_at`. Running profiles are
    never touched (the reaper ends them first).
    """
    now = now or timezone.now()
    default_cutoff = now - timedelta(days=settings.PROFILING_DEFAULT_RETENTION_DAYS)
    finished = ProfileResult.objects.exclude(status=Status.RUNNING)
    deleted = 0
    for config in ContinuousProfile.objects.only("tenant_id", "service", "retention_days").iterator():
        cutoff = now - timedelta(days=config.retention_days)
        deleted += _purge(
            finished.filter(
                tenant_id=config.tenant_id, service=config.service, continuous=True, started_at__lt=cutoff
            )
        )
    has_config = ContinuousProfile.objects.filter(tenant_id=OuterRef("tenant_id"), service=OuterRef("service"))
    deleted += _purge(
        finished.filter(started_at__lt=default_cutoff).filter(Q(continuous=False) | ~Exists(has_config))
    )
    return deleted


def _purge(queryset) -> int:
    """Delete the rows in batches; each batch's files go once its rows are gone for good."""
    deleted = 0
    while True:
        batch = list(queryset.values_list("pk", "payload")[:PURGE_BATCH])
        if not batch:
            return deleted
        with transaction.atomic():
            ProfileResult.objects.filter(pk__in=[pk for pk, _ in batch]).delete()
        storage = ProfileResult._meta.get_field("payload").storage
        for _, name in batch:
            if not name:
                continue
            for stored in (name, *(artifact_name(name, kind) for kind in ARTIFACT_SUFFIXES)):
                try:
                    storage.delete(stored)
                except OSError:
                    logger.warning("could not delete the stored profile file %s", stored, exc_info=True)
        deleted += len(batch)


def rollups_purge_expired(*, now=None) -> int:
    """Delete rollups whose period started more than PROFILING_ROLLUP_RETENTION_DAYS ago.

    Rollups keep their own retention, longer than the raw windows' `retentionDays`, so a range
    (and its trend) still merges after the windows themselves are gone.
    """
    now = now or timezone.now()
    expired = ProfileRollup.objects.filter(
        period_start__lt=now - timedelta(days=settings.PROFILING_ROLLUP_RETENTION_DAYS)
    )
    deleted = 0
    storage = ProfileRollup._meta.get_field("payload").storage
    while batch := list(expired.values_list("pk", "payload")[:PURGE_BATCH]):
        with transaction.atomic():
            ProfileRollup.objects.filter(pk__in=[pk for pk, _ in batch]).delete()
        for _, name in batch:
            try:
                storage.delete(name)
            except OSError:
                logger.warning("could not delete the stored rollup %s", name, exc_info=True)
        deleted += len(batch)
    return deleted


def agent_instances_forget_silent(*, now=None) -> int:
    """Forget agent instances that have not polled for PROFILING_AGENT_FORGET_DAYS: every
    restart of a service is a new instance, so without this the inventory only ever grows."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.PROFILING_AGENT_FORGET_DAYS)
    deleted, _ = AgentInstance.objects.filter(last_poll_at__lt=cutoff).delete()
    return deleted


def alerts_purge_expired(*, now=None) -> int:
    """Delete alerts resolved more than PROFILING_ALERT_RETENTION_DAYS ago (their deliveries
    with them) and older deliveries of alerts still open. Open alerts are never deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.PROFILING_ALERT_RETENTION_DAYS)
    old_deliveries, _ = WebhookDelivery.objects.filter(
        alert__status=AlertStatus.OPEN, created_at__lt=cutoff
    ).delete()
    resolved, _ = Alert.objects.filter(status=AlertStatus.RESOLVED, resolved_at__lt=cutoff).delete()
    return resolved + old_deliveries
