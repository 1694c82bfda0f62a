"""Time-range benchmark: merged flame graphs and top functions over 1 h, 24 h and 7 days of 60 s
cpu windows, on PostgreSQL. Prints figures and ratios; never fails a build.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_ranges .venv/bin/python benchmarks/ranges.py

Data: 10,080 back-to-back 60 s windows (7 days) of one service and as many of another, each a
stored cpu profile of a demo-like service (4 busy threads, 600 functions, ~400 code paths
12-32 frames deep, Zipf popularity: ~1,500 (stack, thread) samples, ~21 KB stored), with a
seeded variation per window. Files go to a temporary MEDIA_ROOT. The benchmark tenant's rows
are deleted and recreated on every run; nothing else in the database is touched.

With --keep the data stays (files in $TMPDIR/bench-ranges-media) and a later --keep run
reuses it, skipping setup and figure 1.

Figures:
1. rollup write cost per window: the beat task building every 10 min, 1 h, 6 h and 1 day rollup of
   the 7 days, divided by the windows it covered; bytes written.
2. GET /merge (top functions) for ranges of 1 h, 24 h (1,440 windows) and 7 days (10,080),
   ragged at both ends, p50/p95 through the whole HTTP stack (targets: 24 h p95 <= 1 s, 7 days
   <= 2 s), with bytes read from storage per request.
3. the merged flame graph (the service page, cold: its per-process cache cleared) for the same ranges.
Baseline for 2 and 3: GET of one profile by id through the same stack, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _django import setup_django  # noqa: E402

_media = Path(tempfile.gettempdir()) / "bench-ranges-media" if "--keep" in sys.argv else None
_scratch = setup_django("bench-ranges-", media=_media)

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.files.storage import default_storage  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from profiles import services  # noqa: E402
from profiles.analysis import Profile  # noqa: E402
from profiles.models import Phase, ProfileResult, ProfileRollup, Status  # noqa: E402
from profiles.pages import data as page_data  # noqa: E402
from profiles.services.processing import _compact_payload  # noqa: E402
from tenants.models import Tenant, TokenScope  # noqa: E402
from tenants.services import tenant_get_or_create, token_create  # noqa: E402

TENANT = "bench-ranges"
SERVICES = ("ai-service", "other-service")
END = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)  # the 7 days end here
WINDOW = timedelta(seconds=60)
MS = 1000.0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def heading(text: str) -> None:
    print(f"\n== {text}")


def demo_like_window(seed: int, *, threads: int = 4, seconds: int = 60, hz: int = 100) -> bytes:
    """A stored (compact) 60 s cpu profile; the code paths are the same for every seed (one
    service), their weights and the sampled stacks vary."""
    shape = random.Random(1)
    functions = 600
    frames = [
        {"function": f"{shape.choice(['Handler.', 'Model.', 'View.', ''])}fn_{i}",
         "file": f"/srv/app/pkg{i % 40}/mod{i % 7}.py", "line": 1 + (i * 37) % 900}
        for i in range(functions)
    ]
    children: dict[tuple, list[int]] = {}

    def walk() -> tuple[int, ...]:
        path = (0,)
        for _ in range(shape.randint(12, 32)):
            options = children.setdefault(path, [shape.randrange(1, functions) for _ in range(shape.randint(1, 3))])
            path = path + (shape.choice(options),)
        return path

    code_paths = sorted({walk() for _ in range(400)})
    rng = random.Random(seed)
    weights = [rng.uniform(0.7, 1.3) / (k + 1) ** 1.1 for k in range(len(code_paths))]
    aggregated: dict[tuple, list[int]] = {}
    for t in range(threads):
        for stack in rng.choices(code_paths, weights, k=seconds * hz // 2):  # threads are ~50% busy
            entry = aggregated.setdefault((stack, f"worker-{t}"), [0, 0])
            entry[0] += 1_000_000_000 // hz
            entry[1] += 1
    raw = {
        "format": "pyprof-raw/1", "profileType": "cpu", "engine": "py-spy", "unit": "nanoseconds",
        "startedAt": 0.0, "durationSeconds": float(seconds), "sampleRate": hz,
        "sampleCount": sum(c for _, c in aggregated.values()), "frames": frames,
        "samples": [{"stack": list(s), "value": v, "count": c, "thread": t} for (s, t), (v, c) in aggregated.items()],
        "notes": [],
    }
    return _compact_payload(Profile.from_raw(raw))


def populate(tenant: Tenant, days: int) -> int:
    """`days` of back-to-back windows per service, stored as the pipeline would leave them."""
    pool = [demo_like_window(seed) for seed in range(24)]
    sizes = [len(p) for p in pool]
    print(f"   a window is stored in {statistics.mean(sizes) / 1024:.1f} KB (gzip JSON)")
    count = days * 1440
    start = END - timedelta(days=days)
    for service in SERVICES:
        rows = []
        for k in range(count):
            at = start + k * WINDOW
            body = pool[k % len(pool)]
            profile = ProfileResult(
                tenant=tenant, service=service, profile_type="cpu", status=Status.COMPLETED, phase=Phase.DONE,
                progress=1.0, engine="py-spy", unit="nanoseconds", requested_duration_seconds=60,
                duration_seconds=60.0, started_at=at, completed_at=at + WINDOW, continuous=True, continuous_slot=at,
                sample_count=3000, size_bytes=len(body),
            )
            profile.payload.name = default_storage.save(f"profiles/{tenant.pk}/{service}/{profile.pk}.json.gz", _Bytes(body))
            rows.append(profile)
        ProfileResult.objects.bulk_create(rows, batch_size=1000)
    return count


class _Bytes:
    """The least a storage's save() needs: chunks()."""

    def __init__(self, data: bytes):
        self.data = data

    def chunks(self):
        yield self.data

    def __len__(self):
        return len(self.data)


def measure(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=7, help="days of windows per service (default 7)")
    parser.add_argument("--repeat", type=int, default=20, help="requests per figure (default 20)")
    parser.add_argument("--keep", action="store_true", help="keep the data, and reuse it when it is there")
    args = parser.parse_args()
    print(f"database: {connection.vendor}; python {sys.version.split()[0]}; machine load {os.getloadavg()[0]:.2f}")
    if connection.vendor != "postgresql":
        print("   (not PostgreSQL: the figures are not the issue's)")
    call_command("migrate", verbosity=0)
    count = args.days * 1440
    reuse = args.keep and ProfileResult.objects.filter(tenant__external_id=TENANT).count() == count * len(SERVICES)
    if not reuse:
        Tenant.objects.filter(external_id=TENANT).delete()
    tenant, _ = tenant_get_or_create(external_id=TENANT, name="Benchmark ranges")
    _, raw_token = token_create(tenant=tenant, scope=TokenScope.API)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw_token}", HTTP_X_TENANT_ID=TENANT)

    if reuse:
        print(f"\n(reusing the {count * len(SERVICES)} windows and their rollups of an earlier --keep run)")
    else:
        heading(f"setup: {args.days} days of 60 s windows for each of {len(SERVICES)} services")
        started = time.perf_counter()
        populate(tenant, args.days)
        print(f"   {count * len(SERVICES)} windows stored in {time.perf_counter() - started:.1f} s")

        heading("1. rollup write cost per window (the beat task over all closed periods)")
        started = time.perf_counter()
        written = services.rollups_refresh(now=END + timedelta(minutes=5), lookback=timedelta(days=args.days + 1))
        elapsed = time.perf_counter() - started
        rollup_bytes = sum(ProfileRollup.objects.filter(tenant=tenant).values_list("size_bytes", flat=True))
        windows = count * len(SERVICES)
        print(f"   {written} rollups written in {elapsed:.1f} s: {elapsed / windows * MS:.2f} ms per window, "
              f"{rollup_bytes / windows / 1024:.2f} KB of rollup per window")

    one = ProfileResult.objects.filter(tenant=tenant, service=SERVICES[0]).order_by("started_at").first()
    baseline = measure(lambda: api.get(f"/api/v1/observability/profiling/{one.pk}"), args.repeat)
    base50, base95 = statistics.median(baseline), p95(baseline)
    print(f"\n   baseline, GET of one profile: p50 {base50 * MS:.1f} ms, p95 {base95 * MS:.1f} ms")

    ranges = [("1 h", timedelta(hours=1)), ("24 h", timedelta(hours=24)), ("7 days", timedelta(days=7))]
    ranges = [(label, span) for label, span in ranges if span <= timedelta(days=args.days)]
    # Ragged at both ends: the range ends 37.5 minutes past an hour, two hours before the data ends.
    range_end = END - timedelta(hours=2) + timedelta(minutes=37, seconds=30)
    heading("2. GET /merge (top functions) -- targets: 24 h p95 <= 1 s, 7 days p95 <= 2 s")
    for label, span in ranges:
        start = max(range_end - span, END - timedelta(days=args.days))
        query = {"service": SERVICES[0], "profileType": "cpu", "from": start.isoformat(), "to": range_end.isoformat()}
        body = json.loads(api.get("/api/v1/observability/profiling/merge", query).content)
        times = measure(lambda q=query: api.get("/api/v1/observability/profiling/merge", q), args.repeat)
        print(f"   {label:>6}: {body['profileCount']:>5} windows via {body['sources']['rollups']} rollups + "
              f"{body['sources']['windows']} raw, {body['sources']['bytesRead'] / 1024:.0f} KB read; "
              f"p50 {statistics.median(times) * MS:.0f} ms, p95 {p95(times) * MS:.0f} ms "
              f"({statistics.median(times) / base50:.0f}x / {p95(times) / base95:.0f}x the one-profile GET)")

    heading("3. the merged flame graph: the service page, cold (per-process cache cleared)")
    get_user_model().objects.filter(username=TENANT).delete()
    user = get_user_model().objects.create_superuser(username=TENANT, email="", password=None)
    pages = Client()
    pages.force_login(user)
    for label, span in ranges:
        start = max(range_end - span, END - timedelta(days=args.days))
        url = f"/services/{SERVICES[0]}/?tenant={TENANT}&type=cpu&from={start.isoformat()}&to={range_end.isoformat()}"
        url = url.replace("+", "%2B")

        def cold(u=url):
            page_data._cache.clear()
            response = pages.get(u)
            assert response.status_code == 200, response.status_code

        times = measure(cold, max(5, args.repeat // 2))
        print(f"   {label:>6}: p50 {statistics.median(times) * MS:.0f} ms, p95 {p95(times) * MS:.0f} ms "
              f"({statistics.median(times) / base50:.0f}x / {p95(times) / base95:.0f}x the one-profile GET)")
    print(f"\nmachine load at the end {os.getloadavg()[0]:.2f} (2 cores shared; figures are noisy when loaded)")
    user.delete()
    if not args.keep:
        Tenant.objects.filter(external_id=TENANT).delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
