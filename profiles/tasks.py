"""Celery tasks: thin, take ids, idempotent; the work is in services."""

import random

from celery import shared_task
from django.conf import settings
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
    return (services.profiles_purge_expired() + services.rollups_purge_expired()
            + services.agent_instances_forget_silent() + services.alerts_purge_expired())


@shared_task(time_limit=300, soft_time_limit=280)
def check_regression_alerts() -> int:
    """Beat, every PROFILING_ALERT_CHECK_SECONDS: a window already checked is not checked again."""
    return services.alerts_check_all()


@shared_task(bind=True, acks_late=True, max_retries=services.WEBHOOK_MAX_ATTEMPTS - 1, time_limit=60, soft_time_limit=50)
def deliver_alert_webhook(self, delivery_id: str) -> None:
    """One attempt per run; a failed one is retried with exponential backoff (1, 2, 4 ... times
    PROFILING_WEBHOOK_RETRY_SECONDS, with jitter), the last failure is logged as failed.
    acks_late: a worker lost mid-attempt leaves the message to another (at least once; receivers
    tell repeats apart by X-Profiling-Delivery)."""
    try:
        services.webhook_deliver(delivery_id=delivery_id, final_attempt=self.request.retries >= self.max_retries)
    except services.DeliveryFailed as exc:
        base = settings.PROFILING_WEBHOOK_RETRY_SECONDS
        countdown = base * 2**self.request.retries * (1 + random.random() / 4)
        raise self.retry(exc=exc, countdown=countdown) from None


@shared_task(time_limit=1800, soft_time_limit=1700)
def rollup_profiles() -> int:
    """Beat, every PROFILING_ROLLUP_PERIOD_SECONDS: builds the closed periods' missing or stale rollups."""
    return services.rollups_refresh()
