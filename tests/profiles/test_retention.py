"""The daily purge deletes exactly the expired profiles, rows and stored files, and nothing else."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from profiles import services, tasks
from profiles.models import ContinuousProfile, ProfileResult

from .samples import completed_profile, raw_profile

BASE = "/api/v1/observability/profiling"


def _aged(tenant, days: float, *, service="ai-service", continuous=False, now=None) -> ProfileResult:
    now = now or timezone.now()
    slot = now - timedelta(days=days) if continuous else None
    return completed_profile(
        tenant, raw_profile({"work": 10**9}, duration=10), service=service,
        started_at=now - timedelta(days=days), continuous_slot=slot,
    )


def _file(profile: ProfileResult) -> Path:
    return Path(profile.payload.path)


@pytest.mark.django_db
def test_each_service_keeps_its_continuous_profiles_for_its_retention_days(tenant, settings):
    settings.PROFILING_DEFAULT_RETENTION_DAYS = 30
    now = timezone.now()
    ContinuousProfile.objects.create(tenant=tenant.tenant, service="ai-service", profile_types=["cpu"], retention_days=7)
    ContinuousProfile.objects.create(tenant=tenant.tenant, service="billing", profile_types=["cpu"], retention_days=90)
    expired = _aged(tenant.tenant, 8, continuous=True, now=now)
    kept = _aged(tenant.tenant, 6, continuous=True, now=now)
    long_kept = _aged(tenant.tenant, 60, service="billing", continuous=True, now=now)
    long_expired = _aged(tenant.tenant, 91, service="billing", continuous=True, now=now)
    files = {p.pk: _file(p) for p in (expired, kept, long_kept, long_expired)}
    assert all(f.exists() for f in files.values())

    assert services.profiles_purge_expired(now=now) == 2

    assert set(ProfileResult.objects.values_list("pk", flat=True)) == {kept.pk, long_kept.pk}
    assert not files[expired.pk].exists() and not files[long_expired.pk].exists()
    assert files[kept.pk].exists() and files[long_kept.pk].exists()


@pytest.mark.django_db
def test_on_demand_profiles_follow_the_default_retention(tenant, settings):
    settings.PROFILING_DEFAULT_RETENTION_DAYS = 30
    now = timezone.now()
    # A short continuous retention does not shorten the life of on-demand profiles of that service.
    ContinuousProfile.objects.create(tenant=tenant.tenant, service="ai-service", profile_types=["cpu"], retention_days=1)
    on_demand_kept = _aged(tenant.tenant, 29, now=now)
    on_demand_expired = _aged(tenant.tenant, 31, now=now)
    other_service_expired = _aged(tenant.tenant, 31, service="unconfigured", now=now)
    path = _file(on_demand_expired)

    assert services.profiles_purge_expired(now=now) == 2

    assert list(ProfileResult.objects.values_list("pk", flat=True)) == [on_demand_kept.pk]
    assert not path.exists() and not _file(other_service_expired).exists()


@pytest.mark.django_db
def test_continuous_profiles_of_a_deleted_configuration_follow_the_default(tenant, settings):
    settings.PROFILING_DEFAULT_RETENTION_DAYS = 30
    now = timezone.now()
    young = _aged(tenant.tenant, 20, continuous=True, now=now)
    old = _aged(tenant.tenant, 40, continuous=True, now=now)
    assert services.profiles_purge_expired(now=now) == 1
    assert list(ProfileResult.objects.values_list("pk", flat=True)) == [young.pk]
    assert not ProfileResult.objects.filter(pk=old.pk).exists()


@pytest.mark.django_db
def test_retention_is_per_tenant(tenant, other_tenant, settings):
    settings.PROFILING_DEFAULT_RETENTION_DAYS = 365
    now = timezone.now()
    ContinuousProfile.objects.create(tenant=tenant.tenant, service="ai-service", profile_types=["cpu"], retention_days=7)
    mine = _aged(tenant.tenant, 10, continuous=True, now=now)
    theirs = _aged(other_tenant.tenant, 10, continuous=True, now=now)  # same service name, no config
    assert services.profiles_purge_expired(now=now) == 1
    assert not ProfileResult.objects.filter(pk=mine.pk).exists()
    assert ProfileResult.objects.filter(pk=theirs.pk).exists()


@pytest.mark.django_db
def test_running_profiles_are_kept_and_failed_runs_without_files_are_purged(tenant, settings):
    settings.PROFILING_DEFAULT_RETENTION_DAYS = 30
    now = timezone.now()
    running = services.profile_start(tenant=tenant.tenant, service="s", profile_type="cpu", duration_seconds=5)
    failed = services.profile_start(tenant=tenant.tenant, service="s", profile_type="cpu", duration_seconds=5)
    services.profile_fail(profile=failed, error="no agent")
    ProfileResult.objects.update(started_at=now - timedelta(days=40))
    assert services.profiles_purge_expired(now=now) == 1
    assert list(ProfileResult.objects.values_list("pk", flat=True)) == [running.pk]


@pytest.mark.django_db
def test_purge_is_idempotent_and_the_api_no_longer_sees_deleted_profiles(api_client, tenant, settings, eager_celery):
    settings.PROFILING_DEFAULT_RETENTION_DAYS = 30
    old = _aged(tenant.tenant, 31)
    assert tasks.purge_expired_profiles.delay().get() == 1
    assert tasks.purge_expired_profiles.delay().get() == 0
    assert api_client.get(f"{BASE}/{old.pk}").status_code == 404


@pytest.mark.django_db
def test_a_missing_file_does_not_stop_the_purge(tenant, settings):
    settings.PROFILING_DEFAULT_RETENTION_DAYS = 30
    gone = _aged(tenant.tenant, 31)
    other = _aged(tenant.tenant, 32)
    _file(gone).unlink()
    assert services.profiles_purge_expired() == 2
    assert not _file(other).exists()


@pytest.mark.django_db
def test_purge_deletes_in_batches(tenant, settings, monkeypatch):
    settings.PROFILING_DEFAULT_RETENTION_DAYS = 30
    monkeypatch.setattr(services.retention, "PURGE_BATCH", 2)
    profiles = [_aged(tenant.tenant, 31 + i) for i in range(5)]
    keep = _aged(tenant.tenant, 1)
    assert services.profiles_purge_expired() == 5
    assert list(ProfileResult.objects.values_list("pk", flat=True)) == [keep.pk]
    assert not any(_file(p).exists() for p in profiles)
