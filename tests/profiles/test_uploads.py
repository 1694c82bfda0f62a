"""Uploads through the real API: what is refused at the door, what is accepted is never lost,
processing is bounded and retried, and pages and exports read what processing stored."""

import gzip
from datetime import timedelta

import pytest
from django.utils import timezone

from profiles import services
from profiles.models import Phase, ProfileResult, Status
from profiles.services import processing
from profiles.signing import flamegraph_token

from . import pathological
from .samples import gzip_json, raw_cpu_profile

BASE = "/api/v1/observability/profiling"
LEASE = "lease-of-the-claim"


def _collecting_run(tenant, *, lease: str = LEASE, deadline_in: float = 60) -> ProfileResult:
    """A run as a claim leaves it: collecting, under a lease, before its upload deadline."""
    run = services.profile_start(tenant=tenant.tenant, service="ai-service", profile_type="cpu", duration_seconds=2)
    ProfileResult.objects.filter(pk=run.pk).update(
        phase=Phase.COLLECTING,
        claimed_at=timezone.now(),
        lease_hash=services.lease_hash(lease) if lease else "",
        deadline_at=timezone.now() + timedelta(seconds=deadline_in),
    )
    return ProfileResult.objects.get(pk=run.pk)


def _upload(agent_client, run, body: bytes, *, lease: str | None = LEASE, encoding: str | None = "gzip"):
    headers = {}
    if lease is not None:
        headers["HTTP_X_PROFILING_LEASE"] = lease
    if encoding is not None:
        headers["HTTP_CONTENT_ENCODING"] = encoding
    return agent_client.generic(
        "POST", f"{BASE}/agent/runs/{run.pk}/upload", body, content_type="application/json", **headers
    )


def _stored_files(media_root) -> list[str]:
    return sorted(p.name for p in media_root.rglob("*") if p.is_file()) if media_root.exists() else []


def _assert_refused_untouched(run, media_root) -> None:
    run.refresh_from_db()
    assert (run.status, run.phase) == (Status.RUNNING, Phase.COLLECTING)
    assert _stored_files(media_root) == []


# --- acceptance -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_upload_under_the_lease_is_202_processing_and_completes(tenant, agent_client, django_capture_on_commit_callbacks, eager_celery):
    run = _collecting_run(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(agent_client, run, gzip_json(raw_cpu_profile()))
    assert response.status_code == 202, response.json()
    run.refresh_from_db()
    assert (run.status, run.processing_attempts, run.error) == (Status.COMPLETED, 1, "")
    assert run.top_functions[0]["function"] == "hot"


@pytest.mark.django_db
def test_a_second_upload_of_the_same_run_is_409_and_keeps_the_result(tenant, agent_client, django_capture_on_commit_callbacks, eager_celery):
    run = _collecting_run(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        assert _upload(agent_client, run, gzip_json(raw_cpu_profile())).status_code == 202
    before = ProfileResult.objects.get(pk=run.pk)
    response = _upload(agent_client, run, gzip_json(raw_cpu_profile(hot_ns=1, cold_ns=1)))
    assert response.status_code == 409
    assert "completed" in response.json()["detail"]
    after = ProfileResult.objects.get(pk=run.pk)
    assert (after.total_value, after.payload.name) == (before.total_value, before.payload.name)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("lease", "deadline_in", "message"),
    [
        ("another-lease", 60, "not leased to this agent"),
        (None, 60, "not leased to this agent"),
        (LEASE, -1, "deadline"),
    ],
)
def test_a_wrong_lease_or_a_passed_deadline_is_409_and_stores_nothing(tenant, agent_client, media_root, lease, deadline_in, message):
    run = _collecting_run(tenant, deadline_in=deadline_in)
    response = _upload(agent_client, run, gzip_json(raw_cpu_profile()), lease=lease)
    assert response.status_code == 409
    assert message in response.json()["detail"]
    _assert_refused_untouched(run, media_root)


@pytest.mark.django_db
@pytest.mark.parametrize("encoding", [None, "identity", "br"])
def test_an_upload_without_content_encoding_gzip_is_415_with_a_clear_message(tenant, agent_client, media_root, encoding):
    run = _collecting_run(tenant)
    response = _upload(agent_client, run, gzip_json(raw_cpu_profile()), encoding=encoding)
    assert response.status_code == 415
    assert "Content-Encoding: gzip" in response.json()["detail"]
    _assert_refused_untouched(run, media_root)


@pytest.mark.django_db
def test_an_upload_over_the_size_limit_is_413_naming_the_limit(tenant, agent_client, media_root, settings):
    settings.PROFILING_MAX_UPLOAD_BYTES = 1000
    run = _collecting_run(tenant)
    response = _upload(agent_client, run, b"\x1f\x8b" + b"x" * 5000)
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["detail"]
    _assert_refused_untouched(run, media_root)


def _sum_over_int64() -> dict:
    raw = raw_cpu_profile()
    raw["samples"][0]["value"] = 2**62
    raw["samples"][1]["value"] = 2**62
    return raw


def _labelled(labels) -> dict:
    raw = raw_cpu_profile()
    raw["samples"][1]["labels"] = labels
    return raw


def _with(key, value) -> dict:
    raw = raw_cpu_profile()
    raw[key] = value
    return raw


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "names"),
    [
        *[
            pytest.param(pathological.with_bad_string(field, bad), field, id=f"{field}-{label}")
            for field in pathological.STRING_FIELDS
            for bad, label in (("\x00", "nul"), ("\ud800", "lone-surrogate"))
        ],
        pytest.param(gzip_json(_with("sampleCount", 2**31)), "sampleCount", id="sampleCount-2^31"),
        pytest.param(gzip_json(_sum_over_int64()), "samples: the values sum to", id="value-sum-2^63"),
        pytest.param(gzip_json(pathological.with_string(("samples", 0, "value"), 2**63)), "samples[0].value", id="value-2^63"),
        pytest.param(gzip_json(pathological.with_string(("frames", 0, "line"), -1)), "frames[0].line", id="negative-line"),
        pytest.param(gzip_json(_with("instance", {"pid": 2**70})), "instance.pid", id="instance-int-overflow"),
        pytest.param(gzip_json(_with("notes", ["x" * 5000])), "notes[0]", id="note-too-long"),
        pytest.param(gzip_json(_with("profileType", "memory") | {"unit": "bytes"}), "profileType", id="other-type"),
        pytest.param(gzip_json(_labelled({"route": 3})), "samples[1].labels.route: expected a string", id="label-not-a-string"),
        pytest.param(gzip_json(_labelled({"route": "r" * 201})), "samples[1].labels.route: 201 characters", id="label-too-long"),
        pytest.param(gzip_json(_labelled({f"k{i}": "v" for i in range(9)})), "samples[1].labels: 9 keys", id="too-many-label-keys"),
        pytest.param(gzip_json(_with("labelsOverflow", -1)), "labelsOverflow", id="negative-overflow"),
        pytest.param(pathological.gzip_bomb(256 * 1024**2), "decompressed size exceeds", id="gzip-bomb"),
        pytest.param(pathological.million_frames(), "frames: more than 200000", id="a-million-frames"),
        pytest.param(pathological.deep_and_wide()[0], "more than 11700000 JSON values", id="180000-x-512"),
        pytest.param(b"{}", "not gzip", id="not-gzip"),
        pytest.param(gzip.compress(b'{"format": "pyprof-raw/1"'), "invalid JSON", id="truncated-json"),
    ],
)
def test_an_invalid_upload_is_400_naming_the_field_and_the_run_stays_collecting(tenant, agent_client, media_root, body, names):
    run = _collecting_run(tenant)
    response = _upload(agent_client, run, body)
    assert response.status_code == 400, response.content[:300]
    assert names in response.json()["detail"]
    _assert_refused_untouched(run, media_root)


@pytest.mark.django_db
def test_a_broker_that_is_down_still_gets_a_202_and_the_sweep_enqueues_the_run(tenant, agent_client, django_capture_on_commit_callbacks, eager_celery, monkeypatch):
    from profiles import tasks

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6399")

    run = _collecting_run(tenant)
    monkeypatch.setattr(tasks.process_upload, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        assert _upload(agent_client, run, gzip_json(raw_cpu_profile())).status_code == 202
    run.refresh_from_db()
    assert (run.status, run.phase) == (Status.RUNNING, Phase.PROCESSING)
    assert run.payload.storage.exists(run.payload.name)

    monkeypatch.undo()  # the broker is back
    assert services.profiles_requeue_stalled(now=timezone.now()) == 0  # its attempt is not overdue yet
    later = run.deadline_at + timedelta(seconds=1)
    assert services.profiles_requeue_stalled(now=later) == 1
    run.refresh_from_db()
    assert run.status == Status.COMPLETED


# --- processing: retries, attempts, terminal states ------------------------------------------------


def _processing_run(tenant, django_capture_on_commit_callbacks, agent_client) -> ProfileResult:
    """A run whose upload was accepted, with its task not run yet."""
    run = _collecting_run(tenant)
    with django_capture_on_commit_callbacks(execute=False):
        assert _upload(agent_client, run, gzip_json(raw_cpu_profile())).status_code == 202
    return ProfileResult.objects.get(pk=run.pk)


@pytest.mark.django_db
def test_a_transient_error_is_retried_and_the_run_completes(tenant, agent_client, django_capture_on_commit_callbacks, eager_celery, monkeypatch):
    run = _processing_run(tenant, django_capture_on_commit_callbacks, agent_client)
    real = processing.to_pprof
    calls = []

    def flaky(profile):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("storage timed out")
        return real(profile)

    monkeypatch.setattr(processing, "to_pprof", flaky)
    from profiles.tasks import process_upload

    process_upload.apply(args=[str(run.pk)])
    run.refresh_from_db()
    assert (run.status, run.processing_attempts, run.error) == (Status.COMPLETED, 2, "")


@pytest.mark.django_db
def test_processing_that_keeps_failing_ends_failed_with_the_last_error(tenant, agent_client, django_capture_on_commit_callbacks, eager_celery, monkeypatch):
    run = _processing_run(tenant, django_capture_on_commit_callbacks, agent_client)

    def broken(profile):
        raise OSError("bucket unreachable")

    monkeypatch.setattr(processing, "to_pprof", broken)
    from profiles.tasks import process_upload

    process_upload.apply(args=[str(run.pk)])
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.error == "processing failed 3 times: OSError: bucket unreachable"
    assert run.payload.storage.exists(run.payload.name)  # the upload is kept: the failure was not its fault


@pytest.mark.django_db
def test_a_run_whose_workers_keep_dying_fails_after_three_attempts(tenant, agent_client, django_capture_on_commit_callbacks):
    run = _processing_run(tenant, django_capture_on_commit_callbacks, agent_client)
    for _ in range(processing.PROCESSING_MAX_ATTEMPTS):  # each attempt starts, then its worker is killed
        assert processing._begin_attempt(run.pk) is not None
    run.refresh_from_db()
    assert run.error == f"attempt 2: {processing.LOST_WORKER}"
    assert services.profiles_requeue_stalled(now=run.deadline_at + timedelta(seconds=1)) == 0
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.error == f"processing failed 3 times: {processing.LOST_WORKER}"


@pytest.mark.django_db
def test_a_run_failed_while_processing_stays_failed(tenant, agent_client, django_capture_on_commit_callbacks, media_root, monkeypatch):
    run = _processing_run(tenant, django_capture_on_commit_callbacks, agent_client)
    real = processing.top_functions

    def reaped_meanwhile(profile, limit):
        services.profiles_reap_overdue(now=timezone.now() + timedelta(days=1))
        return real(profile, limit=limit)

    monkeypatch.setattr(processing, "top_functions", reaped_meanwhile)
    services.profile_process_upload(profile_id=run.pk)
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert _stored_files(media_root) == [f"{run.pk}.upload.json.gz"]  # what the attempt wrote is gone


@pytest.mark.django_db
def test_a_completed_run_does_not_fail_afterwards(tenant, agent_client, django_capture_on_commit_callbacks):
    run = _processing_run(tenant, django_capture_on_commit_callbacks, agent_client)
    services.profile_process_upload(profile_id=run.pk)
    assert services.profiles_requeue_stalled(now=timezone.now() + timedelta(days=1)) == 0
    services.profile_process_upload(profile_id=run.pk)  # a redelivered task
    run.refresh_from_db()
    assert (run.status, run.processing_attempts) == (Status.COMPLETED, 1)


# --- what pages and exports read --------------------------------------------------------------------


@pytest.mark.django_db
def test_pages_and_exports_never_parse_the_payload(tenant, agent_client, api_client, client, django_capture_on_commit_callbacks, eager_celery, monkeypatch):
    run = _collecting_run(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        assert _upload(agent_client, run, gzip_json(raw_cpu_profile())).status_code == 202
    run.refresh_from_db()
    run.payload.storage.delete(run.payload.name)  # nothing may need it now

    page = client.get(f"/flamegraph/{flamegraph_token(run.pk)}/")
    assert page.status_code == 200
    assert "hot" in page.content.decode()
    for fmt, expected in (("folded", b"hot (/app/app.py:10) 900000000"), ("speedscope", b'"hot"'), ("pprof", b"\x1f\x8b")):
        response = api_client.get(f"{BASE}/{run.pk}/export", {"format": fmt})
        assert response.status_code == 200, (fmt, response.content[:200])
        assert expected in response.content


def _count_nodes(tree: dict) -> int:
    pending, count = [tree], 0
    while pending:
        node = pending.pop()
        count += 1
        pending.extend(node.get("children", ()))
    return count


@pytest.mark.django_db
def test_the_stored_flame_graph_is_bounded_in_nodes_and_name_lengths(tenant, agent_client, django_capture_on_commit_callbacks, eager_celery):
    from profiles import selectors
    from profiles.analysis.flamegraph import DEFAULT_MAX_NODES

    raw = raw_cpu_profile()
    long_name = "handler_" + "x" * 1000
    raw["frames"] = [{"function": "main", "file": "/app/app.py", "line": 1}] + [
        {"function": f"{long_name}{i}", "file": "/app/app.py", "line": i} for i in range(1, 30_001)
    ]
    raw["samples"] = [{"stack": [0, i], "value": 1000 + i, "count": 1, "thread": "MainThread"} for i in range(1, 30_001)]
    raw["sampleCount"] = 30_000
    run = _collecting_run(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        assert _upload(agent_client, run, gzip_json(raw)).status_code == 202
    run.refresh_from_db()
    assert run.status == Status.COMPLETED
    tree, unit, _ = selectors.profile_flame_tree(profile=run)
    assert unit == "nanoseconds"
    assert _count_nodes(tree) <= DEFAULT_MAX_NODES
    assert tree["value"] == sum(s["value"] for s in raw["samples"])  # what is folded still counts
    hottest = next(node for node in tree["children"][0]["children"] if node["name"] != "(other)")
    assert len(hottest["name"]) == processing.FLAME_NAME_MAX_CHARS and hottest["name"].endswith("…")
