"""Reads over a time range: every completed profile of a service and type in it, merged into one.

Which profiles: those whose window [startedAt, startedAt + durationSeconds) overlaps the range
[from, to). A window cut by either end is included whole: its samples carry no timestamps, so
pro-rating it would invent a split the data does not have. `durationSeconds` of the merge is
the summed length of the included windows (the covered time); `coverage` is the share of the
range that the windows overlap (capped at 1).

How: continuous windows are also kept merged per period (PERIODS, aligned to UTC; written by
profiles/services/rollups.py). A range reads the rollup of each whole period inside it, the
coarsest first, and raw windows only for the ragged edges, for periods whose rollup is missing
or stale (it holds fewer windows than the period has now), and for on-demand profiles. After
retention removed the raw windows of a period its rollup still answers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db.models import Count, FloatField, Func, Sum, Value
from django.db.models.fields.files import FieldFile
from django.db.models.functions import Coalesce, Floor

from ..analysis.labels import Labels
from ..analysis.merge import MixedProfiles, merge_documents
from ..analysis.model import InvalidProfile, Profile
from ..models import PER_SECOND_TYPES, ProfileResult, ProfileRollup, Status
from .compare import comparison_result
from .profiles import ProfileNotReady, gc_paused, stored_document

# Rollup periods in seconds, coarsest first; each divides the one before, so periods nest.
PERIODS = (86_400, 21_600, 3_600, 600)
# The longest window a profile can have (requested_duration_seconds' maximum).
MAX_WINDOW = timedelta(seconds=3_600)


class MixedEngines(Exception):
    """The range holds profiles of several engines: a 400 that names them."""

    def __init__(self, engines):
        self.engines = sorted(engines)
        super().__init__(
            f"the range holds profiles of several engines ({', '.join(self.engines)}), which do not "
            f"merge; pick one with engine= (e.g. engine={self.engines[0]})"
        )


class RangeEmpty(Exception):
    """A range to compare holds no completed profile (for this tenant): a 404."""


class RangeNotRolledUp(Exception):
    """The range needs more raw windows than a request may read (rollups not built yet): a 409."""


class EpochSeconds(Func):
    """A datetime column as seconds since 1970 (PostgreSQL, SQLite): grouping by period in SQL
    spares converting thousands of timestamps to Python datetimes, the slowest part of a read."""

    output_field = FloatField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="CAST(strftime('%%%%s', %(expressions)s) AS REAL)", **extra)


def period_counts(queryset, period_seconds: int, origin: float = 0.0) -> list[tuple[str, int, int]]:
    """(engine, slice index, profiles) of `queryset` in slices of `period_seconds` from `origin`
    (epoch seconds), counted by the database."""
    rows = queryset.annotate(bucket=_slice(period_seconds, origin)).values_list("engine", "bucket").annotate(n=Count("id")).order_by()
    return [(engine, int(index), n) for engine, index, n in rows]


def _slice(seconds: float, origin: float):
    """The index of the slice of `seconds` from `origin` that a row's start lies in."""
    return Floor((EpochSeconds("started_at") - Value(origin)) / Value(float(seconds)))


def period_floor(at: datetime, period_seconds: int) -> int:
    """The UTC epoch second at which the period of `period_seconds` holding `at` starts."""
    return int(at.timestamp()) // period_seconds * period_seconds


class Window(NamedTuple):
    """What a plan needs of a stored profile (a row of ProfileResult)."""

    id: Any
    started_at: datetime
    duration_seconds: float | None
    requested_duration_seconds: int
    engine: str
    continuous: bool
    payload: str  # the stored file's name
    size_bytes: int

    @property
    def seconds(self) -> float:
        return self.duration_seconds if self.duration_seconds is not None else self.requested_duration_seconds

    @property
    def end(self) -> datetime:
        return self.started_at + timedelta(seconds=self.seconds)

    def file(self):
        return FieldFile(None, ProfileResult._meta.get_field("payload"), self.payload)


class Rollup(NamedTuple):
    """What a plan needs of a stored rollup (a row of ProfileRollup)."""

    id: int
    period_seconds: int
    period_start: datetime
    engine: str
    profile_count: int
    duration_seconds: float
    payload: str
    size_bytes: int

    def file(self):
        return FieldFile(None, ProfileRollup._meta.get_field("payload"), self.payload)


@dataclass
class RangePlan:
    """What a range reads: rollups for whole periods, raw windows for the rest."""

    start: datetime
    end: datetime
    rollups: list[Rollup] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    covered_seconds: float = 0.0

    @property
    def profile_count(self) -> int:
        return sum(r.profile_count for r in self.rollups) + len(self.windows)

    @property
    def bytes_to_read(self) -> int:
        return sum(r.size_bytes for r in self.rollups) + sum(w.size_bytes for w in self.windows)

    @property
    def coverage(self) -> float:
        span = (self.end - self.start).total_seconds()
        return round(min(1.0, self.covered_seconds / span), 4) if span > 0 else 0.0


@dataclass(frozen=True)
class MergedRange:
    plan: RangePlan
    profile: Profile | None  # None when the range holds no profile

    @property
    def engine(self) -> str:
        return self.profile.engine if self.profile else ""

    @property
    def unit(self) -> str:
        return self.profile.unit if self.profile else ""


def range_plan(
    *,
    tenant,
    service: str,
    profile_type: str,
    start: datetime,
    end: datetime,
    engine: str = "",
    continuous: bool | None = None,
    starting_within: bool = False,
    finer_than: int | None = None,
) -> RangePlan:
    """The tenant's rollups and raw windows that make up the range.

    `starting_within` keeps only profiles that start inside the range (what a rollup of that
    period holds); `finer_than` uses only rollups of shorter periods (building a rollup).
    Raises MixedEngines when no `engine` was given and the range holds several.

    Two reads of the rows: the start (and engine) of every continuous window in the range, to
    tell fresh rollups from stale ones, then whole rows only of the windows no chosen rollup
    holds. A week is 10,080 windows; reading them whole would cost most of the request.
    """
    candidates = ProfileResult.objects.filter(
        tenant=tenant, service=service, profile_type=profile_type, status=Status.COMPLETED,
        started_at__gte=start if starting_within else start - MAX_WINDOW, started_at__lt=end,
    )
    if engine:
        candidates = candidates.filter(engine=engine)
    if continuous is not None:
        candidates = candidates.filter(continuous=continuous)
    periods = [p for p in PERIODS if finer_than is None or p < finer_than]
    rollups: list[Rollup] = []
    engines: set[str] = set()
    counts: Counter = Counter()  # continuous windows per (period, start): a rollup holding fewer is stale
    if continuous is not False and periods:
        rollup_rows = ProfileRollup.objects.filter(
            tenant=tenant, service=service, profile_type=profile_type,
            period_seconds__in=periods, period_start__gte=start, period_start__lt=end,
        )
        if engine:
            rollup_rows = rollup_rows.filter(engine=engine)
        for row in rollup_rows.order_by("period_start").values_list(*Rollup._fields):
            rollup = Rollup(*row)
            if rollup.period_start + timedelta(seconds=rollup.period_seconds) <= end:
                rollups.append(rollup)
                engines.add(rollup.engine)
        if rollups:
            finest = periods[-1]
            for window_engine, index, n in period_counts(candidates.filter(continuous=True, started_at__gte=start), finest):
                engines.add(window_engine)
                for period in periods:  # periods nest: each finest slice lies in one of every period
                    counts[(period, index * finest // period * period)] += n

    chosen: set[tuple[int, int]] = set()
    plan = RangePlan(start=start, end=end)
    for period in periods:  # coarsest first: a chosen period hides the rollups nested in it
        for rollup in (r for r in rollups if r.period_seconds == period):
            at = rollup.period_start
            key = (period, period_floor(at, period))
            if any((p, period_floor(at, p)) in chosen for p in periods if p > period):
                continue
            if rollup.profile_count < counts[key]:
                continue  # windows arrived after it was built: the periodic task rebuilds it
            chosen.add(key)
            plan.rollups.append(rollup)
            plan.covered_seconds += min(rollup.duration_seconds, period)

    rest = candidates
    spans = _spans(plan.rollups)
    if len(spans) <= 50:  # else the query would be too long: filter them out below instead
        for span_start, span_end in spans:
            rest = rest.exclude(continuous=True, started_at__gte=span_start, started_at__lt=span_end)
    for row in rest.order_by("started_at", "id").values_list(*Window._fields):
        w = Window(*row)
        if w.end <= start and w.started_at < start:
            continue  # ended before the range
        if w.continuous and w.started_at >= start and any((p, period_floor(w.started_at, p)) in chosen for p in periods):
            continue
        engines.add(w.engine)
        plan.windows.append(w)
        plan.covered_seconds += max(0.0, (min(w.end, end) - max(w.started_at, start)).total_seconds())
    if len(engines) > 1:
        raise MixedEngines(engines)
    return plan


def _spans(rollups: list[Rollup]) -> list[tuple[datetime, datetime]]:
    """The chosen rollups' periods joined where they touch."""
    spans: list[list[datetime]] = []
    for rollup in sorted(rollups, key=lambda r: r.period_start):
        period_end = rollup.period_start + timedelta(seconds=rollup.period_seconds)
        if spans and spans[-1][1] == rollup.period_start:
            spans[-1][1] = period_end
        else:
            spans.append([rollup.period_start, period_end])
    return [(a, b) for a, b in spans]


def range_merge(*, plan: RangePlan) -> MergedRange:
    """Read and merge what the plan names (raises ProfileNotReady for an unreadable file)."""
    limit = settings.PROFILING_MERGE_MAX_RAW_WINDOWS
    if len(plan.windows) > limit:
        raise RangeNotRolledUp(
            f"the range needs {len(plan.windows)} raw windows, more than the {limit} a request reads; "
            "its rollups are not built yet (the rollup task builds closed periods every few minutes): "
            "pick a shorter range or retry later"
        )
    sources = [(r.file(), f"the rollup of {r.period_start:%Y-%m-%d %H:%M}") for r in plan.rollups]
    sources += [(w.file(), f"profile {w.id}") for w in plan.windows]
    if not sources:
        return MergedRange(plan=plan, profile=None)
    # One file at a time: parsed, merged, dropped.
    documents = (stored_document(payload, what) for payload, what in sources)
    try:
        with gc_paused():
            return MergedRange(plan=plan, profile=merge_documents(documents))
    except MixedProfiles as exc:  # the plan checked the rows' engines; this is the files' word
        raise MixedEngines(exc.engines) from None
    except InvalidProfile as exc:
        raise ProfileNotReady(f"a stored file of the range is unreadable: {exc}") from None


def range_compare(
    *,
    tenant,
    service: str,
    profile_type: str,
    base: tuple[datetime, datetime],
    comparison: tuple[datetime, datetime],
    engine: str = "",
    normalization: str | None = None,
    noise_threshold_percent: float = 5.0,
    limit: int = 100,
    include_noise: bool = False,
    labels: Labels = (),
    group_by: str | None = None,
) -> dict:
    """The seed's ProfileComparison of two ranges' merges; the labels are ISO 8601 intervals."""
    merged = {}
    for name, (start, end) in (("base", base), ("comparison", comparison)):
        plan = range_plan(tenant=tenant, service=service, profile_type=profile_type, start=start, end=end, engine=engine)
        merged[name] = range_merge(plan=plan).profile
        if merged[name] is None:
            raise RangeEmpty(f"the {name} range {interval(start, end)} holds no completed {profile_type} profile of {service}")
    return comparison_result(
        base_profile=merged["base"],
        comparison_profile=merged["comparison"],
        base_label=interval(*base),
        comparison_label=interval(*comparison),
        engines=(merged["base"].engine, merged["comparison"].engine),
        normalization=normalization,
        noise_threshold_percent=noise_threshold_percent,
        limit=limit,
        include_noise=include_noise,
        labels=labels,
        group_by=group_by,
    )


def interval(start: datetime, end: datetime) -> str:
    return f"{start.isoformat().replace('+00:00', 'Z')}/{end.isoformat().replace('+00:00', 'Z')}"


def range_timeline(
    *, tenant, service: str, profile_type: str, start: datetime, end: datetime, buckets: int = 240
) -> list[tuple[datetime, float, int]]:
    """The normalized total of the span in `buckets` equal slices: (slice start, value, windows).

    Read from rows only (no file): per-second types divide the summed totals by the summed
    window lengths; memory (a level) averages the windows' totals. Before the earliest raw
    window left (retention removed older ones) the rollups' rows answer. Empty slices are left out.
    """
    step = (end - start) / buckets
    windows = ProfileResult.objects.filter(
        tenant=tenant, service=service, profile_type=profile_type, status=Status.COMPLETED,
        started_at__gte=start, started_at__lt=end,
    )
    sums: dict[int, list[float]] = {}
    for index, total, seconds, count in (
        windows.annotate(bucket=_slice(step.total_seconds(), start.timestamp()))
        .values_list("bucket")
        .annotate(
            total=Sum("total_value"),
            seconds=Sum(Coalesce("duration_seconds", "requested_duration_seconds", output_field=FloatField())),
            n=Count("id"),
        )
        .order_by()
    ):
        sums[int(index)] = [float(total), float(seconds), count]
    earliest = windows.order_by("started_at").values_list("started_at", flat=True).first() or end
    period = max([p for p in PERIODS if p <= step.total_seconds()] or [PERIODS[-1]])
    for at, total, seconds, count in ProfileRollup.objects.filter(
        tenant=tenant, service=service, profile_type=profile_type, period_seconds=period,
        period_start__gte=start, period_start__lt=earliest - timedelta(seconds=period) + timedelta(microseconds=1),
    ).values_list("period_start", "total_value", "duration_seconds", "profile_count"):
        entry = sums.setdefault(int((at - start) / step), [0.0, 0.0, 0])
        entry[0] += total
        entry[1] += seconds
        entry[2] += count
    per_second = profile_type in PER_SECOND_TYPES
    return [
        (start + step * index, total / max(seconds, 1e-9) if per_second else total / max(count, 1), count)
        for index, (total, seconds, count) in sorted(sums.items())
    ]
