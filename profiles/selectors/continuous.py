"""Reads for continuous profiling: slots, configurations and their next run."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet

from ..models import ContinuousProfile


def continuous_slot_for(now: datetime) -> datetime:
    """The dispatch slot containing `now`: `now` floored to PROFILING_CONTINUOUS_PERIOD_SECONDS."""
    period = settings.PROFILING_CONTINUOUS_PERIOD_SECONDS
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % period, tz=now.tzinfo)


def continuous_profile_list(*, queryset: QuerySet) -> QuerySet:
    return queryset.order_by("service")


def continuous_next_run_at(*, config: ContinuousProfile, now: datetime) -> datetime | None:
    """When the next window of this configuration begins; None when it is disabled.

    Windows are back to back on the period's boundaries (their runs are created ahead of them).
    """
    if not config.enabled:
        return None
    return continuous_slot_for(now) + timedelta(seconds=settings.PROFILING_CONTINUOUS_PERIOD_SECONDS)
