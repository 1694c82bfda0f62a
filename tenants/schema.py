"""OpenAPI description of the authentication: a bearer token AND the X-Tenant-ID header, together."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.BearerTokenAuthentication"
    name = ["bearerAuth", "tenantHeader"]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "http", "scheme": "bearer", "description": "An API token (scope api or agent)."},
            {"type": "apiKey", "in": "header", "name": "X-Tenant-ID", "description": "The tenant id, e.g. 550e8400."},
        ]

    def get_security_requirement(self, auto_schema):
        return {"bearerAuth": [], "tenantHeader": []}
