"""Reads: querysets and derived data for the API and the pages. Always scoped by tenant by the caller's base."""

import gc
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, OuterRef, QuerySet, Subquery

from .analysis import (
    Frame,
    IncomparableProfiles,
    InvalidProfile,
    Profile,
    Sample,
    compare_profiles,
    load_gzip_json,
    to_folded,
    to_pprof,
    to_speedscope,
)
from .models import PER_SECOND_TYPES, ContinuousProfile, ProfileResult, Status


class ProfileNotReady(Exception):
    """The profile has no analysable data (not completed, or its stored payload is gone): a 409."""


class ProfilesIncomparable(Exception):
    """The two profiles cannot be compared (different types): a 400."""


def profile_history(*, queryset: QuerySet, service: str, filters: dict) -> QuerySet:
    """A service's profiles, newest first, with the optional filters of the history endpoint.

    The first page is served by the (tenant, service, -started_at) indexes; `top_functions`
    is only read when a function trend was asked for.
    """
    qs = queryset.filter(service=service)
    if filters.get("profileType"):
        qs = qs.filter(profile_type=filters["profileType"])
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("from"):
        qs = qs.filter(started_at__gte=filters["from"])
    if filters.get("to"):
        qs = qs.filter(started_at__lt=filters["to"])
    if filters.get("continuous") is not None:
        qs = qs.filter(continuous=filters["continuous"])
    deferred = ["notes", "instance", "payload", "error"]
    if not filters.get("function"):
        deferred.append("top_functions")
    return qs.defer(*deferred).order_by("-started_at", "-id")


def function_point(profile: ProfileResult, function: str) -> dict:
    """One profile's value of `function` for a trend: its self share and normalized self value.

    Only the stored top functions are known; a function outside them reports share 0 with
    `inTopFunctions: false`, so a client can tell "absent" from "not measured".
    """
    for entry in profile.top_functions:
        if entry["function"] == function:
            scale = profile.normalized_total / profile.total_value if profile.total_value else 0.0
            return {
                "function": function,
                "selfPercent": entry["selfPercent"],
                "totalPercent": entry["totalPercent"],
                "normalizedSelf": entry["self"] * scale,
                "inTopFunctions": True,
            }
    return {"function": function, "selfPercent": 0.0, "totalPercent": 0.0, "normalizedSelf": 0.0, "inTopFunctions": False}


def profile_load_analysis(*, profile: ProfileResult) -> Profile:
    """The stored profile as an analysis `Profile`.

    Raises ProfileNotReady when the run is not completed or its payload file is missing or
    unreadable (e.g. removed by hand), so callers answer 409 rather than fail.
    """
    if profile.status != Status.COMPLETED:
        raise ProfileNotReady(f"profile {profile.pk} is {profile.status}, not completed")
    if not profile.payload:
        raise ProfileNotReady(f"profile {profile.pk} has no stored data")
    try:
        with profile.payload.open("rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ProfileNotReady(f"the stored data of profile {profile.pk} is missing") from None
    except OSError:
        raise ProfileNotReady(f"the stored data of profile {profile.pk} could not be read") from None
    try:
        with _gc_paused():
            raw = load_gzip_json(data, settings.PROFILING_MAX_RAW_BYTES)
            try:
                return _stored_profile(raw)
            except (KeyError, TypeError, ValueError, AttributeError):
                return Profile.from_raw(raw)  # not what we store: the strict loader says what is wrong
    except InvalidProfile as exc:
        raise ProfileNotReady(f"the stored data of profile {profile.pk} is unreadable: {exc}") from None


@contextmanager
def _gc_paused():
    """No cyclic GC while a profile's tens of thousands of objects are built.

    They hold no cycles, yet each allocation burst triggers collections that walk the whole
    heap: pausing halves a 10,000-function profile's load time (benchmarks/pipeline.py).
    Reference counting still frees everything; the collector resumes right after.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _stored_profile(raw: dict) -> Profile:
    """A payload this server wrote after `Profile.from_raw` accepted it, rebuilt without
    re-validating every field: ~6x faster than the strict loader (a 10,000-function profile
    loads in ~50 ms instead of ~200 ms), which is most of a compare's time. Stack indices are
    still checked, so a damaged file cannot make the analysis fail with an IndexError."""
    frames = tuple(Frame(function=f["function"], file=f["file"], line=f["line"]) for f in raw["frames"])
    frame_count = len(frames)
    samples = []
    for entry in raw["samples"]:
        stack = tuple(entry["stack"])
        if not stack or min(stack) < 0 or max(stack) >= frame_count:
            raise ValueError("stack index out of range")
        samples.append(Sample(stack=stack, value=entry["value"], count=entry["count"], thread=entry["thread"]))
    return Profile(
        profile_type=raw["profileType"],
        unit=raw["unit"],
        engine=raw["engine"],
        duration_seconds=raw["durationSeconds"],
        sample_rate=raw["sampleRate"],
        sample_count=raw["sampleCount"],
        frames=frames,
        samples=tuple(samples),
        notes=tuple(raw.get("notes", ())),
        started_at=raw.get("startedAt", 0.0),
        instance=raw.get("instance"),
    )


def normalization_of(profile_type: str) -> str:
    return "perSecond" if profile_type in PER_SECOND_TYPES else "none"


def profile_compare(
    *,
    base: ProfileResult,
    comparison: ProfileResult,
    noise_threshold_percent: float = 5.0,
    limit: int = 100,
) -> dict:
    """The seed's ProfileComparison of two profiles of one tenant (the caller scoped them).

    Raises ProfilesIncomparable (types differ) before ProfileNotReady (either not completed),
    since a type mismatch will never resolve by waiting.
    """
    if base.profile_type != comparison.profile_type:
        raise ProfilesIncomparable(
            f"cannot compare a {base.profile_type} profile with a {comparison.profile_type} profile"
        )
    base_profile = profile_load_analysis(profile=base)
    comparison_profile = profile_load_analysis(profile=comparison)
    try:
        result = compare_profiles(
            base_profile, comparison_profile, noise_threshold_percent=noise_threshold_percent, limit=limit
        )
    except IncomparableProfiles as exc:  # e.g. a rate profile of zero seconds
        raise ProfilesIncomparable(str(exc)) from None
    normalization = normalization_of(base.profile_type)
    unit = base.unit
    if normalization == "perSecond":
        note = (
            f"Values are {unit} per second of wall time, so profiles of different lengths "
            f"({base_profile.duration_seconds:g} s and {comparison_profile.duration_seconds:g} s) compare fairly."
        )
    else:
        note = f"Values are {unit} live at the end of each window, compared as they are."
    return {
        "baseProfile": str(base.pk),
        "comparisonProfile": str(comparison.pk),
        "improvements": result["improvements"],
        "regressions": result["regressions"],
        "unchanged": result["unchanged"],
        "overallDelta": result["overallDelta"],
        "profileType": base.profile_type,
        "unit": unit,
        "normalization": normalization,
        "note": note,
        "noiseThresholdPercent": noise_threshold_percent,
        "baseDurationSeconds": base_profile.duration_seconds,
        "comparisonDurationSeconds": comparison_profile.duration_seconds,
    }


@dataclass(frozen=True)
class ExportedProfile:
    content: bytes
    content_type: str
    filename: str


EXPORT_FORMATS = ("pprof", "speedscope", "folded")


def profile_export(*, profile: ProfileResult, export_format: str) -> ExportedProfile:
    """The profile in an interchange format: gzip'd pprof, speedscope JSON or folded stacks."""
    analysed = profile_load_analysis(profile=profile)
    stem = f"{profile.service}-{profile.profile_type}-{profile.started_at:%Y%m%dT%H%M%SZ}-{str(profile.pk)[:8]}"
    if export_format == "pprof":
        return ExportedProfile(to_pprof(analysed), "application/octet-stream", f"{stem}.pb.gz")
    if export_format == "speedscope":
        body = json.dumps(to_speedscope(analysed), separators=(",", ":")).encode()
        return ExportedProfile(body, "application/json", f"{stem}.speedscope.json")
    if export_format == "folded":
        return ExportedProfile(to_folded(analysed).encode(), "text/plain; charset=utf-8", f"{stem}.folded.txt")
    raise ValueError(f"unknown export format {export_format!r}")


def continuous_slot_for(now: datetime) -> datetime:
    """The dispatch slot containing `now`: `now` floored to PROFILING_CONTINUOUS_PERIOD_SECONDS."""
    period = settings.PROFILING_CONTINUOUS_PERIOD_SECONDS
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % period, tz=now.tzinfo)


def continuous_profile_list(*, queryset: QuerySet) -> QuerySet:
    """Configurations with `last_slot`: the newest slot already dispatched for their service."""
    last_slot = (
        ProfileResult.objects.filter(
            tenant=OuterRef("tenant"), service=OuterRef("service"), continuous_slot__isnull=False
        )
        .order_by()
        .values("tenant", "service")
        .annotate(last=Max("continuous_slot"))
        .values("last")
    )
    return queryset.annotate(last_slot=Subquery(last_slot)).order_by("service")


def continuous_next_run_at(*, config: ContinuousProfile, now: datetime) -> datetime | None:
    """When the next runs of this configuration are created; None when it is disabled.

    The current slot when it has not been dispatched yet (the next beat tick creates its
    runs), else the start of the next slot.
    """
    if not config.enabled:
        return None
    slot = continuous_slot_for(now)
    if hasattr(config, "last_slot"):  # annotated by continuous_profile_list: no query per row
        last = config.last_slot
    else:
        last = ProfileResult.objects.filter(
            tenant_id=config.tenant_id, service=config.service, continuous_slot__isnull=False
        ).aggregate(last=Max("continuous_slot"))["last"]
    if last is None or last < slot:
        return slot
    return slot + timedelta(seconds=settings.PROFILING_CONTINUOUS_PERIOD_SECONDS)
