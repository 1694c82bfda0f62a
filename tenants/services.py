from django.db import transaction
from django.utils import timezone

from .models import ApiToken, Tenant


@transaction.atomic
def tenant_get_or_create(*, external_id: str, name: str = "") -> tuple[Tenant, bool]:
    tenant = Tenant(external_id=external_id, name=name)
    tenant.full_clean(validate_unique=False)
    tenant, created = Tenant.objects.get_or_create(external_id=external_id, defaults={"name": name})
    if not created and name and tenant.name != name:
        tenant.name = name
        tenant.save(update_fields=["name"])
    return tenant, created


def token_create(*, tenant: Tenant, scope: str, name: str = "") -> tuple[ApiToken, str]:
    """Issue a token; returns it with its raw value, which is never stored and cannot be shown again."""
    token = ApiToken(tenant=tenant, scope=scope, name=name)
    raw = ApiToken.generate_raw(scope)
    token.set_raw(raw)
    token.save()
    return token, raw


def token_revoke(*, token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
