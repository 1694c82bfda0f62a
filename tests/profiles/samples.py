"""Small, valid raw profiles for tests."""

import gzip
import json

from profiling_agent.profile_format import DEFAULT_ENGINES


def raw_document(profile_type: str, frames: list[dict], samples: list[dict], duration: float) -> dict:
    """A pyprof-raw/1 document around the given frames and samples."""
    return {
        "format": "pyprof-raw/1",
        "profileType": profile_type,
        "engine": DEFAULT_ENGINES[profile_type],
        "unit": UNITS[profile_type],
        "startedAt": 1764000000.0,
        "durationSeconds": duration,
        "sampleRate": 100,
        "sampleCount": sum(s["count"] for s in samples),
        "frames": frames,
        "samples": samples,
        "notes": [],
    }


def raw_cpu_profile(hot_ns: int = 900_000_000, cold_ns: int = 100_000_000) -> dict:
    """A small, valid pyprof-raw/1 cpu profile: main -> hot and main -> cold."""
    frames = [
        {"function": "main", "file": "/app/app.py", "line": 1},
        {"function": "hot", "file": "/app/app.py", "line": 10},
        {"function": "cold", "file": "/app/app.py", "line": 20},
    ]
    samples = [
        {"stack": [0, 1], "value": hot_ns, "count": hot_ns // 10_000_000, "thread": "MainThread"},
        {"stack": [0, 2], "value": cold_ns, "count": cold_ns // 10_000_000, "thread": "MainThread"},
    ]
    return raw_document("cpu", frames, samples, 2.0)


def gzip_json(obj) -> bytes:
    return gzip.compress(json.dumps(obj).encode())


UNITS = {"cpu": "nanoseconds", "memory": "bytes", "alloc": "bytes", "block": "nanoseconds", "mutex": "nanoseconds", "goroutine": "count"}


def raw_profile(leaves: dict[str, int], *, profile_type: str = "cpu", duration: float = 60.0, threads=("MainThread",)) -> dict:
    """A pyprof-raw/1 profile where each named function is a leaf under `main` with that value.

    With several threads each thread gets the same stacks and values (the totals multiply).
    """
    frames = [{"function": "main", "file": "/app/app.py", "line": 1}]
    samples = []
    for i, name in enumerate(leaves, start=1):
        frames.append({"function": name, "file": "/app/app.py", "line": 10 * i})
    for thread in threads:
        for i, value in enumerate(leaves.values(), start=1):
            if value:
                samples.append({"stack": [0, i], "value": value, "count": max(1, value // 10_000_000), "thread": thread})
    return raw_document(profile_type, frames, samples, duration)


def completed_profile(tenant, raw: dict, *, service: str = "ai-service", started_at=None, continuous_slot=None):
    """A profile taken through the real pipeline: start, claim, upload, process. Returns the row."""


    from profiles import services
    from profiles.models import ProfileResult

    profile = services.profile_start(
        tenant=tenant, service=service, profile_type=raw["profileType"],
        duration_seconds=max(1, round(raw["durationSeconds"])), continuous_slot=continuous_slot,
    )
    lease = claim_without_agent(profile)
    services.profile_accept_upload(profile=profile, data=gzip_json(raw), lease=lease)
    services.profile_process_upload(profile_id=profile.pk)
    if started_at is not None:
        ProfileResult.objects.filter(pk=profile.pk).update(started_at=started_at)
    profile.refresh_from_db()
    assert profile.status == "completed", profile.error
    return profile


def claim_one(tenant, service: str, *, pid: int = 42):
    """What an agent's poll does: record an instance offering every engine, claim; the first claim."""
    from profiling_agent import profile_format

    from profiles import services

    instance = services.agent_instance_record(
        tenant=tenant, service=service, collecting=[],
        instance={"id": f"test-{pid}", "host": "web-1", "pid": pid,
                  "engines": {kind: list(e) for kind, e in profile_format.ENGINES_BY_TYPE.items()}},
    )
    claims = services.profile_claim_for(tenant=tenant, service=service, instance=instance)
    return claims[0] if claims else None


def sampled_cpu_profile(weights: dict[str, float], samples: int, rng, *, engine: str | None = None) -> dict:
    """A 60 s cpu profile of `samples` 10 ms ticks drawn from the leaf distribution `weights`
    (each name a leaf under `main`): the same code measured with independent sampling noise."""
    drawn = rng.choices(list(weights), weights=list(weights.values()), k=samples)
    frames = [{"function": "main", "file": "/app/app.py", "line": 1}]
    frames += [{"function": name, "file": "/app/app.py", "line": 10 * i} for i, name in enumerate(weights, 1)]
    rows = [
        {"stack": [0, i], "value": drawn.count(name) * 10_000_000, "count": drawn.count(name), "thread": "MainThread"}
        for i, name in enumerate(weights, 1)
        if drawn.count(name)
    ]
    raw = raw_document("cpu", frames, rows, 60.0)
    if engine:
        raw["engine"] = engine
    return raw


def claim_without_agent(profile) -> str:
    """What a claim does to the row, without an agent: collecting under a lease, with a deadline
    still ahead (a slot in the past, as history and retention tests use, has long passed its own)."""
    from datetime import timedelta

    from django.utils import timezone

    from profiles import services
    from profiles.models import Phase, ProfileResult

    lease, now = "test-lease", timezone.now()
    ProfileResult.objects.filter(pk=profile.pk).update(
        phase=Phase.COLLECTING, claimed_at=now, deadline_at=now + timedelta(minutes=5),
        lease_hash=services.lease_hash(lease),
    )
    profile.refresh_from_db()
    return lease


def labelled_profile(rows, *, duration: float = 60.0, labels_overflow: int = 0) -> dict:
    """A cpu pyprof-raw/1 profile from rows (leaf, value ns, labels dict, thread): each leaf a
    function under `main`, each row one sample carrying those labels."""
    frames = [{"function": "main", "file": "/app/app.py", "line": 1}]
    index: dict[str, int] = {}
    samples = []
    for leaf, value, labels, thread in rows:
        if leaf not in index:
            index[leaf] = len(frames)
            frames.append({"function": leaf, "file": "/app/app.py", "line": 10 * len(frames)})
        sample = {"stack": [0, index[leaf]], "value": value, "count": max(1, value // 10_000_000), "thread": thread}
        if labels:
            sample["labels"] = labels
        samples.append(sample)
    raw = raw_document("cpu", frames, samples, duration)
    if labels_overflow:
        raw["labelsOverflow"] = labels_overflow
    return raw
