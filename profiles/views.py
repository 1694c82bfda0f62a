"""Server-rendered pages for ops staff (login required) and the signed, login-free flame graph.

Every view gets its objects through `pages.access` (the user's tenants only: another tenant's
profile, history or configuration is a 404). Writes go through `services`.
"""

import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from tenants.scoping import scope_to_user, tenants_for_user

from . import selectors, services
from .analysis.compare import IncomparableProfiles
from .models import Alert, AlertStatus, ProfileResult, ProfileType, Status
from .pages import charts
from .pages.access import (
    continuous_for_user,
    get_profile_for_user,
    get_tenant_for_user,
    is_valid_service,
    profiles_for_user,
)
from .pages.data import (
    profile_flamegraph,
    profile_flamegraph_and_labels,
    profile_labelled_view,
    profiles_comparison,
)
from .pages.formatting import (
    MEASURES,
    NORMALIZED_LABELS,
    format_normalized,
    format_value,
    is_per_second,
    number,
)
from .pages.forms import ProfileFilterForm, StartProfileForm
from .pages.labels import label_query, picker_context
from .signing import flamegraph_token, profile_id_from_token

PAGE_SIZE = 25
HISTORY_POINTS = 200
COMPARE_CHOICES = 200


def _known_services(user) -> list[str]:
    return list(profiles_for_user(user).order_by("service").values_list("service", flat=True).distinct()[:500])


# --- profiles ------------------------------------------------------------------------------------


@login_required
@require_GET
def profile_list(request):
    return _render_profile_list(request, start_form=StartProfileForm(user=request.user))


def _render_profile_list(request, *, start_form, status=200):
    """The list with its filters (from the query string) and the start form."""
    filters = ProfileFilterForm(request.GET or None, user=request.user)
    profiles = profiles_for_user(request.user).defer("notes", "instance")
    if request.GET:
        profiles = filters.filter(profiles)
    page = Paginator(profiles.order_by("-started_at", "-id"), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "profiles/list.html",
        {
            "section": "profiles",
            "filters": filters,
            "page": page,
            "query": query.urlencode(),
            "start_form": start_form,
            "has_tenants": tenants_for_user(request.user).exists(),
            "known_services": _known_services(request.user),
        },
        status=status,
    )


@login_required
@require_POST
def profile_start(request):
    """Start a run for the chosen service's agent, then show its page, which follows its progress."""
    form = StartProfileForm(request.POST, user=request.user)
    if not form.is_valid():
        return _render_profile_list(request, start_form=form, status=400)
    data = form.cleaned_data
    profile = services.profile_start(
        tenant=data["tenant"],
        service=data["service"],
        profile_type=data["profile_type"],
        duration_seconds=data["duration_seconds"],
        sample_rate=data["sample_rate"],
        engine=data["engine"],
    )
    return redirect("profile-page", pk=profile.pk)


def _status_payload(profile: ProfileResult) -> dict:
    return {
        "id": str(profile.pk),
        "status": profile.status,
        "phase": profile.phase,
        "phaseLabel": profile.get_phase_display(),
        "progress": round(profile.progress, 3),
        "error": profile.error,
        "sampleCount": profile.sample_count,
        "url": reverse("profile-page", args=[profile.pk]),
    }


@login_required
@require_GET
def profile_status(request, pk):
    """The small JSON the detail page polls while a run is in progress."""
    return JsonResponse(_status_payload(get_profile_for_user(request.user, pk)))


def _summary(profile: ProfileResult) -> list[tuple[str, str]]:
    unit = profile.unit
    rows = [
        ("Tenant", str(profile.tenant.external_id)),
        ("Started", timezone.localtime(profile.started_at).strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("Duration", f"{number(profile.effective_duration_seconds)} s"
         + ("" if profile.duration_seconds is not None else " requested")),
        ("Sample rate", f"{profile.sample_rate} Hz"),
        ("Engine", profile.engine or "default"),
    ]
    if profile.status == Status.COMPLETED:
        rows += [
            ("Samples", f"{profile.sample_count:,}"),
            ("Total", format_value(profile.total_value, unit)),
            ("Normalized", format_normalized(profile.normalized_total, profile.profile_type, unit)),
            ("Stored", format_value(profile.size_bytes, "bytes")),
            ("Profiler overhead", "unknown" if profile.overhead_percent is None
             else f"{profile.overhead_percent:.2f} % of the process's CPU"),
        ]
    instance = profile.instance or {}
    if instance.get("host") or instance.get("pid"):
        who = f"{instance.get('host', '?')} pid {instance.get('pid', '?')}"
        if instance.get("python"):
            who += f" · Python {instance['python']}"
        rows.append(("Instance", who))
    if profile.continuous:
        rows.append(("Schedule", "continuous"))
    return rows


def _top_functions(profile: ProfileResult, sort: str, rows: list[dict] | None = None) -> list[dict]:
    """The stored top functions, or `rows` (those of a label filter), sorted and formatted."""
    key = "total" if sort == "total" else "self"
    rows = profile.top_functions if rows is None else rows
    rows = sorted(rows, key=lambda row: (-row[key], -row["self" if key == "total" else "total"]))
    return [
        {
            **row,
            "selfText": format_value(row["self"], profile.unit),
            "totalText": format_value(row["total"], profile.unit),
            "where": f"{row['file']}:{row['line']}" if row.get("file") else "",
        }
        for row in rows
    ]


@login_required
@require_GET
def profile_detail(request, pk):
    profile = get_profile_for_user(request.user, pk)
    sort = "total" if request.GET.get("sort") == "total" else "self"
    context = {
        "section": "profiles",
        "profile": profile,
        "measure": MEASURES.get(profile.profile_type, profile.unit),
        "summary": _summary(profile),
        "sort": sort,
        "status_url": reverse("profile-status", args=[profile.pk]),
        "claim_timeout": settings.PROFILING_CLAIM_TIMEOUT_SECONDS,
        "history_url": reverse("history", args=[profile.tenant.external_id, profile.service])
        + f"?type={profile.profile_type}",
    }
    if profile.status == Status.COMPLETED:
        context["functions"] = _top_functions(profile, sort)
        context["share_url"] = request.build_absolute_uri(
            reverse("flamegraph-shared", args=[flamegraph_token(profile.pk)])
        )
        label_params = "?" + urlencode({k: request.GET[k] for k in ("labels", "groupBy") if request.GET.get(k)})
        context["downloads"] = [  # of what the page shows: the same labels= and groupBy=
            (fmt, reverse("profile-download", args=[profile.pk, fmt]) + label_params.rstrip("?"))
            for fmt in selectors.EXPORT_FORMATS
        ]
        query = label_query(request.GET)
        try:
            context["graph"], values = profile_flamegraph_and_labels(profile)
            groups, overflow = None, 0
            if query.active:  # the stored graph and functions are of all samples: cut them
                view = profile_labelled_view(profile, query)
                context["graph"], groups, overflow = view.graph, view.block["groups"], view.block["overflow"]
                context["functions"] = _top_functions(profile, sort, view.functions)
            context["labels"] = picker_context(request.GET, query, values=values, groups=groups,
                                               unit=profile.unit, overflow=overflow)
        except selectors.ProfileNotReady as exc:
            context["graph_error"] = str(exc)
    return render(request, "profiles/detail.html", context)


@login_required
@require_GET
def profile_download(request, pk, fmt):
    """The API's exports for a logged-in browser (the API's own routes need a bearer token)."""
    if fmt not in selectors.EXPORT_FORMATS:
        raise Http404("Unknown export format.")
    profile = get_profile_for_user(request.user, pk)
    query = label_query(request.GET)
    try:
        exported = selectors.profile_export(
            profile=profile, export_format=fmt, labels=query.labels, group_by=query.group_by
        )
    except selectors.ProfileNotReady as exc:
        raise Http404(f"No data to export: {exc}.") from exc
    return HttpResponse(
        exported.content,
        content_type=exported.content_type,
        headers={"Content-Disposition": f'attachment; filename="{exported.filename}"'},
    )


# --- compare -------------------------------------------------------------------------------------


def _profile_from_param(user, value: str | None) -> ProfileResult | None:
    if not value:
        return None
    try:
        pk = uuid.UUID(value)
    except ValueError:
        raise Http404("No such profile.") from None
    return get_profile_for_user(user, pk)


def _choice_label(profile: ProfileResult) -> str:
    when = timezone.localtime(profile.started_at).strftime("%Y-%m-%d %H:%M")
    return f"{profile.service} · {profile.profile_type} · {when} · {str(profile.pk)[:8]}"


def _change_rows(rows: list[dict], unit: str, per_second: bool, share: bool) -> list[dict]:
    largest = max((abs(row["delta"]) for row in rows), default=0) or 1

    def text(value: float) -> str:
        return f"{number(value * 100)}%" if share else format_value(value, unit, per_second=per_second)

    return [
        {
            **row,
            "where": f"{row['file']}:{row['line']}" if row.get("file") else "",
            "baseText": text(row["baseValue"]),
            "comparisonText": text(row["comparisonValue"]),
            "deltaText": ("+" if row["delta"] > 0 else "") + text(row["delta"]),
            "deltaPercentText": "new" if row["deltaPercent"] is None
            else f"{'+' if row['deltaPercent'] > 0 else ''}{number(row['deltaPercent'])}%",
            "bar": round(100 * abs(row["delta"]) / largest, 1),
        }
        for row in rows
    ]


@login_required
@require_GET
def compare(request):
    """Pick two profiles (base, comparison) and see what changed, with a differential flame graph."""
    picked = [value for value in request.GET.getlist("p") if value][:2]  # an empty pick is no pick
    if picked and not request.GET.get("base"):
        chosen = sorted((_profile_from_param(request.user, value) for value in picked), key=lambda p: p.started_at)
        base, comparison = (chosen + [None])[:2]
    else:
        base = _profile_from_param(request.user, request.GET.get("base"))
        comparison = _profile_from_param(request.user, request.GET.get("comparison"))

    candidates = profiles_for_user(request.user).filter(status=Status.COMPLETED)
    if base is not None:
        candidates = candidates.filter(tenant=base.tenant, profile_type=base.profile_type)
    candidates = list(candidates.defer("notes", "instance", "top_functions").order_by("-started_at")[:COMPARE_CHOICES])
    for chosen in (base, comparison):
        if chosen is not None and chosen not in candidates:
            candidates.insert(0, chosen)
    normalization = request.GET.get("normalization") if request.GET.get("normalization") == "share" else None
    allow_mismatch = request.GET.get("allowMismatch") == "true"
    context = {
        "section": "compare",
        "base": base,
        "comparison": comparison,
        "choices": [(str(p.pk), _choice_label(p)) for p in candidates],
        "normalization": normalization or "",
        "allow_mismatch": allow_mismatch,
    }
    if base is not None and comparison is not None:
        if base.pk == comparison.pk:
            context["error"] = "Pick two different profiles."
        else:
            try:
                result = profiles_comparison(
                    base, comparison, normalization=normalization, allow_mismatch=allow_mismatch
                )
            except selectors.ProfilesIncomparable as exc:
                context["error"] = f"These two profiles cannot be compared: {exc}."
                context["mismatch"] = "allowMismatch" in str(exc)
            except (selectors.ProfileNotReady, IncomparableProfiles) as exc:
                context["error"] = f"These two profiles cannot be compared: {exc}."
            else:
                changes = result.result
                share = changes["normalization"] == "share"
                context.update(
                    graph=result.graph,
                    overall=changes["overallDelta"],
                    unchanged=changes["unchanged"],
                    dropped=changes["droppedAsNoise"],
                    note=changes["note"],
                    regressions=_change_rows(changes["regressions"], result.unit, result.per_second, share),
                    improvements=_change_rows(changes["improvements"], result.unit, result.per_second, share),
                    per_second=result.per_second,
                )
    return render(request, "profiles/compare.html", context)


# --- history -------------------------------------------------------------------------------------


@login_required
@require_GET
def history(request, tenant, service):
    """One service's profiles of one type over time: the normalized total, or one function's share."""
    tenant = get_tenant_for_user(request.user, tenant)
    if not is_valid_service(service):
        raise Http404("No such service.")  # no profile can carry it (and NUL would upset PostgreSQL)
    of_service = profiles_for_user(request.user).filter(tenant=tenant, service=service)
    types = list(of_service.order_by("profile_type").values_list("profile_type", flat=True).distinct())
    profile_type = request.GET.get("type")
    if profile_type not in ProfileType.values:
        latest = of_service.order_by("-started_at").values_list("profile_type", flat=True).first()
        profile_type = latest or ProfileType.CPU
    profiles = list(
        of_service.filter(profile_type=profile_type, status=Status.COMPLETED)
        .defer("notes", "instance")
        .order_by("-started_at")[:HISTORY_POINTS]
    )
    profiles.reverse()
    unit = profiles[-1].unit if profiles else ""
    per_second = is_per_second(profile_type)

    def fmt(value: float) -> str:
        return format_value(value, unit, per_second=per_second)

    def when(profile: ProfileResult) -> str:
        return timezone.localtime(profile.started_at).strftime("%Y-%m-%d %H:%M:%S")

    def engine_of(profile: ProfileResult) -> str:
        # Engines attribute time differently: one line per engine, never one through several.
        return profile.engine or "unknown engine"

    trend = charts.line_chart(
        [
            charts.Point(
                at=p.started_at,
                value=p.normalized_total,
                href=reverse("profile-page", args=[p.pk]),
                title=f"{when(p)}: {fmt(p.normalized_total)} ({engine_of(p)})",
                series=engine_of(p),
            )
            for p in profiles
        ],
        y_label=NORMALIZED_LABELS.get(profile_type, "normalized total"),
        y_format=fmt,
        label=f"{service} {profile_type}: normalized total over time",
        empty_text=f"No completed {profile_type} profiles of {service} yet.",
    )

    # Functions to pick: every function in the stored top functions, by its largest share.
    best: dict[str, float] = {}
    for p in profiles:
        for row in p.top_functions:
            best[row["function"]] = max(best.get(row["function"], 0.0), row["selfPercent"])
    functions = sorted(best, key=lambda name: (-best[name], name))[:200]
    function = request.GET.get("function") or ""
    function_chart = None
    if function:
        points = []
        for p in profiles:
            point = selectors.function_point(p, function)
            text = f"{point['selfPercent']}% self" if point["inTopFunctions"] else "not among the top functions"
            points.append(
                charts.Point(
                    at=p.started_at,
                    value=point["selfPercent"],
                    href=reverse("profile-page", args=[p.pk]),
                    title=f"{when(p)}: {text} ({engine_of(p)})",
                    hollow=not point["inTopFunctions"],
                    series=engine_of(p),
                )
            )
        function_chart = charts.line_chart(
            points,
            y_label="self share of the profile (%)",
            y_format=lambda v: f"{number(v)}%",
            label=f"{function}: share over time",
        )
    rows = [
        {
            "profile": p,
            "normalized": fmt(p.normalized_total),
            "top": p.top_functions[0]["function"] if p.top_functions else "",
        }
        for p in reversed(profiles[-50:])
    ]
    return render(
        request,
        "profiles/history.html",
        {
            "section": "profiles",
            "tenant": tenant,
            "service": service,
            "profile_type": profile_type,
            "types": sorted(set(types) | {profile_type}),
            "trend_svg": trend,
            "functions": functions,
            "function": function,
            "function_in_list": function in best,
            "function_svg": function_chart,
            "rows": rows,
            "count": len(profiles),
            "engines": sorted({engine_of(p) for p in profiles}),
        },
    )


# --- alerts --------------------------------------------------------------------------------------


@login_required
@require_GET
def alerts(request):
    """The user's tenants' regression alerts, open first, each with a link to its diff."""
    state = request.GET.get("status") if request.GET.get("status") in AlertStatus.values else ""
    found = selectors.alert_list(
        queryset=scope_to_user(Alert.objects.select_related("tenant"), request.user), filters={"status": state}
    )
    page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {
            "alert": alert,
            "baseline": f"{number(alert.baseline_share * 100)}%",
            "current": f"{number(alert.current_share * 100)}%",
            "rise": f"+{number(alert.rise_percent)}%",
            "compare_url": selectors.alert_compare_url(alert),
        }
        for alert in page
    ]
    return render(request, "profiles/alerts.html", {"section": "alerts", "rows": rows, "page": page, "status": state})


# --- continuous ----------------------------------------------------------------------------------


@login_required
@require_GET
def continuous(request):
    now = timezone.now()
    last_runs = ProfileResult.objects.filter(
        tenant=OuterRef("tenant"), service=OuterRef("service"), continuous=True
    ).order_by("-started_at")
    configs = selectors.continuous_profile_list(queryset=continuous_for_user(request.user)).annotate(
        last_run_at=Subquery(last_runs.values("started_at")[:1]),
        last_run_status=Subquery(last_runs.values("status")[:1]),
        last_run_id=Subquery(last_runs.values("pk")[:1]),
    ).order_by("service", "tenant__external_id")
    rows = [
        {"config": config, "next_run": selectors.continuous_next_run_at(config=config, now=now)}
        for config in configs
    ]
    return render(
        request,
        "profiles/continuous.html",
        {
            "section": "continuous",
            "rows": rows,
            "now": now,
            "period_seconds": settings.PROFILING_CONTINUOUS_PERIOD_SECONDS,
            "window_seconds": settings.PROFILING_CONTINUOUS_WINDOW_SECONDS,
        },
    )


# --- services (the agents' live inventory) --------------------------------------------------------


@login_required
@require_GET
def services_inventory(request):
    now = timezone.now()
    rows = [
        {"tenant": tenant, **entry}
        for tenant in tenants_for_user(request.user).order_by("external_id")
        for entry in selectors.service_inventory(tenant=tenant, now=now)
    ]
    return render(
        request,
        "profiles/services.html",
        {"section": "services", "rows": rows, "live_seconds": settings.PROFILING_AGENT_LIVE_SECONDS},
    )


# --- the signed link -------------------------------------------------------------------------------


@require_GET
def shared_flamegraph(request, token):
    """The flame graph behind a signed `flameGraphUrl`: no login, this one profile only."""
    profile_id = profile_id_from_token(token)
    try:
        pk = uuid.UUID(str(profile_id)) if profile_id else None
    except ValueError:  # a validly signed token always holds a UUID; be strict anyway
        pk = None
    profile = ProfileResult.objects.select_related("tenant").filter(pk=pk).first() if pk else None
    if profile is None:
        raise Http404("This flame-graph link is invalid or has expired.")
    context = {
        "profile": profile,
        "summary": _summary(profile)[1:],
        "measure": MEASURES.get(profile.profile_type, profile.unit),
    }
    if profile.status == Status.COMPLETED:
        query = label_query(request.GET)  # the API's flameGraphUrl of a labels= result carries it
        try:
            context["graph"] = profile_labelled_view(profile, query).graph if query.active else profile_flamegraph(profile)
        except selectors.ProfileNotReady as exc:
            context["graph_error"] = str(exc)
        context["label_filter"] = ",".join(f"{k}:{v}" for k, v in query.labels)
    return render(request, "profiles/flamegraph_shared.html", context)
