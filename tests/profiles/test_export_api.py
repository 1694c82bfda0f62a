"""GET /{profileId}/export: pprof, speedscope and folded files, parsed back."""

import gzip
import json
import shutil
import subprocess

import pytest
from django.core.files.storage import FileSystemStorage

from profiles import services
from profiles.analysis import parse_pprof

from .samples import completed_profile, raw_profile

BASE = "/api/v1/observability/profiling"
S = 1_000_000_000


@pytest.fixture
def profile(tenant):
    raw = raw_profile({"parse": 3 * S, "<listcomp>": 1 * S}, duration=10, threads=("MainThread", "worker-1"))
    return completed_profile(tenant.tenant, raw)


def _export(client, profile, fmt):
    return client.get(f"{BASE}/{profile.pk}/export", {"format": fmt})


@pytest.mark.django_db
def test_pprof_is_gzip_protobuf_with_the_profile_inside(api_client, profile):
    response = _export(api_client, profile, "pprof")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment; filename=") and disposition.endswith('.pb.gz"')
    assert "ai-service-cpu-" in disposition
    assert response.content[:2] == b"\x1f\x8b"
    decoded = parse_pprof(response.content)
    assert decoded["sample_types"] == [("samples", "count"), ("cpu", "nanoseconds")]
    assert decoded["duration_nanos"] == 10 * S
    by_leaf = {}
    for sample in decoded["samples"]:
        assert sample["stack"][-1] == "main"  # leaf first, root last
        by_leaf[sample["stack"][0]] = by_leaf.get(sample["stack"][0], 0) + sample["values"][1]
    assert by_leaf == {"parse": 6 * S, "[listcomp]": 2 * S}  # two threads each
    assert {s["labels"]["thread"] for s in decoded["samples"]} == {"MainThread", "worker-1"}


@pytest.mark.django_db
@pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed")
def test_go_tool_pprof_reads_the_export(api_client, profile, tmp_path):
    path = tmp_path / "profile.pb.gz"
    path.write_bytes(_export(api_client, profile, "pprof").content)
    result = subprocess.run(["go", "tool", "pprof", "-top", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "parse" in result.stdout


@pytest.mark.django_db
def test_speedscope_is_a_speedscope_file(api_client, profile):
    response = _export(api_client, profile, "speedscope")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].endswith('.speedscope.json"')
    doc = json.loads(response.content)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    names = [frame["name"] for frame in doc["shared"]["frames"]]
    assert {"main", "parse", "<listcomp>"} <= set(names)
    assert {p["name"] for p in doc["profiles"]} == {"MainThread", "worker-1"}
    for entry in doc["profiles"]:
        assert entry["type"] == "sampled" and entry["unit"] == "nanoseconds"
        assert len(entry["samples"]) == len(entry["weights"])
        assert entry["endValue"] == sum(entry["weights"]) == 4 * S
        for stack in entry["samples"]:
            assert names[stack[0]] == "main" and all(0 <= i < len(names) for i in stack)


@pytest.mark.django_db
def test_folded_is_one_line_per_stack(api_client, profile):
    response = _export(api_client, profile, "folded")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"].endswith('.folded.txt"')
    lines = response.content.decode().splitlines()
    assert lines == [
        f"main (/app/app.py:1);<listcomp> (/app/app.py:20) {2 * S}",
        f"main (/app/app.py:1);parse (/app/app.py:10) {6 * S}",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["", "svg", "PPROF", "json"])
def test_an_unknown_or_missing_format_is_400(api_client, profile, fmt):
    response = api_client.get(f"{BASE}/{profile.pk}/export", {"format": fmt} if fmt else {})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "format" in response.json()["errors"]


@pytest.mark.django_db
def test_a_profile_that_is_not_completed_is_409(api_client, tenant):
    running = services.profile_start(tenant=tenant.tenant, service="ai-service", profile_type="cpu", duration_seconds=5)
    response = _export(api_client, running, "pprof")
    assert response.status_code == 409
    assert "running" in response.json()["detail"]


@pytest.mark.django_db
def test_a_stored_file_that_cannot_be_read_is_409_not_500(api_client, profile, monkeypatch):
    def unreadable(*args, **kwargs):
        raise PermissionError("permission denied")

    monkeypatch.setattr(FileSystemStorage, "open", unreadable)
    response = _export(api_client, profile, "pprof")
    assert response.status_code == 409
    assert "could not be read" in response.json()["detail"]


@pytest.mark.django_db
def test_memory_profiles_export_their_own_sample_types(api_client, tenant):
    memory = completed_profile(tenant.tenant, raw_profile({"cache": 4096}, profile_type="memory"))
    decoded = parse_pprof(gzip.decompress(_export(api_client, memory, "pprof").content))
    assert decoded["sample_types"][-1] == ("inuse_space", "bytes")


@pytest.mark.django_db
def test_another_tenants_profile_is_404(api_client, other_tenant, profile):
    for fmt in ("pprof", "speedscope", "folded"):
        response = _export(other_tenant.client(), profile, fmt)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
    assert api_client.get(f"{BASE}/not-a-uuid/export", {"format": "pprof"}).status_code == 404


@pytest.mark.django_db
def test_export_needs_an_api_token(agent_client, profile):
    assert _export(agent_client, profile, "pprof").status_code == 403


@pytest.mark.django_db
def test_the_stored_payload_is_strict_pyprof_raw_and_loads_back_unchanged(profile):
    from profiles.analysis import Profile, load_gzip_json
    from profiles.selectors import profile_load_analysis

    with profile.payload.open("rb") as fh:
        raw = load_gzip_json(fh.read(), 10**8)
    strict = Profile.from_raw(raw)  # the stored file is a valid upload for any pyprof-raw/1 reader
    stacks = [(s["stack"], s["thread"]) for s in raw["samples"]]
    assert stacks == sorted(stacks)  # sorted by stack: what keeps stored profiles small
    assert profile_load_analysis(profile=profile) == strict
