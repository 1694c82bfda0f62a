"""The one tenant-scoping base for every API view: no view can reach another tenant's rows."""

from rest_framework import generics, viewsets


class TenantScopedMixin:
    """Owns `get_queryset` (and so `get_object`): rows are always filtered by the token's tenant.

    Subclasses set `queryset`; another tenant's object is therefore a 404, never a 403.
    """

    tenant_field = "tenant"

    def get_queryset(self):
        return super().get_queryset().filter(**{self.tenant_field: self.request.tenant})


class TenantScopedViewSet(TenantScopedMixin, viewsets.GenericViewSet):
    pass


class TenantScopedAPIView(TenantScopedMixin, generics.GenericAPIView):
    pass
