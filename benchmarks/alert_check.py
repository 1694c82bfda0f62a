"""What one regression-alert check costs as its baseline grows.

    .venv/bin/python benchmarks/alert_check.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_alerts .venv/bin/python benchmarks/alert_check.py

One service's continuous cpu windows (50 stored top functions each, as processing stores them)
are written straight into the database; then `alerts_check_service` checks a new window against
a trailing baseline of 60, 360 and 1440 windows (1 h, 6 h and 24 h of 1-minute windows; a check
reads at most MAX_BASELINE_WINDOWS of them, evenly spread). Each
figure is the median of 5 checks, printed with its ratio to the 60-window check of the same run.
Without DATABASE_URL a throw-away SQLite file is used. Never fails.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
import traceback
from datetime import timedelta

from _django import setup_django  # noqa: E402

_scratch = setup_django("bench-alerts-")

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from profiles import services  # noqa: E402
from profiles.models import AlertCheck, AlertPolicy, ContinuousProfile, ProfileResult  # noqa: E402
from tenants.services import tenant_get_or_create  # noqa: E402

FUNCTIONS = 50
SIZES = (60, 360, 1440)


def window_row(tenant, at, rng: random.Random) -> ProfileResult:
    samples = rng.randint(1500, 4500)
    weights = [1.0 / (i + 1) for i in range(FUNCTIONS)]
    scale = samples * 10_000_000 / sum(weights)
    top = [
        {"function": f"fn_{i}", "file": "/app/app.py", "line": i, "self": w * scale, "total": w * scale,
         "selfPercent": 0.0, "totalPercent": 0.0}
        for i, w in enumerate(weights)
    ]
    return ProfileResult(
        tenant=tenant, service="bench", profile_type="cpu", status="completed", phase="done", engine="py-spy",
        requested_duration_seconds=60, duration_seconds=60.0, started_at=at, continuous=True, continuous_slot=at,
        unit="nanoseconds", sample_count=samples, total_value=int(samples * 10_000_000), top_functions=top,
    )


def main() -> int:
    call_command("migrate", verbosity=0)
    tenant, _ = tenant_get_or_create(external_id="bench-alerts", name="bench")
    ProfileResult.objects.filter(tenant=tenant).delete()
    config, _ = ContinuousProfile.objects.update_or_create(tenant=tenant, service="bench", defaults={"profile_types": ["cpu"]})
    policy, _ = AlertPolicy.objects.update_or_create(config=config)
    rng = random.Random(1)
    now = timezone.now().replace(second=0, microsecond=0)
    ProfileResult.objects.bulk_create(
        [window_row(tenant, now - timedelta(minutes=m), rng) for m in range(1, max(SIZES) + 1)], batch_size=500
    )
    results = {}
    for size in sorted(SIZES, reverse=True):
        # The baseline is the trailing 24 h: windows older than `size` minutes are moved out of it.
        ProfileResult.objects.filter(tenant=tenant, started_at__lt=now - timedelta(minutes=size)).update(
            started_at=now - timedelta(days=3)
        )
        timings = []
        for _ in range(5):
            AlertCheck.objects.filter(tenant=tenant).update(last_profile=None)
            start = time.perf_counter()
            services.alerts_check_service(config=config, policy=policy, profile_type="cpu")
            timings.append(time.perf_counter() - start)
        results[size] = statistics.median(timings)
    base = results[SIZES[0]]
    print(f"database: {connection.vendor}; {FUNCTIONS} top functions per window")
    for size, seconds in sorted(results.items()):
        print(f"baseline of {size:>4} windows: {seconds * 1000:7.1f} ms per check  ({seconds / base:4.1f}x the {SIZES[0]}-window check)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # a benchmark reports, it never fails a build
        traceback.print_exc()
        sys.exit(0)
