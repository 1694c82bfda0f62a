"""The Celery app: `celery -A profiling_platform worker|beat`. Configuration lives in settings (CELERY_*)."""

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "profiling_platform.settings")

app = Celery("profiling_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()



def _start_self_profiling() -> None:
    """With PROFILING_SELF=1 each worker process runs an agent of service "profiling-worker"."""
    from django.conf import settings

    if not settings.PROFILING_SELF:
        return
    from profiling_agent import start_from_env

    os.environ["PROFILING_SERVICE"] = "profiling-worker"
    start_from_env()


@worker_process_init.connect
def _agent_in_prefork_child(**kwargs):
    _start_self_profiling()  # after the fork: each child has an agent of its own


@worker_init.connect
def _agent_in_solo_or_thread_pool(sender=None, **kwargs):
    if "prefork" not in str(getattr(sender, "pool_cls", "")).lower():
        _start_self_profiling()
