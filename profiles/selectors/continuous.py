"""Reads for continuous profiling: slots, configurations and their next run."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, OuterRef, QuerySet, Subquery

from ..models import ContinuousProfile, ProfileResult


def continuous_slot_for(now: datetime) -> datetime:
    """The dispatch slot containing `now`: `now` floored to PROFILING_CONTINUOUS_PERIOD_SECONDS."""
    period = settings.PROFILING_CONTINUOUS_PERIOD_SECONDS
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % period, tz=now.tzinfo)


def continuous_profile_list(*, queryset: QuerySet) -> QuerySet:
    """Configurations with `last_slot`: the newest slot already dispatched for their service."""
    last_slot = (
        ProfileResult.objects.filter(
            tenant=OuterRef("tenant"), service=OuterRef("service"), continuous_slot__isnull=False
        )
        .order_by()
        .values("tenant", "service")
        .annotate(last=Max("continuous_slot"))
        .values("last")
    )
    return queryset.annotate(last_slot=Subquery(last_slot)).order_by("service")


def continuous_next_run_at(*, config: ContinuousProfile, now: datetime) -> datetime | None:
    """When the next runs of this configuration are created; None when it is disabled.

    The current slot when it has not been dispatched yet (the next beat tick creates its
    runs), else the start of the next slot.
    """
    if not config.enabled:
        return None
    slot = continuous_slot_for(now)
    if hasattr(config, "last_slot"):  # annotated by continuous_profile_list: no query per row
        last = config.last_slot
    else:
        last = ProfileResult.objects.filter(
            tenant_id=config.tenant_id, service=config.service, continuous_slot__isnull=False
        ).aggregate(last=Max("continuous_slot"))["last"]
    if last is None or last < slot:
        return slot
    return slot + timedelta(seconds=settings.PROFILING_CONTINUOUS_PERIOD_SECONDS)
