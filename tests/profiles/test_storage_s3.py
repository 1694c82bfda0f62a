"""The S3 path: profile files and rollups stored, read and deleted as real objects of an S3 API
server (moto's standalone server, started here on a free port)."""

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta

import pytest

from profiles import services
from profiles.models import (
    ARTIFACT_SUFFIXES,
    ContinuousProfile,
    ProfileResult,
    ProfileRollup,
    artifact_name,
)
from profiling_platform.settings import s3_storage

from .test_ranges import T0, at, leaves_of, merge, window

CREDENTIALS = {"access_key": "testing", "secret_key": "testing", "region_name": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:  # poll until the server answers, at most 30 s
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except urllib.error.HTTPError:
            break  # it answered (with an S3 error document)
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.1)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def bucket(s3_endpoint, settings):
    import boto3

    name = f"profiles-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket=name)
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage(name, endpoint_url=s3_endpoint, **CREDENTIALS)}

    def keys(prefix: str = "") -> list[str]:
        listed = client.list_objects_v2(Bucket=name, Prefix=prefix)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    return keys


@pytest.mark.django_db
def test_profiles_and_rollups_live_in_the_bucket_and_retention_deletes_them(api_client, tenant, bucket, settings, media_root):
    ContinuousProfile.objects.create(tenant=tenant.tenant, service="ai-service", profile_types=["cpu"], retention_days=7)
    settings.PROFILING_ROLLUP_RETENTION_DAYS = 30
    for minute in range(0, 20):
        window(tenant.tenant, minute, leaves_of(minute))
    stored = bucket("profiles/")
    # each profile: its payload and what processing computed beside it for pages and exports
    expected = [
        name for p in ProfileResult.objects.all()
        for name in (p.payload.name, *(artifact_name(p.payload.name, kind) for kind in ARTIFACT_SUFFIXES))
    ]
    assert stored == sorted(expected) and len(stored) == 20 * (1 + len(ARTIFACT_SUFFIXES))
    assert not media_root.exists() or not list(media_root.rglob("*.gz"))  # nothing on the local disk

    raw = merge(api_client, at(0), at(20)).json()  # read back from the bucket
    assert raw["profileCount"] == 20 and raw["sources"]["windows"] == 20

    services.rollups_refresh(now=at(24 * 60 + 10), lookback=timedelta(days=2))
    rollup_keys = bucket("rollups/")
    assert rollup_keys == sorted(r.payload.name for r in ProfileRollup.objects.all()) and len(rollup_keys) == 5  # 10:00, 10:10, the hour, 06:00-12:00, the day
    rolled = merge(api_client, at(0), at(20)).json()
    assert rolled["sources"] == {**rolled["sources"], "rollups": 2, "windows": 0}
    assert rolled["totalValue"] == raw["totalValue"] and rolled["topFunctions"] == raw["topFunctions"]

    services.profiles_purge_expired(now=T0 + timedelta(days=8))
    assert bucket("profiles/") == []
    assert merge(api_client, at(0), at(20)).json()["totalValue"] == raw["totalValue"]
    services.rollups_purge_expired(now=T0 + timedelta(days=31))
    assert bucket() == []
    assert merge(api_client, at(0), at(20)).json()["profileCount"] == 0
