"""The daily purge deletes exactly the expired profiles, rows and stored files, and nothing else."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from profiles import services, tasks
from profiles.models import (
    AgentInstance,
    Alert,
    AlertStatus,
    ContinuousProfile,
    ProfileResult,
    WebhookDelivery,
)

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


@pytest.mark.django_db
def test_agent_instances_silent_past_the_forget_days_are_forgotten_by_the_daily_purge(tenant, settings):
    settings.PROFILING_AGENT_FORGET_DAYS = 7
    now = timezone.now()
    profile = _aged(tenant.tenant, 1, now=now)  # made first: instances without engines take no runs

    def instance(name, silent_days):
        return AgentInstance.objects.create(
            tenant=tenant.tenant, service="ai-service", instance_id=name, host="web-1", pid=7,
            last_poll_at=now - timedelta(days=silent_days),
        )

    instance("restarted-last-month", 30)
    instance("gone-8-days", 8)
    instance("live", 0)
    instance("quiet-6-days", 6)

    tasks.purge_expired_profiles.apply()

    assert set(AgentInstance.objects.values_list("instance_id", flat=True)) == {"live", "quiet-6-days"}
    assert ProfileResult.objects.filter(pk=profile.pk).exists()  # profiles outlive their agents


@pytest.mark.django_db
def test_resolved_alerts_and_old_deliveries_expire_and_open_alerts_stay(tenant, settings):
    settings.PROFILING_ALERT_RETENTION_DAYS = 90
    now = timezone.now()
    old = now - timedelta(days=100)

    def alert(function, *, resolved_at=None):
        return Alert.objects.create(
            tenant=tenant.tenant, service="ai-service", profile_type="cpu", function=function,
            status=AlertStatus.RESOLVED if resolved_at else AlertStatus.OPEN, resolved_at=resolved_at,
            baseline="trailing24h", threshold_percent=10, baseline_share=0.2, baseline_variance=0.0001,
            baseline_windows=30, current_share=0.45, peak_share=0.45, opened_at=old,
        )

    def delivery(alert, created_at):
        return WebhookDelivery.objects.create(tenant=tenant.tenant, alert=alert, event="alert.opened",
                                              url="https://hooks.example/x", body="{}", created_at=created_at)

    long_resolved = alert("long_resolved", resolved_at=old)
    delivery(long_resolved, old)
    recently_resolved = alert("recently_resolved", resolved_at=now - timedelta(days=10))
    still_open = alert("still_open")
    stale = delivery(still_open, old)
    fresh = delivery(still_open, now - timedelta(days=1))

    assert services.alerts_purge_expired(now=now) == 3  # one alert, its delivery, one stale delivery

    assert set(Alert.objects.values_list("function", flat=True)) == {"recently_resolved", "still_open"}
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not WebhookDelivery.objects.filter(pk=stale.pk).exists()
    assert recently_resolved.pk in set(Alert.objects.values_list("pk", flat=True))
