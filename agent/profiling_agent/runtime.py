"""The in-process agent: a poller thread that claims runs, and one thread per run that collects
and uploads it (agent/PROTOCOL.md).

Guarantees the host program can rely on:
- Nothing raises into the host once `start()` returned: every failure is caught and logged on the
  "profiling_agent" logger (which has only a NullHandler unless the host configures logging).
- Several runs are collected at once (at most `profile_format.MAX_CONCURRENT_RUNS`, each in its
  own thread); a run begins at the server's `startAt` and must be uploaded by its `deadline`.
- Every call about a run carries its lease; a 409 (the run was reaped, cancelled or uploaded
  elsewhere) stops that run and drops it.
- The server being down means exponential backoff with jitter, capped at `backoff_cap` (60 s);
  a finished profile is kept (at most one encoded body per run) and its upload retried until
  the run's deadline; 413 fails the run with that reason.
- On SIGTERM (when the handler could be installed), at interpreter exit and on `handle.stop()`,
  running windows end early and what they collected is uploaded within the stop timeout; then
  the host's previous SIGTERM handler (or the default behaviour) runs.
- One poller per process: a forked child has no agent unless it starts one itself (or the
  agent was started with `restart_on_fork=True`); its state is fresh (new instance id, no runs).

Thread names start with "profiles-agent" so collectors leave the agent out of profiles:
"profiles-agent-poller" and "profiles-agent-collector-<run>".
"""

from __future__ import annotations

import _thread
import atexit
import logging
import math
import os
import platform
import random
import secrets
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import integrations
from .client import (
    AGENT_VERSION,
    AgentClient,
    AgentError,
    AuthError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermanentError,
    RunAssignment,
    TransientError,
    encode_profile,
)
from .profile_format import MAX_CONCURRENT_RUNS

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
# Upload retries back off to at most this, so a profile lands soon after an outage ends.
UPLOAD_BACKOFF_CAP_SECONDS = 15.0

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
    exit_timeout: float = 5.0
    restart_on_fork: bool = False


class _ActiveRun:
    """A claimed run and its thread; `state` is written by that thread, `cancelled` by the poller."""

    def __init__(self, run: RunAssignment):
        self.run = run
        self.stop = threading.Event()
        self.state = "waiting"  # -> collecting -> uploading
        self.collect_started: float | None = None  # monotonic
        self.progress: float | None = None
        self.cancelled = False  # the server no longer wants it: drop, report nothing
        self.abandoned = False  # its collector ignored the stop: failed by the poller
        self.hard_stop_at: float | None = None

    def report(self) -> dict[str, Any]:
        return {
            "runId": self.run.id,
            "profileType": self.run.profile_type,
            "engine": self.run.engine or "",
        }


# ---------------------------------------------------------------------------------------------
# Process-wide registry: signal, atexit and fork hooks act on every running handle of this process.

_registry_lock = _thread.allocate_lock()
_active: set[AgentHandle] = set()
_hooks_installed = False
_previous_sigterm: Any = None


def _install_process_hooks(handle_sigterm: bool) -> None:
    global _hooks_installed
    with _registry_lock:
        first = not _hooks_installed
        _hooks_installed = True
    if first:
        atexit.register(_stop_all_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
    if handle_sigterm:
        _install_sigterm_handler()


def _install_sigterm_handler() -> None:
    """Chain SIGTERM: upload what the windows hold, then run the host's handler (or the default)."""
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        log.debug("profiles agent: not started in the main thread; SIGTERM is left to the host")
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous is _on_sigterm:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError) as exc:
        log.debug("profiles agent: cannot handle SIGTERM here: %s", exc)
        return
    _previous_sigterm = previous


def _on_sigterm(signum, frame) -> None:
    try:
        _stop_all(lambda handle: handle.config.exit_timeout)
    except Exception:  # the host's own handling must run whatever happens here
        pass
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or unknown: installed from C): terminate as the host would have
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _register(handle: AgentHandle) -> None:
    with _registry_lock:
        _active.add(handle)


def _unregister(handle: AgentHandle) -> None:
    with _registry_lock:
        _active.discard(handle)


def _running_handles() -> list[AgentHandle]:
    with _registry_lock:
        return list(_active)


def _stop_all(timeout_of: Callable[[AgentHandle], float]) -> None:
    for handle in _running_handles():
        try:
            handle.stop(timeout=timeout_of(handle))
        except Exception:  # never disturb the host's shutdown
            pass


def _stop_all_at_exit() -> None:
    # Wait for collections in progress to be uploaded; an idle agent only gets a moment to
    # finish an in-flight poll, so a short script is not held up by a slow or unreachable server.
    _stop_all(
        lambda h: h.config.exit_timeout if h.busy else min(0.5, h.config.exit_timeout)
    )


def _after_fork_in_child() -> None:
    # Runs in the only thread of the new child. The registry lock may have been held by one of
    # the parent's other threads at fork time, so it is replaced rather than acquired.
    global _registry_lock
    _registry_lock = _thread.allocate_lock()
    for handle in list(_active):
        try:
            handle._reinit_after_fork()
        except Exception:  # a broken agent must not break the child
            log.exception("profiles agent: could not reset after fork")


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
    """The engines that can run in this process (what the server routes by)."""
    try:
        from .collectors import available_engines

        return _json_engines(available_engines())
    except Exception:
        log.warning("profiles agent: cannot tell which engines run here", exc_info=True)
        return {}


def _json_engines(engines: Any) -> dict[str, list[str]]:
    try:
        return {str(kind): [str(name) for name in names] for kind, names in dict(engines).items()}
    except (TypeError, ValueError):
        return {}


def _install_lock_profiler() -> None:
    try:
        from .collectors.locks import install_lock_profiler
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
        self._runs: dict[str, _ActiveRun] = {}
        self._run_threads: list[threading.Thread] = []
        self._pid = os.getpid()
        self._instance_id = secrets.token_hex(8)  # one per process: a forked child gets its own
        # statistics
        self._polls = 0
        self._failures = 0
        self._failures_total = 0
        self._last_failure_log = -math.inf
        self._last_error: str | None = None
        self._last_delay = 0.0
        self._delays: deque[float] = deque(maxlen=32)
        self._runs_completed = 0
        self._runs_failed = 0
        self._runs_dropped = 0

    # -- public ------------------------------------------------------------------------------

    @property
    def service(self) -> str:
        return self.config.service

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def instance_id(self) -> str:
        return self._instance_id

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop.is_set()

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._runs)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop polling, end running windows early, upload what they hold, join the threads.

        Returns True when every agent thread has ended within `timeout` seconds. Never raises.
        """
        try:
            end = time.monotonic() + max(0.0, timeout)
            with self._lock:
                self._stop_deadline = end
                self._stop.set()
                runs = list(self._runs.values())
                threads = [self._thread, *self._run_threads]
            for active in runs:
                active.stop.set()
            _unregister(self)
            me = threading.current_thread()
            for thread in threads:
                if thread is not None and thread is not me:
                    thread.join(max(0.0, end - time.monotonic()))
            return not any(t is not None and t is not me and t.is_alive() for t in threads)
        except Exception:
            log.exception("profiles agent: error while stopping")
            return False

    def stats(self) -> dict[str, Any]:
        with self._lock:
            active = [a.run.id for a in self._runs.values()]
        return {
            "service": self.config.service,
            "instance": self._instance_id,
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
            "runsDropped": self._runs_dropped,
            "activeRuns": active,
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
        # The parent's runs stay the parent's: the child reports nothing about them.
        was_running = not self._stop.is_set()
        self._init_state()  # fresh locks and events, no threads, no runs, a new instance id
        if was_running and self.config.restart_on_fork:
            self._start_thread()
        else:
            self._stop.set()
            _active.discard(self)

    def _loop(self) -> None:
        log.info(
            "profiles agent started: service=%s server=%s pid=%s instance=%s",
            self.config.service,
            self._client.base_url,
            self._pid,
            self._instance_id,
        )
        next_poll = next_watch = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_poll:
                try:
                    delay = self._cycle()
                except Exception:  # a bug here must not kill the agent or the host
                    log.exception("profiles agent: unexpected error; backing off")
                    self._failures += 1
                    self._failures_total += 1
                    delay = self._backoff_delay()
                self._last_delay = delay
                self._delays.append(round(delay, 4))
                next_poll = time.monotonic() + delay
            if now >= next_watch:
                try:
                    self._watch_runs()
                except Exception:
                    log.exception("profiles agent: unexpected error while watching runs")
                next_watch = time.monotonic() + self.config.progress_seconds
            wait = next_poll - time.monotonic()
            if self.busy:
                wait = min(wait, next_watch - time.monotonic())
            if wait > 0:
                self._stop.wait(wait)
        log.info("profiles agent stopped: service=%s pid=%s", self.config.service, self._pid)

    # -- one poll ------------------------------------------------------------------------------

    def _instance(self, *, with_engines: bool) -> dict[str, Any]:
        instance: dict[str, Any] = {
            "id": self._instance_id,
            "host": self._host,
            "pid": os.getpid(),
            "python": self._python,
            "agentVersion": AGENT_VERSION,
        }
        if with_engines:
            instance["engines"] = self._engines
        return instance

    def _cycle(self) -> float:
        """Poll once and start a thread for every run it claimed. Returns the wait before the next."""
        self._polls += 1
        with self._lock:
            collecting = [a.report() for a in self._runs.values()]
        try:
            result = self._client.poll(
                self.config.service,
                self._instance(with_engines=True),
                collecting,
                timeout=self._timeout(),
            )
        except AuthError as exc:
            self._note_failure(
                exc,
                logging.ERROR,
                "the server rejected the agent token; check "
                "PROFILING_TOKEN (an agent-scoped token) and PROFILING_TENANT_ID",
            )
            return self._cap_delay()
        except PermanentError as exc:
            self._note_failure(exc, logging.ERROR, "polling was refused")
            return self._cap_delay()
        except TransientError as exc:
            self._note_failure(exc, logging.WARNING, "cannot reach the profiling server")
            return self._backoff_delay(exc.retry_after)
        self._note_success()
        for bad in result.malformed:
            log.warning("profiles agent: run %s is malformed: %s", bad.run_id, bad)
            self._fail_run(bad.run_id, bad.lease, str(bad))
        for run in result.runs:
            self._launch(run)
        return self._poll_delay(result.poll_after_seconds)

    def _overlapping(self, run: RunAssignment) -> int:
        """Runs whose windows overlap this one's (a window claimed ahead takes no slot before it
        begins; one past its window is only uploading). Called with the lock held."""
        end = run.start_at + run.duration_seconds
        return sum(
            1 for a in self._runs.values()
            if a.state != "uploading" and a.run.start_at < end and run.start_at < a.run.start_at + a.run.duration_seconds
        )

    def _launch(self, run: RunAssignment) -> None:
        with self._lock:
            if run.id in self._runs:
                return
            refusal = None
            if self._stop.is_set():
                refusal = "agent: the profiled process exited before collection started"
            elif self._overlapping(run) >= MAX_CONCURRENT_RUNS:
                refusal = f"agent: already collecting {MAX_CONCURRENT_RUNS} runs"
            if refusal is None:
                active = _ActiveRun(run)
                thread = threading.Thread(
                    target=self._run_main,
                    args=(active,),
                    name=f"{COLLECTOR_THREAD_NAME}-{run.id[:8]}",
                    daemon=True,
                )
                self._runs[run.id] = active
                self._run_threads = [t for t in self._run_threads if t.is_alive()] + [thread]
        if refusal is not None:
            self._fail_run(run.id, run.lease, refusal)
            return
        log.info(
            "profiles agent: claimed run %s (%s, %ss at %s Hz, engine=%s, starts in %.1f s)",
            run.id,
            run.profile_type,
            run.duration_seconds,
            run.sample_rate,
            run.engine or "default",
            run.start_at - time.time(),
        )
        thread.start()

    def _watch_runs(self) -> None:
        """Report progress of collecting runs; a 409 cancels one; a stuck collector is abandoned."""
        with self._lock:
            runs = list(self._runs.values())
        now = time.monotonic()
        for active in runs:
            run = active.run
            if active.state != "collecting" or active.collect_started is None:
                continue
            elapsed = now - active.collect_started
            overrun = run.duration_seconds + max(COLLECT_GRACE_SECONDS, run.duration_seconds / 2)
            if elapsed >= overrun and active.hard_stop_at is None:
                log.warning("profiles agent: run %s overran its window; stopping it", run.id)
                active.stop.set()
                active.hard_stop_at = now + HARD_STOP_SECONDS
            if active.hard_stop_at is not None and now >= active.hard_stop_at and not active.abandoned:
                active.abandoned = True
                self._fail_run(run.id, run.lease, "agent: the collector did not stop after its window ended")
                continue
            if elapsed < self.config.progress_seconds:
                continue  # a report so early says nothing yet; a window shorter than this sends none
            fraction = active.progress if active.progress is not None else elapsed / run.duration_seconds
            try:
                self._client.progress(run.id, run.lease, min(fraction, 0.99), timeout=self._timeout())
            except (ConflictError, NotFoundError) as exc:
                log.info("profiles agent: run %s is no longer wanted (%s); dropping it", run.id, exc)
                active.cancelled = True
                active.stop.set()
            except AgentError as exc:
                log.debug("profiles agent: progress for run %s not sent: %s", run.id, exc)

    def _poll_delay(self, server_hint: float | None) -> float:
        # The server's pollAfterSeconds is a floor: it may slow agents down, never speed them up.
        delay = self.config.poll_seconds
        if server_hint is not None:
            delay = max(delay, min(server_hint, MAX_SERVER_POLL_HINT_SECONDS))
        return delay * random.uniform(0.9, 1.1)  # spread prefork workers apart

    def _backoff_delay(self, retry_after: float | None = None, failures: int | None = None) -> float:
        # "Equal jitter": a uniform draw from [d/2, d] with d doubling per failure, so successive
        # waits never shrink until the cap while instances still spread out.
        failures = self._failures if failures is None else failures
        exponent = min(max(failures - 1, 0), 32)
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

    def _stop_budget_left(self) -> float:
        deadline = self._stop_deadline
        return math.inf if deadline is None else deadline - time.monotonic()

    # -- one run (its own thread) ----------------------------------------------------------------

    def _run_main(self, active: _ActiveRun) -> None:
        try:
            self._serve(active)
        except Exception:  # a bug here must not kill the host
            log.exception("profiles agent: unexpected error in run %s", active.run.id)
        finally:
            with self._lock:
                self._runs.pop(active.run.id, None)

    def _serve(self, active: _ActiveRun) -> None:
        run = active.run
        wait = run.start_at - time.time()
        if wait > 0 and active.stop.wait(wait):
            if not active.cancelled:
                self._fail_run(run.id, run.lease, "agent: the profiled process exited before the window began")
            return
        collect = self._collector
        if collect is None:
            self._fail_run(run.id, run.lease, self._collector_problem or "agent: no collector")
            return

        def on_progress(fraction: float) -> None:
            try:
                value = float(fraction)
            except (TypeError, ValueError):
                return
            if math.isfinite(value):
                active.progress = min(1.0, max(0.0, value))

        integrations.install()  # Django / Celery imported since the start get their labels now
        active.collect_started = time.monotonic()
        active.state = "collecting"
        try:
            profile = collect(
                run.profile_type,
                duration_seconds=run.duration_seconds,
                sample_rate=run.sample_rate,
                engine=run.engine,
                stop_event=active.stop,
                progress=on_progress,
            )
        except BaseException as exc:  # reported as the run's failure
            if not (active.cancelled or active.abandoned):
                reason = _describe(exc)
                log.warning("profiles agent: run %s failed: %s", run.id, reason)
                self._fail_run(run.id, run.lease, reason)
            return
        if active.cancelled or active.abandoned:
            self._runs_dropped += 1
            return
        active.state = "uploading"
        if not isinstance(profile, dict):
            self._fail_run(run.id, run.lease, f"agent: collector returned {type(profile).__name__}, not a profile")
            return
        profile = dict(profile)
        profile["instance"] = self._instance(with_engines=False)
        if active.stop.is_set():
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
        """Upload, retrying transient failures with backoff until the run's deadline (or the stop budget)."""
        try:
            body = encode_profile(profile)
        except (TypeError, ValueError) as exc:
            self._fail_run(run.id, run.lease, f"agent: the collected profile is not valid JSON ({exc})")
            return
        del profile  # only the compressed body is held while retrying
        attempt = 0
        while True:
            attempt += 1
            try:
                self._client.upload(
                    run.id, run.lease, body, timeout=self._timeout(self.config.upload_timeout)
                )
            except PayloadTooLargeError as exc:
                self._fail_run(
                    run.id,
                    run.lease,
                    f"agent: the profile is too large for the server ({len(body)} bytes gzipped; {exc})",
                )
                return
            except (ConflictError, NotFoundError) as exc:
                log.warning("profiles agent: run %s no longer accepts an upload: %s", run.id, exc)
                self._runs_dropped += 1
                return
            except AuthError as exc:
                log.error("profiles agent: upload of run %s refused: %s", run.id, exc)
                self._runs_failed += 1
                return
            except PermanentError as exc:
                self._fail_run(run.id, run.lease, f"agent: the server rejected the profile ({exc})")
                return
            except TransientError as exc:
                wait = min(self._backoff_delay(exc.retry_after, failures=attempt), UPLOAD_BACKOFF_CAP_SECONDS)
                left = min(run.deadline - time.time(), self._stop_budget_left())
                if left <= 0.2:
                    log.error(
                        "profiles agent: giving up the upload of run %s after %d attempt(s): %s",
                        run.id, attempt, exc,
                    )
                    self._runs_failed += 1
                    return
                log.log(
                    logging.WARNING if attempt == 1 else logging.DEBUG,
                    "profiles agent: upload of run %s failed (attempt %d), retrying until its deadline: %s",
                    run.id, attempt, exc,
                )
                time.sleep(min(wait, left - 0.1, 0.2 if self._stop.is_set() else wait))
                continue
            self._runs_completed += 1
            log.info("profiles agent: run %s uploaded (%d bytes gzipped)", run.id, len(body))
            return

    def _fail_run(self, run_id: str, lease: str, reason: str) -> None:
        self._runs_failed += 1
        try:
            self._client.fail(run_id, lease, reason, timeout=self._timeout())
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
    exit_timeout: float = 5.0,
    restart_on_fork: bool = False,
    handle_sigterm: bool = True,
) -> AgentHandle:
    """Start the agent thread for `service` and return its handle.

    Raises ValueError for unusable arguments (empty service, bad URL, empty token) so a
    misconfiguration shows at start; after that nothing raises into the host.
    Starting again with the same service, server and tenant returns the running handle.
    `collector` replaces `profiling_agent.collectors.collect` (tests, custom collectors);
    `engines` replaces what the agent reports it can run; `backoff_base` defaults to
    `poll_seconds`. A forked child has no agent: call `start()` in it (gunicorn `post_fork`,
    Celery `worker_process_init`), or pass `restart_on_fork=True`. `handle_sigterm` chains a
    SIGTERM handler (main thread only) that uploads the windows in progress before the host's.
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
    integrations.install()
    handle = AgentHandle(
        config,
        client,
        collector=collector,
        engines=_json_engines(engines) if engines is not None else None,
    )
    _install_process_hooks(handle_sigterm)
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
