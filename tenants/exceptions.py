from rest_framework.views import exception_handler


def api_exception_handler(exc, context):
    """DRF's handler, with every error body carrying a readable `detail` message."""
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" not in response.data:
        fields = "; ".join(
            f"{field}: {' '.join(str(m) for m in msgs) if isinstance(msgs, list) else msgs}"
            for field, msgs in response.data.items()
        )
        response.data = {"detail": f"Invalid request. {fields}", "errors": response.data}
    return response
