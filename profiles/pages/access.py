"""The pages' querysets and objects, scoped by `tenants.scoping` (the one scoping helper).

Every page view gets its objects from here, so another tenant's profile, history or
configuration is a 404 rather than a 403 (nothing leaks).
"""

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from tenants.models import TENANT_ID_VALIDATOR, Tenant
from tenants.scoping import scope_to_user, tenants_for_user

from ..models import SERVICE_VALIDATOR, ContinuousProfile, ProfileResult


def _passes(validator, value: str) -> bool:
    try:
        validator(value)
    except ValidationError:
        return False
    return True


def is_valid_service(service: str) -> bool:
    return _passes(SERVICE_VALIDATOR, service)


def profiles_for_user(user) -> QuerySet[ProfileResult]:
    return scope_to_user(ProfileResult.objects.select_related("tenant"), user)


def continuous_for_user(user) -> QuerySet[ContinuousProfile]:
    return scope_to_user(ContinuousProfile.objects.select_related("tenant"), user)


def get_profile_for_user(user, pk) -> ProfileResult:
    """The profile if it belongs to one of the user's tenants, else 404."""
    return get_object_or_404(profiles_for_user(user), pk=pk)


def get_tenant_for_user(user, external_id: str) -> Tenant:
    """The tenant by its external id if the user may see it, else 404 (also for a malformed id)."""
    if not _passes(TENANT_ID_VALIDATOR, external_id):
        raise Http404("No such tenant.")
    tenant = tenants_for_user(user).filter(external_id=external_id).first()
    if tenant is None:
        raise Http404("No such tenant.")
    return tenant
