import gzip
import json

import pytest
from django.contrib.auth import get_user_model

from profiles import services
from profiles.models import ProfileResult
from tests.profiles.samples import claim_one

PASSWORD = "s3cret-pass-for-tests"


@pytest.fixture(autouse=True)
def media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def member(tenant):
    """A staff user who belongs to `tenant` only."""
    user = get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True)
    tenant.tenant.members.add(user)
    return user


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("root", password=PASSWORD)


def complete_profile(tenant, raw: dict, *, service: str = "checkout", started_at=None) -> ProfileResult:
    """A completed run through the real services: start, claim, upload, process."""
    started = services.profile_start(
        tenant=tenant, service=service, profile_type=raw["profileType"],
        duration_seconds=max(1, int(raw["durationSeconds"])),
    )
    claim = claim_one(tenant, service)
    assert claim is not None and claim.profile.pk == started.pk
    services.profile_accept_upload(
        profile=claim.profile, data=gzip.compress(json.dumps(raw).encode()), lease=claim.lease
    )
    services.profile_process_upload(profile_id=started.pk)
    if started_at is not None:
        ProfileResult.objects.filter(pk=started.pk).update(started_at=started_at)
    return ProfileResult.objects.get(pk=started.pk)


@pytest.fixture
def completed():
    return complete_profile
