"""Races on one run, on PostgreSQL (CI's database): claims, reaper against upload, double uploads.

SQLite serialises every writer, so these would prove nothing there; they are skipped.
"""

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone
from profiling_agent.profile_format import ENGINES_BY_TYPE

from profiles import services
from profiles.models import ProfileResult

from .samples import claim_one, gzip_json, raw_cpu_profile

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (set DATABASE_URL)"),
]
ENGINES = {"cpu": list(ENGINES_BY_TYPE["cpu"])}


def _race(*actions):
    """Run the actions at once, each in its own thread with its own connection; their outcomes."""
    barrier = threading.Barrier(len(actions), timeout=10)
    outcomes = [None] * len(actions)

    def run(index, action):
        try:
            barrier.wait()
            outcomes[index] = action()
        except Exception as exc:  # the outcome under test, e.g. RunConflict
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads)
    return outcomes


def _upload(profile, lease, data):
    def action():
        services.profile_accept_upload(profile=profile, data=data, lease=lease)
        return "accepted"

    return action


def test_eight_instances_polling_at_once_claim_the_run_exactly_once(tenant):
    run = services.profile_start(tenant=tenant.tenant, service="svc", profile_type="cpu", duration_seconds=5)

    def poll(n):
        def action():
            instance = services.agent_instance_record(
                tenant=tenant.tenant, service="svc", collecting=[],
                instance={"id": f"racer-{n}", "pid": n, "engines": ENGINES},
            )
            return services.profile_claim_for(tenant=tenant.tenant, service="svc", instance=instance)

        return action

    outcomes = _race(*(poll(n) for n in range(8)))
    winners = [claims for claims in outcomes if claims]
    assert all(isinstance(o, list) for o in outcomes), outcomes
    assert len(winners) == 1 and winners[0][0].profile.pk == run.pk
    stored = ProfileResult.objects.get(pk=run.pk)
    assert stored.claimed_by == winners[0][0].profile.claimed_by
    assert stored.lease_hash == services.lease_hash(winners[0][0].lease)


@pytest.mark.parametrize("attempt", range(25))
def test_a_reaper_and_an_upload_racing_end_in_one_consistent_state(tenant, attempt, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    settings.PROFILING_UPLOAD_GRACE_SECONDS = 10  # the reaper's moment stays before a processing deadline
    services.profile_start(tenant=tenant.tenant, service="svc", profile_type="cpu", duration_seconds=1)
    claim = claim_one(tenant.tenant, "svc")
    after_deadline = timezone.now() + timedelta(seconds=1 + settings.PROFILING_UPLOAD_GRACE_SECONDS + 1)
    upload, reaped = _race(
        _upload(claim.profile, claim.lease, gzip_json(raw_cpu_profile())),
        lambda: services.profiles_reap_overdue(now=after_deadline),
    )
    stored = ProfileResult.objects.get(pk=claim.profile.pk)
    if upload == "accepted":  # the upload won: the reaper learnt it (nothing failed)
        assert reaped == 0
        assert (stored.status, stored.phase, stored.error) == ("running", "processing", "")
        assert stored.payload and stored.size_bytes > 0
    else:  # the reaper won: the upload was refused and left nothing behind
        assert isinstance(upload, services.RunConflict), upload
        assert reaped == 1
        assert (stored.status, stored.phase) == ("failed", "done") and "did not upload" in stored.error
        assert not stored.payload and not list(tmp_path.rglob("*.json.gz"))


def test_a_double_upload_is_refused_without_touching_the_stored_result(tenant, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    services.profile_start(tenant=tenant.tenant, service="svc", profile_type="cpu", duration_seconds=1)
    claim = claim_one(tenant.tenant, "svc")
    first, second = raw_cpu_profile(), raw_cpu_profile()
    second["samples"] = second["samples"][:1]
    bodies = [gzip_json(first), gzip_json(second)]
    outcomes = _race(*(_upload(claim.profile, claim.lease, body) for body in bodies))
    assert sorted(map(str, outcomes))[0] == "accepted" and outcomes.count("accepted") == 1
    loser = next(o for o in outcomes if o != "accepted")
    assert isinstance(loser, services.RunConflict)
    winner = bodies[outcomes.index("accepted")]
    stored = ProfileResult.objects.get(pk=claim.profile.pk)
    with stored.payload.open("rb") as fh:
        assert fh.read() == winner
    services.profile_process_upload(profile_id=stored.pk)
    stored.refresh_from_db()
    result = (stored.status, stored.sample_count, stored.size_bytes, stored.top_functions)
    with pytest.raises(services.RunConflict):  # and once more after processing
        _upload(stored, claim.lease, bodies[1])()
    stored.refresh_from_db()
    assert (stored.status, stored.sample_count, stored.size_bytes, stored.top_functions) == result
    assert result[0] == "completed"
