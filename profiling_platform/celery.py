"""The Celery app: `celery -A profiling_platform worker|beat`. Configuration lives in settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "profiling_platform.settings")

app = Celery("profiling_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
