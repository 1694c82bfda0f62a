"""Writes for an uploaded profile: accepting the payload durably and turning it into the stored result."""

import gzip
import json
import logging
from datetime import timedelta
from operator import itemgetter

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from ..analysis.model import InvalidProfile, Profile, load_gzip_json
from ..analysis.summary import top_functions
from ..models import Phase, ProfileResult, Status
from .runs import RunConflict, lease_hash, profile_fail  # noqa: F401

logger = logging.getLogger(__name__)




PROCESSING_DEADLINE = timedelta(minutes=5)
COMPACT_LEVEL9_MAX_BYTES = 4 * 1024 * 1024



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
    profile.overhead_percent = parsed.overhead_percent
    if raw.get("instance"):
        profile.instance = {**profile.instance, **raw["instance"]}
    profile.status = Status.COMPLETED
    profile.phase = Phase.DONE
    profile.completed_at = timezone.now()
    profile.save()




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


