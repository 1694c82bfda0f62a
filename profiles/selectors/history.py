"""Reads for a service's history: the filtered list and one function's point per profile."""


from django.db.models import QuerySet

from ..models import ProfileResult


def profile_history(*, queryset: QuerySet, service: str, filters: dict) -> QuerySet:
    """A service's profiles, newest first, with the optional filters of the history endpoint.

    The first page is served by the (tenant, service, -started_at) indexes; `top_functions`
    is only read when a function trend was asked for.
    """
    qs = queryset.filter(service=service)
    if filters.get("profileType"):
        qs = qs.filter(profile_type=filters["profileType"])
    if filters.get("status"):
        qs = qs.filter(status=filters["status"])
    if filters.get("from"):
        qs = qs.filter(started_at__gte=filters["from"])
    if filters.get("to"):
        qs = qs.filter(started_at__lt=filters["to"])
    if filters.get("continuous") is not None:
        qs = qs.filter(continuous=filters["continuous"])
    deferred = ["notes", "instance", "payload", "error"]
    if not filters.get("function"):
        deferred.append("top_functions")
    return qs.defer(*deferred).order_by("-started_at", "-id")


def function_point(profile: ProfileResult, function: str) -> dict:
    """One profile's value of `function` for a trend: its self share and normalized self value.

    Only the stored top functions are known; a function outside them reports share 0 with
    `inTopFunctions: false`, so a client can tell "absent" from "not measured".
    """
    for entry in profile.top_functions:
        if entry["function"] == function:
            scale = profile.normalized_total / profile.total_value if profile.total_value else 0.0
            return {
                "function": function,
                "selfPercent": entry["selfPercent"],
                "totalPercent": entry["totalPercent"],
                "normalizedSelf": entry["self"] * scale,
                "inTopFunctions": True,
            }
    return {"function": function, "selfPercent": 0.0, "totalPercent": 0.0, "normalizedSelf": 0.0, "inTopFunctions": False}
