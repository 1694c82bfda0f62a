"""The one tenant-scoping base for every API view: no view can reach another tenant's rows."""

from rest_framework import generics, viewsets

from .scoping import scope_to_tenant


class TenantScopedMixin:
    """Owns `get_queryset` (and so `get_object`): rows are always filtered by the token's tenant.

    Subclasses set `queryset`; another tenant's object is therefore a 404, never a 403.
    """

    tenant_field = "tenant"

    def get_queryset(self):
        return scope_to_tenant(super().get_queryset(), self.request.tenant, tenant_field=self.tenant_field)


class TenantScopedViewSet(TenantScopedMixin, viewsets.GenericViewSet):
    pass


class TenantScopedAPIView(TenantScopedMixin, generics.GenericAPIView):
    pass
