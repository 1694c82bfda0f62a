import hashlib
import secrets

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

TENANT_ID_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "A tenant id is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
)


class Tenant(models.Model):
    """A customer. `external_id` is what API clients send in `X-Tenant-ID`."""

    external_id = models.CharField(max_length=64, unique=True, validators=[TENANT_ID_VALIDATOR])
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="tenants")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["external_id"]

    def __str__(self):
        return self.external_id if not self.name else f"{self.external_id} ({self.name})"


class TokenScope(models.TextChoices):
    API = "api", "API: the profiling API"
    AGENT = "agent", "Agent: poll and upload only"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token. Only its sha256 and a masked prefix are stored; the raw value is shown once."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=100, blank=True)
    scope = models.CharField(max_length=10, choices=TokenScope.choices, default=TokenScope.API)
    prefix = models.CharField(max_length=20, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.masked} ({self.scope}, {self.tenant.external_id})"

    @property
    def masked(self) -> str:
        return f"{self.prefix}…"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @staticmethod
    def generate_raw(scope: str) -> str:
        return f"pp_{scope}_{secrets.token_urlsafe(32)}"

    def set_raw(self, raw: str) -> None:
        self.token_hash = hash_token(raw)
        self.prefix = raw[: len(f"pp_{self.scope}_") + 4]
