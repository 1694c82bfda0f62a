"""Writes for continuous profiling: configurations and the dispatch of their runs."""

import logging

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
    """Create this slot's runs: one per enabled configuration and profile type. Returns how many.

    The slot is `now` floored to PROFILING_CONTINUOUS_PERIOD_SECONDS; each run lasts
    PROFILING_CONTINUOUS_WINDOW_SECONDS. Idempotent: runs that exist for the slot are skipped,
    and the `one_continuous_run_per_slot` constraint stops a concurrent tick, each insert in
    its own savepoint so one duplicate does not undo the others.
    """
    now = now or timezone.now()
    slot = continuous_slot_for(now)
    window = settings.PROFILING_CONTINUOUS_WINDOW_SECONDS
    existing = _slot_runs(slot)
    configs = ContinuousProfile.objects.filter(enabled=True, tenant__is_active=True).select_related("tenant")
    created = 0
    for config in configs:
        for profile_type in config.profile_types:
            if (config.tenant_id, config.service, profile_type) in existing:
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


def _slot_runs(slot) -> set[tuple[int, str, str]]:
    return set(
        ProfileResult.objects.filter(continuous_slot=slot).values_list("tenant_id", "service", "profile_type")
    )

