"""Writes for the life of a profile run: start, claim, progress, failure, reaping (see agent/PROTOCOL.md)."""

import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from tenants.models import Tenant

from ..models import UNIT_BY_TYPE, Phase, ProfileResult, Status

logger = logging.getLogger(__name__)




class RunConflict(Exception):
    """The run is not in a state that allows the requested change (e.g. an upload after the reaper failed it)."""


def profile_start(
    *,
    tenant: Tenant,
    service: str,
    profile_type: str,
    duration_seconds: int,
    sample_rate: int = 100,
    engine: str = "",
    continuous_slot=None,
) -> ProfileResult:
    """Create a run (status running, waiting for an agent of `service` to claim it)."""
    now = timezone.now()
    return ProfileResult.objects.create(
        tenant=tenant,
        service=service,
        profile_type=profile_type,
        requested_duration_seconds=duration_seconds,
        sample_rate=sample_rate,
        engine=engine,
        unit=UNIT_BY_TYPE[profile_type],
        started_at=now,
        deadline_at=now + timedelta(seconds=settings.PROFILING_CLAIM_TIMEOUT_SECONDS),
        continuous=continuous_slot is not None,
        continuous_slot=continuous_slot,
    )


def profile_claim_next(*, tenant: Tenant, service: str, instance: dict) -> ProfileResult | None:
    """Hand the oldest waiting run of `service` to this agent instance.

    The claim is a conditional UPDATE on the phase, so when several instances poll at once
    exactly one wins each run, on PostgreSQL and SQLite alike.
    """
    now = timezone.now()
    candidates = ProfileResult.objects.filter(
        tenant=tenant, service=service, status=Status.RUNNING, phase=Phase.WAITING, deadline_at__gt=now
    ).order_by("started_at").values_list("pk", "requested_duration_seconds")[:5]
    for pk, duration in candidates:
        claimed = ProfileResult.objects.filter(pk=pk, phase=Phase.WAITING, status=Status.RUNNING).update(
            phase=Phase.COLLECTING,
            claimed_at=now,
            instance=instance,
            deadline_at=now + timedelta(seconds=duration + settings.PROFILING_UPLOAD_GRACE_SECONDS),
        )
        if claimed:
            return ProfileResult.objects.get(pk=pk)
    return None


def profile_record_progress(*, profile: ProfileResult, progress: float) -> None:
    ProfileResult.objects.filter(pk=profile.pk, phase=Phase.COLLECTING).update(
        progress=max(0.0, min(1.0, progress))
    )


def profile_fail(*, profile: ProfileResult, error: str) -> bool:
    """Mark a running profile failed with a reason; False when it had already ended."""
    updated = ProfileResult.objects.filter(pk=profile.pk, status=Status.RUNNING).update(
        status=Status.FAILED, phase=Phase.DONE, error=error[:2000], completed_at=timezone.now()
    )
    return bool(updated)


def profiles_reap_overdue(*, now=None) -> int:
    """Fail every running profile past its deadline, saying why. Returns how many were failed."""
    now = now or timezone.now()
    overdue = ProfileResult.objects.filter(status=Status.RUNNING, deadline_at__lt=now)
    failed = 0
    for profile in overdue.only("pk", "service", "phase", "instance", "requested_duration_seconds"):
        if profile_fail(profile=profile, error=_overdue_reason(profile)):
            failed += 1
    return failed


def _overdue_reason(profile: ProfileResult) -> str:
    if profile.phase == Phase.WAITING:
        return (
            f"no agent of service {profile.service} claimed the run within "
            f"{settings.PROFILING_CLAIM_TIMEOUT_SECONDS} s"
        )
    if profile.phase == Phase.COLLECTING:
        who = profile.instance or {}
        return (
            f"the agent ({who.get('host', '?')} pid {who.get('pid', '?')}) did not upload the profile "
            f"within {profile.requested_duration_seconds} s + {settings.PROFILING_UPLOAD_GRACE_SECONDS} s grace"
        )
    return "processing the uploaded profile did not finish in time"


def lease_hash(lease: str) -> str:
    """What the row stores of a claim's lease (the raw lease only travels to the agent)."""
    return hashlib.sha256(lease.encode("utf-8")).hexdigest()
