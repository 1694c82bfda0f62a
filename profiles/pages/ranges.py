"""The service page: a timeline of one type, a range picked on it, that range's merged flame graph
(or its differential against a second range), and the function table that follows the graph."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET

from .. import selectors
from ..analysis.compare import differential_tree, normalization_scale
from ..analysis.flamegraph import flame_tree
from ..analysis.labels import apply_labels, filter_profile, label_values
from ..analysis.model import ENGINES
from ..models import SERVICE_VALIDATOR, ProfileRollup, ProfileType, Status
from . import charts
from .access import get_tenant_for_user, profiles_for_user, tenants_for_user
from .data import MAX_NODES, _cached
from .flamegraph import render_flamegraph
from .formatting import MEASURES, NORMALIZED_LABELS, format_value, is_per_second
from .labels import LabelQuery, label_query, picker_context

PRESETS = (
    ("15m", "15 min", timedelta(minutes=15)),
    ("1h", "1 h", timedelta(hours=1)),
    ("6h", "6 h", timedelta(hours=6)),
    ("24h", "24 h", timedelta(hours=24)),
    ("7d", "7 days", timedelta(days=7)),
)
TIMELINE_MIN_SPAN = timedelta(hours=24)
TIMELINE_BARS = 240


def _tenant(request, service: str):
    """The tenant named by ?tenant=, else the first of the user's tenants with profiles of `service`."""
    if request.GET.get("tenant"):
        return get_tenant_for_user(request.user, request.GET["tenant"])
    for tenant in tenants_for_user(request.user).order_by("external_id"):
        if profiles_for_user(request.user).filter(tenant=tenant, service=service).exists() or (
            ProfileRollup.objects.filter(tenant=tenant, service=service).exists()
        ):
            return tenant
    raise Http404("No profiles of this service.")


def _when(text: str | None) -> datetime | None:
    try:
        parsed = parse_datetime(text) if text else None
    except ValueError:  # well formed but impossible, e.g. month 13
        return None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC) if parsed else None


def _range_from(params, start_key: str, end_key: str) -> tuple[datetime, datetime] | None:
    start, end = _when(params.get(start_key)), _when(params.get(end_key))
    if start is None or end is None or start >= end:
        return None
    return start, end


def _fingerprint(plan: selectors.RangePlan) -> tuple:
    """What identifies a merge's inputs: a rebuilt rollup or another window is another merge."""
    return (
        tuple((r.id, r.size_bytes, r.profile_count) for r in plan.rollups),
        tuple(w.id for w in plan.windows),
    )


def _merged(plan: selectors.RangePlan):
    return _cached(("range", *_fingerprint(plan)), lambda: selectors.range_merge(plan=plan).profile)


def _graph(plan: selectors.RangePlan, base_plan: selectors.RangePlan | None, query: LabelQuery):
    """(the merged flame graph, or the differential one against `base_plan`, of the samples
    `query` keeps; the labels block; the merge's label values), graph None when empty."""
    key = ("range-graph", _fingerprint(plan), _fingerprint(base_plan) if base_plan else None, query.labels, query.group_by)

    def build():
        merged = _merged(plan)
        if merged is None:
            return None, None, {}
        values = label_values(merged)
        picked, block = apply_labels(merged, labels=query.labels, group_by=query.group_by)
        if base_plan is None:
            return render_flamegraph(flame_tree(picked, max_nodes=MAX_NODES), unit=merged.unit), block, values
        base = _merged(base_plan)
        if base is None:
            return None, block, values
        graph = render_flamegraph(
            differential_tree(filter_profile(base, query.labels), picked, max_nodes=MAX_NODES), unit=merged.unit,
            per_second=normalization_scale(merged) is not None, differential=True,
        )
        return graph, block, values

    return _cached(key, build)


def _span_text(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M:%S} – {end:%Y-%m-%d %H:%M:%S} UTC"


@login_required
@require_GET
def service_page(request, service):
    if not SERVICE_VALIDATOR.regex.fullmatch(service):  # e.g. a NUL byte, which PostgreSQL refuses
        raise Http404("No profiles of this service.")
    tenant = _tenant(request, service)
    of_service = profiles_for_user(request.user).filter(tenant=tenant, service=service)
    types = sorted(
        set(of_service.order_by().values_list("profile_type", flat=True).distinct())
        | set(ProfileRollup.objects.filter(tenant=tenant, service=service).order_by().values_list("profile_type", flat=True).distinct())
    )
    profile_type = request.GET.get("type")
    if profile_type not in ProfileType.values:
        profile_type = of_service.order_by("-started_at").values_list("profile_type", flat=True).first() or ProfileType.CPU
    completed = of_service.filter(profile_type=profile_type, status=Status.COMPLETED)
    last = completed.order_by("-started_at").defer("top_functions", "notes", "instance").first()
    # Presets end at the end of the latest window (or rollup, once retention removed the windows),
    # so a quiet service still shows its last data.
    last_rollup = None if last else (
        ProfileRollup.objects.filter(tenant=tenant, service=service, profile_type=profile_type).order_by("-period_start").first()
    )
    if last:
        anchor = last.started_at + timedelta(seconds=last.effective_duration_seconds)
    elif last_rollup:
        anchor = last_rollup.period_start + timedelta(seconds=last_rollup.period_seconds)
    else:
        anchor = datetime.now(UTC)
    anchor = anchor.astimezone(UTC).replace(microsecond=0)

    preset = dict((key, length) for key, _, length in PRESETS).get(request.GET.get("range", ""))
    picked = None if preset else _range_from(request.GET, "from", "to")
    start, end = picked or (anchor - (preset or timedelta(hours=1)), anchor)
    base_range = _range_from(request.GET, "baseFrom", "baseTo")
    engine = request.GET.get("engine", "")
    if engine not in ENGINES:
        engine = ""

    context = {
        "section": "services", "tenant": tenant, "service": service, "types": types, "profile_type": profile_type,
        "start": start, "end": end, "span_text": _span_text(start, end), "engine": engine,
        "measure": MEASURES.get(profile_type, "value"), "base_range": base_range,
        "base_text": _span_text(*base_range) if base_range else "",
    }

    def link(**params) -> str:
        query = {"tenant": tenant.external_id, "type": profile_type, **({"engine": engine} if engine else {}), **params}
        return "?" + urlencode({k: v for k, v in query.items() if v is not None})

    length = end - start
    context["presets"] = [(label, link(range=key), picked is None and length == span) for key, label, span in PRESETS]
    context["base_choices"] = [
        (label, link(**{"from": start.isoformat(), "to": end.isoformat(),
                        "baseFrom": (start - shift).isoformat(), "baseTo": (end - shift).isoformat()}))
        for label, shift in (("the period before", length), ("a day earlier", timedelta(days=1)),
                             ("a week earlier", timedelta(days=7)))
    ]
    context["self_link"] = link(**{"from": start.isoformat(), "to": end.isoformat()})
    context["link_base"] = link()

    # The timeline spans at least a day, ending at the range's end or the latest data.
    timeline_end = max(end, anchor)
    timeline_start = min(start, timeline_end - max(TIMELINE_MIN_SPAN, length), *(base_range[:1] if base_range else ()))
    step = (timeline_end - timeline_start) / TIMELINE_BARS
    unit = (last.unit if last else last_rollup.unit if last_rollup else "") or ""
    per_second = is_per_second(profile_type)

    def fmt(value: float) -> str:
        return format_value(value, unit, per_second=per_second)

    points = selectors.range_timeline(
        tenant=tenant, service=service, profile_type=profile_type, start=timeline_start, end=timeline_end,
        buckets=TIMELINE_BARS,
    )
    selections = [("picked", start, end)] + ([("base", *base_range)] if base_range else [])
    context["timeline_svg"] = charts.timeline_chart(
        [(at, value, f"{at:%Y-%m-%d %H:%M} UTC: {fmt(value)} ({count} window{'s' if count != 1 else ''})")
         for at, value, count in points],
        start=timeline_start, end=timeline_end, step_seconds=step.total_seconds(), y_format=fmt,
        selections=selections, label=f"{service} {profile_type}: {NORMALIZED_LABELS.get(profile_type, '')}",
    )

    try:
        plan = selectors.range_plan(
            tenant=tenant, service=service, profile_type=profile_type, start=start, end=end, engine=engine
        )
        base_plan = None
        if base_range:
            base_plan = selectors.range_plan(
                tenant=tenant, service=service, profile_type=profile_type, start=base_range[0], end=base_range[1],
                engine=engine,
            )
        query = label_query(request.GET)
        graph, block, values = _graph(plan, base_plan, query)
    except selectors.MixedEngines as exc:
        context["error"] = str(exc)
        context["engine_links"] = [(name, link(engine=name, **{"from": start.isoformat(), "to": end.isoformat()}))
                                   for name in exc.engines]
    except (selectors.RangeNotRolledUp, selectors.ProfileNotReady) as exc:
        context["error"] = str(exc)
    else:
        context.update(
            graph=graph, profile_count=plan.profile_count, coverage_percent=round(plan.coverage * 100, 1),
            sources=plan, base_plan=base_plan,
        )
        if block is not None:
            context["labels"] = picker_context(request.GET, query, values=values, groups=block["groups"],
                                               unit=unit, overflow=block["overflow"])
        if graph is None:
            context["empty"] = (
                f"The base range holds no completed {profile_type} profile." if base_plan and plan.profile_count
                else f"No completed {profile_type} profile of {service} in this range."
            )
    return render(request, "profiles/service.html", context)
