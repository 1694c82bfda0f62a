"""No accepted upload lost, with real processes: a platform of this module's own (gunicorn, a prefork
Celery worker, beat) on a redis-server of its own, so the test can kill and stop them freely."""

import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from profiles import services
from profiles.models import Phase, ProfileResult, Status
from tests.conftest import TenantFixture
from tests.profiles.samples import gzip_json, raw_cpu_profile

from .conftest import API, BIN, ROOT, _database_url, _free_port, _stop, wait_until

pytestmark = [pytest.mark.e2e]

LEASE = "e2e-lease"
ATTEMPT_SECONDS = 20
MAX_CHILD_KIB = 200_000



class OwnPlatform:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.redis_port = _free_port()
        self.web_port = _free_port()
        self.redis: subprocess.Popen | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "PROFILING_DATA_DIR": str(settings.DATA_DIR),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "PROFILING_REAPER_PERIOD_SECONDS": "1",
            "PROFILING_PROCESSING_ATTEMPT_SECONDS": str(ATTEMPT_SECONDS),
            "PROFILING_CONTINUOUS_PERIOD_SECONDS": "3600",
            # KiB: above a child's idle size, below what processing the large profile takes.
            "CELERY_WORKER_MAX_MEMORY_PER_CHILD": str(MAX_CHILD_KIB),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "", "--appendonly", "no"],
            stdout=open(self.log_dir / "redis.log", "ab"), stderr=subprocess.STDOUT,
        )
        wait_until(self._redis_answers, 10, "redis-server to start")

    def _redis_answers(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop_redis(self) -> None:
        self.redis.send_signal(signal.SIGTERM)
        self.redis.wait(10)

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self.processes[name]

    def start_worker(self) -> subprocess.Popen:
        return self.start("worker", [
            str(BIN / "celery"), "-A", "profiling_platform", "worker", "--pool", "prefork", "--concurrency", "1",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "-n", f"uploads-{self.redis_port}@%h",
        ])

    def worker_child(self) -> int | None:
        """The prefork pool's live child (one that exited but is not reaped yet does not count)."""
        worker = self.processes["worker"].pid
        try:
            children = Path(f"/proc/{worker}/task/{worker}/children").read_text().split()
            live = [int(pid) for pid in children if "VmRSS:" in Path(f"/proc/{pid}/status").read_text()]
        except OSError:
            return None
        return live[0] if live else None

    def upload(self, run_id, body: bytes, lease: str = LEASE) -> tuple[int, str]:
        tenant = self.tenant
        request = urllib.request.Request(f"{self.url}{API}/agent/runs/{run_id}/upload", data=body, method="POST")
        for key, value in {
            "Authorization": f"Bearer {tenant.agent_raw}", "X-Tenant-ID": tenant.external_id,
            "Content-Type": "application/json", "Content-Encoding": "gzip", "X-Profiling-Lease": lease,
        }.items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.log_dir.glob("*.log")))


@pytest.fixture(scope="module")
def own_platform(django_db_setup, django_db_blocker):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    platform = OwnPlatform(Path(tempfile.mkdtemp(prefix="e2e-uploads-")))
    platform.start_redis()
    platform.start("web", [str(BIN / "gunicorn"), "profiling_platform.wsgi", "--bind", f"127.0.0.1:{platform.web_port}",
                           "--workers", "1", "--threads", "4"])
    platform.start_worker()
    platform.start("beat", [str(BIN / "celery"), "-A", "profiling_platform", "beat", "--loglevel", "INFO",
                            "-s", str(platform.log_dir / "beat-schedule")])

    def web_up() -> bool:
        try:
            with urllib.request.urlopen(platform.url + "/healthz", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(web_up, 60, "the web to start", platform.logs)
    yield platform
    for process in platform.processes.values():
        _stop(process)
    if platform.redis.poll() is None:
        platform.stop_redis()


@pytest.fixture
def platform(own_platform, transactional_db):
    own_platform.tenant = TenantFixture("e2e-uploads")
    return own_platform


def _collecting_run(tenant) -> ProfileResult:
    run = services.profile_start(tenant=tenant.tenant, service="uploads", profile_type="cpu", duration_seconds=60)
    ProfileResult.objects.filter(pk=run.pk).update(
        phase=Phase.COLLECTING, claimed_at=timezone.now(), lease_hash=services.lease_hash(LEASE),
        deadline_at=timezone.now() + timedelta(minutes=5),
    )
    return run


def _large_profile() -> bytes:
    """Valid and within the limits, but seconds of processing: 80,000 distinct stacks 40 deep."""
    import random

    rng = random.Random(5)
    raw = raw_cpu_profile()
    raw["frames"] = [{"function": f"fn_{i}", "file": f"/app/m{i % 50}.py", "line": i} for i in range(5000)]
    raw["samples"] = [
        {"stack": [rng.randrange(5000) for _ in range(40)], "value": 10_000_000, "count": 1, "thread": f"t{n % 8}"}
        for n in range(80_000)
    ]
    raw["sampleCount"] = 80_000
    return gzip_json(raw)


def _row(run) -> ProfileResult:
    return ProfileResult.objects.get(pk=run.pk)


def test_kill_9_of_the_worker_child_mid_processing_and_the_run_still_completes(platform):
    run = _collecting_run(platform.tenant)
    status, body = platform.upload(run.pk, _large_profile())
    assert status == 202, body
    wait_until(lambda: _row(run).processing_attempts >= 1, 60, "processing to start", platform.logs)
    child = platform.worker_child()
    assert child is not None and _row(run).phase == Phase.PROCESSING, "processing ended before the kill"
    os.kill(child, signal.SIGKILL)

    wait_until(lambda: _row(run).status != Status.RUNNING, 120, "the run to end", platform.logs)
    row = _row(run)
    assert row.status == Status.COMPLETED, row.error
    # The killed attempt counts; on a slow machine the sweep may have started one more.
    assert row.processing_attempts >= 2
    assert row.sample_count == 80_000
    wait_until(lambda: platform.worker_child() not in (None, child), 30, "a new worker child", platform.logs)


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


def test_the_memory_of_a_large_profile_goes_back_to_the_system_after_its_task(platform):
    wait_until(lambda: platform.worker_child() is not None, 30, "a worker child", platform.logs)
    before = platform.worker_child()
    assert _rss_kib(before) < MAX_CHILD_KIB
    run = _collecting_run(platform.tenant)
    status, body = platform.upload(run.pk, _large_profile())
    assert status == 202, body
    wait_until(lambda: _row(run).status != Status.RUNNING, 120, "the run to end", platform.logs)
    assert _row(run).status == Status.COMPLETED, _row(run).error
    # The child that grew past CELERY_WORKER_MAX_MEMORY_PER_CHILD was replaced by a fresh one.
    wait_until(lambda: platform.worker_child() not in (None, before), 30, "a fresh worker child", platform.logs)
    assert _rss_kib(platform.worker_child()) < MAX_CHILD_KIB


def test_redis_down_during_an_upload_gets_a_202_and_the_run_completes_once_it_is_back(platform):
    run = _collecting_run(platform.tenant)
    platform.stop_redis()
    try:
        status, body = platform.upload(run.pk, gzip_json(raw_cpu_profile()))
        assert status == 202, body
        row = _row(run)
        assert (row.status, row.phase) == (Status.RUNNING, Phase.PROCESSING)
        assert row.payload.storage.exists(row.payload.name)
    finally:
        platform.start_redis()  # empty: the task that could not be enqueued is nowhere
    wait_until(lambda: _row(run).status != Status.RUNNING, 90, "the run to end", platform.logs)
    row = _row(run)
    assert row.status == Status.COMPLETED, row.error
    assert row.top_functions[0]["function"] == "hot"


def test_an_oversized_upload_is_answered_413_not_a_reset_connection(platform):
    run = _collecting_run(platform.tenant)
    body = os.urandom(settings.PROFILING_MAX_UPLOAD_BYTES + 1024 * 1024)
    status, text = platform.upload(run.pk, body)
    assert status == 413, text
    assert "PROFILING_MAX_UPLOAD_BYTES" in text
    assert _row(run).phase == Phase.COLLECTING
