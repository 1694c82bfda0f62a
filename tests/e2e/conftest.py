"""Real processes: gunicorn serving the platform, a Celery worker and beat, agents wrapping programs.

They share the test database (pytest-django's, committed data via `transactional_db`), the
broker (Redis in CI) and the media folder with the test process.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKLOAD = ROOT / "tests" / "e2e" / "programs" / "workload.py"
API = "/api/v1/observability/profiling"
CONTINUOUS_PERIOD_SECONDS = 4


def wait_until(predicate, timeout: float, what: str, logs=lambda: "") -> None:
    """Poll `predicate` until it holds, failing after `timeout` s with `what` (and `logs()`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class Platform:
    def __init__(self, url: str, env: dict, log_dir: Path):
        self.url = url
        self.env = env
        self.log_dir = log_dir
        self.agents: list[subprocess.Popen] = []

    def request(self, method: str, path: str, token: str, tenant: str, body=None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("X-Tenant-ID", tenant)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raw = exc.read() or b"{}"
            try:
                return exc.code, json.loads(raw)
            except ValueError:  # a server error's HTML page: shown, not a decoding error
                return exc.code, {"detail": raw.decode("utf-8", "replace")[:2000]}

    def start_agent(self, tenant, service: str, mode: str, seconds: float = 120, url: str | None = None) -> subprocess.Popen:
        """`python -m profiling_agent run -- workload.py MODE`: an unmodified program, wrapped."""
        log = open(self.log_dir / f"agent-{service}-{len(self.agents)}.log", "wb")
        process = subprocess.Popen(
            [
                sys.executable, "-m", "profiling_agent", "run", "--server", url or self.url,
                "--tenant", tenant.external_id, "--token", tenant.agent_raw, "--service", service,
                "--", str(WORKLOAD), mode, str(seconds),
            ],
            cwd=ROOT, env={**self.env, "PROFILING_POLL_SECONDS": "0.5"}, stdout=log, stderr=subprocess.STDOUT,
        )
        self.agents.append(process)
        return process

    def start_process(self, name: str, command: list[str], **env) -> subprocess.Popen:
        """Another platform process (e.g. a second worker), stopped after the test."""
        log = open(self.log_dir / f"{name}-{len(self.agents)}.log", "wb")
        process = subprocess.Popen(command, cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT)
        self.agents.append(process)
        return process

    def wait_for(self, tenant, profile_id: str, predicate, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        body = {}
        while time.monotonic() < deadline:
            _, body = self.request("GET", f"{API}/{profile_id}", tenant.api_raw, tenant.external_id)
            if predicate(body):
                return body
            time.sleep(0.3)
        raise AssertionError(f"profile {profile_id} did not get there in {timeout} s; last: {body}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.log_dir.glob("*.log")))


@pytest.fixture(scope="package")
def platform(django_db_setup, django_db_blocker):
    """Package-scoped: beat must not go on dispatching into the database of later tests."""
    log_dir = Path(tempfile.mkdtemp(prefix="e2e-logs-"))
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PROFILING_DATA_DIR": str(settings.DATA_DIR),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PROFILING_CLAIM_TIMEOUT_SECONDS": "5",
        "PROFILING_UPLOAD_GRACE_SECONDS": "15",
        "PROFILING_REAPER_PERIOD_SECONDS": "1",
        "PROFILING_POLL_SECONDS": "1",
        "PROFILING_CONTINUOUS_PERIOD_SECONDS": str(CONTINUOUS_PERIOD_SECONDS),
        "PROFILING_CONTINUOUS_WINDOW_SECONDS": str(CONTINUOUS_PERIOD_SECONDS),  # back to back
        "PROFILING_ALERT_CHECK_SECONDS": "1",
        "PROFILING_WEBHOOK_ALLOW_PRIVATE": "true",
        "PROFILING_WEBHOOK_RETRY_SECONDS": "0.5",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    commands = {
        "web": [str(BIN / "gunicorn"), "profiling_platform.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4"],
        "worker": [str(BIN / "celery"), "-A", "profiling_platform", "worker", "--pool", "solo", "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
        "beat": [str(BIN / "celery"), "-A", "profiling_platform", "beat", "--loglevel", "INFO", "-s", str(log_dir / "beat-schedule")],
    }
    processes = {
        name: subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log_dir / f"{name}.log", "wb"), stderr=subprocess.STDOUT)
        for name, cmd in commands.items()
    }
    platform = Platform(f"http://127.0.0.1:{port}", env, log_dir)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(platform.url + "/healthz", timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes.values()):
            for p in processes.values():
                _stop(p)
            raise RuntimeError(f"the platform did not start:\n{platform.logs()}")
        time.sleep(0.3)
    yield platform
    for process in [*platform.agents, *processes.values()]:
        _stop(process)


def _flush_wins_deadlocks() -> None:
    """The test database is flushed (TRUNCATE) after each test while the worker and beat go on
    running tasks: a task's transaction and the TRUNCATE can lock each other's tables. PostgreSQL
    aborts the session that checks first (after its deadlock_timeout): let that be the task's,
    which the worker logs and gets past, not the flush, which would fail the test's teardown."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET deadlock_timeout = '60s'")


@pytest.fixture
def e2e(platform, transactional_db):
    yield platform
    for agent in platform.agents:
        _stop(agent)
    platform.agents.clear()
    _flush_wins_deadlocks()
