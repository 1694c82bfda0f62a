"""Reads about agents: which instances of a service are live, what they can run, the inventory."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from ..models import AgentInstance, Phase, ProfileResult, Status


def _live_since(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.PROFILING_AGENT_LIVE_SECONDS)


def agent_instances_live(*, tenant, service: str, now: datetime | None = None) -> list[AgentInstance]:
    """Instances of `service` that polled within PROFILING_AGENT_LIVE_SECONDS (`tenant`: object or id)."""
    now = now or timezone.now()
    return list(
        AgentInstance.objects.filter(tenant=tenant, service=service, last_poll_at__gte=_live_since(now))
    )


def engines_offered(instances: list[AgentInstance], profile_type: str) -> list[str]:
    return sorted({e for i in instances for e in i.engines.get(profile_type, [])})


def describe_no_agent(*, tenant, service: str, now: datetime | None = None) -> str:
    """"no agent of this service has polled in the last N s (last poll at T / never)"."""
    last = AgentInstance.objects.filter(tenant=tenant, service=service).aggregate(last=Max("last_poll_at"))["last"]
    when = f"last poll at {last.isoformat(timespec='seconds')}" if last else "never"
    return (
        f"no agent of service {service} has polled in the last "
        f"{settings.PROFILING_AGENT_LIVE_SECONDS} s ({when})"
    )


def start_warnings(*, profile: ProfileResult, live: list[AgentInstance] | None = None) -> list[str]:
    """What a user starting `profile` should know: no live agent will take it (yet).

    `live`: the service's live instances, when the caller has just read them."""
    if profile.status != Status.RUNNING or profile.phase != Phase.WAITING:
        return []
    if live is None:
        live = agent_instances_live(tenant=profile.tenant_id, service=profile.service)
    if live:
        return []
    return [
        describe_no_agent(tenant=profile.tenant_id, service=profile.service)
        + f"; the run waits {settings.PROFILING_CLAIM_TIMEOUT_SECONDS} s for one to claim it"
    ]


def service_inventory(*, tenant, now: datetime | None = None) -> list[dict]:
    """Each service of `tenant` with profiles or agents: its live instances and its last profile.

    Three queries whatever the number of services.
    """
    now = now or timezone.now()
    live = AgentInstance.objects.filter(tenant=tenant, last_poll_at__gte=_live_since(now)).order_by(
        "service", "host", "pid"
    )
    last_started = dict(
        ProfileResult.objects.filter(tenant=tenant)
        .order_by()
        .values_list("service")
        .annotate(last=Max("started_at"))
    )
    known_agents = set(AgentInstance.objects.filter(tenant=tenant).values_list("service", flat=True).distinct())
    services = sorted(set(last_started) | known_agents)
    last_profiles = {}
    if last_started:
        newest = ProfileResult.objects.filter(tenant=tenant, started_at__in=set(last_started.values()))
        for profile in newest.only("id", "service", "profile_type", "status", "started_at"):
            if last_started.get(profile.service) == profile.started_at:
                last_profiles[profile.service] = profile
    instances: dict[str, list[AgentInstance]] = {}
    for instance in live:
        instances.setdefault(instance.service, []).append(instance)
    return [
        {"service": name, "instances": instances.get(name, []), "last_profile": last_profiles.get(name)}
        for name in services
    ]
