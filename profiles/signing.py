"""Signed, expiring links to one profile's flame graph (no login needed, one profile only)."""

from django.conf import settings
from django.core import signing

SALT = "profiles.flamegraph"


def flamegraph_token(profile_id) -> str:
    return signing.dumps(str(profile_id), salt=SALT, compress=False)


def profile_id_from_token(token: str) -> str | None:
    try:
        return signing.loads(token, salt=SALT, max_age=settings.PROFILING_FLAMEGRAPH_LINK_SECONDS)
    except signing.BadSignature:
        return None
