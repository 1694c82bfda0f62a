"""Automatic labels for Django requests (view, route) and Celery tasks (task).

Nothing in the user's settings changes: ``install()`` hooks into whichever of Django and
Celery the process has imported, and the agent calls it at start and before every
collection window, so a program started by ``python -m profiling_agent run`` (which
imports Django only after the agent starts) is hooked before its first profile.

Django: ``BaseHandler.resolve_request`` is wrapped (it is the one place every request,
WSGI or ASGI, gets its ResolverMatch): the match's view dotted name and URL pattern become
labels until the ``request_finished`` signal. Celery: the ``task_prerun`` / ``task_postrun``
signals label the worker thread with the task name.
"""

from __future__ import annotations

import contextvars
import logging
import sys

from .labels import reset_labels, set_labels
from .profile_format import LABEL_ROUTE, LABEL_TASK, LABEL_VIEW, MAX_LABEL_CHARS

log = logging.getLogger("profiling_agent")

_installed: set[str] = set()
_request_token: contextvars.ContextVar = contextvars.ContextVar("profiling_request_labels",
                                                                 default=None)
_task_tokens: dict[str, contextvars.Token] = {}  # celery task id -> its labels' token


def install() -> None:
    for name, hook in (("django", _install_django), ("celery", _install_celery)):
        if name in _installed or name not in sys.modules:
            continue
        _installed.add(name)  # once, even if it fails: a failing hook must not retry forever
        try:
            hook()
        except Exception:  # the host's framework must keep working without labels
            log.warning("profiles agent: could not add %s labels", name, exc_info=True)


def _clip(text: str) -> str:
    return text[:MAX_LABEL_CHARS]


def _labels_or_none(**labels: str) -> contextvars.Token | None:
    """set_labels, except that no request or task fails for labels (the host's own labels may
    already fill every slot): then it runs unlabelled, and the agent logs why once."""
    try:
        return set_labels(**labels)
    except (TypeError, ValueError) as exc:
        global _warned
        if not _warned:
            _warned = True
            log.warning("profiles agent: a request or task runs without automatic labels: %s", exc)
        return None


_warned = False


def _install_django() -> None:
    from django.core.handlers.base import BaseHandler
    from django.core.signals import request_finished

    original = BaseHandler.resolve_request

    def resolve_request(self, request):
        match = original(self, request)
        _end_request()  # a previous request of this context that did not finish cleanly
        view = getattr(match, "_func_path", None) or getattr(match, "view_name", None) or ""
        _request_token.set(_labels_or_none(**{LABEL_VIEW: _clip(str(view)),
                                              LABEL_ROUTE: _clip(str(match.route or ""))}))
        return match

    BaseHandler.resolve_request = resolve_request
    request_finished.connect(_on_request_finished, weak=False,
                             dispatch_uid="profiling_agent_labels")


def _end_request() -> None:
    token = _request_token.get()
    if token is not None:
        _request_token.set(None)
        try:
            reset_labels(token)
        except ValueError:  # set in another context (ASGI): that context ends with its task
            pass


def _on_request_finished(**_kwargs) -> None:
    _end_request()


def _install_celery() -> None:
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid="profiling_agent_labels")
    task_postrun.connect(_on_task_postrun, weak=False, dispatch_uid="profiling_agent_labels")


def _on_task_prerun(task_id=None, task=None, **_kwargs) -> None:
    if task_id is not None and task is not None:
        token = _labels_or_none(**{LABEL_TASK: _clip(str(task.name))})
        if token is not None:
            _task_tokens[task_id] = token


def _on_task_postrun(task_id=None, **_kwargs) -> None:
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        try:
            reset_labels(token)
        except ValueError:  # ran in another context: nothing of ours is left in this one
            pass
