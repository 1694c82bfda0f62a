"""The agent runtime against a fake profiling server speaking the agent protocol (no DB, no Django)."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from profiling_agent import AGENT_VERSION, AgentHandle, start, start_from_env  # noqa: E402
from profiling_agent.client import (  # noqa: E402
    AgentClient,
    AuthError,
    ConflictError,
    PayloadTooLargeError,
    TransientError,
)

PREFIX = "/api/v1/observability/profiling/agent/"
TOKEN = "agt_test_token"
TENANT = "550e8400"
FAST = {"lock_profiler": False, "progress_seconds": 0.05, "request_timeout": 2.0}


class FakeServer:
    """A thread-served stand-in for the agent endpoints, for the faults the real API cannot show.

    It follows agent/PROTOCOL.md: a poll hands out every queued run with a lease; progress,
    upload and fail answer 409 for a wrong lease or a run the server no longer collects
    (`cancel(run_id)`), like the real endpoints (tests/agent/test_contract.py checks those).
    `status[endpoint]` injects a fault: an int for every call, or a list consumed one per call.
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.runs: list[dict] = []
        self.leases: dict[str, str] = {}
        self.cancelled: set[str] = set()
        self.status: dict[str, int | list[int]] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                endpoint = self.path.rsplit("/", 1)[-1]
                run_id = self.path.rsplit("/", 2)[-2] if endpoint != "poll" else None
                record = {
                    "path": self.path,
                    "endpoint": endpoint,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "json": json.loads(body) if body else None,
                }
                with server.lock:
                    server.requests.append(record)
                    status = server._injected(endpoint)
                    runs = []
                    if endpoint == "poll" and not status:
                        runs, server.runs = server.runs, []
                        server.leases.update({run["id"]: run["lease"] for run in runs})
                    elif endpoint != "poll" and not status:
                        lease = record["headers"].get("x-profiling-lease")
                        if server.leases.get(run_id) != lease or run_id in server.cancelled:
                            status = 409
                        elif endpoint in ("upload", "fail"):
                            server.cancelled.add(run_id)  # done: later calls are refused
                if status:
                    return self._send(status, {"detail": f"fake {status}"})
                if endpoint == "poll":
                    return self._send(200, {"runs": runs, "pollAfterSeconds": 0, "serverTime": time.time()})
                return self._send(202 if endpoint == "upload" else 204, None)

            def _send(self, status, payload):
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def _injected(self, endpoint: str) -> int | None:
        status = self.status.get(endpoint)
        if isinstance(status, list):
            return status.pop(0) if status else None
        return status

    def cancel(self, run_id: str) -> None:
        with self.lock:
            self.cancelled.add(run_id)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def of(self, endpoint: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["endpoint"] == endpoint]

    def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.01)
        raise AssertionError(f"timed out; requests seen: {[r['path'] for r in self.requests]}")


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.close()


@pytest.fixture
def agents():
    """Collects started handles and stops them after the test, whatever happens."""
    started: list[AgentHandle] = []
    yield started
    for handle in started:
        handle.stop(timeout=2)


@pytest.fixture
def launch(server, agents):
    """Start an agent of "ai-service" against the fake server (overrides by keyword); stopped after the test."""

    def _launch(*, server_url=None, token=TOKEN, **options) -> AgentHandle:
        options = {"poll_seconds": 0.05, "collector": FakeCollector(), **FAST, **options}
        handle = start("ai-service", server_url or server.url, TENANT, token, **options)
        agents.append(handle)
        return handle

    return _launch


def run_assignment(run_id="run-1", profile_type="cpu", duration=0.2, engine=None, start_in=0.0, grace=60.0):
    start_at = time.time() + start_in
    return {
        "id": run_id,
        "profileType": profile_type,
        "durationSeconds": duration,
        "sampleRate": 100,
        "engine": engine,
        "continuous": False,
        "lease": f"lease-{run_id}",
        "startAt": start_at,
        "deadline": start_at + duration + grace,
    }


def fake_profile(profile_type: str, duration: float) -> dict:
    return {
        "format": "pyprof-raw/1",
        "profileType": profile_type,
        "engine": "thread-sampler",
        "unit": "nanoseconds",
        "startedAt": time.time(),
        "durationSeconds": duration,
        "sampleRate": 100,
        "sampleCount": 2,
        "frames": [
            {"function": "main", "file": "/app/m.py", "line": 1},
            {"function": "fib", "file": "/app/m.py", "line": 5},
        ],
        "samples": [{"stack": [0, 1], "value": 20_000_000, "count": 2, "thread": "MainThread"}],
        "notes": [],
    }


class FakeCollector:
    def __init__(self, error: Exception | None = None):
        self.calls: list[dict] = []
        self.error = error
        self.threads: list[str] = []

    def __call__(
        self,
        profile_type,
        *,
        duration_seconds,
        sample_rate,
        engine=None,
        stop_event=None,
        progress=None,
    ):
        self.calls.append(
            {
                "profile_type": profile_type,
                "duration_seconds": duration_seconds,
                "sample_rate": sample_rate,
                "engine": engine,
            }
        )
        self.threads.append(threading.current_thread().name)
        if self.error is not None:
            raise self.error
        begun = time.monotonic()
        while time.monotonic() - begun < duration_seconds:
            if stop_event is not None and stop_event.wait(0.02):
                break
            if progress is not None:
                progress((time.monotonic() - begun) / duration_seconds)
        return fake_profile(profile_type, round(time.monotonic() - begun, 3))


class CollectorError(Exception):
    """Stands in for profiling_agent.collectors.CollectorError (same name, same `reason`)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def test_polls_with_headers_and_instance(server, launch):
    launch(engines={"cpu": ["py-spy", "yappi"]})
    server.wait_for(lambda: len(server.of("poll")) >= 2)
    poll = server.of("poll")[0]
    assert poll["path"] == PREFIX + "poll"
    assert poll["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert poll["headers"]["x-tenant-id"] == TENANT
    assert poll["headers"]["user-agent"] == f"profiles-agent/{AGENT_VERSION}"
    assert poll["json"]["service"] == "ai-service"
    assert poll["json"]["collecting"] == []
    instance = poll["json"]["instance"]
    assert len(instance["id"]) == 16 and all(p["json"]["instance"]["id"] == instance["id"] for p in server.of("poll"))
    assert instance["pid"] == os.getpid()
    assert instance["host"] == socket.gethostname()
    assert instance["python"] == ".".join(map(str, sys.version_info[:3]))
    assert instance["agentVersion"]
    assert instance["engines"] == {"cpu": ["py-spy", "yappi"]}
    assert any(t.name == "profiles-agent-poller" and t.daemon for t in threading.enumerate())


def test_collects_and_uploads_gzip_json(server, launch):
    collector = FakeCollector()
    server.runs.append(run_assignment("r-42", "block", duration=0.3, engine="thread-sampler"))
    handle = launch(collector=collector)
    server.wait_for(lambda: server.of("upload"))
    upload = server.of("upload")[0]
    assert upload["path"] == PREFIX + "runs/r-42/upload"
    assert upload["headers"]["content-encoding"] == "gzip"
    assert upload["headers"]["content-type"] == "application/json"
    assert upload["headers"]["x-profiling-lease"] == "lease-r-42"
    profile = upload["json"]  # the fake server gunzipped and parsed it
    assert profile["format"] == "pyprof-raw/1" and profile["profileType"] == "block"
    assert profile["samples"][0]["stack"] == [0, 1]
    assert profile["instance"]["pid"] == os.getpid()
    assert set(profile["instance"]) == {"id", "host", "pid", "python", "agentVersion"}
    assert collector.calls == [
        {
            "profile_type": "block",
            "duration_seconds": 0.3,
            "sample_rate": 100,
            "engine": "thread-sampler",
        }
    ]
    assert collector.threads == ["profiles-agent-collector-r-42"]
    progress = server.of("progress")
    assert progress and all(0.0 <= p["json"]["progress"] <= 1.0 for p in progress)
    assert progress[0]["path"] == PREFIX + "runs/r-42/progress"
    assert all(p["headers"]["x-profiling-lease"] == "lease-r-42" for p in progress)
    # while it ran, the polls said what the instance was collecting
    assert any(
        p["json"]["collecting"] == [{"runId": "r-42", "profileType": "block", "engine": "thread-sampler"}]
        for p in server.of("poll")
    )
    assert not server.of("fail")
    server.wait_for(lambda: handle.stats()["runsCompleted"] == 1)


def test_collector_error_becomes_fail_with_reason(server, launch):
    server.runs.append(run_assignment("r-7", "memory"))
    launch(collector=FakeCollector(CollectorError("memray: not installed")))
    server.wait_for(lambda: server.of("fail"))
    fail = server.of("fail")[0]
    assert fail["path"] == PREFIX + "runs/r-7/fail"
    assert fail["headers"]["x-profiling-lease"] == "lease-r-7"
    assert fail["json"] == {"error": "memray: not installed"}
    assert not server.of("upload")
    # the agent carries on polling after the failed run
    polls = len(server.of("poll"))
    server.wait_for(lambda: len(server.of("poll")) > polls + 1)


def test_unexpected_collector_exception_is_reported_not_raised(server, launch):
    server.runs.append(run_assignment("r-8"))
    handle = launch(collector=FakeCollector(RuntimeError("boom")))
    server.wait_for(lambda: server.of("fail"))
    assert server.of("fail")[0]["json"] == {"error": "RuntimeError: boom"}
    assert handle.running


def test_rejected_upload_is_failed_with_the_reason(server, launch):
    server.runs.append(run_assignment("r-big", duration=0.05))
    server.status["upload"] = 413
    launch()
    server.wait_for(lambda: server.of("fail"))
    assert len(server.of("upload")) == 1  # permanent: not retried
    error = server.of("fail")[0]["json"]["error"]
    assert "too large" in error and "413" in error


def test_server_down_backs_off_without_flooding_the_hosts_log(launch, caplog):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level("DEBUG", logger="profiling_agent")
    handle = launch(server_url=f"http://127.0.0.1:{port}", poll_seconds=0.02, backoff_cap=0.32)
    deadline = time.monotonic() + 5
    while handle.stats()["consecutiveFailures"] < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = handle.stats()
    assert stats["consecutiveFailures"] >= 6 and handle.running
    assert "unreachable" in stats["lastError"]
    delays = stats["recentDelaysSeconds"][:5]
    assert delays == sorted(delays) and delays[-1] > 2 * delays[0]  # grows ...
    assert all(d <= 0.32 for d in stats["recentDelaysSeconds"])  # ... up to the cap
    # the host's log gets one warning for the outage, not one per failed poll
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "cannot reach" in r.getMessage()]
    assert len(warnings) == 1


def test_unauthorized_logs_error_and_waits_the_cap(server, launch, caplog):
    server.status["poll"] = 401
    caplog.set_level("ERROR", logger="profiling_agent")
    handle = launch(token="wrong", poll_seconds=0.02, backoff_cap=30)
    server.wait_for(lambda: handle.stats()["consecutiveFailures"] == 1)
    time.sleep(0.2)
    assert len(server.of("poll")) == 1  # no hammering: next poll only after ~the cap
    assert handle.running and handle.stats()["lastDelaySeconds"] >= 27
    assert any("rejected the agent token" in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text and "wrong" not in caplog.text
    started = time.monotonic()
    assert handle.stop(timeout=2) and time.monotonic() - started < 1


def test_stop_joins_quickly_even_mid_collection(server, launch):
    server.runs.append(run_assignment("r-long", duration=30))
    handle = launch()
    server.wait_for(lambda: server.of("progress"))
    started = time.monotonic()
    assert handle.stop(timeout=3) is True
    assert time.monotonic() - started < 1.5
    assert not handle.running
    assert not any(
        t.name.startswith("profiles-agent") and t.is_alive() and t is handle._thread
        for t in threading.enumerate()
    )
    # what was collected before the stop is uploaded, marked as partial
    upload = server.of("upload")[0]["json"]
    assert upload["durationSeconds"] < 5
    assert any("ended early" in note for note in upload["notes"])


def test_progress_conflict_stops_and_drops_the_run(server, launch):
    collector = FakeCollector()
    server.runs.append(run_assignment("r-reaped", duration=30))
    handle = launch(collector=collector)
    server.wait_for(lambda: server.of("progress"))
    server.cancel("r-reaped")  # e.g. the reaper failed it: progress now answers 409
    server.wait_for(lambda: not handle.stats()["activeRuns"])
    assert not server.of("upload") and not server.of("fail")
    assert handle.stats()["runsDropped"] == 1
    polls = len(server.of("poll"))
    server.wait_for(lambda: len(server.of("poll")) > polls)  # back to polling


def test_waits_for_start_at(server, launch):
    collector = FakeCollector()
    run = run_assignment("r-later", duration=0.1, start_in=0.6)
    server.runs.append(run)
    began: list[float] = []

    def timed(*args, **kwargs):
        began.append(time.time())
        return collector(*args, **kwargs)

    launch(collector=timed)
    server.wait_for(lambda: server.of("upload"))
    assert began[0] >= run["startAt"] - 0.05  # the clocks are the same machine's


def test_collects_several_runs_at_once(server, launch):
    inside = threading.Barrier(3, timeout=5)

    def together(profile_type, **kwargs):
        inside.wait()  # breaks (and fails the runs) unless all three collect at the same time
        return fake_profile(profile_type, 0.1)

    for kind in ("cpu", "block", "goroutine"):
        server.runs.append(run_assignment(f"r-{kind}", kind, duration=0.1))
    handle = launch(collector=together)
    server.wait_for(lambda: len(server.of("upload")) == 3)
    assert sorted(u["json"]["profileType"] for u in server.of("upload")) == ["block", "cpu", "goroutine"]
    assert not server.of("fail")
    server.wait_for(lambda: handle.stats()["runsCompleted"] == 3)


def test_a_busy_exclusive_engine_fails_only_its_run(server, launch):
    # Exclusive engines (yappi, memray) refuse a second collection; the agent reports that run's
    # failure with the collector's reason and carries on with the others.
    exclusive = threading.Lock()

    def collector(profile_type, *, engine=None, duration_seconds, stop_event=None, **kwargs):
        if engine == "memray":
            if not exclusive.acquire(blocking=False):
                raise CollectorError("memray is already collecting in this process")
            try:
                stop_event.wait(duration_seconds)
            finally:
                exclusive.release()
        return fake_profile(profile_type, duration_seconds)

    server.runs.extend([
        run_assignment("r-mem", "memory", duration=0.5, engine="memray"),
        run_assignment("r-alloc", "alloc", duration=0.5, engine="memray"),
        run_assignment("r-cpu", "cpu", duration=0.1, engine="py-spy"),
    ])
    launch(collector=collector)
    server.wait_for(lambda: len(server.of("upload")) == 2 and server.of("fail"))
    assert [f["json"]["error"] for f in server.of("fail")] == ["memray is already collecting in this process"]
    uploaded = {u["path"].split("/")[-2] for u in server.of("upload")}
    failed = {f["path"].split("/")[-2] for f in server.of("fail")}
    assert "r-cpu" in uploaded and uploaded - {"r-cpu"} | failed == {"r-mem", "r-alloc"}


def test_upload_outlasts_an_outage(server, launch):
    server.status["upload"] = [503, 503, 503, 503, 503]  # the web is down for five attempts
    server.runs.append(run_assignment("r-out", duration=0.05))
    handle = launch(backoff_base=0.02, backoff_cap=0.1)
    server.wait_for(lambda: handle.stats()["runsCompleted"] == 1)
    assert len(server.of("upload")) == 6 and not server.of("fail")


def test_upload_gives_up_at_the_runs_deadline(server, launch):
    server.status["upload"] = 503  # never comes back
    server.runs.append(run_assignment("r-lost", duration=0.05, grace=0.6))
    handle = launch(backoff_base=0.02, backoff_cap=0.1)
    server.wait_for(lambda: handle.stats()["runsFailed"] == 1 and not handle.stats()["activeRuns"])
    assert len(server.of("upload")) >= 2  # retried, then given up: its thread is gone
    assert handle.running and not any(t.name == "profiles-agent-collector-r-lost" for t in threading.enumerate())


def test_start_from_env(server, agents, caplog):
    caplog.set_level("INFO", logger="profiling_agent")
    assert start_from_env({"PROFILING_SERVER_URL": server.url}) is None
    assert "PROFILING_TOKEN" in caplog.text and "not started" in caplog.text
    assert start_from_env({}) is None
    env = {
        "PROFILING_SERVER_URL": server.url,
        "PROFILING_TENANT_ID": TENANT,
        "PROFILING_TOKEN": TOKEN,
        "PROFILING_SERVICE": "env-svc",
        "PROFILING_POLL_SECONDS": "0.05",
    }
    handle = start_from_env(env, collector=FakeCollector(), **FAST)
    assert handle is not None
    agents.append(handle)
    assert handle.config.poll_seconds == 0.05
    server.wait_for(lambda: server.of("poll"))
    assert server.of("poll")[0]["json"]["service"] == "env-svc"
    assert start_from_env({**env, "PROFILING_SERVER_URL": "ftp://nope"}) is None


def test_client_classifies_errors(server):
    client = AgentClient(server.url, TENANT, TOKEN, timeout=2)
    for status, error in [
        (401, AuthError),
        (403, AuthError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (503, TransientError),
        (429, TransientError),
    ]:
        server.status["upload"] = status
        with pytest.raises(error) as info:
            client.upload("r", "lease-r", {"format": "pyprof-raw/1"})
        assert info.value.status == status
    server.status.clear()
    server.leases["r"] = "lease-r"
    with pytest.raises(ConflictError):
        client.upload("r", "someone-elses-lease", {"format": "pyprof-raw/1"})
    client.upload("r", "lease-r", {"format": "pyprof-raw/1"})
    assert server.of("upload")[-1]["json"] == {"format": "pyprof-raw/1"}


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for name in list(env):
        if name.startswith("PROFILING_"):
            del env[name]
    return env


def test_a_forked_child_polls_only_when_it_starts_an_agent(server, tmp_path):
    script = tmp_path / "forker.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, sys, time
        from profiling_agent import start
        args = ("forky", {server.url!r}, "t", "tok")
        options = dict(poll_seconds=0.05, lock_profiler=False, collector=lambda *a, **k: {{}})
        handle = start(*args, **options)
        time.sleep(0.2)
        pid = os.fork()
        if pid == 0:
            quiet = not handle.running  # the parent's poller is not copied into the child
            time.sleep(0.3)
            own = start(*args, **options)  # what a post_fork / worker_process_init hook does
            time.sleep(0.3)
            ok = quiet and own.running and own.pid == os.getpid() and own.instance_id != handle.instance_id
            own.stop(timeout=2)
            os._exit(0 if ok else 5)
        print(os.getpid(), pid, handle.instance_id, flush=True)
        _, status = os.waitpid(pid, 0)
        time.sleep(0.2)
        assert handle.running and handle.pid == os.getpid()
        handle.stop(timeout=2)
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=_python_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    parent_pid, child_pid, parent_instance = proc.stdout.split()
    polls = [r["json"]["instance"] for r in server.of("poll")]
    child_polls = [p for p in polls if p["pid"] == int(child_pid)]
    assert child_polls and all(p["id"] != parent_instance for p in child_polls)
    # the parent kept polling after the fork, alongside the child
    first_child_poll = polls.index(child_polls[0])
    assert any(p["pid"] == int(parent_pid) for p in polls[first_child_poll:])


SIGTERM_SCRIPT = """
import signal, sys, time
from profiling_agent import start
if "--host-handler" in sys.argv:
    def host_handler(signum, frame):
        print("host handler ran", flush=True)
        sys.exit(7)
    signal.signal(signal.SIGTERM, host_handler)
start("term", {url!r}, "t", "tok", poll_seconds=0.05, lock_profiler=False, progress_seconds=0.05,
      collector=__import__("test_runtime").FakeCollector())
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.mark.parametrize("host_handler", [False, True])
def test_sigterm_uploads_the_window_then_chains_the_hosts_handling(server, tmp_path, host_handler):
    import signal

    script = tmp_path / "term.py"
    script.write_text(SIGTERM_SCRIPT.format(url=server.url))
    server.runs.append(run_assignment("r-term", duration=60))
    env = _python_env()
    env["PYTHONPATH"] += os.pathsep + str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, str(script), *(["--host-handler"] if host_handler else [])],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        server.wait_for(lambda: server.of("progress"), timeout=10)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    upload = server.of("upload")[0]["json"]
    assert any("ended early" in note for note in upload["notes"])
    if host_handler:
        assert (proc.returncode, out.splitlines()[-1]) == (7, "host handler ran")
    else:
        assert proc.returncode == -signal.SIGTERM


RUN_SCRIPT = """
import sys
import time
time.sleep(0.3)  # long enough for the agent to poll once
print("to stdout", sys.argv[1:])
print("to stderr", file=sys.stderr)
print("main is", __name__, "path0", sys.path[0] == {dir!r}, "argv0", sys.argv[0])
sys.exit(3)
"""


def test_run_wrapper_preserves_exit_code_and_streams(server, tmp_path):
    script = tmp_path / "app.py"
    script.write_text(RUN_SCRIPT.format(dir=str(tmp_path)))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "profiling_agent",
            "run",
            "--server",
            server.url,
            "--tenant",
            TENANT,
            "--token",
            TOKEN,
            "--service",
            "wrapped",
            "--poll-seconds",
            "0.05",
            "--",
            str(script),
            "--flag",
            "x",
        ],
        env=_python_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 3
    assert proc.stderr == "to stderr\n"
    assert proc.stdout == (
        f"to stdout ['--flag', 'x']\nmain is __main__ path0 True argv0 {script}\n"
    )
    assert server.of("poll")[0]["json"]["service"] == "wrapped"


def test_run_wrapper_module_and_uncaught_exception(server, tmp_path):
    package = tmp_path / "pkgdemo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text(
        textwrap.dedent("""
        import sys
        import time
        time.sleep(0.3)
        print("module", __name__, sys.argv[1:])
        if "--crash" in sys.argv:
            raise ValueError("kaboom")
    """)
    )
    env = {
        **_python_env(),
        "PROFILING_SERVER_URL": server.url,
        "PROFILING_TENANT_ID": TENANT,
        "PROFILING_TOKEN": TOKEN,
        "PROFILING_SERVICE": "mod",
        "PROFILING_POLL_SECONDS": "0.05",
    }
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    command = [sys.executable, "-m", "profiling_agent", "run", "--", "-m", "pkgdemo.cli", "a"]
    ok = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=20)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "module __main__ ['a']\n", "")
    crash = subprocess.run(
        command + ["--crash"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=20
    )
    assert crash.returncode == 1
    assert crash.stderr.startswith("Traceback (most recent call last):")
    assert crash.stderr.rstrip().endswith("ValueError: kaboom")
    assert "runpy" not in crash.stderr and "agent/profiling_agent" not in crash.stderr
    assert server.of("poll") and server.of("poll")[0]["json"]["service"] == "mod"


def test_help():
    proc = subprocess.run(
        [sys.executable, "-m", "profiling_agent", "--help"],
        env=_python_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0 and "run" in proc.stdout and "PROFILING_" in proc.stdout
