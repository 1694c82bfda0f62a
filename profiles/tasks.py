"""Celery tasks: thin, take ids, idempotent; the work is in services."""

import random

from celery import shared_task
from django.conf import settings

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
    return services.profiles_purge_expired()


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
