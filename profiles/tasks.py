"""Celery tasks: thin, take ids, idempotent; the work is in services."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, time_limit=300, soft_time_limit=240)
def process_upload(profile_id: str) -> None:
    services.profile_process_upload(profile_id=profile_id)


@shared_task(time_limit=120, soft_time_limit=100)
def reap_overdue_runs() -> int:
    return services.profiles_reap_overdue()


@shared_task(time_limit=120, soft_time_limit=100)
def dispatch_continuous_profiles() -> int:
    """Beat, every PROFILING_CONTINUOUS_PERIOD_SECONDS; a doubled or late tick adds nothing."""
    return services.continuous_dispatch()


@shared_task(time_limit=3600, soft_time_limit=3500)
def purge_expired_profiles() -> int:
    """Beat, daily: idempotent (what is gone stays gone)."""
    return services.profiles_purge_expired() + services.rollups_purge_expired()


@shared_task(time_limit=1800, soft_time_limit=1700)
def rollup_profiles() -> int:
    """Beat, every PROFILING_ROLLUP_PERIOD_SECONDS: builds the closed periods' missing or stale rollups."""
    return services.rollups_refresh()
