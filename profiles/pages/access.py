"""The pages' querysets and objects, scoped by `tenants.scoping` (the one scoping helper).

Every page view gets its objects from here, so another tenant's profile, history or
configuration is a 404 rather than a 403 (nothing leaks).
"""

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from tenants.models import Tenant
from tenants.scoping import scope_to_user, tenants_for_user

from ..models import ContinuousProfile, ProfileResult


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
