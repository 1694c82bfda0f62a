"""Writes for the life of a profile run: start, claim, progress, upload, processing, failure, reaping."""

import gzip
import json
import logging
from datetime import timedelta
from operator import itemgetter

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from tenants.models import Tenant

from ..analysis.model import InvalidProfile, Profile, load_gzip_json
from ..analysis.summary import top_functions
from ..models import UNIT_BY_TYPE, Phase, ProfileResult, Status

logger = logging.getLogger(__name__)


PROCESSING_DEADLINE = timedelta(minutes=5)
COMPACT_LEVEL9_MAX_BYTES = 4 * 1024 * 1024


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


def profile_accept_upload(*, profile: ProfileResult, data: bytes) -> ProfileResult:
    """Store the raw upload (gzip JSON) and queue its processing."""
    from ..tasks import process_upload

    with transaction.atomic():
        locked = ProfileResult.objects.select_for_update().get(pk=profile.pk)
        if locked.status != Status.RUNNING or locked.phase != Phase.COLLECTING:
            raise RunConflict(f"run {locked.pk} is {locked.status} ({locked.phase}); it takes no upload")
        locked.payload.save(f"{locked.pk}.json.gz", ContentFile(data), save=False)
        locked.phase = Phase.PROCESSING
        locked.progress = 1.0
        locked.size_bytes = len(data)
        locked.deadline_at = timezone.now() + PROCESSING_DEADLINE
        locked.save(update_fields=["payload", "phase", "progress", "size_bytes", "deadline_at"])
        process_upload.delay_on_commit(str(locked.pk))
    return locked


def profile_fail(*, profile: ProfileResult, error: str) -> bool:
    """Mark a running profile failed with a reason; False when it had already ended."""
    updated = ProfileResult.objects.filter(pk=profile.pk, status=Status.RUNNING).update(
        status=Status.FAILED, phase=Phase.DONE, error=error[:2000], completed_at=timezone.now()
    )
    return bool(updated)


def profile_process_upload(*, profile_id) -> None:
    """Turn a stored upload into the result. Idempotent: only a run in `processing` is touched."""
    profile = ProfileResult.objects.filter(pk=profile_id, phase=Phase.PROCESSING, status=Status.RUNNING).first()
    if profile is None:
        return
    try:
        with profile.payload.open("rb") as fh:
            raw = load_gzip_json(fh.read(), settings.PROFILING_MAX_RAW_BYTES)
        parsed = Profile.from_raw(raw)
        if parsed.profile_type != profile.profile_type:
            raise InvalidProfile(
                f"the agent uploaded a {parsed.profile_type} profile for a {profile.profile_type} run"
            )
    except InvalidProfile as exc:
        profile_fail(profile=profile, error=f"the uploaded profile was rejected: {exc}")
        profile.payload.delete(save=False)
        return
    compact = _compact_payload(parsed)
    old_name = profile.payload.name
    profile.payload.save(f"{profile.pk}.json.gz", ContentFile(compact), save=False)
    if old_name and old_name != profile.payload.name:
        profile.payload.storage.delete(old_name)
    profile.size_bytes = len(compact)
    profile.sample_count = parsed.sample_count
    profile.unit = parsed.unit
    profile.engine = parsed.engine
    profile.total_value = int(parsed.total)
    profile.duration_seconds = round(parsed.duration_seconds, 3)
    profile.top_functions = top_functions(parsed, limit=50)
    profile.notes = list(parsed.notes)
    if raw.get("instance"):
        profile.instance = {**profile.instance, **raw["instance"]}
    profile.status = Status.COMPLETED
    profile.phase = Phase.DONE
    profile.completed_at = timezone.now()
    profile.save()


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


def _compact_payload(profile: Profile) -> bytes:
    """The stored form: pyprof-raw/1 (any reader can load it), samples sorted by stack, gzip.

    Sorting puts stacks that share prefixes (and the same stack of different threads) next
    to each other inside gzip's 32 KB window: about 4x smaller than collection order for a
    typical 60 s, 20-thread cpu profile (see benchmarks/pipeline.py). Level 9 buys another
    ~15% and costs ~40 ms there; on huge, barely compressible payloads it costs seconds, so
    those get level 6.
    """
    raw = profile.to_raw()
    raw["samples"].sort(key=itemgetter("stack", "thread"))
    text = json.dumps(raw, separators=(",", ":")).encode()
    level = 9 if len(text) <= COMPACT_LEVEL9_MAX_BYTES else 6
    return gzip.compress(text, compresslevel=level, mtime=0)


