"""Celery tasks: thin, take ids, idempotent; the work is in services."""

from celery import shared_task
from django.utils import timezone

from . import services


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, time_limit=300, soft_time_limit=240, max_retries=None)
def process_upload(self, profile_id: str) -> None:
    """Acknowledged only once done, and redelivered when its worker dies: the attempts are counted in
    the row (services.PROCESSING_MAX_ATTEMPTS), so a profile that kills its worker cannot loop."""
    try:
        services.profile_process_upload(profile_id=profile_id)
    except services.ProcessingRetry as exc:
        raise self.retry(exc=exc, countdown=2**self.request.retries) from None


@shared_task(time_limit=120, soft_time_limit=100)
def reap_overdue_runs() -> int:
    """Beat: processing runs whose task vanished are enqueued again first, then the reaper fails the
    overdue ones; with one `now` the reaper never sees a processing run the sweep has handled."""
    now = timezone.now()
    services.profiles_requeue_stalled(now=now)
    return services.profiles_reap_overdue(now=now)


@shared_task(time_limit=120, soft_time_limit=100)
def dispatch_continuous_profiles() -> int:
    """Beat, every PROFILING_CONTINUOUS_PERIOD_SECONDS; a doubled or late tick adds nothing."""
    return services.continuous_dispatch()


@shared_task(time_limit=3600, soft_time_limit=3500)
def purge_expired_profiles() -> int:
    """Beat, daily: idempotent (what is gone stays gone)."""
    return services.profiles_purge_expired()
