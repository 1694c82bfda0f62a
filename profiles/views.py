"""Server-rendered pages."""

from django.http import Http404
from django.shortcuts import render

from .models import ProfileResult
from .signing import profile_id_from_token


def shared_flamegraph(request, token):
    """The flame graph behind a signed `flameGraphUrl`: no login, this one profile only."""
    profile_id = profile_id_from_token(token)
    profile = ProfileResult.objects.filter(pk=profile_id).first() if profile_id else None
    if profile is None:
        raise Http404("This flame-graph link is invalid or has expired.")
    return render(request, "profiles/flamegraph_shared.html", {"profile": profile})
