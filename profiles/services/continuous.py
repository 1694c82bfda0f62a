"""Writes for continuous profiling: configurations and the dispatch of their runs."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from tenants.models import Tenant

from ..models import ContinuousProfile, Phase, ProfileResult, Status
from ..selectors import continuous_slot_for
from .runs import profile_start

logger = logging.getLogger(__name__)


@transaction.atomic
def continuous_profile_upsert(
    *,
    tenant: Tenant,
    service: str,
    profile_types: list[str],
    sample_rate: int = 100,
    retention_days: int = 30,
    enabled: bool = True,
) -> tuple[ContinuousProfile, bool]:
    """Create or replace the one configuration of `service`; returns (config, created)."""
    config, created = ContinuousProfile.objects.update_or_create(
        tenant=tenant,
        service=service,
        defaults={
            "profile_types": list(profile_types),
            "sample_rate": sample_rate,
            "retention_days": retention_days,
            "enabled": enabled,
        },
    )
    _continuous_cancel_waiting(config=config)
    return config, created


@transaction.atomic
def continuous_profile_update(
    *,
    config: ContinuousProfile,
    profile_types: list[str] | None = None,
    sample_rate: int | None = None,
    retention_days: int | None = None,
    enabled: bool | None = None,
) -> ContinuousProfile:
    """Change some fields of a configuration (None keeps a field as it is)."""
    changes = {
        "profile_types": list(profile_types) if profile_types is not None else None,
        "sample_rate": sample_rate,
        "retention_days": retention_days,
        "enabled": enabled,
    }
    for field, value in changes.items():
        if value is not None:
            setattr(config, field, value)
    config.save()
    _continuous_cancel_waiting(config=config)
    return config


@transaction.atomic
def continuous_profile_delete(*, config: ContinuousProfile) -> None:
    """Stop continuous profiling of a service; its stored profiles stay (default retention)."""
    config.enabled = False
    _continuous_cancel_waiting(config=config)
    config.delete()


def _continuous_cancel_waiting(*, config: ContinuousProfile) -> int:
    """Fail the continuous runs no agent has claimed yet that the configuration no longer wants.

    Disabling (or dropping a type) then takes effect at once: agents polling after the change
    get no run of the old configuration. Runs already being collected finish normally.
    """
    waiting = ProfileResult.objects.filter(
        tenant_id=config.tenant_id,
        service=config.service,
        continuous=True,
        status=Status.RUNNING,
        phase=Phase.WAITING,
    )
    if config.enabled:
        waiting = waiting.exclude(profile_type__in=config.profile_types)
    return waiting.update(
        status=Status.FAILED,
        phase=Phase.DONE,
        error="continuous profiling of this type was disabled before an agent claimed the run",
        completed_at=timezone.now(),
    )


def continuous_dispatch(*, now=None) -> int:
    """Create the coming windows' runs ahead of time: one per enabled configuration, type and window.

    Windows start on multiples of PROFILING_CONTINUOUS_PERIOD_SECONDS and last
    PROFILING_CONTINUOUS_WINDOW_SECONDS (the period by default: back to back). Every window
    starting within the next 1.5 periods gets its runs now, so agents claim them before they
    start (up to CLAIM_LOOKAHEAD_SECONDS ahead) and begin on time, and a tick that drifts just
    before a boundary still leaves no window out. Idempotent: runs that exist for a window are
    skipped, and the `one_continuous_run_per_slot` constraint stops a concurrent tick, each
    insert in its own savepoint so one duplicate does not undo the others.
    """
    now = now or timezone.now()
    period = timedelta(seconds=settings.PROFILING_CONTINUOUS_PERIOD_SECONDS)
    horizon = now + period * 1.5
    slots = []
    slot = continuous_slot_for(now) + period
    while slot <= horizon:
        slots.append(slot)
        slot += period
    window = settings.PROFILING_CONTINUOUS_WINDOW_SECONDS
    existing = _slot_runs(slots)
    configs = ContinuousProfile.objects.filter(enabled=True, tenant__is_active=True).select_related("tenant")
    created = 0
    for config in configs:
        for slot in slots:
            for profile_type in config.profile_types:
                if (config.tenant_id, config.service, profile_type, slot) in existing:
                    continue
                try:
                    with transaction.atomic():
                        profile_start(
                            tenant=config.tenant,
                            service=config.service,
                            profile_type=profile_type,
                            duration_seconds=window,
                            sample_rate=config.sample_rate,
                            continuous_slot=slot,
                        )
                except IntegrityError:
                    continue  # another tick created it first
                created += 1
    return created


def _slot_runs(slots) -> set[tuple[int, str, str, datetime]]:
    return set(
        ProfileResult.objects.filter(continuous_slot__in=slots).values_list(
            "tenant_id", "service", "profile_type", "continuous_slot"
        )
    )
