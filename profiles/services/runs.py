"""Writes for the life of a profile run: start, claim, progress, failure, reaping (see agent/PROTOCOL.md).

Every state change is one conditional UPDATE on the states the run may leave, so of two
concurrent changes exactly one wins and the other learns it (0 rows updated).
"""

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from profiling_agent import profile_format

from tenants.models import Tenant

from ..models import UNIT_BY_TYPE, AgentInstance, Phase, ProfileResult, Status
from ..selectors.agents import agent_instances_live, describe_no_agent, engines_offered

logger = logging.getLogger(__name__)

#: A run is claimed at most this long before it starts, so the agent can begin on time.
CLAIM_LOOKAHEAD_SECONDS = 15
RUNNING_PHASES = (Phase.WAITING, Phase.COLLECTING, Phase.PROCESSING)


class RunConflict(Exception):
    """The run is not in a state that allows the requested change (e.g. an upload after the reaper failed it)."""


def lease_hash(lease: str) -> str:
    """What the row stores of a claim's lease (the raw lease only travels to the agent)."""
    return hashlib.sha256(lease.encode("utf-8")).hexdigest()


def resolve_engine(profile_type: str, engine: str = "") -> str:
    """The engine a run uses: the one requested, else the type's default."""
    return engine or profile_format.DEFAULT_ENGINES[profile_type]


def _default_engine_offered(profile_type: str, live: list[AgentInstance]) -> str:
    """A run that names no engine gets the type's default, or, when no live instance offers it
    (an agent installed without the in-process extra), the first light engine one does; heavy
    engines are never chosen silently."""
    offered = set(engines_offered(live, profile_type))
    for engine in profile_format.ENGINES_BY_TYPE[profile_type]:
        if engine in offered and engine not in profile_format.HEAVY_ENGINE_MAX_SECONDS:
            return engine
    return profile_format.DEFAULT_ENGINES[profile_type]


def heavy_engine_problem(*, profile_type: str, engine: str, duration_seconds: int) -> str | None:
    """Why a window is refused for a heavy engine (yappi, memray), or None when it is allowed."""
    engine = resolve_engine(profile_type, engine)
    cap = profile_format.HEAVY_ENGINE_MAX_SECONDS.get(engine)
    if cap is not None and duration_seconds > cap:
        return (
            f"{engine} slows the profiled service several-fold; its windows are at most {cap} s "
            f"(asked for {duration_seconds} s)."
        )
    return None


def profile_start(
    *,
    tenant: Tenant,
    service: str,
    profile_type: str,
    duration_seconds: int,
    sample_rate: int = 100,
    engine: str = "",
    continuous_slot: datetime | None = None,
    live: list[AgentInstance] | None = None,
) -> ProfileResult:
    """Create a run waiting for an agent of `service`; a continuous one starts at its slot.

    A run whose engine no live instance of the service offers fails at once with that reason;
    with no live instance at all it waits (one may come up; `selectors.start_warnings` says so).
    `live`: the service's live instances, when the caller has just read them.
    """
    now = timezone.now()
    if live is None:
        live = agent_instances_live(tenant=tenant, service=service, now=now)
    engine = engine or _default_engine_offered(profile_type, live)
    start_at = continuous_slot or now
    profile = ProfileResult.objects.create(
        tenant=tenant,
        service=service,
        profile_type=profile_type,
        requested_duration_seconds=duration_seconds,
        sample_rate=sample_rate,
        engine=engine,
        unit=UNIT_BY_TYPE[profile_type],
        started_at=start_at,
        scheduled_start_at=start_at,
        deadline_at=start_at + timedelta(seconds=settings.PROFILING_CLAIM_TIMEOUT_SECONDS),
        continuous=continuous_slot is not None,
        continuous_slot=continuous_slot,
    )
    if live and not any(engine in i.engines.get(profile_type, []) for i in live):
        reason = _no_engine_reason(engine, profile_type, live)
        if profile_fail(profile=profile, error=reason, phases=(Phase.WAITING,)):
            profile.refresh_from_db()
    return profile


def _no_engine_reason(engine: str, profile_type: str, live: list[AgentInstance]) -> str:
    offered = engines_offered(live, profile_type)
    return f"no live agent can run engine {engine} for {profile_type} (they offer {', '.join(offered) or 'none'})"


@dataclass
class Claim:
    profile: ProfileResult
    lease: str


def agent_instance_record(
    *, tenant: Tenant, service: str, instance: dict, collecting: list[dict]
) -> AgentInstance:
    """Upsert the polling instance: one INSERT ... ON CONFLICT UPDATE."""
    now = timezone.now()
    row = AgentInstance(
        tenant=tenant,
        service=service,
        instance_id=instance["id"],
        host=instance.get("host", ""),
        pid=instance.get("pid", 0),
        python=instance.get("python", ""),
        agent_version=instance.get("agentVersion", ""),
        engines=instance.get("engines", {}),
        collecting=collecting,
        first_seen_at=now,
        last_poll_at=now,
    )
    AgentInstance.objects.bulk_create(
        [row],
        update_conflicts=True,
        unique_fields=["tenant", "service", "instance_id"],
        update_fields=["host", "pid", "python", "agent_version", "engines", "collecting", "last_poll_at"],
    )
    return row


def profile_claim_for(*, tenant: Tenant, service: str, instance: AgentInstance) -> list[Claim]:
    """Claim for this instance every waiting run of `service` it can collect now (PROTOCOL.md).

    Routing: the run's engine is among the instance's engines for its type; exclusive engines
    one at a time per instance; at most MAX_CONCURRENT_RUNS collecting per instance. Each
    claim is a conditional UPDATE (waiting, claim deadline not passed): one poller wins a run.
    """
    now = timezone.now()
    # (engine, window start, window end) of what this instance collects or has claimed ahead
    windows = [
        (engine, start or now, (start or now) + timedelta(seconds=duration))
        for engine, start, duration in ProfileResult.objects.filter(
            tenant=tenant, claimed_by=instance.instance_id, status=Status.RUNNING, phase=Phase.COLLECTING
        ).values_list("engine", "scheduled_start_at", "requested_duration_seconds")
    ]

    def busy_at(moment) -> list[str]:
        """Engines still collecting at `moment`: a window claimed ahead takes no slot before it
        begins, so the next continuous windows are claimed while the current ones run."""
        return [engine for engine, start, end in windows if start <= moment < end]

    horizon = now + timedelta(seconds=CLAIM_LOOKAHEAD_SECONDS)
    candidates = ProfileResult.objects.filter(
        Q(scheduled_start_at__isnull=True) | Q(scheduled_start_at__lte=horizon),
        tenant=tenant,
        service=service,
        status=Status.RUNNING,
        phase=Phase.WAITING,
        deadline_at__gt=now,
    ).order_by("started_at")[:50]
    claims = []
    for run in candidates:
        engine = resolve_engine(run.profile_type, run.engine)
        if engine not in instance.engines.get(run.profile_type, []):
            continue
        start_at = max(now, run.scheduled_start_at or now)
        busy = busy_at(start_at)
        if len(busy) >= profile_format.MAX_CONCURRENT_RUNS:
            continue
        exclusive = engine in profile_format.EXCLUSIVE_ENGINES
        if exclusive and any(e in profile_format.EXCLUSIVE_ENGINES for e in busy):
            continue
        lease = secrets.token_urlsafe(32)
        deadline = start_at + timedelta(
            seconds=run.requested_duration_seconds + settings.PROFILING_UPLOAD_GRACE_SECONDS
        )
        claim = {
            "phase": Phase.COLLECTING,
            "engine": engine,
            "claimed_at": now,
            "claimed_by": instance.instance_id,
            "lease_hash": lease_hash(lease),
            "instance": {"host": instance.host, "pid": instance.pid, "python": instance.python,
                         "agentVersion": instance.agent_version},
            "scheduled_start_at": start_at,
            "deadline_at": deadline,
        }
        won = ProfileResult.objects.filter(
            pk=run.pk, status=Status.RUNNING, phase=Phase.WAITING, deadline_at__gt=now
        ).update(**claim)
        if won:
            for name, value in claim.items():  # the row now holds these: no query to read them back
                setattr(run, name, value)
            claims.append(Claim(run, lease))
            windows.append((engine, start_at, start_at + timedelta(seconds=run.requested_duration_seconds)))
    return claims


def profile_check_lease(*, profile: ProfileResult, lease: str) -> None:
    """Raise RunConflict unless `lease` is the one this run's claim handed out and it may still upload.

    The lease of a run never changes once claimed, so this check cannot go stale; the state is
    re-checked atomically by whatever change follows.
    """
    if not lease or not profile.lease_hash or not secrets.compare_digest(profile.lease_hash, lease_hash(lease)):
        raise RunConflict(f"run {profile.pk} is not leased to this agent (X-Profiling-Lease missing or wrong)")
    if profile.status != Status.RUNNING or profile.phase != Phase.COLLECTING:
        raise RunConflict(f"run {profile.pk} is {profile.status} ({profile.phase}); it is no longer collected")
    if profile.deadline_at and profile.deadline_at <= timezone.now():
        raise RunConflict(f"run {profile.pk} is past its deadline")


def profile_record_progress(*, profile: ProfileResult, lease: str, progress: float) -> None:
    """Record progress of a run being collected under `lease`; RunConflict when it no longer is."""
    profile_check_lease(profile=profile, lease=lease)
    updated = ProfileResult.objects.filter(
        pk=profile.pk, status=Status.RUNNING, phase=Phase.COLLECTING, lease_hash=lease_hash(lease)
    ).update(progress=max(0.0, min(1.0, progress)))
    if not updated:
        raise RunConflict(f"run {profile.pk} is no longer being collected")


def profile_agent_fail(*, profile: ProfileResult, lease: str, error: str) -> None:
    """The agent holding the lease gives up on the run; RunConflict when it no longer holds it."""
    if not lease or not secrets.compare_digest(profile.lease_hash or "", lease_hash(lease)):
        raise RunConflict(f"run {profile.pk} is not leased to this agent (X-Profiling-Lease missing or wrong)")
    if not profile_fail(profile=profile, error=f"agent: {error}", phases=(Phase.COLLECTING,)):
        raise RunConflict(f"run {profile.pk} is no longer being collected; it was not failed")


def profile_fail(
    *, profile: ProfileResult, error: str, phases=RUNNING_PHASES, overdue_at: datetime | None = None
) -> bool:
    """Fail a running profile that is in one of `phases` (and past `overdue_at`, for the reaper).

    False when it had left those states: e.g. its upload was accepted meanwhile.
    """
    runs = ProfileResult.objects.filter(pk=profile.pk, status=Status.RUNNING, phase__in=list(phases))
    if overdue_at is not None:
        runs = runs.filter(deadline_at__lt=overdue_at)
    updated = runs.update(status=Status.FAILED, phase=Phase.DONE, error=error[:2000], completed_at=timezone.now())
    return bool(updated)


def profiles_reap_overdue(*, now=None) -> int:
    """Fail every running profile past its deadline, saying why. Returns how many were failed."""
    now = now or timezone.now()
    overdue = ProfileResult.objects.filter(status=Status.RUNNING, deadline_at__lt=now).only(
        "pk", "tenant_id", "service", "phase", "engine", "profile_type", "instance", "requested_duration_seconds"
    )
    failed = 0
    live_by_service: dict[tuple[int, str], list[AgentInstance]] = {}
    for profile in overdue:
        reason = _overdue_reason(profile, now, live_by_service)
        if profile_fail(profile=profile, error=reason, phases=(profile.phase,), overdue_at=now):
            failed += 1
    return failed


def _overdue_reason(profile: ProfileResult, now, live_by_service) -> str:
    if profile.phase == Phase.WAITING:
        key = (profile.tenant_id, profile.service)
        if key not in live_by_service:
            live_by_service[key] = agent_instances_live(tenant=profile.tenant_id, service=profile.service, now=now)
        live = live_by_service[key]
        if not live:
            return describe_no_agent(tenant=profile.tenant_id, service=profile.service, now=now)
        engine = resolve_engine(profile.profile_type, profile.engine)
        if not any(engine in i.engines.get(profile.profile_type, []) for i in live):
            return _no_engine_reason(engine, profile.profile_type, live)
        doing = sorted({f"{c.get('profileType')} ({c.get('engine')})" for i in live for c in i.collecting})
        return (
            f"agents of service {profile.service} were busy with {', '.join(doing) or 'other runs'} "
            f"and could not take this {engine} run within {settings.PROFILING_CLAIM_TIMEOUT_SECONDS} s"
        )
    if profile.phase == Phase.COLLECTING:
        who = profile.instance or {}
        return (
            f"the agent ({who.get('host', '?')} pid {who.get('pid', '?')}) did not upload the profile "
            f"within {profile.requested_duration_seconds} s + {settings.PROFILING_UPLOAD_GRACE_SECONDS} s grace"
        )
    return "processing the uploaded profile did not finish in time"
