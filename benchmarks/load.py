"""Load benchmark: 20 real agents and 500 runs started at 20/s through the API. Prints, never fails.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_load CELERY_BROKER_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python benchmarks/load.py

PostgreSQL and Redis are required (the defaults are the two above). The benchmark migrates that
database, deletes and recreates its own tenant's rows, and starts its own platform: gunicorn
with 2 workers (4 threads each, as in the Procfile), one Celery worker (2 processes) and beat
(the reaper). The agents are 20 processes, each calling `profiling_agent.start()` for one of a
few services (so several agents share a service and compete for its runs) and
`AgentHandle.stop()` on SIGTERM.

Latency percentiles depend on what else the machine runs; the CPU seconds per part do not, so
they come with every run: web, worker, beat, the agents, PostgreSQL's backends of the benchmark's
database (those alive at the end), Redis (with whatever else it serves) and this client, then
what the whole machine spent outside them. `--timeline` shows them per 5 s beside the GETs' p99.

Figures: runs started / completed / failed / never terminal / lost (accepted, then gone), and
p50/p95/p99 of the start POST and of the status GETs that follow every run to its end (targets:
100% terminal, 0 lost, GET p99 < 100 ms). Baseline, in the same run: GET /healthz on the idle
platform (one database query and a broker connection, no auth). Then, for the GET: queries per request
and body bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
API = "/api/v1/observability/profiling"
TENANT = "bench-load"
TERMINAL = {"completed", "failed"}
TIMELINE_SECONDS = 5.0

AGENT_PROGRAM = """
import signal, sys, threading
from profiling_agent import start
handle = start(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], poll_seconds=float(sys.argv[5]))
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait()
handle.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def ms(values: list[float]) -> str:
    return " / ".join(f"{percentile(values, p) * 1000:.1f}" for p in (50, 95, 99)) + " ms"


class Client:
    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, float, int]:
        """(status, json, seconds, body bytes)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("X-Tenant-ID", TENANT)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        except OSError as exc:
            return 0, {"detail": str(exc)}, time.perf_counter() - began, 0
        elapsed = time.perf_counter() - began
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = {}
        return status, payload, elapsed, len(raw)


def _create_database_if_missing() -> None:
    """A new machine has no benchmark database: PostgreSQL's is created (SQLite makes its own)."""
    from django.db import OperationalError, connection

    if connection.vendor != "postgresql":
        return
    try:
        connection.ensure_connection()
        return
    except OperationalError:
        pass
    import psycopg
    from psycopg import sql

    params = connection.get_connection_params()
    server = {key: params[key] for key in ("host", "port", "user", "password") if params.get(key)}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(params["dbname"])))
    print(f"created the database {params['dbname']}", file=sys.stderr)


def setup_database() -> tuple[str, str]:
    """Migrate, recreate the benchmark tenant; returns its (api, agent) raw tokens."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "profiling_platform.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from tenants.models import Tenant, TokenScope
    from tenants.services import tenant_get_or_create, token_create

    _create_database_if_missing()
    call_command("migrate", verbosity=0)
    Tenant.objects.filter(external_id=TENANT).delete()
    tenant, _ = tenant_get_or_create(external_id=TENANT, name="Load benchmark")
    _, api = token_create(tenant=tenant, scope=TokenScope.API, name="bench")
    _, agent = token_create(tenant=tenant, scope=TokenScope.AGENT, name="bench")
    return api, agent


def queries_per_get(profile_id: str, api_token: str) -> tuple[int, int]:
    """The queries one status GET runs, in-process through the whole stack, and its body size."""
    from django.db import connection
    from django.test import Client as DjangoClient
    from django.test.utils import CaptureQueriesContext

    client = DjangoClient(HTTP_AUTHORIZATION=f"Bearer {api_token}", HTTP_X_TENANT_ID=TENANT)
    client.get(f"{API}/{profile_id}")  # warm
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"{API}/{profile_id}")
    return len(queries), len(response.content)


def start_platform(env: dict, port: int, logs: Path, threads: int = 4,
                   worker_nice: int = 0) -> list[subprocess.Popen]:
    commands = {
        "web": [str(BIN / "gunicorn"), "profiling_platform.wsgi", "--bind", f"127.0.0.1:{port}",
                "--workers", "2", "--threads", str(threads), "--timeout", "60",
                "--access-logfile", str(logs / "access.log"), "--access-logformat", "%(m)s %(U)s %(s)s %(D)s"],
        "worker": [str(BIN / "celery"), "-A", "profiling_platform", "worker", "--concurrency", "2",
                   "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
        "beat": [str(BIN / "celery"), "-A", "profiling_platform", "beat", "--loglevel", "WARNING",
                 "-s", str(logs / "beat-schedule")],
    }
    niceness = {"worker": worker_nice}
    return [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(logs / f"{name}.log", "wb"),
                         stderr=subprocess.STDOUT, **own_session(niceness.get(name, 0)))
        for name, command in commands.items()
    ]


def own_session(niceness: int) -> dict:
    """Popen arguments: the child in a session of its own, niced (``lower_priority``) if asked."""
    if niceness:
        return {"preexec_fn": lambda: lower_priority(niceness)}
    return {"start_new_session": True}


def wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the platform did not answer /healthz within {timeout} s")


def wait_for_agents(count: int, timeout: float = 20) -> None:
    """Until every agent has polled once (each poll records its instance)."""
    from profiles.models import AgentInstance

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if AgentInstance.objects.filter(tenant__external_id=TENANT).count() >= count:
            return
        time.sleep(0.2)
    print(f"note: not all {count} agents had polled after {timeout} s; starting the load anyway")


def healthz_baseline(url: str, n: int = 200) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            response.read()
        out.append(time.perf_counter() - began)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="20 agents, 500 runs at 20/s")
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--services", type=int, default=5, help="agents are spread over this many services")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20.0, help="runs started per second")
    parser.add_argument("--types", default="block,goroutine,mutex,cpu")
    parser.add_argument("--duration", type=int, default=1, help="durationSeconds of each run")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds between a run's status GETs")
    parser.add_argument("--timeout", type=float, default=240, help="seconds after the last start to wait")
    parser.add_argument("--timeline", action="store_true",
                        help="also print, per 5 s of the load, the status GETs' p99 and the cores each part used")
    parser.add_argument("--web-threads", type=int, default=4,
                        help="threads per gunicorn worker (the Procfile's 4); 1 is gunicorn's sync worker")
    parser.add_argument("--agent-nice", type=int, default=0,
                        help="niceness of the agent processes: 19 stands in for agents on hosts of "
                             "their own (here they share the platform's cores); with the kernel's "
                             "autogroup scheduling it is the niceness of their own session's group")
    parser.add_argument("--worker-nice", type=int, default=0,
                        help="niceness of the Celery worker (and its session's group): the web answers "
                             "people and agents, the worker's processing can wait")
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_load")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/13")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    scratch = Path(tempfile.mkdtemp(prefix="bench-load-"))
    os.environ["PROFILING_DATA_DIR"] = str(scratch / "data")
    api_token, agent_token = setup_database()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROFILING_REAPER_PERIOD_SECONDS": "2"}
    processes = start_platform(env, port, scratch, args.web_threads, args.worker_nice)
    agents: list[subprocess.Popen] = []
    try:
        wait_healthy(url)
        baseline = healthz_baseline(url)
        services = [f"load-svc-{i}" for i in range(args.services)]
        for i in range(args.agents):
            agents.append(subprocess.Popen(
                [sys.executable, "-c", AGENT_PROGRAM, services[i % len(services)], url, TENANT, agent_token, "0.5"],
                cwd=ROOT, env=env, stdout=open(scratch / f"agent-{i}.log", "wb"), stderr=subprocess.STDOUT,
                preexec_fn=(lambda: lower_priority(args.agent_nice)) if args.agent_nice else None,
            ))
        wait_for_agents(args.agents)
        groups = {name: process.pid for name, process in zip(("web", "worker", "beat"), processes, strict=True)}
        agent_pids = {process.pid for process in agents}
        database = env["DATABASE_URL"].rsplit("/", 1)[-1]
        before, machine_before = cpu_by_part(groups, agent_pids, database), machine_busy_seconds()
        requests_before, began = requests_served(scratch), time.monotonic()
        samples, sampling = [], threading.Event()
        sampler = threading.Thread(target=sample_cpu, args=(samples, sampling, groups, agent_pids, database), daemon=True)
        if args.timeline:
            sampler.start()
        gets = run_load(args, Client(url, api_token), services, baseline, api_token, scratch)
        elapsed, requests = time.monotonic() - began, requests_served(scratch) - requests_before
        sampling.set()
        after, machine = cpu_by_part(groups, agent_pids, database), machine_busy_seconds() - machine_before
        spent = {part: after[part] - before.get(part, 0.0) for part in after}
        print(f"CPU seconds during the load ({elapsed:.0f} s; {os.cpu_count()} cores have "
              f"{elapsed * os.cpu_count():.0f}): " + ", ".join(f"{part} {seconds:.1f}" for part, seconds in spent.items()))
        print(f"  web: {requests} requests, {spent['web'] / max(requests, 1) * 1000:.1f} ms CPU each; the whole "
              f"machine was busy {machine:.1f} CPU-s, of which {machine - sum(spent.values()):.1f} outside this "
              f"benchmark (other programs, the kernel); load average {os.getloadavg()[0]:.1f}")
        print_requests_by_kind(scratch)
        if args.timeline:
            sampler.join()
            print_timeline(began, gets, samples)
    finally:
        for process in agents:
            process.send_signal(signal.SIGTERM)
        for process in agents:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(scratch, ignore_errors=True)


def lower_priority(niceness: int) -> None:
    """In a child (an agent, or the worker) before exec: its own session, and that session's scheduling group niced.

    With autogroup scheduling (the kernel default on desktops and many VMs) the CPU is shared
    between sessions first, so a process's own niceness only ranks it within its session; the
    platform's parts run in sessions of their own, so only the group's niceness ranks the agents
    below them."""
    os.setsid()
    os.nice(niceness)
    try:
        with open("/proc/self/autogroup", "w") as handle:
            handle.write(str(niceness))
    except OSError:
        pass  # no autogroup: the process's niceness is what counts


def cpu_by_part(groups: dict[str, int], agent_pids: set[int], database: str) -> dict[str, float]:
    """CPU seconds (user + system) so far of each platform part's process group (gunicorn's and
    Celery's children included), of the agents, of PostgreSQL's backends serving `database`, of
    Redis (all its clients: it may serve others too) and of this client, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    by_group = {pgid: name for name, pgid in groups.items()}
    out = dict.fromkeys([*groups, "agents", "postgres", "redis"], 0.0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        part = "agents" if int(entry) in agent_pids else by_group.get(int(fields[2]))  # pgrp
        if part is None and command.startswith("postgres: ") and f" {database} " in command:
            part = "postgres"
        elif part is None and command.startswith("redis-server"):
            part = "redis"
        if part:
            out[part] += seconds
    usage = os.times()
    out["client"] = usage.user + usage.system
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores have been busy since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as handle:
        ticks = [int(value) for value in handle.readline().split()[1:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def sample_cpu(samples: list, stop: threading.Event, groups: dict[str, int], agent_pids: set[int],
               database: str) -> None:
    """Every TIMELINE_SECONDS until `stop`: (monotonic time, CPU seconds so far by part and of the machine)."""
    while True:
        samples.append((time.monotonic(), {**cpu_by_part(groups, agent_pids, database), "machine": machine_busy_seconds()}))
        if stop.wait(TIMELINE_SECONDS):
            return


def print_timeline(began: float, gets: list[tuple[float, float]], samples: list) -> None:
    """Latency next to who had the CPU: the GETs' p99 per interval and the cores each part used in it."""
    print(f"timeline (per {TIMELINE_SECONDS:g} s: status GETs, their p99, cores used by part):")
    for (start, before), (end, after) in pairwise(samples):
        window = sorted(seconds for ended, seconds in gets if start <= ended < end)
        p99 = f"{percentile(window, 99) * 1000:7.1f} ms" if window else "      - ms"
        cores = ", ".join(f"{part} {(after[part] - before[part]) / (end - start):.2f}" for part in after)
        print(f"  {start - began:5.1f}-{end - began:5.1f} s: {len(window):4d} GETs, p99 {p99}; {cores}")


def requests_served(logs: Path) -> int:
    """Requests gunicorn has answered so far (one access-log line each)."""
    with open(logs / "access.log", "rb") as handle:
        return sum(1 for _ in handle)


def server_seconds(logs: Path) -> list[float]:
    """Gunicorn's own time for each status GET (access log `%(D)s`, microseconds)."""
    out = []
    for line in (logs / "access.log").read_text().splitlines():
        method, path, status, micros = line.split()
        if request_kind(method, path) == "GET status" and status == "200":
            out.append(int(micros) / 1e6)
    return out


def request_kind(method: str, path: str) -> str:
    """The API operation an access-log line is, by its path's shape."""
    parts = path.rstrip("/").split("/")
    if path.startswith(API + "/agent/"):
        return f"agent {parts[-1]}"  # poll, progress, upload, fail
    if path.startswith(API + "/"):
        return f"{method} {'status' if len(parts[-1]) == 36 else parts[-1]}"
    return f"{method} {path}"


def print_requests_by_kind(logs: Path) -> None:
    """Every request the load caused, by kind: how many and gunicorn's time for them (not CPU)."""
    kinds: dict[str, list[float]] = {}
    for line in (logs / "access.log").read_text().splitlines():
        method, path, _status, micros = line.split()
        kinds.setdefault(request_kind(method, path), []).append(int(micros) / 1e6)
    print("requests by kind (count, gunicorn time p50 / p99, total):")
    for kind, seconds in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {kind:<22} {len(seconds):5d}  {percentile(seconds, 50) * 1000:6.1f} / "
              f"{percentile(seconds, 99) * 1000:6.1f} ms  {sum(seconds):6.1f} s")


def run_load(args, client: Client, services: list[str], baseline: list[float], api_token: str,
             scratch_logs: Path) -> list[tuple[float, float]]:
    """Runs the load and prints its figures; returns every status GET as (monotonic end, seconds)."""
    types = args.types.split(",")
    lock = threading.Lock()
    start_seconds: list[float] = []
    get_seconds: list[float] = []
    get_ends: list[float] = []
    get_bytes: list[int] = []
    rejected: list[str] = []
    runs: dict[str, dict] = {}  # id -> {"next": when to poll, "status": ..., "lost": bool}

    def start_one(i: int) -> None:
        body = {"service": services[i % len(services)], "profileType": types[i % len(types)],
                "durationSeconds": args.duration, "sampleRate": 100}
        status, payload, seconds, _ = client.call("POST", f"{API}/start", body)
        with lock:
            start_seconds.append(seconds)
            if status == 202 and "id" in payload:
                runs[payload["id"]] = {"next": time.monotonic() + args.duration, "status": "running", "lost": False}
            else:
                rejected.append(f"{status} {payload.get('detail', payload)}")

    stop_polling = threading.Event()

    def poller() -> None:
        while not stop_polling.is_set():
            now = time.monotonic()
            with lock:
                due = next((rid for rid, run in runs.items()
                            if run["status"] not in TERMINAL and not run["lost"] and run["next"] <= now), None)
                if due:
                    runs[due]["next"] = now + 3600  # claimed by this poller
            if due is None:
                stop_polling.wait(0.02)
                continue
            status, payload, seconds, size = client.call("GET", f"{API}/{due}")
            with lock:
                get_seconds.append(seconds)
                get_ends.append(time.monotonic())
                get_bytes.append(size)
                run = runs[due]
                if status == 404:
                    run["lost"] = True
                elif status == 200:
                    run["status"] = payload.get("status", "running")
                run["next"] = time.monotonic() + args.poll_interval

    pollers = [threading.Thread(target=poller, daemon=True) for _ in range(8)]
    for thread in pollers:
        thread.start()
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for i in range(args.runs):
            delay = began + i / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the schedule: run i starts at i / rate seconds
            pool.submit(start_one, i)
    started_for = time.monotonic() - began
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        with lock:
            if all(run["status"] in TERMINAL or run["lost"] for run in runs.values()):
                break
        time.sleep(0.2)
    stop_polling.set()
    for thread in pollers:
        thread.join(5)
    elapsed = time.monotonic() - began

    with lock:
        statuses = [run["status"] for run in runs.values() if not run["lost"]]
        lost = sum(run["lost"] for run in runs.values())
    completed, failed = statuses.count("completed"), statuses.count("failed")
    never = len(statuses) - completed - failed
    where = f"agents at nice {args.agent_nice}" if args.agent_nice else "agents sharing the platform's cores"
    if args.worker_nice:
        where += f", worker at nice {args.worker_nice}"
    print(f"({where}; {os.cpu_count()} cores; gunicorn 2 workers x {args.web_threads} threads)")
    print(f"load: {args.agents} agents over {len(services)} services, {args.runs} runs of {args.types} "
          f"({args.duration} s each) requested at {args.rate:g}/s; all requested in {started_for:.1f} s, "
          f"everything settled in {elapsed:.1f} s")
    print(f"runs: started {len(runs)} (rejected {len(rejected)}), completed {completed}, failed {failed}, "
          f"never terminal {never}, lost {lost}; terminal {100 * (completed + failed) / max(len(runs), 1):.1f}%")
    if rejected:
        print(f"  first rejections: {rejected[:3]}")
    if failed:
        from profiles.models import ProfileResult

        reasons = ProfileResult.objects.filter(tenant__external_id=TENANT, status="failed").values_list("error", flat=True)
        counts: dict[str, int] = {}
        for reason in reasons:
            counts[reason[:120]] = counts.get(reason[:120], 0) + 1
        print(f"  failure reasons: {sorted(counts.items(), key=lambda kv: -kv[1])[:5]}")
    base = statistics.median(baseline)
    print(f"baseline GET /healthz on the idle platform: p50 {base * 1000:.1f} ms")
    print(f"start POST p50/p95/p99: {ms(start_seconds)} ({percentile(start_seconds, 99) / base:.1f}x baseline at p99)")
    print(f"status GET p50/p95/p99: {ms(get_seconds)} over {len(get_seconds)} GETs "
          f"({percentile(get_seconds, 99) / base:.1f}x baseline at p99; target p99 < 100 ms)")
    served = server_seconds(scratch_logs)
    if served:
        print(f"  the same GETs inside gunicorn (request read to response written, no accept queue): "
              f"{ms(served)}; the rest is waiting for a worker thread and the CPU")
    done = next((rid for rid, run in runs.items() if run["status"] == "completed"), None)
    if done:
        queries, size = queries_per_get(done, api_token)
        print(f"one status GET of a completed run: {queries} queries, {size} body bytes "
              f"(GET bodies under load: median {statistics.median(get_bytes):.0f} bytes)")
    return list(zip(get_ends, get_seconds, strict=True))


if __name__ == "__main__":
    main()
