"""Writes of rollups: the merge of a service's continuous windows per period (10 min, 1 h, 6 h, 1 day).

Why periodic and not per upload: a rollup rewritten on every window's arrival costs its whole
file each time (a day's rollup would be written 1,440 times a day). Instead a beat task
(`rollup_profiles`, every PROFILING_ROLLUP_PERIOD_SECONDS) builds each closed period once, the
finest first, each from the next finer rollups plus raw windows; a window that arrives after
its period's rollup was built makes that rollup stale (it holds fewer windows than the period
has), so merges read raw windows for that period until the next tick rebuilds it. A merge is
therefore always exact, whether or not the rollups are up to date.
"""

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import ProfileResult, ProfileRollup, Status
from ..selectors.ranges import PERIODS, period_floor, range_merge, range_plan
from .processing import _compact_payload

logger = logging.getLogger(__name__)

# Windows completed this long ago or less are looked at by a tick (their periods may be stale).
LOOKBACK = timedelta(days=1, hours=1)


def rollups_refresh(*, now: datetime | None = None, lookback: timedelta = LOOKBACK) -> int:
    """Build every missing or stale rollup of a closed period with windows completed in
    `lookback`; returns how many were written. Idempotent: a fresh rollup is left alone.

    Staleness is found with two queries per (service, type, engine) and period length; only
    stale periods are read and written.
    """
    now = now or timezone.now()
    recent = (
        ProfileResult.objects.filter(status=Status.COMPLETED, continuous=True, completed_at__gte=now - lookback)
        .values_list("tenant_id", "service", "profile_type", "engine", "started_at")
        .order_by()
    )
    starts: dict[tuple, list[datetime]] = {}
    for tenant_id, service, profile_type, engine, started_at in recent:
        starts.setdefault((tenant_id, service, profile_type, engine), []).append(started_at)
    written = 0
    for (tenant_id, service, profile_type, engine), started in starts.items():
        key = dict(tenant_id=tenant_id, service=service, profile_type=profile_type, engine=engine)
        for period in reversed(PERIODS):  # finest first: coarser rollups are built from finer ones
            closed = sorted({p for p in (period_floor(at, period) for at in started) if p + period <= now.timestamp()})
            if not closed:
                continue
            span = (datetime.fromtimestamp(closed[0], UTC), datetime.fromtimestamp(closed[-1] + period, UTC))
            windows = Counter(
                period_floor(at, period)
                for at in ProfileResult.objects.filter(
                    **key, continuous=True, status=Status.COMPLETED, started_at__gte=span[0], started_at__lt=span[1]
                ).values_list("started_at", flat=True)
            )
            held = {
                int(at.timestamp()): count
                for at, count in ProfileRollup.objects.filter(
                    **key, period_seconds=period, period_start__gte=span[0], period_start__lt=span[1]
                ).values_list("period_start", "profile_count")
            }
            for period_start in closed:
                if windows[period_start] > held.get(period_start, 0) and rollup_build(
                    **key, period_seconds=period, period_start=datetime.fromtimestamp(period_start, UTC)
                ):
                    written += 1
    return written


def rollup_build(
    *, tenant_id, service: str, profile_type: str, engine: str, period_seconds: int, period_start: datetime
) -> ProfileRollup | None:
    """(Re)write one period's rollup if it is missing or holds fewer windows than the period
    has; returns it, or None when it was already fresh or the period has no windows."""
    end = period_start + timedelta(seconds=period_seconds)
    windows = ProfileResult.objects.filter(
        tenant_id=tenant_id, service=service, profile_type=profile_type, engine=engine, continuous=True,
        status=Status.COMPLETED, started_at__gte=period_start, started_at__lt=end,
    ).count()
    identity = dict(
        tenant_id=tenant_id, service=service, profile_type=profile_type, engine=engine,
        period_seconds=period_seconds, period_start=period_start,
    )
    existing = ProfileRollup.objects.filter(**identity).first()
    if windows == 0 or (existing is not None and existing.profile_count >= windows):
        return None
    plan = range_plan(
        tenant=tenant_id, service=service, profile_type=profile_type, start=period_start, end=end,
        engine=engine, continuous=True, starting_within=True, finer_than=period_seconds,
    )
    merged = range_merge(plan=plan).profile
    if merged is None:
        return None
    data = _compact_payload(merged)
    rollup = existing or ProfileRollup(**identity)
    old_name = rollup.payload.name if existing else ""
    rollup.unit = merged.unit
    rollup.profile_count = plan.profile_count
    rollup.duration_seconds = merged.duration_seconds
    rollup.sample_count = merged.sample_count
    rollup.total_value = int(merged.total)
    rollup.size_bytes = len(data)
    rollup.built_at = timezone.now()
    rollup.payload.save("rollup.json.gz", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            rollup.save()
    except IntegrityError:  # another tick wrote this period's rollup meanwhile: keep theirs
        rollup.payload.storage.delete(rollup.payload.name)
        return None
    if old_name and old_name != rollup.payload.name:
        try:
            rollup.payload.storage.delete(old_name)
        except OSError:
            logger.warning("could not delete the replaced rollup file %s", old_name, exc_info=True)
    return rollup
