"""Requests no page can mean, answered before any view turns them into a 500."""

from django.http import HttpResponseBadRequest

API_PREFIX = "/api/"
NUL_MESSAGE = "The request's address contains a NUL character, which no parameter may hold."


class RejectNulCharactersMiddleware:
    """A 400 for NUL in the path or query string of a page (the admin included).

    PostgreSQL text cannot hold NUL, so any lookup with one (an admin search or autocomplete
    term, a service in the path) raises DataError deep in a view; no legitimate value has one.
    The API is left to its serializers, which answer in its own error format.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        is_page = not request.path.startswith(API_PREFIX)
        if is_page and ("\x00" in request.path or _query_has_nul(request)):
            return HttpResponseBadRequest(NUL_MESSAGE, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def _query_has_nul(request) -> bool:
    return any("\x00" in key or "\x00" in value for key, values in request.GET.lists() for value in values)
