"""The API's error bodies: {"detail": readable text, "errors": {field: [readable text]}} for a 400."""

from django.http import Http404
from rest_framework import exceptions
from rest_framework.views import exception_handler


def api_exception_handler(exc, context):
    """DRF's handler, with every error body carrying a readable `detail` message.

    Nested validation errors (a list item, a nested object's field) become plain strings that
    name their place ("[1]: ...", "instance.pid: ..."), never Python reprs; a lookup that finds
    nothing says what was not found (the view's `not_found_detail`), never a model class.
    """
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(getattr(context.get("view"), "not_found_detail", "Not found."))
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(response.data, list):  # a ValidationError raised with a bare list
        response.data = {"non_field_errors": response.data}
    if isinstance(response.data, dict) and "detail" not in response.data:
        errors = {str(field): _messages(value) for field, value in response.data.items()}
        fields = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
        response.data = {"detail": f"Invalid request. {fields}", "errors": errors}
    return response


def _messages(value, path: str = "") -> list[str]:
    """Readable messages of one field's (possibly nested) errors, each prefixed by its sub-path."""
    prefix = f"{path}: " if path else ""
    if isinstance(value, dict):
        return [
            message
            for key, inner in value.items()
            for message in _messages(inner, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}".lstrip("."))
        ]
    if isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            return [prefix + str(item) for item in value]
        # A list of per-item errors (many=True): empty entries are items without errors.
        return [message for i, item in enumerate(value) if item for message in _messages(item, f"{path}[{i}]")]
    return [prefix + str(value)]
