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
