"""HTTP client for the agent protocol (CONTRACT.md section 4), standard library only.

Every failure is raised as an `AgentError` subclass, split by what the caller should do next:
`TransientError` (network trouble, timeouts, 5xx, 429, a garbled answer) means "try again later,
with backoff"; `PermanentError` (400, 401/403, 404, 409, 413, unexpected redirects) means
retrying the same request will not help.

Redirects are never followed: urllib would replay a POST as a GET without its body (or refuse
307/308) and would forward the Authorization header to whatever host the redirect names.
A redirect is reported as a permanent error that points at the configured server URL instead.
"""

from __future__ import annotations

import gzip
import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

AGENT_VERSION = "0.1.0"
USER_AGENT = "profiles-agent/0.1"
API_PREFIX = "/api/v1/observability/profiling/agent/"

# Answers the agent reads are tiny JSON objects; anything bigger is not our server.
MAX_RESPONSE_BYTES = 1 << 20
# How much of an error body is kept in the exception message (server reasons for 400 etc.).
MAX_DETAIL_CHARS = 300
# The server's `fail` serializer accepts at most 2000 characters.
MAX_FAIL_REASON_CHARS = 2000


class AgentError(Exception):
    """A request to the profiling server did not succeed. `status` is None without an answer."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = ""):
        super().__init__(message)
        self.status = status
        self.detail = detail


class TransientError(AgentError):
    """Worth retrying later: the server was unreachable, timed out, failed (5xx) or throttled us."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ):
        super().__init__(message, status=status, detail=detail)
        self.retry_after = retry_after


class ProtocolError(TransientError):
    """The server answered 2xx with something that is not what the protocol promises."""


class PermanentError(AgentError):
    """The server refused this request; sending it again unchanged will not help."""


class AuthError(PermanentError):
    """401/403: the token is wrong, revoked, of another scope, or for another tenant."""


class BadRequestError(PermanentError):
    """400: the server found the request (usually the uploaded profile) malformed."""


class NotFoundError(PermanentError):
    """404: the run (or, on poll, the whole API) does not exist on this server."""


class ConflictError(PermanentError):
    """409: the run no longer accepts this request (failed by the reaper, already uploaded)."""


class PayloadTooLargeError(PermanentError):
    """413: the profile is over the server's size limit."""


class MalformedRunError(PermanentError):
    """The poll answer handed us a run we cannot act on; the caller should `fail` it."""

    def __init__(self, run_id: str, message: str):
        super().__init__(message)
        self.run_id = run_id


_PERMANENT_BY_STATUS: dict[int, type[PermanentError]] = {
    400: BadRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
}


@dataclass(frozen=True)
class RunAssignment:
    """A run this instance claimed: collect it, then upload or fail it."""

    id: str
    profile_type: str
    duration_seconds: float
    sample_rate: float
    engine: str | None = None


@dataclass(frozen=True)
class PollResult:
    run: RunAssignment | None
    poll_after_seconds: float | None = None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises the 3xx as an HTTPError


def encode_profile(profile: dict[str, Any]) -> bytes:
    """gzip(JSON) as the upload endpoint wants it. Raises ValueError/TypeError if not JSON-able."""
    text = json.dumps(profile, separators=(",", ":"), allow_nan=False)
    return gzip.compress(text.encode("utf-8"), compresslevel=6)


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # the HTTP-date form is not worth a date parser here
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _check_header_value(name: str, value: str) -> str:
    if not value or any(ch in value for ch in "\r\n\x00"):
        raise ValueError(f"{name} must be a non-empty single-line string")
    return value


class AgentClient:
    """One method per protocol endpoint. Thread-safe: it holds no connection between calls."""

    def __init__(
        self,
        server_url: str,
        tenant_id: str,
        token: str,
        *,
        timeout: float = 10.0,
        upload_timeout: float = 60.0,
    ):
        parsed = urllib.parse.urlsplit(str(server_url).strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"server URL must be http(s)://host[:port][/path], got {server_url!r}")
        if parsed.username is not None or parsed.password is not None:
            raise ValueError("the server URL must not contain credentials; the token authenticates")
        base_path = parsed.path.rstrip("/")
        # Accept the agent API root itself as well as the server root.
        if not base_path.endswith(API_PREFIX.rstrip("/")):
            base_path += API_PREFIX.rstrip("/")
        self.base_url = urllib.parse.urlunsplit(
            (parsed.scheme, parsed.netloc, base_path + "/", "", "")
        )
        self.tenant_id = _check_header_value("tenant id", str(tenant_id).strip())
        self._token = _check_header_value("token", str(token).strip())
        self.timeout = float(timeout)
        self.upload_timeout = float(upload_timeout)
        self._opener = urllib.request.build_opener(_NoRedirects())

    def __repr__(self) -> str:  # never shows the token
        return f"AgentClient({self.base_url!r}, tenant={self.tenant_id!r})"

    # -- endpoints ---------------------------------------------------------------------------

    def poll(
        self, service: str, instance: dict[str, Any], *, timeout: float | None = None
    ) -> PollResult:
        """Ask for work; the server atomically assigns a waiting run to at most one poller."""
        body = self._post_json("poll", {"service": service, "instance": instance}, timeout=timeout)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ProtocolError(f"poll answer is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ProtocolError("poll answer is not a JSON object")
        poll_after = _finite_number(data.get("pollAfterSeconds"))
        if poll_after is not None and poll_after < 0:
            poll_after = None
        run = data.get("run")
        if run is None:
            return PollResult(None, poll_after)
        return PollResult(_parse_run(run), poll_after)

    def progress(self, run_id: str, fraction: float, *, timeout: float | None = None) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        self._post_json(
            f"runs/{_quote(run_id)}/progress", {"progress": round(fraction, 3)}, timeout=timeout
        )

    def upload(
        self, run_id: str, profile: dict[str, Any] | bytes, *, timeout: float | None = None
    ) -> None:
        """Upload a raw profile (a dict, or bytes already made by `encode_profile`)."""
        body = profile if isinstance(profile, bytes) else encode_profile(profile)
        self._request(
            f"runs/{_quote(run_id)}/upload",
            body,
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            timeout=self.upload_timeout if timeout is None else timeout,
        )

    def fail(self, run_id: str, error: str, *, timeout: float | None = None) -> None:
        reason = str(error) or "unknown error"
        if len(reason) > MAX_FAIL_REASON_CHARS:
            reason = reason[: MAX_FAIL_REASON_CHARS - 3] + "..."
        self._post_json(f"runs/{_quote(run_id)}/fail", {"error": reason}, timeout=timeout)

    # -- plumbing ----------------------------------------------------------------------------

    def _post_json(self, path: str, payload: dict[str, Any], *, timeout: float | None) -> bytes:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return self._request(path, body, {"Content-Type": "application/json"}, timeout=timeout)

    def _request(
        self, path: str, body: bytes, headers: dict[str, str], *, timeout: float | None
    ) -> bytes:
        url = self.base_url + path
        request = urllib.request.Request(url, data=body, method="POST")
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("X-Tenant-ID", self.tenant_id)
        request.add_header("User-Agent", USER_AGENT)
        request.add_header("Accept", "application/json")
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with self._opener.open(
                request, timeout=self.timeout if timeout is None else timeout
            ) as resp:
                data = resp.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise _error_for_status(exc, path) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise TransientError(
                f"POST {path}: server unreachable: {reason or type(exc).__name__}"
            ) from None
        if len(data) > MAX_RESPONSE_BYTES:
            raise ProtocolError(f"POST {path}: answer larger than {MAX_RESPONSE_BYTES} bytes")
        return data


def _quote(run_id: str) -> str:
    return urllib.parse.quote(str(run_id), safe="")


def _error_for_status(exc: urllib.error.HTTPError, path: str) -> AgentError:
    status = exc.code
    try:
        raw = exc.read(MAX_DETAIL_CHARS * 4) if exc.fp is not None else b""
    except (OSError, http.client.HTTPException):
        raw = b""
    finally:
        exc.close()
    detail = raw.decode("utf-8", "replace").strip()[:MAX_DETAIL_CHARS]
    message = f"POST {path}: HTTP {status}" + (f": {detail}" if detail else "")
    if status == 429 or status == 408 or status >= 500:
        retry_after = _parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        return TransientError(message, status=status, detail=detail, retry_after=retry_after)
    if 300 <= status < 400:
        location = exc.headers.get("Location", "?") if exc.headers else "?"
        return PermanentError(
            f"POST {path}: unexpected redirect ({status}) to {location}; check the server URL",
            status=status,
            detail=detail,
        )
    cls = _PERMANENT_BY_STATUS.get(status, PermanentError)
    return cls(message, status=status, detail=detail)


def _parse_run(run: Any) -> RunAssignment:
    if (
        not isinstance(run, dict)
        or not isinstance(run.get("id"), str | int)
        or run.get("id") in ("", None)
    ):
        raise ProtocolError("poll answer has a run without an id")
    run_id = str(run["id"])
    profile_type = run.get("profileType")
    if not isinstance(profile_type, str) or not profile_type:
        raise MalformedRunError(run_id, "agent: run has no profileType")
    duration = _finite_number(run.get("durationSeconds"))
    if duration is None or duration <= 0:
        raise MalformedRunError(
            run_id, f"agent: invalid durationSeconds {run.get('durationSeconds')!r}"
        )
    sample_rate = _finite_number(run.get("sampleRate", 100))
    if sample_rate is None or sample_rate <= 0:
        raise MalformedRunError(run_id, f"agent: invalid sampleRate {run.get('sampleRate')!r}")
    engine = run.get("engine") or None
    if engine is not None and not isinstance(engine, str):
        raise MalformedRunError(run_id, f"agent: invalid engine {engine!r}")
    return RunAssignment(
        id=run_id,
        profile_type=profile_type,
        duration_seconds=duration,
        sample_rate=int(sample_rate) if sample_rate.is_integer() else sample_rate,
        engine=engine,
    )
