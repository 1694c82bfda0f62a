"""Writes for an uploaded profile: accepting it durably, and turning it into the stored result.

Acceptance (the upload view): the upload is validated in full, written to storage under a name
of its own, and only then does one conditional UPDATE move the run to processing; the task is
enqueued after that, and a broker that is down loses nothing: the sweep enqueues it again.

Processing (the task): at most PROCESSING_MAX_ATTEMPTS attempts, counted in the row. Each writes
the payload and what pages and exports read (the flame tree, the exports), then completes the run
with a conditional UPDATE on phase=processing, so a run failed meanwhile stays failed.
"""

import gzip
import json
import logging
from datetime import timedelta
from functools import partial
from operator import itemgetter

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..analysis import flame_tree, to_folded, to_pprof, to_speedscope
from ..analysis.labels import label_values
from ..analysis.model import InvalidProfile, Profile, load_upload
from ..analysis.summary import top_functions
from ..models import Phase, ProfileResult, Status, artifact_name, payload_path, upload_path
from .runs import RunConflict, lease_hash, profile_check_lease

logger = logging.getLogger(__name__)

PROCESSING_MAX_ATTEMPTS = 3
COMPACT_LEVEL9_MAX_BYTES = 4 * 1024 * 1024
#: Longest function or file name kept in the stored flame tree, so its size is bounded by its nodes.
FLAME_NAME_MAX_CHARS = 300
#: Folded stacks repeat every name on every line; beyond this size only pprof and speedscope are stored.
FOLDED_MAX_BYTES = 64 * 1024 * 1024
LOST_WORKER = "the worker was lost (killed, or over its memory or time limit)"


def _storage():
    return ProfileResult._meta.get_field("payload").storage


def _attempt_deadline():
    return timezone.now() + timedelta(seconds=settings.PROFILING_PROCESSING_ATTEMPT_SECONDS)


# --- acceptance ---------------------------------------------------------------------------------


def profile_accept_upload(*, profile: ProfileResult, data: bytes, lease: str = "") -> None:
    """Validate the upload (gzip pyprof-raw/1), store it, move the run to processing, queue the task.

    Raises InvalidProfile (nothing stored, the run stays collecting) or RunConflict (wrong lease,
    deadline passed, not collecting); the conditional UPDATE is what decides a race.
    """
    profile_check_lease(profile=profile, lease=lease)  # refused before the work of decoding
    parsed = load_upload(data, settings.PROFILING_MAX_RAW_BYTES)
    if parsed.profile_type != profile.profile_type:
        raise InvalidProfile(
            f"profileType: the run is a {profile.profile_type} profile, the upload is {parsed.profile_type}"
        )
    del parsed
    storage = _storage()
    # Durable before the run moves, and outside any transaction: a crash leaves a stray file, never a
    # processing run without its upload.
    name = storage.save(upload_path(profile), ContentFile(data))
    now = timezone.now()
    accepted = ProfileResult.objects.filter(
        pk=profile.pk,
        status=Status.RUNNING,
        phase=Phase.COLLECTING,
        lease_hash=lease_hash(lease),
        deadline_at__gt=now,
    ).update(
        payload=name,
        phase=Phase.PROCESSING,
        progress=1.0,
        size_bytes=len(data),
        processing_attempts=0,
        error="",
        deadline_at=_attempt_deadline(),
    )
    if not accepted:
        storage.delete(name)
        profile.refresh_from_db()
        profile_check_lease(profile=profile, lease=lease)  # says why it lost
        raise RunConflict(f"run {profile.pk} changed while its upload was being stored")
    transaction.on_commit(partial(_enqueue, profile.pk))


def _enqueue(profile_id) -> None:
    from ..tasks import process_upload

    try:
        process_upload.delay(str(profile_id))
    except Exception:  # the broker is down: the run is durable in processing; the sweep enqueues it
        logger.warning("could not enqueue processing of run %s; the sweep will", profile_id, exc_info=True)


def profiles_requeue_stalled(*, now=None) -> int:
    """Beat: enqueue again every processing run whose attempt is overdue (its task vanished: worker
    killed, broker restarted, enqueue failed); fail those that used all their attempts. Returns
    how many were enqueued. Runs before the reaper, with the same `now`, so it never sees them."""
    now = now or timezone.now()
    stalled = ProfileResult.objects.filter(status=Status.RUNNING, phase=Phase.PROCESSING, deadline_at__lt=now)
    requeued = 0
    for pk, attempts, deadline, error in stalled.values_list("pk", "processing_attempts", "deadline_at", "error"):
        if attempts >= PROCESSING_MAX_ATTEMPTS:
            _fail_processing(pk, _exhausted(attempts, error))
            continue
        moved = ProfileResult.objects.filter(pk=pk, phase=Phase.PROCESSING, deadline_at=deadline).update(
            deadline_at=_attempt_deadline()
        )
        if moved:  # this sweep won it (another beat tick or sweep would have moved the deadline)
            _enqueue(pk)
            requeued += 1
    return requeued


# --- processing ---------------------------------------------------------------------------------


class ProcessingRetry(Exception):
    """An attempt failed for a reason that may pass (database, storage, a bug); attempts are left."""


def profile_process_upload(*, profile_id) -> None:
    """Turn a stored upload into the result. Idempotent: only a run in `processing` is touched.

    Raises ProcessingRetry when the attempt failed and another one is allowed.
    """
    profile = _begin_attempt(profile_id)
    if profile is None:
        return
    attempt = profile.processing_attempts
    if attempt > PROCESSING_MAX_ATTEMPTS:
        _fail_processing(profile.pk, _exhausted(attempt - 1, profile.error))
        return
    try:
        _process(profile)
    except InvalidProfile as exc:
        if _fail_processing(profile.pk, f"the uploaded profile was rejected: {exc}"):
            _storage().delete(profile.payload.name)
    except Exception as exc:
        reason = f"attempt {attempt}: {type(exc).__name__}: {exc}"
        logger.exception("processing run %s failed (%s)", profile.pk, reason)
        if attempt >= PROCESSING_MAX_ATTEMPTS:
            _fail_processing(profile.pk, _exhausted(attempt, reason))
            return
        ProfileResult.objects.filter(pk=profile.pk, phase=Phase.PROCESSING).update(error=reason[:2000])
        raise ProcessingRetry(reason) from exc


def _begin_attempt(profile_id) -> ProfileResult | None:
    """Count the attempt in the row and return the run (None: it is not processing). An attempt
    before it that recorded no error did not finish: its worker was lost."""
    started = ProfileResult.objects.filter(pk=profile_id, status=Status.RUNNING, phase=Phase.PROCESSING).update(
        processing_attempts=F("processing_attempts") + 1, deadline_at=_attempt_deadline()
    )
    if not started:
        return None
    profile = ProfileResult.objects.get(pk=profile_id)
    previous = profile.processing_attempts - 1
    if previous and not profile.error.startswith(f"attempt {previous}:"):
        profile.error = f"attempt {previous}: {LOST_WORKER}"
        ProfileResult.objects.filter(pk=profile_id, phase=Phase.PROCESSING).update(error=profile.error)
    return profile


def _exhausted(attempts: int, last_error: str) -> str:
    last = last_error.split(": ", 1)[1] if last_error.startswith("attempt ") else (last_error or LOST_WORKER)
    return f"processing failed {attempts} times: {last}"


def _fail_processing(pk, error: str) -> bool:
    """Only a processing run fails here: a completed one stays completed."""
    return bool(
        ProfileResult.objects.filter(pk=pk, status=Status.RUNNING, phase=Phase.PROCESSING).update(
            status=Status.FAILED, phase=Phase.DONE, error=error[:2000], completed_at=timezone.now()
        )
    )


def _process(profile: ProfileResult) -> None:
    storage = _storage()
    upload_name = profile.payload.name
    with storage.open(upload_name, "rb") as fh:
        data = fh.read()
    parsed = load_upload(data, settings.PROFILING_MAX_RAW_BYTES)
    del data
    if parsed.profile_type != profile.profile_type:
        raise InvalidProfile(f"the agent uploaded a {parsed.profile_type} profile for a {profile.profile_type} run")

    # Each file is written as soon as it is built, so only one of them is in memory at a time.
    payload_name = payload_path(profile, "")
    compact = _compact_payload(parsed)
    stored_bytes = len(compact)
    written = [_write(storage, payload_name, compact)]
    del compact
    written.append(_write(storage, artifact_name(payload_name, "flame"), _flame_file(parsed)))
    written.append(_write(storage, artifact_name(payload_name, "pprof"), to_pprof(parsed)))
    written.append(_write(storage, artifact_name(payload_name, "speedscope"), _gzip_json(to_speedscope(parsed))))
    folded_name = artifact_name(payload_name, "folded")
    if _folded_bytes(parsed) <= FOLDED_MAX_BYTES:
        written.append(_write(storage, folded_name, _gzip(to_folded(parsed).encode())))
    else:
        storage.delete(folded_name)  # an earlier attempt may have stored one

    completed = ProfileResult.objects.filter(pk=profile.pk, status=Status.RUNNING, phase=Phase.PROCESSING).update(
        payload=payload_name,
        size_bytes=stored_bytes,
        sample_count=parsed.sample_count,
        unit=parsed.unit,
        engine=parsed.engine,
        total_value=int(parsed.total),
        duration_seconds=round(parsed.duration_seconds, 3),
        top_functions=top_functions(parsed, limit=50),
        notes=list(parsed.notes),
        overhead_percent=parsed.overhead_percent,
        instance={**profile.instance, **(parsed.instance or {})},
        status=Status.COMPLETED,
        phase=Phase.DONE,
        error="",
        completed_at=timezone.now(),
    )
    if completed:
        if upload_name != payload_name:
            storage.delete(upload_name)
    else:  # failed meanwhile (reaper, sweep): it stays failed, and what this attempt wrote goes
        for name in written:
            storage.delete(name)


def _write(storage, name: str, content: bytes) -> str:
    """Store `content` under exactly `name`, replacing what an earlier attempt left there."""
    storage.delete(name)
    saved = storage.save(name, ContentFile(content))
    if saved != name:  # a concurrent attempt wrote it in between: let this one retry
        storage.delete(saved)
        raise OSError(f"{name} was written concurrently")
    return name


def _gzip(content: bytes) -> bytes:
    """Level 6: within a few % of level 9 on these files, and seconds faster on the large ones."""
    return gzip.compress(content, compresslevel=6, mtime=0)


def _gzip_json(doc) -> bytes:
    return _gzip(json.dumps(doc, separators=(",", ":")).encode())


def _flame_file(profile: Profile) -> bytes:
    """The flame tree the pages draw (at most flamegraph.DEFAULT_MAX_NODES nodes), names shortened,
    and the profile's label values (analysis.labels.label_values)."""
    tree = flame_tree(profile)
    pending = [tree]
    while pending:
        node = pending.pop()
        for key in ("name", "file"):
            text = node.get(key, "")
            if len(text) > FLAME_NAME_MAX_CHARS:
                node[key] = text[: FLAME_NAME_MAX_CHARS - 1] + "…"
        pending.extend(node.get("children", ()))
    # The label keys and values ride along so the pages' label picker needs no payload parse.
    return _gzip_json({"unit": profile.unit, "tree": tree, "labels": label_values(profile)})


def _folded_bytes(profile: Profile) -> int:
    """An upper bound of the folded export's size (threads not merged), without building it."""
    lengths = [len(f.function) + len(f.file) + len(str(f.line)) + 4 for f in profile.frames]
    return sum(sum(map(lengths.__getitem__, s.stack)) + 21 for s in profile.samples)


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
    del raw
    level = 9 if len(text) <= COMPACT_LEVEL9_MAX_BYTES else 6
    return gzip.compress(text, compresslevel=level, mtime=0)
