"""`make run`'s runner (scripts/devserver.py) with the real Procfile: one copy per checkout, a clear
refusal for a second, `stop` ends everything it started, and killing the runner orphans nothing."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from scripts.devserver import group_members

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEVSERVER = ROOT / "scripts" / "devserver.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def checkout_env(tmp_path):
    """A fresh checkout's environment: SQLite and the folder broker in a data folder of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "PORT")}
    env.update(
        PROFILING_DATA_DIR=str(tmp_path / "data"), DJANGO_SETTINGS_MODULE="profiling_platform.settings",
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}", PYTHONUNBUFFERED="1",
    )
    env.pop("PROFILING_TEST_RUN_DIR", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=180)
    return env


def devserver(env, *args, **kwargs):
    return subprocess.run([sys.executable, str(DEVSERVER), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, **kwargs)


def start(env, port: int, log: Path) -> subprocess.Popen:
    runner = subprocess.Popen([sys.executable, str(DEVSERVER), "run", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    poll(lambda: healthy(port) or runner.poll() is not None, 90, "the web answering /healthz")
    assert runner.poll() is None, log.read_text()
    return runner


def recorded_group(env) -> int:
    return int((Path(env["PROFILING_DATA_DIR"]) / "run.pid").read_text().split()[0])


def test_one_copy_stop_and_no_orphans(checkout_env, tmp_path):
    port = free_port()
    runner = start(checkout_env, port, tmp_path / "first.log")
    pgid = recorded_group(checkout_env)
    assert len(group_members(pgid)) >= 4  # web (and its workers), worker, beat, demo

    second = devserver(checkout_env, "run", "--port", str(port))
    assert second.returncode == 1 and "already running from this checkout" in second.stderr
    assert "make stop" in second.stderr and healthy(port)
    other_checkout = {**checkout_env, "PROFILING_DATA_DIR": str(tmp_path / "other")}
    refused = devserver(other_checkout, "check", "--port", str(port))
    assert refused.returncode == 1 and f"Port {port} is already in use" in refused.stderr

    runner.send_signal(signal.SIGKILL)  # the runner dies without a chance to clean up
    runner.wait(10)
    poll(lambda: not group_members(pgid), 60, "every process of the killed runner exiting")

    runner = start(checkout_env, port, tmp_path / "second.log")  # the stale pid file does not block
    pgid = recorded_group(checkout_env)
    stopped = devserver(checkout_env, "stop")
    assert stopped.returncode == 0 and "Stopped the platform" in stopped.stdout
    assert not group_members(pgid) and not healthy(port)
    runner.wait(20)
    assert not (Path(checkout_env["PROFILING_DATA_DIR"]) / "run.pid").exists()
    assert "not running" in devserver(checkout_env, "stop").stdout
