"""Requests no page or endpoint can mean, answered before any view turns them into a 500."""

from django.http import HttpResponseBadRequest, JsonResponse

API_PREFIX = "/api/"
NUL_MESSAGE = "The request's address contains a NUL character, which no parameter may hold."


class RejectNulCharactersMiddleware:
    """A 400 for NUL in the path or query string.

    PostgreSQL text cannot hold NUL, so any lookup with one (an admin search or autocomplete
    term, a service in the path) raises DataError deep in a view; no legitimate value has one.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or _query_has_nul(request):
            if request.path.startswith(API_PREFIX):
                return JsonResponse({"detail": NUL_MESSAGE}, status=400)
            return HttpResponseBadRequest(NUL_MESSAGE, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def _query_has_nul(request) -> bool:
    return any("\x00" in key or "\x00" in value for key, values in request.GET.lists() for value in values)
