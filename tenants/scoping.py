"""The one place that decides which tenants' rows a caller may reach: API, pages and admin.

An API request acts for exactly one tenant (its token's). A logged-in user acts for the tenants
they are a member of (`Tenant.members`); a superuser for every tenant. Everything else asks here,
so another tenant's object is simply absent (a 404), never a 403 that confirms it exists.
"""

from django.db.models import QuerySet

from .models import Tenant


def _is_active_user(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.is_active)


def sees_every_tenant(user) -> bool:
    return _is_active_user(user) and user.is_superuser


def tenants_for_user(user) -> QuerySet[Tenant]:
    if not _is_active_user(user):
        return Tenant.objects.none()
    if user.is_superuser:
        return Tenant.objects.all()
    return Tenant.objects.filter(members=user)


def scope_to_user(queryset: QuerySet, user, *, tenant_field: str = "tenant") -> QuerySet:
    """`queryset` restricted to the user's tenants (unchanged for a superuser).

    `tenant_field` is the lookup from the queryset's model to its Tenant ("pk" for Tenant itself).
    """
    if sees_every_tenant(user):
        return queryset
    return queryset.filter(**{f"{tenant_field}__in": tenants_for_user(user)})


def scope_to_tenant(queryset: QuerySet, tenant: Tenant, *, tenant_field: str = "tenant") -> QuerySet:
    """`queryset` restricted to one tenant (an API request's)."""
    return queryset.filter(**{tenant_field: tenant})
