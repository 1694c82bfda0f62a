"""Benchmarks of the profile pipeline: print figures, compare with the issue's targets, never fail.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_pipeline .venv/bin/python benchmarks/pipeline.py

Without DATABASE_URL a throw-away SQLite file is used (the history figure is only meaningful on
PostgreSQL). Profile files go to a temporary MEDIA_ROOT. The benchmark tenant's rows are
deleted and recreated on every run; nothing else in the database is touched.

Figures:
1. processing an upload of 60 s x 100 Hz x 20 threads into a result (target < 1 s), for a
   typical profile (stacks repeat) and the worst case (every one of the 120,000 samples is a
   different stack); baseline: only gunzip + json.loads of the same upload.
2. compare of two profiles with 10,000 distinct functions (target < 200 ms); baseline: one
   pass over both profiles' samples (summing self values), the least any compare must do.
3. history's first page for a service with 50,000 profiles (target p95 < 100 ms), through the
   whole HTTP stack (auth, tenant scoping, serialization), with EXPLAIN of its query;
   baseline: GET of one profile by id through the same stack.
4. stored bytes per 60 s cpu profile (target < 50 KB); baseline: the agent's upload.
5. pathological uploads (issue 10): for each, in a fresh process, the outcome and the peak RSS
   of accepting it (the web's side) and of processing it (the worker's side) above the process's
   baseline, as a ratio to the upload's raw JSON size (target: at most 10x); baseline: the
   typical upload. `--only-pathological` runs just this section.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta

from _django import setup_django  # noqa: E402

_scratch = setup_django("bench-pipeline-")

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from profiles import selectors, services  # noqa: E402
from profiles.analysis import Profile, compare_profiles, load_gzip_json  # noqa: E402
from profiles.analysis.summary import self_values  # noqa: E402
from profiles.api.views import HistoryPagination  # noqa: E402
from profiles.models import Phase, ProfileResult, ProfileType, Status  # noqa: E402
from tenants.models import Tenant, TokenScope  # noqa: E402
from tenants.services import tenant_get_or_create, token_create  # noqa: E402

TENANT = "bench-pipeline"
SERVICE = "checkout"
MS = 1000.0


# --- helpers ----------------------------------------------------------------------------------


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall seconds of `repeat` calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def verdict(value: float, target: float) -> str:
    return "meets the target" if value < target else "MISSES the target"


def heading(text: str) -> None:
    print(f"\n== {text}")


# --- synthetic profiles -----------------------------------------------------------------------


def typical_cpu_profile(*, seed: int = 1, threads: int = 20, seconds: int = 60, hz: int = 100) -> dict:
    """A web service's 60 s: 600 functions, ~400 hot code paths 12-32 frames deep whose
    popularity follows Zipf(1.1), sampled independently on each thread, aggregated per
    (stack, thread) as collectors do."""
    rng = random.Random(seed)
    functions = 600
    frames = [
        {
            "function": "<module>" if i == 0 else f"{rng.choice(['Handler.', 'Model.', 'View.', ''])}fn_{i}",
            "file": f"/srv/app/.venv/lib/python3.11/site-packages/pkg{i % 40}/mod{i % 7}.py",
            "line": 1 + (i * 37) % 900,
        }
        for i in range(functions)
    ]
    children: dict[tuple, list[int]] = {}

    def walk() -> tuple[int, ...]:
        path = (0,)
        for _ in range(rng.randint(12, 32)):
            options = children.setdefault(path, [rng.randrange(1, functions) for _ in range(rng.randint(1, 3))])
            path = path + (rng.choice(options),)
        return path

    code_paths = sorted({walk() for _ in range(400)})
    rng.shuffle(code_paths)
    weights = [1.0 / (k + 1) ** 1.1 for k in range(len(code_paths))]
    aggregated: dict[tuple, list[int]] = {}
    for t in range(threads):
        for stack in rng.choices(code_paths, weights, k=seconds * hz):
            entry = aggregated.setdefault((stack, f"worker-{t}"), [0, 0])
            entry[0] += 1_000_000_000 // hz
            entry[1] += 1
    return _raw(frames, aggregated, threads * seconds * hz, seconds, hz)


def worst_case_cpu_profile(*, seed: int = 2, threads: int = 20, seconds: int = 60, hz: int = 100) -> dict:
    """Every sample a different stack: 120,000 sample entries, 20 frames deep, 5,000 functions."""
    rng = random.Random(seed)
    functions = 5000
    frames = [{"function": f"fn_{i}", "file": f"/srv/app/m{i % 100}.py", "line": i % 500 + 1} for i in range(functions)]
    aggregated: dict[tuple, list[int]] = {}
    for t in range(threads):
        for n in range(seconds * hz):
            stack = (0, t + 1, *(rng.randrange(21, functions) for _ in range(17)), 21 + n % (functions - 21))
            aggregated[(stack, f"worker-{t}")] = [1_000_000_000 // hz, 1]
    return _raw(frames, aggregated, threads * seconds * hz, seconds, hz)


def wide_profile(*, seed: int, functions: int, change: float = 0.0, duration: float = 60.0) -> Profile:
    """`functions` distinct leaf functions under 100 callers, values Zipf-distributed (a few
    hot functions, a long tail); with `change`, a fifth of the functions get `change` times
    their value and 1% vanish."""
    rng = random.Random(seed)
    frames = [{"function": "main", "file": "/app/main.py", "line": 1}]
    frames += [{"function": f"caller_{i}", "file": f"/app/c{i % 10}.py", "line": i + 1} for i in range(100)]
    first_leaf = len(frames)
    frames += [{"function": f"leaf_{i}", "file": f"/app/l{i % 50}.py", "line": i % 1000 + 1} for i in range(functions)]
    aggregated: dict[tuple, list[int]] = {}
    for i in range(functions):
        value = max(1, round(2_000 / (i + 1))) * 10_000_000  # the same base values on both sides
        if change and rng.random() < 0.2:
            value = int(value * change)
        if change and rng.random() < 0.01:
            continue  # removed in the comparison
        stack = (0, 1 + i % 100, first_leaf + i)
        aggregated[(stack, "MainThread")] = [value, value // 10_000_000]
    return Profile.from_raw(_raw(frames, aggregated, sum(c for _, c in aggregated.values()), duration, 100))


def _raw(frames: list[dict], aggregated: dict, sample_count: int, seconds: float, hz: int) -> dict:
    return {
        "format": "pyprof-raw/1",
        "profileType": "cpu",
        "engine": "py-spy",
        "unit": "nanoseconds",
        "startedAt": time.time() - seconds,
        "durationSeconds": float(seconds),
        "sampleRate": hz,
        "sampleCount": sample_count,
        "frames": frames,
        "samples": [
            {"stack": list(stack), "value": value, "count": count, "thread": thread}
            for (stack, thread), (value, count) in aggregated.items()
        ],
        "notes": [],
    }


# --- setup ------------------------------------------------------------------------------------


def fresh_tenant() -> tuple[Tenant, str]:
    old = Tenant.objects.filter(external_id=TENANT).first()
    if old is not None:
        # A raw delete: the ORM's cascade would load every row first.
        ProfileResult.objects.filter(tenant=old)._raw_delete(ProfileResult.objects.db)
        old.delete()
    tenant, _ = tenant_get_or_create(external_id=TENANT, name="pipeline benchmark")
    _, raw_token = token_create(tenant=tenant, scope=TokenScope.API)
    return tenant, raw_token


BENCH_LEASE = "benchmark-lease"


def _claim(run: ProfileResult) -> None:
    """What an agent's claim does to the row, without an agent: collecting under a known lease."""
    now = timezone.now()
    ProfileResult.objects.filter(pk=run.pk).update(
        phase=Phase.COLLECTING, claimed_at=now, lease_hash=services.lease_hash(BENCH_LEASE),
        deadline_at=now + timedelta(minutes=10),
    )
    run.refresh_from_db()


def store_and_process(tenant: Tenant, upload: bytes) -> tuple[ProfileResult, float, float]:
    """Start, claim, upload and process a run; returns (row, accept seconds, process seconds)."""
    run = services.profile_start(tenant=tenant, service="uploads", profile_type="cpu", duration_seconds=60)
    _claim(run)
    start = time.perf_counter()
    services.profile_accept_upload(profile=run, data=upload, lease=BENCH_LEASE)
    accepted = time.perf_counter() - start
    start = time.perf_counter()
    services.profile_process_upload(profile_id=run.pk)
    processed = time.perf_counter() - start
    run.refresh_from_db()
    assert run.status == Status.COMPLETED, run.error
    return run, accepted, processed


# --- the benchmarks ---------------------------------------------------------------------------


def bench_upload_and_storage(tenant: Tenant, repeat: int) -> None:
    heading("1. processing an upload (60 s x 100 Hz x 20 threads) into a result -- target < 1 s")
    stored_typical = None
    for name, raw in (("typical", typical_cpu_profile()), ("worst case", worst_case_cpu_profile())):
        upload = gzip.compress(json.dumps(raw).encode())  # as the agent sends it
        decode = timed(lambda upload=upload: load_gzip_json(upload, 1 << 30), repeat)
        runs = [store_and_process(tenant, upload) for _ in range(repeat)]
        process = [p for _, _, p in runs]
        accept = [a for _, a, _ in runs]
        row = runs[-1][0]
        print(
            f"  {name}: {len(raw['samples']):,} (stack, thread) samples, {len(raw['frames']):,} frames, "
            f"upload {len(upload) / 1024:,.0f} KB"
        )
        print(
            f"    process (Celery task's work): median {statistics.median(process) * MS:,.0f} ms, "
            f"max {max(process) * MS:,.0f} ms -> {verdict(max(process), 1.0)}; "
            f"accepting the upload (request side): median {statistics.median(accept) * MS:,.1f} ms"
        )
        print(
            f"    baseline gunzip+json.loads only: median {statistics.median(decode) * MS:,.0f} ms; "
            f"processing = {statistics.median(process) / statistics.median(decode):.1f}x the decode floor"
        )
        print(f"    stored: {row.size_bytes / 1024:,.1f} KB ({row.size_bytes / len(upload):.2f}x the upload)")
        if name == "typical":
            stored_typical = (row, upload, raw)

    heading("4. stored bytes per 60 s cpu profile -- target < 50 KB")
    row, upload, raw = stored_typical
    plain = len(json.dumps(raw, separators=(",", ":")).encode())
    print(
        f"  typical profile: stored {row.size_bytes:,} B = {row.size_bytes / 1024:.1f} KB "
        f"-> {verdict(row.size_bytes, 50 * 1024)}"
    )
    print(
        f"  baseline: the agent's gzip upload {len(upload):,} B (stored = {row.size_bytes / len(upload):.2f}x), "
        f"uncompressed JSON {plain:,} B (stored = {row.size_bytes / plain:.3f}x)"
    )
    print(f"  the row's own columns (top functions etc.) add about {len(json.dumps(row.top_functions)):,} B of JSON")


def bench_compare(tenant: Tenant, client: Client, headers: dict, repeat: int) -> None:
    heading("2. compare of two profiles with 10,000 distinct functions -- target < 200 ms")
    base = wide_profile(seed=1, functions=10_000)
    comparison = wide_profile(seed=2, functions=10_000, change=2.0)
    compare = timed(lambda: compare_profiles(base, comparison), repeat)
    floor = timed(lambda: (self_values(base), self_values(comparison)), repeat)
    result = compare_profiles(base, comparison)
    print(
        f"  {len({f.key for f in base.frames}):,} functions; {len(result['regressions'])} regressions, "
        f"{len(result['improvements'])} improvements (lists capped at 100), {result['unchanged']:,} unchanged"
    )
    print(
        f"  compare_profiles: median {statistics.median(compare) * MS:.1f} ms, p95 {p95(compare) * MS:.1f} ms "
        f"-> {verdict(p95(compare), 0.2)}"
    )
    print(
        f"  baseline one pass over both profiles: median {statistics.median(floor) * MS:.1f} ms; "
        f"compare = {statistics.median(compare) / statistics.median(floor):.1f}x"
    )
    rows = []
    for profile in (base, comparison):
        upload = gzip.compress(json.dumps(profile.to_raw()).encode())
        rows.append(store_and_process(tenant, upload)[0])
    query = {"baseProfileId": str(rows[0].pk), "comparisonProfileId": str(rows[1].pk)}
    api = timed(lambda: _get(client, "/api/v1/observability/profiling/compare", query, headers), max(5, repeat // 2))
    print(
        f"  GET /compare end to end (auth, two reads of stored files, compare): median "
        f"{statistics.median(api) * MS:.0f} ms, p95 {p95(api) * MS:.0f} ms"
    )


def bench_history(tenant: Tenant, client: Client, headers: dict, count: int, repeat: int) -> None:
    heading(f"3. history's first page for a service with {count:,} profiles -- target p95 < 100 ms")
    vendor = connection.vendor
    if vendor != "postgresql":
        print("  (not PostgreSQL: set DATABASE_URL for the figure the target is about)")
    other, _ = tenant_get_or_create(external_id=f"{TENANT}-noise", name="pipeline benchmark noise")
    ProfileResult.objects.filter(tenant=other)._raw_delete(ProfileResult.objects.db)
    start = time.perf_counter()
    inserted = _bulk_profiles(tenant, SERVICE, count, seed=1)
    inserted += _bulk_profiles(tenant, "search", count // 2, seed=2)  # same tenant, other service
    inserted += _bulk_profiles(other, SERVICE, count // 2, seed=3)  # same service, other tenant
    if vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE profiles_profileresult")
    print(f"  inserted {inserted:,} rows ({count:,} of the service) in {time.perf_counter() - start:.1f} s")

    url = "/api/v1/observability/profiling/history"
    first = _get(client, url, {"service": SERVICE}, headers, decode=True)
    second_cursor = first["next"].split("cursor=")[1].split("&")[0]
    cases = [
        ("first page (50 items)", {"service": SERVICE}),
        ("profileType=cpu", {"service": SERVICE, "profileType": "cpu"}),
        ("status=failed (rare)", {"service": SERVICE, "status": "failed"}),
        ("continuous=false", {"service": SERVICE, "continuous": "false"}),
        ("from/to one day, 3 weeks back", {"service": SERVICE, **_window(days_back=21)}),
        ("function=handle_request (trend)", {"service": SERVICE, "function": "handle_request"}),
        ("second page via cursor", {"service": SERVICE, "cursor": second_cursor}),
    ]
    detail_id = str(ProfileResult.objects.filter(tenant=tenant, service=SERVICE).values_list("pk", flat=True)[:1][0])
    detail = timed(lambda: _get(client, f"/api/v1/observability/profiling/{detail_id}", {}, headers), repeat)
    baseline = statistics.median(detail)
    print(f"  baseline GET /{{profileId}} (same stack, one row): median {baseline * MS:.1f} ms, p95 {p95(detail) * MS:.1f} ms")
    for name, params in cases:
        times = timed(lambda params=params: _get(client, url, params, headers), repeat)
        print(
            f"  {name:<34} median {statistics.median(times) * MS:6.1f} ms, p95 {p95(times) * MS:6.1f} ms "
            f"({statistics.median(times) / baseline:.1f}x baseline) -> {verdict(p95(times), 0.1)}"
        )
    big = timed(lambda: _get(client, url, {"service": SERVICE, "pageSize": "500"}, headers), max(5, repeat // 5))
    print(f"  (for scale: pageSize=500, the largest page, median {statistics.median(big) * MS:.1f} ms)")
    _explain(tenant, {})
    _explain(tenant, {"profileType": "cpu"})
    _explain(tenant, {"status": "failed"})


def _window(*, days_back: int) -> dict:
    end = timezone.now() - timedelta(days=days_back)
    return {"from": (end - timedelta(days=1)).isoformat(), "to": end.isoformat()}


def _bulk_profiles(tenant: Tenant, service: str, count: int, *, seed: int) -> int:
    """`count` completed-looking rows, one a minute going back from now, mostly continuous."""
    rng = random.Random(seed)
    now = timezone.now()
    types = list(ProfileType.values)
    top = [
        {"function": name, "file": f"/srv/app/{name}.py", "line": 10, "self": 1000, "total": 5000,
         "selfPercent": 10.0, "totalPercent": 50.0}
        for name in ("handle_request", "render", "query", "serialize", "validate", "log", "hash", "compress")
    ]
    batch: list[ProfileResult] = []
    for i in range(count):
        started = now - timedelta(minutes=i, seconds=rng.random())
        failed = rng.random() < 0.02
        continuous = rng.random() < 0.8
        batch.append(
            ProfileResult(
                id=uuid.UUID(int=rng.getrandbits(128), version=4),
                tenant=tenant, service=service, profile_type=types[i % len(types)],
                status=Status.FAILED if failed else Status.COMPLETED, phase=Phase.DONE,
                error="no agent claimed the run" if failed else "",
                requested_duration_seconds=10, duration_seconds=None if failed else 10.0,
                started_at=started, completed_at=started + timedelta(seconds=11),
                sample_count=0 if failed else 1000, unit="nanoseconds",
                total_value=0 if failed else rng.randint(10**9, 10**10),
                top_functions=[] if failed else top, continuous=continuous,
                continuous_slot=started if continuous else None, size_bytes=20_000,
            )
        )
        if len(batch) == 2000:
            ProfileResult.objects.bulk_create(batch)
            batch = []
    if batch:
        ProfileResult.objects.bulk_create(batch)
    return count


def _explain(tenant: Tenant, filters: dict) -> None:
    qs = selectors.profile_history(
        queryset=ProfileResult.objects.filter(tenant=tenant), service=SERVICE, filters=filters
    ).order_by(*HistoryPagination.ordering)[: HistoryPagination.page_size + 1]
    sql, params = qs.query.sql_with_params()
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql, params)
        plan = [" ".join(str(c) for c in row) for row in cursor.fetchall()]
    used = sorted({m.group(1) for line in plan for m in re.finditer(r"[Uu]sing (?:INDEX )?(\w+)", line)})
    label = ", ".join(f"{k}={v}" for k, v in filters.items()) or "no filter"
    print(f"  EXPLAIN ({label}): index used: {', '.join(used) or 'NONE (sequential scan)'}")
    for line in plan:
        print(f"      {line}")


PATHOLOGICAL = ("typical", "worst case", "largest accepted", "gzip bomb", "1 M frames", "180,000 x 512",
                "NUL in every string", "integer overflows", "lone surrogates")


def pathological_upload(case: str) -> tuple[bytes, int]:
    """(gzip body, raw JSON bytes) of one case."""
    from tests.profiles import pathological  # the same uploads the tests send

    def plain(raw: dict) -> tuple[bytes, int]:
        text = json.dumps(raw).encode()
        return gzip.compress(text), len(text)

    if case == "typical":
        return plain(typical_cpu_profile())
    if case == "worst case":
        return plain(worst_case_cpu_profile())
    if case == "largest accepted":  # just under MAX_STACK_ENTRIES: 100,000 distinct 49-deep stacks
        rng = random.Random(3)
        frames = [{"function": f"fn_{i}", "file": f"/srv/app/m{i % 100}.py", "line": i % 500 + 1} for i in range(20_000)]
        aggregated = {
            (tuple(rng.randrange(20_000) for _ in range(49)), f"worker-{n % 20}"): [10_000_000, 1] for n in range(100_000)
        }
        return plain(_raw(frames, aggregated, 100_000, 60, 100))
    if case == "gzip bomb":
        return pathological.gzip_bomb(2 * 1024**3), 2 * 1024**3
    if case == "1 M frames":
        body = pathological.million_frames()
        return body, len(gzip.decompress(body))
    if case == "180,000 x 512":
        return pathological.deep_and_wide()
    if case == "NUL in every string":
        raw = typical_cpu_profile()
        for frame in raw["frames"]:
            frame["function"] += "\x00"
        return plain(raw)
    if case == "integer overflows":
        raw = typical_cpu_profile()
        raw["sampleCount"] = 2**31
        return plain(raw)
    if case == "lone surrogates":
        raw = typical_cpu_profile()
        raw["samples"][-1]["thread"] = "\ud800"
        return plain(raw)
    raise ValueError(case)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _peak_since(reset: bool) -> int:
    """Peak RSS (KiB) since the last reset; resetting the high-water mark is Linux's clear_refs 5."""
    peak = _rss_kib("VmHWM")
    if reset:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    return peak


def measure_case(case: str) -> None:
    """One case, in this (fresh) process: prints one JSON line for the parent."""
    import gc

    tenant, _ = tenant_get_or_create(external_id=TENANT, name="pipeline benchmark")
    body, raw_bytes = pathological_upload(case)
    gc.collect()
    run = services.profile_start(tenant=tenant, service="pathological", profile_type="cpu", duration_seconds=60)
    _claim(run)
    _peak_since(reset=True)
    base = _rss_kib("VmRSS")
    start = time.perf_counter()
    outcome = "accepted"
    try:
        services.profile_accept_upload(profile=run, data=body, lease=BENCH_LEASE)
    except Exception as exc:  # noqa: BLE001 - a refusal is an outcome to print
        outcome = f"400 {str(exc)[:90]}"
    accept_seconds = time.perf_counter() - start
    accept_peak = _peak_since(reset=True) - base
    process_seconds, process_peak = 0.0, 0
    if outcome == "accepted":
        gc.collect()
        base = _rss_kib("VmRSS")
        start = time.perf_counter()
        services.profile_process_upload(profile_id=run.pk)
        process_seconds = time.perf_counter() - start
        process_peak = _peak_since(reset=False) - base
        run.refresh_from_db()
        outcome = run.status + (f" ({run.error[:90]})" if run.error else "")
    print(json.dumps({
        "case": case, "gzip": len(body), "json": raw_bytes, "outcome": outcome, "accept_s": accept_seconds,
        "accept_kib": accept_peak, "process_s": process_seconds, "process_kib": process_peak,
    }))


def bench_pathological() -> None:
    heading("5. pathological uploads: outcome, time and peak RSS above baseline (ratio to raw JSON) -- target <= 10x")
    env = {**os.environ, "MEDIA_ROOT": str(_scratch / "media"), "DATABASE_URL": os.environ["DATABASE_URL"]}
    typical_process = None
    for case in PATHOLOGICAL:
        child = subprocess.run(
            [sys.executable, __file__, "--measure-case", case], env=env, capture_output=True, text=True, timeout=600
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        if child.returncode or not lines:
            print(f"  {case}: the measuring process failed ({child.returncode}): {child.stderr[-500:]}")
            continue
        r = json.loads(lines[-1])
        mib = 1024.0
        print(f"  {case}: gzip {r['gzip'] / 1024**2:,.2f} MB, JSON {r['json'] / 1024**2:,.1f} MB -> {r['outcome']}")
        print(
            f"    accept (web): {r['accept_s'] * MS:,.0f} ms, +{r['accept_kib'] / mib:,.0f} MB RSS "
            f"= {r['accept_kib'] * 1024 / r['json']:.2f}x the JSON"
        )
        if r["process_s"]:
            if case == "typical":
                typical_process = r["process_s"]
            ratio = f" = {r['process_s'] / typical_process:.1f}x the typical upload" if typical_process else ""
            print(
                f"    process (worker): {r['process_s'] * MS:,.0f} ms{ratio}, +{r['process_kib'] / mib:,.0f} MB RSS "
                f"= {r['process_kib'] * 1024 / r['json']:.2f}x the JSON"
            )


def _get(client: Client, url: str, params: dict, headers: dict, decode: bool = False):
    response = client.get(url, params, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} -> {response.status_code}: {response.content[:300]!r}")
    return response.json() if decode else response


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=50_000, help="history size of the service")
    parser.add_argument("--repeat", type=int, default=50, help="timed repetitions of the fast figures")
    parser.add_argument("--upload-repeat", type=int, default=5, help="timed repetitions of upload processing")
    parser.add_argument("--only-pathological", action="store_true", help="run only section 5")
    parser.add_argument("--measure-case", help=argparse.SUPPRESS)  # section 5's child process
    args = parser.parse_args()
    if args.measure_case:
        measure_case(args.measure_case)
        return 0

    db = connection.settings_dict
    print(f"database: {connection.vendor} {db['NAME']} @ {db.get('HOST') or 'local file'}; files: {_scratch} (removed at exit)")
    call_command("migrate", verbosity=0)
    tenant, raw_token = fresh_tenant()
    client = Client()
    headers = {"authorization": f"Bearer {raw_token}", "x-tenant-id": TENANT}
    benches = [
        ("upload", lambda: bench_upload_and_storage(tenant, args.upload_repeat)),
        ("compare", lambda: bench_compare(tenant, client, headers, args.repeat)),
        ("history", lambda: bench_history(tenant, client, headers, args.profiles, args.repeat)),
        ("pathological", bench_pathological),
    ]
    for name, bench in benches[-1:] if args.only_pathological else benches:
        try:
            bench()
        except Exception:  # a benchmark reports, it never fails the build
            print(f"  !! the {name} benchmark failed:")
            traceback.print_exc(file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
