"""The in-process agent: a daemon thread that polls the profiling server, collects, and uploads.

Guarantees the host program can rely on:
- Nothing raises into the host once `start()` returned: every failure is caught and logged on the
  "profiling_agent" logger (which has only a NullHandler unless the host configures logging).
- One run at a time per process; at most one profile is held in memory; HTTP answers are capped.
- The server being down or failing (5xx, 429) means exponential backoff with jitter, capped at
  `backoff_cap` (60 s); a rejected token (401/403) means an error log and waiting the full cap.
- At interpreter exit (atexit) and on `handle.stop()`, a running collection is asked to stop and
  what it collected so far is uploaded within the stop timeout.
- After `os.fork()` the child gets a fresh agent thread of its own (own pid, new locks, no
  inherited run); the parent's agent carries on untouched.

Thread names are stable so collectors can leave the agent out of profiles:
"profiles-agent-poller" and "profiles-agent-collector".
"""

from __future__ import annotations

import _thread
import atexit
import logging
import math
import os
import platform
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .client import (
    AGENT_VERSION,
    AgentClient,
    AgentError,
    AuthError,
    ConflictError,
    MalformedRunError,
    NotFoundError,
    PayloadTooLargeError,
    PermanentError,
    RunAssignment,
    TransientError,
    encode_profile,
)

log = logging.getLogger("profiling_agent")
log.addHandler(logging.NullHandler())

POLLER_THREAD_NAME = "profiles-agent-poller"
COLLECTOR_THREAD_NAME = "profiles-agent-collector"

MIN_POLL_SECONDS = 0.01
MAX_SERVER_POLL_HINT_SECONDS = 300.0
# Repeated failures are logged at WARNING/ERROR once, then at most this often (DEBUG in between).
FAILURE_LOG_INTERVAL_SECONDS = 300.0
# A collector still running this long after its window (plus grace) is told to stop; if it then
# ignores the stop event for HARD_STOP_SECONDS more, its run is failed and the thread abandoned.
COLLECT_GRACE_SECONDS = 30.0
HARD_STOP_SECONDS = 10.0

CollectFn = Callable[..., dict]


@dataclass(frozen=True)
class AgentConfig:
    service: str
    server_url: str
    tenant_id: str
    poll_seconds: float = 5.0
    progress_seconds: float = 2.0
    backoff_base: float = 5.0
    backoff_cap: float = 60.0
    request_timeout: float = 10.0
    upload_timeout: float = 60.0
    upload_attempts: int = 3
    exit_timeout: float = 5.0
    restart_on_fork: bool = True


# ---------------------------------------------------------------------------------------------
# Process-wide registry: atexit and fork hooks act on every running handle of this process.

_registry_lock = _thread.allocate_lock()
_active: set[AgentHandle] = set()
_hooks_installed = False


def _install_process_hooks() -> None:
    global _hooks_installed
    with _registry_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
    atexit.register(_stop_all_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _register(handle: AgentHandle) -> None:
    with _registry_lock:
        _active.add(handle)


def _unregister(handle: AgentHandle) -> None:
    with _registry_lock:
        _active.discard(handle)


def _running_handles() -> list[AgentHandle]:
    with _registry_lock:
        return list(_active)


def _stop_all_at_exit() -> None:
    # Wait for a collection in progress to be uploaded; an idle agent only gets a moment to
    # finish an in-flight poll, so a short script is not held up by a slow or unreachable server.
    for handle in _running_handles():
        try:
            busy = handle._current_run is not None
            handle.stop(
                timeout=handle.config.exit_timeout if busy else min(0.5, handle.config.exit_timeout)
            )
        except Exception:  # never disturb interpreter shutdown
            pass


def _after_fork_in_child() -> None:
    # Runs in the only thread of the new child. The registry lock may have been held by one of
    # the parent's other threads at fork time, so it is replaced rather than acquired.
    global _registry_lock
    _registry_lock = _thread.allocate_lock()
    for handle in list(_active):
        try:
            handle._reinit_after_fork()
        except Exception:  # a broken agent must not break the child
            log.exception("profiles agent: could not restart after fork")


# ---------------------------------------------------------------------------------------------


def _hostname() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return "unknown"


def _describe(exc: BaseException) -> str:
    """A collector failure as the run's error text: CollectorError carries its reason as is."""
    text = str(exc)
    if type(exc).__name__ == "CollectorError":
        return str(getattr(exc, "reason", "") or text or "collector failed")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_collector() -> tuple[CollectFn | None, str | None]:
    try:
        from .collectors import collect
    except Exception as exc:  # the collectors may be missing or broken
        return None, f"agent: collectors unavailable ({type(exc).__name__}: {exc})"
    return collect, None


def _load_engines() -> dict[str, list[str]]:
    try:
        from .collectors import ENGINES
    except Exception:
        return {}
    return _json_engines(ENGINES)


def _json_engines(engines: Any) -> dict[str, list[str]]:
    try:
        return {str(kind): [str(name) for name in names] for kind, names in dict(engines).items()}
    except (TypeError, ValueError):
        return {}


def _install_lock_profiler() -> None:
    try:
        from .collectors.locks import install_lock_profiler
    except ImportError:
        try:
            from .collectors import install_lock_profiler
        except ImportError:
            log.debug("profiles agent: no lock profiler available; mutex profiles will be empty")
            return
    except Exception:
        log.warning("profiles agent: could not import the lock profiler", exc_info=True)
        return
    try:
        install_lock_profiler()
    except Exception:
        log.warning("profiles agent: could not install the lock profiler", exc_info=True)


class AgentHandle:
    """A running agent. `stop()` ends it; `stats()` tells what it has been doing."""

    def __init__(
        self,
        config: AgentConfig,
        client: AgentClient,
        *,
        collector: CollectFn | None = None,
        engines: dict[str, list[str]] | None = None,
    ):
        self.config = config
        self._client = client
        self._injected_collector = collector
        self._collector, self._collector_problem = (
            (collector, None) if collector else _load_collector()
        )
        self._engines = engines if engines is not None else _load_engines()
        self._host = _hostname()
        self._python = platform.python_version()
        self._init_state()

    def _init_state(self) -> None:
        self._lock = _thread.allocate_lock()
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._collector_thread: threading.Thread | None = None
        self._collect_stop: threading.Event | None = None
        self._pid = os.getpid()
        # statistics (written by the poller thread only)
        self._polls = 0
        self._failures = 0
        self._failures_total = 0
        self._last_failure_log = -math.inf
        self._last_error: str | None = None
        self._last_delay = 0.0
        self._delays: deque[float] = deque(maxlen=32)
        self._runs_completed = 0
        self._runs_failed = 0
        self._current_run: str | None = None

    # -- public ------------------------------------------------------------------------------

    @property
    def service(self) -> str:
        return self.config.service

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop polling, ask a running collection to stop, upload what it has, join the thread.

        Returns True when the agent thread has ended within `timeout` seconds. Never raises.
        """
        try:
            with self._lock:
                self._stop_deadline = time.monotonic() + max(0.0, timeout)
                self._stop.set()
                collect_stop = self._collect_stop
            if collect_stop is not None:
                collect_stop.set()
            _unregister(self)
            thread = self._thread
            if thread is None or thread is threading.current_thread():
                return thread is None or not thread.is_alive()
            thread.join(max(0.0, timeout))
            return not thread.is_alive()
        except Exception:
            log.exception("profiles agent: error while stopping")
            return False

    def stats(self) -> dict[str, Any]:
        return {
            "service": self.config.service,
            "pid": self._pid,
            "running": self.running,
            "polls": self._polls,
            "consecutiveFailures": self._failures,
            "failures": self._failures_total,
            "lastError": self._last_error,
            "lastDelaySeconds": self._last_delay,
            "recentDelaysSeconds": list(self._delays),
            "runsCompleted": self._runs_completed,
            "runsFailed": self._runs_failed,
            "currentRun": self._current_run,
        }

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<AgentHandle service={self.config.service!r} pid={self._pid} {state}>"

    # -- lifecycle ---------------------------------------------------------------------------

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._loop, name=POLLER_THREAD_NAME, daemon=True)
        self._thread = thread
        _register(self)
        thread.start()

    def _reinit_after_fork(self) -> None:
        was_running = not self._stop.is_set()
        self._init_state()  # fresh locks and events, no thread, no run, this child's pid
        if was_running and self.config.restart_on_fork:
            self._start_thread()
        else:
            self._stop.set()
            _active.discard(self)

    def _loop(self) -> None:
        log.info(
            "profiles agent started: service=%s server=%s pid=%s",
            self.config.service,
            self._client.base_url,
            self._pid,
        )
        while not self._stop.is_set():
            try:
                delay = self._cycle()
            except Exception:  # a bug here must not kill the agent or the host
                log.exception("profiles agent: unexpected error; backing off")
                self._failures += 1
                self._failures_total += 1
                delay = self._backoff_delay()
            self._last_delay = delay
            self._delays.append(round(delay, 4))
            if delay > 0:
                self._stop.wait(delay)
        log.info("profiles agent stopped: service=%s pid=%s", self.config.service, self._pid)

    # -- one poll ------------------------------------------------------------------------------

    def _instance(self, *, with_engines: bool) -> dict[str, Any]:
        instance: dict[str, Any] = {
            "host": self._host,
            "pid": os.getpid(),
            "python": self._python,
            "agentVersion": AGENT_VERSION,
        }
        if with_engines:
            instance["engines"] = self._engines
        return instance

    def _cycle(self) -> float:
        """Poll once (and serve the run it brings). Returns how long to wait before the next poll."""
        self._polls += 1
        try:
            result = self._client.poll(
                self.config.service, self._instance(with_engines=True), timeout=self._timeout()
            )
        except AuthError as exc:
            self._note_failure(
                exc,
                logging.ERROR,
                "the server rejected the agent token; check "
                "PROFILING_TOKEN (an agent-scoped token) and PROFILING_TENANT_ID",
            )
            return self._cap_delay()
        except MalformedRunError as exc:
            self._note_success()
            log.warning("profiles agent: run %s is malformed: %s", exc.run_id, exc)
            self._fail(exc.run_id, str(exc))
            return self._poll_delay(None)
        except PermanentError as exc:
            self._note_failure(exc, logging.ERROR, "polling was refused")
            return self._cap_delay()
        except TransientError as exc:
            self._note_failure(exc, logging.WARNING, "cannot reach the profiling server")
            return self._backoff_delay(exc.retry_after)
        self._note_success()
        if result.run is None:
            return self._poll_delay(result.poll_after_seconds)
        if self._stop.is_set():
            self._fail(
                result.run.id, "agent: the profiled process exited before collection started"
            )
            return 0.0
        self._serve(result.run)
        return 0.0  # another run may already be waiting (continuous profiles)

    def _poll_delay(self, server_hint: float | None) -> float:
        # The server's pollAfterSeconds is a floor: it may slow agents down, never speed them up.
        delay = self.config.poll_seconds
        if server_hint is not None:
            delay = max(delay, min(server_hint, MAX_SERVER_POLL_HINT_SECONDS))
        return delay * random.uniform(0.9, 1.1)  # spread prefork workers apart

    def _backoff_delay(self, retry_after: float | None = None) -> float:
        # "Equal jitter": a uniform draw from [d/2, d] with d doubling per failure, so successive
        # waits never shrink until the cap while instances still spread out.
        exponent = min(max(self._failures - 1, 0), 32)
        ceiling = min(self.config.backoff_cap, self.config.backoff_base * (2**exponent))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.backoff_cap))
        return delay

    def _cap_delay(self) -> float:
        return self.config.backoff_cap * random.uniform(0.9, 1.0)

    def _note_failure(self, exc: AgentError, level: int, summary: str) -> None:
        self._failures += 1
        self._failures_total += 1
        self._last_error = str(exc)
        now = time.monotonic()
        if self._failures == 1 or now - self._last_failure_log >= FAILURE_LOG_INTERVAL_SECONDS:
            self._last_failure_log = now
            log.log(
                level,
                "profiles agent: %s (%s); %d consecutive failure(s), backing off",
                summary,
                exc,
                self._failures,
            )
        else:
            log.debug("profiles agent: %s (%s)", summary, exc)

    def _note_success(self) -> None:
        if self._failures:
            log.info("profiles agent: server reachable again after %d failure(s)", self._failures)
        self._failures = 0
        self._last_failure_log = -math.inf

    def _timeout(self, default: float | None = None) -> float:
        """The request timeout; while stopping, whatever is left of the stop budget."""
        timeout = self.config.request_timeout if default is None else default
        deadline = self._stop_deadline
        if deadline is not None:
            timeout = min(timeout, max(0.2, deadline - time.monotonic()))
        return timeout

    def _progress_wait(self) -> float:
        # While stopping, look more often so the partial profile is uploaded within the budget.
        if self._stop.is_set():
            return min(self.config.progress_seconds, 0.1)
        return self.config.progress_seconds

    def _past_stop_deadline(self) -> bool:
        deadline = self._stop_deadline
        return deadline is not None and time.monotonic() >= deadline

    # -- one run -------------------------------------------------------------------------------

    def _serve(self, run: RunAssignment) -> None:
        log.info(
            "profiles agent: collecting run %s (%s, %ss at %s Hz, engine=%s)",
            run.id,
            run.profile_type,
            run.duration_seconds,
            run.sample_rate,
            run.engine or "default",
        )
        self._current_run = run.id
        try:
            self._collect_and_report(run)
        finally:
            self._current_run = None
            with self._lock:
                self._collect_stop = None

    def _collect_and_report(self, run: RunAssignment) -> None:
        previous = self._collector_thread
        if previous is not None and previous.is_alive():
            self._fail(run.id, "agent: a previous collection is still running in this process")
            return
        collect = self._collector
        if collect is None:
            collect, problem = _load_collector()
            self._collector, self._collector_problem = collect, problem
            if collect is None:
                self._fail(run.id, problem or "agent: no collector")
                return

        stop_event = threading.Event()
        with self._lock:
            self._collect_stop = stop_event
            if self._stop.is_set():
                stop_event.set()
        outcome: dict[str, Any] = {}
        done = threading.Event()
        reported: list[float] = []

        def on_progress(fraction: float) -> None:
            try:
                value = float(fraction)
            except (TypeError, ValueError):
                return
            if math.isfinite(value):
                reported[:] = [min(1.0, max(0.0, value))]

        def target() -> None:
            try:
                outcome["profile"] = collect(
                    run.profile_type,
                    duration_seconds=run.duration_seconds,
                    sample_rate=run.sample_rate,
                    engine=run.engine,
                    stop_event=stop_event,
                    progress=on_progress,
                )
            except BaseException as exc:  # reported as the run's failure
                outcome["error"] = exc
            finally:
                done.set()

        thread = threading.Thread(target=target, name=COLLECTOR_THREAD_NAME, daemon=True)
        self._collector_thread = thread
        started = time.monotonic()
        thread.start()

        deadline = (
            started + run.duration_seconds + max(COLLECT_GRACE_SECONDS, run.duration_seconds / 2)
        )
        hard_deadline: float | None = None
        timed_out = cancelled = False
        while not done.wait(self._progress_wait()):
            now = time.monotonic()
            if self._stop.is_set():
                stop_event.set()
                if self._past_stop_deadline():
                    return  # exiting: abandon the run, the server's reaper will fail it
                continue
            if now >= deadline and hard_deadline is None:
                log.warning(
                    "profiles agent: run %s overran its window; stopping the collector", run.id
                )
                timed_out = True
                stop_event.set()
                hard_deadline = now + HARD_STOP_SECONDS
            if hard_deadline is not None and now >= hard_deadline:
                self._fail(run.id, "agent: the collector did not stop after its window ended")
                return
            fraction = reported[0] if reported else (now - started) / run.duration_seconds
            try:
                self._client.progress(run.id, min(fraction, 0.99), timeout=self._timeout())
            except (ConflictError, NotFoundError) as exc:
                log.info("profiles agent: run %s is no longer active (%s); stopping", run.id, exc)
                cancelled = True
                stop_event.set()
            except AgentError as exc:
                log.debug("profiles agent: progress for run %s not sent: %s", run.id, exc)
        self._collector_thread = None
        if cancelled:
            return

        if "error" in outcome:
            reason = _describe(outcome.pop("error"))
            log.warning("profiles agent: run %s failed: %s", run.id, reason)
            self._fail(run.id, reason)
            return
        profile = outcome.pop("profile", None)
        if not isinstance(profile, dict):
            self._fail(run.id, f"agent: collector returned {type(profile).__name__}, not a profile")
            return
        profile = dict(profile)
        profile["instance"] = self._instance(with_engines=False)
        if self._stop.is_set() or timed_out:
            notes = profile.get("notes")
            notes = list(notes) if isinstance(notes, list | tuple) else []
            notes.append(
                "collection ended early: the profiled process was exiting"
                if self._stop.is_set()
                else "collection ended early: the collector overran its window and was stopped"
            )
            profile["notes"] = notes
        self._upload(run, profile)

    def _upload(self, run: RunAssignment, profile: dict[str, Any]) -> None:
        try:
            body = encode_profile(profile)
        except (TypeError, ValueError) as exc:
            self._fail(run.id, f"agent: the collected profile is not valid JSON ({exc})")
            return
        del profile
        last: AgentError | None = None
        for attempt in range(1, max(1, self.config.upload_attempts) + 1):
            try:
                self._client.upload(run.id, body, timeout=self._timeout(self.config.upload_timeout))
            except PayloadTooLargeError as exc:
                self._fail(
                    run.id,
                    f"agent: profile too large for the server ({len(body)} bytes gzipped; {exc})",
                )
                return
            except (ConflictError, NotFoundError) as exc:
                log.warning("profiles agent: run %s no longer accepts an upload: %s", run.id, exc)
                self._runs_failed += 1
                return
            except AuthError as exc:
                log.error("profiles agent: upload of run %s refused: %s", run.id, exc)
                self._runs_failed += 1
                return
            except PermanentError as exc:
                self._fail(run.id, f"agent: the server rejected the profile ({exc})")
                return
            except TransientError as exc:
                last = exc
                log.warning(
                    "profiles agent: upload of run %s failed (attempt %d): %s", run.id, attempt, exc
                )
                if self._stop.is_set():
                    break
                wait = min(self.config.backoff_cap, self.config.backoff_base * 2 ** (attempt - 1))
                self._stop.wait(wait / 2 + random.uniform(0, wait / 2))
                continue
            self._runs_completed += 1
            log.info("profiles agent: run %s uploaded (%d bytes gzipped)", run.id, len(body))
            return
        self._fail(run.id, f"agent: upload failed: {last}")

    def _fail(self, run_id: str, reason: str) -> None:
        self._runs_failed += 1
        try:
            self._client.fail(run_id, reason, timeout=self._timeout())
        except AgentError as exc:
            log.warning("profiles agent: could not report the failure of run %s: %s", run_id, exc)


def start(
    service: str,
    server_url: str,
    tenant_id: str,
    token: str,
    poll_seconds: float = 5.0,
    *,
    collector: CollectFn | None = None,
    engines: Mapping[str, Any] | None = None,
    lock_profiler: bool = True,
    progress_seconds: float = 2.0,
    backoff_base: float | None = None,
    backoff_cap: float = 60.0,
    request_timeout: float = 10.0,
    upload_timeout: float = 60.0,
    upload_attempts: int = 3,
    exit_timeout: float = 5.0,
    restart_on_fork: bool = True,
) -> AgentHandle:
    """Start the agent thread for `service` and return its handle.

    Raises ValueError for unusable arguments (empty service, bad URL, empty token) so a
    misconfiguration shows at start; after that nothing raises into the host.
    Starting again with the same service, server and tenant returns the running handle.
    `collector` replaces `profiling_agent.collectors.collect` (tests, custom collectors);
    `backoff_base` defaults to `poll_seconds`.
    """
    service = str(service or "").strip()
    if not service:
        raise ValueError("service must be a non-empty name")
    poll = float(poll_seconds)
    if not math.isfinite(poll) or poll <= 0:
        raise ValueError(f"poll_seconds must be a positive number, got {poll_seconds!r}")
    poll = max(poll, MIN_POLL_SECONDS)
    client = AgentClient(
        server_url, tenant_id, token, timeout=request_timeout, upload_timeout=upload_timeout
    )
    config = AgentConfig(
        service=service,
        server_url=client.base_url,
        tenant_id=client.tenant_id,
        poll_seconds=poll,
        progress_seconds=max(0.01, float(progress_seconds)),
        backoff_base=max(
            MIN_POLL_SECONDS, float(backoff_base if backoff_base is not None else poll)
        ),
        backoff_cap=max(MIN_POLL_SECONDS, float(backoff_cap)),
        request_timeout=float(request_timeout),
        upload_timeout=float(upload_timeout),
        upload_attempts=int(upload_attempts),
        exit_timeout=float(exit_timeout),
        restart_on_fork=bool(restart_on_fork),
    )
    for handle in _running_handles():
        same = (handle.config.service, handle.config.server_url, handle.config.tenant_id)
        if same == (config.service, config.server_url, config.tenant_id) and handle.running:
            log.warning("profiles agent: already running for service %s; reusing it", service)
            return handle
    if lock_profiler:
        _install_lock_profiler()
    handle = AgentHandle(
        config,
        client,
        collector=collector,
        engines=_json_engines(engines) if engines is not None else None,
    )
    _install_process_hooks()
    handle._start_thread()
    return handle


ENV_VARS = (
    "PROFILING_SERVER_URL",
    "PROFILING_TENANT_ID",
    "PROFILING_TOKEN",
    "PROFILING_SERVICE",
)


def start_from_env(environ: Mapping[str, str] | None = None, **options: Any) -> AgentHandle | None:
    """`start()` configured by PROFILING_* variables; None (and a log line) when incomplete.

    Never raises. `options` are passed on to `start()`.
    """
    env = os.environ if environ is None else environ
    values = {name: (env.get(name) or "").strip() for name in ENV_VARS}
    missing = [name for name, value in values.items() if not value]
    if len(missing) == len(ENV_VARS):
        log.info("profiles agent not started: no PROFILING_* variables are set")
        return None
    if missing:
        log.warning("profiles agent not started: %s not set", ", ".join(missing))
        return None
    poll_seconds = 5.0
    raw_poll = (env.get("PROFILING_POLL_SECONDS") or "").strip()
    if raw_poll:
        try:
            poll_seconds = float(raw_poll)
            if not math.isfinite(poll_seconds) or poll_seconds <= 0:
                raise ValueError(raw_poll)
        except ValueError:
            log.warning(
                "profiles agent: PROFILING_POLL_SECONDS=%r is not a positive number; using 5",
                raw_poll,
            )
            poll_seconds = 5.0
    try:
        return start(
            values["PROFILING_SERVICE"],
            values["PROFILING_SERVER_URL"],
            values["PROFILING_TENANT_ID"],
            values["PROFILING_TOKEN"],
            poll_seconds,
            **options,
        )
    except Exception as exc:  # the host must start even if the agent cannot
        log.error("profiles agent not started: %s", exc)
        return None
