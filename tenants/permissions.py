from rest_framework import exceptions, permissions, status

from .models import TokenScope


class MissingTenantHeader(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The X-Tenant-ID header is required."
    default_code = "missing_tenant"


class TenantTokenPermission(permissions.BasePermission):
    """The token must belong to the tenant named in X-Tenant-ID and carry the view's scope.

    A view declares `required_scope` (default: the profiling API). Sets `request.tenant`.
    """

    def has_permission(self, request, view):
        principal = request.user
        if not getattr(principal, "is_authenticated", False):
            raise exceptions.NotAuthenticated("Authentication required: send 'Authorization: Bearer <token>'.")
        tenant_id = request.headers.get("X-Tenant-ID", "").strip()
        if not tenant_id:
            raise MissingTenantHeader()
        if principal.tenant.external_id != tenant_id:
            raise exceptions.PermissionDenied("This token does not belong to the tenant in X-Tenant-ID.")
        if not principal.tenant.is_active:
            raise exceptions.PermissionDenied("This tenant is inactive.")
        required = getattr(view, "required_scope", TokenScope.API)
        if principal.scope != required:
            raise exceptions.PermissionDenied(
                f"This endpoint needs a token with scope '{required}'; this token's scope is '{principal.scope}'."
            )
        request.tenant = principal.tenant
        return True
