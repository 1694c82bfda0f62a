"""Celery tasks: thin, take ids, idempotent; the work is in services."""

from celery import shared_task

from . import services


@shared_task(acks_late=True, time_limit=300, soft_time_limit=240)
def process_upload(profile_id: str) -> None:
    services.profile_process_upload(profile_id=profile_id)


@shared_task(time_limit=120)
def reap_overdue_runs() -> int:
    return services.profiles_reap_overdue()
