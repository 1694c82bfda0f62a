"""Tenant scoping for the pages and the admin: the one place that decides what a user sees.

A superuser sees every tenant; any other user sees the tenants they are a member of
(`Tenant.members`). Every page view gets its querysets and objects from here, so another
tenant's profile, history or configuration is a 404 rather than a 403 (nothing leaks).
"""

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from tenants.models import Tenant

from ..models import ContinuousProfile, ProfileResult


def tenants_for_user(user) -> QuerySet[Tenant]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Tenant.objects.none()
    if user.is_superuser:
        return Tenant.objects.all()
    return Tenant.objects.filter(members=user)


def scope_to_user(queryset: QuerySet, user, *, tenant_field: str = "tenant") -> QuerySet:
    """`queryset` restricted to the user's tenants (unchanged for a superuser)."""
    if getattr(user, "is_authenticated", False) and user.is_active and user.is_superuser:
        return queryset
    return queryset.filter(**{f"{tenant_field}__in": tenants_for_user(user)})


def profiles_for_user(user) -> QuerySet[ProfileResult]:
    return scope_to_user(ProfileResult.objects.select_related("tenant"), user)


def continuous_for_user(user) -> QuerySet[ContinuousProfile]:
    return scope_to_user(ContinuousProfile.objects.select_related("tenant"), user)


def get_profile_for_user(user, pk) -> ProfileResult:
    """The profile if it belongs to one of the user's tenants, else 404."""
    return get_object_or_404(profiles_for_user(user), pk=pk)


def get_tenant_for_user(user, external_id: str) -> Tenant:
    """The tenant by its external id if the user may see it, else 404."""
    tenant = tenants_for_user(user).filter(external_id=external_id).first()
    if tenant is None:
        raise Http404("No such tenant.")
    return tenant
