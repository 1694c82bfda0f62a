import uuid

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from profiling_agent import profile_format

from tenants.models import Tenant

SERVICE_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9._-]{1,128}$",
    "A service name is 1-128 letters, digits, '.', '_' or '-'.",
)


class ProfileType(models.TextChoices):
    CPU = "cpu"
    MEMORY = "memory"
    ALLOC = "alloc"
    BLOCK = "block"
    MUTEX = "mutex"
    GOROUTINE = "goroutine"


# The raw format's types, units and engines live in the agent package (the one definition).
UNIT_BY_TYPE = {ProfileType(kind): unit for kind, unit in profile_format.UNIT_BY_TYPE.items()}
ENGINES_BY_TYPE = {ProfileType(kind): e for kind, e in profile_format.ENGINES_BY_TYPE.items()}

# Per-second types are compared and trended per second of wall time; memory is a level in bytes.
PER_SECOND_TYPES = {ProfileType.CPU, ProfileType.ALLOC, ProfileType.BLOCK, ProfileType.MUTEX, ProfileType.GOROUTINE}


class Status(models.TextChoices):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class Phase(models.TextChoices):
    """Where a `running` profile is; the seed's status stays running/completed/failed."""

    WAITING = "waiting", "waiting for an agent"
    COLLECTING = "collecting"
    PROCESSING = "processing"
    DONE = "done"


def payload_path(instance: "ProfileResult", filename: str) -> str:
    return f"profiles/{instance.tenant_id}/{instance.service}/{instance.pk}.json.gz"


def upload_path(instance: "ProfileResult") -> str:
    """Where an accepted upload waits, as received, until processing replaces it with the payload."""
    return f"profiles/{instance.tenant_id}/{instance.service}/{instance.pk}.upload.json.gz"


#: What processing stores beside a completed profile's payload, so that no web request parses it.
ARTIFACT_SUFFIXES = {
    "flame": ".flame.json.gz",
    "pprof": ".pprof.pb.gz",
    "speedscope": ".speedscope.json.gz",
    "folded": ".folded.txt.gz",
}


def artifact_name(payload_name: str, kind: str) -> str:
    """The file of `kind` beside the payload `<dir>/<pk>.json.gz` (any storage: names, not paths)."""
    return payload_name.removesuffix(".json.gz") + ARTIFACT_SUFFIXES[kind]


class ProfileResult(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="profiles")
    service = models.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    profile_type = models.CharField(max_length=16, choices=ProfileType.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.WAITING)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    engine = models.CharField(max_length=32, blank=True)
    sample_rate = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    requested_duration_seconds = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(3600)]
    )
    duration_seconds = models.FloatField(null=True, blank=True, help_text="actual seconds collected")
    started_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(
        null=True, blank=True, help_text="when the reaper fails the run if it is still running"
    )
    instance = models.JSONField(default=dict, blank=True, help_text="the agent instance that ran it")
    claimed_by = models.CharField(max_length=64, blank=True, help_text="instance id of the claiming agent")
    lease_hash = models.CharField(
        max_length=64, blank=True, help_text="sha256 of the lease the claim handed out; progress, upload and fail present it"
    )
    scheduled_start_at = models.DateTimeField(
        null=True, blank=True, help_text="when collection begins (continuous windows are claimed ahead of it)"
    )
    processing_attempts = models.PositiveSmallIntegerField(default=0)
    overhead_percent = models.FloatField(
        null=True, blank=True, help_text="the agent's CPU over the process's CPU during the window"
    )
    sample_count = models.PositiveIntegerField(default=0)
    unit = models.CharField(max_length=16, blank=True)
    total_value = models.BigIntegerField(default=0, help_text="sum of all samples, in `unit`")
    top_functions = models.JSONField(default=list, blank=True)
    notes = models.JSONField(default=list, blank=True)
    continuous = models.BooleanField(default=False)
    continuous_slot = models.DateTimeField(null=True, blank=True)
    payload = models.FileField(upload_to=payload_path, blank=True)
    size_bytes = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["tenant", "service", "-started_at"], name="profile_history"),
            models.Index(
                fields=["tenant", "service", "profile_type", "-started_at"], name="profile_history_type"
            ),
            models.Index(fields=["status", "phase", "deadline_at"], name="profile_reaper"),
            models.Index(fields=["service", "status", "phase", "started_at"], name="profile_poll"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "service", "profile_type", "continuous_slot"],
                condition=models.Q(continuous_slot__isnull=False),
                name="one_continuous_run_per_slot",
            ),
        ]

    def __str__(self):
        return f"{self.service} {self.profile_type} {self.started_at:%Y-%m-%d %H:%M} ({self.status})"

    @property
    def effective_duration_seconds(self) -> float:
        return self.duration_seconds if self.duration_seconds is not None else self.requested_duration_seconds

    @property
    def normalized_total(self) -> float:
        """The total per second of wall time (bytes for memory), so windows of any length compare."""
        if self.profile_type in PER_SECOND_TYPES:
            return self.total_value / max(self.effective_duration_seconds, 1e-9)
        return float(self.total_value)


class ContinuousProfile(models.Model):
    """One continuous-profiling configuration per tenant and service; Celery beat dispatches runs."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="continuous_profiles")
    service = models.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    profile_types = models.JSONField(default=list)
    sample_rate = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    retention_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)]
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "service"], name="one_config_per_service"),
        ]

    def __str__(self):
        return f"{self.service} ({', '.join(self.profile_types)})"


class AgentInstance(models.Model):
    """One running agent (a process of a service), as last reported by its poll."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="agent_instances")
    service = models.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    instance_id = models.CharField(max_length=64)
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(default=0)
    python = models.CharField(max_length=64, blank=True)
    agent_version = models.CharField(max_length=32, blank=True)
    engines = models.JSONField(default=dict, blank=True, help_text="profile type -> engines it can run")
    collecting = models.JSONField(default=list, blank=True, help_text="the runs it was collecting at its last poll")
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_poll_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["service", "-last_poll_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "service", "instance_id"], name="one_row_per_agent_instance"),
        ]
        indexes = [models.Index(fields=["tenant", "service", "-last_poll_at"], name="agent_instance_live")]

    def __str__(self):
        return f"{self.service} {self.host}:{self.pid}"


# --- regression alerts ---------------------------------------------------------------------------


class AlertBaseline(models.TextChoices):
    TRAILING_24H = "trailing24h", "the trailing 24 hours of windows"
    DAY_BEFORE = "dayBefore", "the same hour a day earlier"


class AlertPolicy(models.Model):
    """How a continuous configuration's windows are checked for regressions (no row: the defaults)."""

    config = models.OneToOneField(ContinuousProfile, on_delete=models.CASCADE, related_name="alert_policy")
    enabled = models.BooleanField(default=True)
    baseline = models.CharField(max_length=16, choices=AlertBaseline.choices, default=AlertBaseline.TRAILING_24H)
    threshold_percent = models.FloatField(
        default=10.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(10_000.0)],
        help_text="a function's share must rise by more than this percent of its baseline share",
    )
    latest_windows = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(60)],
        help_text="how many of the newest windows are compared with the baseline",
    )

    def __str__(self):
        return f"alerts of {self.config.service}"


class AlertStatus(models.TextChoices):
    OPEN = "open"
    RESOLVED = "resolved"


class Alert(models.Model):
    """A function whose share of a service's profiles rose beyond its baseline; one open row per function."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="alerts")
    service = models.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    profile_type = models.CharField(max_length=16, choices=ProfileType.choices)
    function = models.CharField(max_length=500)
    file = models.CharField(max_length=1000, blank=True)
    line = models.IntegerField(default=0)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    baseline = models.CharField(max_length=16, choices=AlertBaseline.choices)
    threshold_percent = models.FloatField()
    baseline_share = models.FloatField(help_text="the function's mean self share over the baseline windows")
    baseline_variance = models.FloatField(help_text="variance of one window's share around the baseline")
    baseline_windows = models.PositiveIntegerField()
    current_share = models.FloatField(help_text="its share in the latest windows checked")
    peak_share = models.FloatField()
    profile = models.ForeignKey(
        ProfileResult, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="the latest window checked while open",
    )
    baseline_profile = models.ForeignKey(
        ProfileResult, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="the newest baseline window, the base of the diff",
    )
    opened_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["tenant", "status", "-opened_at"], name="alert_list")]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "service", "profile_type", "function", "file", "line"],
                condition=models.Q(status="open"),
                name="one_open_alert_per_function",
            ),
        ]

    def __str__(self):
        return f"{self.service} {self.profile_type} {self.function} ({self.status})"

    @property
    def rise_percent(self) -> float:
        if not self.baseline_share:
            return 100.0
        return (self.current_share - self.baseline_share) * 100.0 / self.baseline_share


class AlertCheck(models.Model):
    """The newest window checked per service and type: a repeated tick checks nothing twice."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    service = models.CharField(max_length=128)
    profile_type = models.CharField(max_length=16, choices=ProfileType.choices)
    last_profile = models.ForeignKey(ProfileResult, null=True, on_delete=models.SET_NULL, related_name="+")
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "service", "profile_type"], name="one_alert_check_per_type"),
        ]

    def __str__(self):
        return f"{self.service} {self.profile_type} checked at {self.checked_at:%Y-%m-%d %H:%M}"


class AlertWebhook(models.Model):
    """Where a tenant's alert events are POSTed, signed with HMAC-SHA256 of the body and `secret`."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="alert_webhook")
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=64, help_text="the signing key; shown when set, kept to sign")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed", "failed after every retry"


class WebhookDelivery(models.Model):
    """One alert event sent (or being sent) to the tenant's webhook: the delivery log."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_deliveries")
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32)
    url = models.URLField(max_length=2000)
    body = models.TextField(help_text="the exact JSON body that is signed and sent")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="webhook_delivery_log")]

    def __str__(self):
        return f"{self.event} -> {self.url} ({self.status})"


def rollup_path(instance: "ProfileRollup", filename: str) -> str:
    return (
        f"rollups/{instance.tenant_id}/{instance.service}/{instance.profile_type}/{instance.engine}/"
        f"{instance.period_seconds}/{instance.period_start:%Y%m%dT%H%M%SZ}.json.gz"
    )


class ProfileRollup(models.Model):
    """The merge of one service's continuous windows of one type and engine that started in one
    period (10 min, 1 h, 6 h or 1 day, aligned to UTC); see profiles/services/rollups.py."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="profile_rollups")
    service = models.CharField(max_length=128, validators=[SERVICE_VALIDATOR])
    profile_type = models.CharField(max_length=16, choices=ProfileType.choices)
    engine = models.CharField(max_length=32)
    unit = models.CharField(max_length=16)
    period_seconds = models.PositiveIntegerField()
    period_start = models.DateTimeField()
    profile_count = models.PositiveIntegerField(help_text="windows merged into it")
    duration_seconds = models.FloatField(help_text="sum of the windows' durations")
    sample_count = models.BigIntegerField(default=0)
    total_value = models.BigIntegerField(default=0)
    payload = models.FileField(upload_to=rollup_path, max_length=255)
    size_bytes = models.PositiveIntegerField(default=0)
    built_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "service", "profile_type", "engine", "period_seconds", "period_start"],
                name="one_rollup_per_period",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "service", "profile_type", "period_start"], name="rollup_range"),
        ]

    def __str__(self):
        return f"{self.service} {self.profile_type} {self.period_start:%Y-%m-%d %H:%M} /{self.period_seconds}s"
