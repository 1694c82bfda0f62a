"""Reads of one stored profile: its parsed analysis, and what processing stored for pages and exports."""

import gc
import json
from contextlib import contextmanager
from dataclasses import dataclass

import orjson
from django.conf import settings

from ..analysis import (
    Frame,
    InvalidProfile,
    Profile,
    Sample,
    to_folded,
    to_pprof,
    to_speedscope,
)
from ..analysis.labels import Labels, apply_labels
from ..analysis.model import gunzip_capped
from ..models import ProfileResult, Status, artifact_name

#: Largest stored artifact read back (they are made from uploads within the format's limits).
MAX_ARTIFACT_BYTES = 512 * 1024 * 1024


class ProfileNotReady(Exception):
    """The profile has no analysable data (not completed, or its stored payload is gone): a 409."""

def profile_load_analysis(*, profile: ProfileResult) -> Profile:
    """The stored profile as an analysis `Profile`.

    Raises ProfileNotReady when the run is not completed or its payload file is missing or
    unreadable (e.g. removed by hand), so callers answer 409 rather than fail.
    """
    if profile.status != Status.COMPLETED:
        raise ProfileNotReady(f"profile {profile.pk} is {profile.status}, not completed")
    return stored_analysis(profile.payload, f"profile {profile.pk}")


def profile_labelled(*, profile: ProfileResult, labels: Labels = (), group_by: str | None = None) -> tuple[Profile, dict]:
    """(the profile cut to the samples carrying `labels`, the "labels" block saying what was
    applied, with the groups of `group_by`); raises ProfileNotReady like profile_load_analysis."""
    return apply_labels(profile_load_analysis(profile=profile), labels=labels, group_by=group_by)


def stored_document(payload, what: str) -> dict:
    """A stored payload file (a profile's or a rollup's) as its decoded pyprof-raw/1 document;
    ProfileNotReady names `what` when the file is missing or unreadable."""
    if not payload:
        raise ProfileNotReady(f"{what} has no stored data")
    try:
        with payload.open("rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ProfileNotReady(f"the stored data of {what} is missing") from None
    except OSError:
        raise ProfileNotReady(f"the stored data of {what} could not be read") from None
    try:
        with gc_paused():
            doc = orjson.loads(gunzip_capped(data, settings.PROFILING_MAX_RAW_BYTES))
    except (InvalidProfile, orjson.JSONDecodeError) as exc:
        raise ProfileNotReady(f"the stored data of {what} is unreadable: {exc}") from None
    if not isinstance(doc, dict):
        raise ProfileNotReady(f"the stored data of {what} is unreadable: not a JSON object")
    return doc


def stored_analysis(payload, what: str) -> Profile:
    """A stored payload file as an analysis `Profile` (the fast path for what this server wrote)."""
    raw = stored_document(payload, what)
    try:
        with gc_paused():
            try:
                return _stored_profile(raw)
            except (KeyError, TypeError, ValueError, AttributeError):
                return Profile.from_raw(raw)  # not what we store: the strict loader says what is wrong
    except InvalidProfile as exc:
        raise ProfileNotReady(f"the stored data of {what} is unreadable: {exc}") from None


@contextmanager
def gc_paused():
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
    label_sets: dict = {}  # one tuple per distinct label set
    for entry in raw["samples"]:
        stack = tuple(entry["stack"])
        if not stack or min(stack) < 0 or max(stack) >= frame_count:
            raise ValueError("stack index out of range")
        labels = entry.get("labels")
        if labels:
            labels = tuple(sorted(labels.items()))
            labels = label_sets.setdefault(labels, labels)
        samples.append(
            Sample(stack=stack, value=entry["value"], count=entry["count"], thread=entry["thread"], labels=labels or ())
        )
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
        labels_overflow=raw.get("labelsOverflow", 0),
    )

@dataclass(frozen=True)
class ExportedProfile:
    content: bytes
    content_type: str
    filename: str


EXPORT_FORMATS = ("pprof", "speedscope", "folded")
_EXPORT_TYPES = {
    "pprof": ("application/octet-stream", "pb.gz"),
    "speedscope": ("application/json", "speedscope.json"),
    "folded": ("text/plain; charset=utf-8", "folded.txt"),
}


def profile_export(
    *, profile: ProfileResult, export_format: str, labels: Labels = (), group_by: str | None = None
) -> ExportedProfile:
    """The profile in an interchange format: gzip'd pprof, speedscope JSON or folded stacks.

    Processing stored each one (services.processing): this reads a file, it parses nothing.
    With `labels` (only those samples) or `group_by` (speedscope: a profile per value; folded:
    a "key=value" root frame) the export is built from the payload instead.
    """
    if export_format not in _EXPORT_TYPES:
        raise ValueError(f"unknown export format {export_format!r}")
    if labels or group_by:
        filtered, _ = profile_labelled(profile=profile, labels=labels)
        return export_analysis(filtered, export_format=export_format, stem=_export_stem(profile), group_by=group_by)
    content_type, extension = _EXPORT_TYPES[export_format]
    stored = profile_read_artifact(profile=profile, kind=export_format)
    try:
        content = stored if export_format == "pprof" else bytes(gunzip_capped(stored, MAX_ARTIFACT_BYTES))
    except InvalidProfile:
        raise ProfileNotReady(f"the stored {export_format} export of profile {profile.pk} is unreadable") from None
    return ExportedProfile(content, content_type, f"{_export_stem(profile)}.{extension}")


def _export_stem(profile: ProfileResult) -> str:
    return f"{profile.service}-{profile.profile_type}-{profile.started_at:%Y%m%dT%H%M%SZ}-{str(profile.pk)[:8]}"


def profile_flame_tree(*, profile: ProfileResult) -> tuple[dict, str, dict[str, list[str]]]:
    """(flame tree, unit, label values) as processing stored them: the tree bounded in nodes and
    name lengths; every label key with its values, heaviest first ({} in files of older versions)."""
    stored = profile_read_artifact(profile=profile, kind="flame")
    try:
        doc = json.loads(gunzip_capped(stored, MAX_ARTIFACT_BYTES))
        return doc["tree"], doc["unit"], doc.get("labels", {})
    except (InvalidProfile, ValueError, KeyError, TypeError):
        raise ProfileNotReady(f"the stored flame graph of profile {profile.pk} is unreadable") from None


def profile_read_artifact(*, profile: ProfileResult, kind: str) -> bytes:
    """A file that processing stored beside the payload (models.ARTIFACT_SUFFIXES), as stored."""
    if profile.status != Status.COMPLETED:
        raise ProfileNotReady(f"profile {profile.pk} is {profile.status}, not completed")
    if not profile.payload:
        raise ProfileNotReady(f"profile {profile.pk} has no stored data")
    name = artifact_name(profile.payload.name, kind)
    try:
        with profile.payload.storage.open(name, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        if kind == "folded":
            raise ProfileNotReady(
                f"profile {profile.pk} is too large for a folded export; pprof and speedscope have it all"
            ) from None
        raise ProfileNotReady(f"the stored {kind} data of profile {profile.pk} is missing") from None
    except OSError:
        raise ProfileNotReady(f"the stored {kind} data of profile {profile.pk} could not be read") from None


def export_analysis(
    analysed: Profile, *, export_format: str, stem: str, group_by: str | None = None
) -> ExportedProfile:
    """An analysed profile that has no stored exports (a merged range, a label filter) as a
    file named `stem`; `group_by` splits speedscope and folded by that label key's values."""
    if export_format not in _EXPORT_TYPES:
        raise ValueError(f"unknown export format {export_format!r}")
    content_type, extension = _EXPORT_TYPES[export_format]
    if export_format == "pprof":
        content = to_pprof(analysed)  # every sample's labels are in it anyway
    elif export_format == "speedscope":
        content = orjson.dumps(to_speedscope(analysed, group_by))
    else:
        content = to_folded(analysed, group_by).encode()
    return ExportedProfile(content, content_type, f"{stem}.{extension}")
