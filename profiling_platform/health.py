import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from .celery import app as celery_app

logger = logging.getLogger(__name__)


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any failure means "down"; say why
        logger.warning("healthz: database down: %s", exc)
        return f"down: {exc.__class__.__name__}"


def _check_broker() -> str:
    try:
        with celery_app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:
        logger.warning("healthz: broker down: %s", exc)
        return f"down: {exc.__class__.__name__}"


def healthz(request):
    """200 when the database and the broker answer; 503 naming what is down."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    healthy = all(v == "ok" for v in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)
