import pytest

from profiling_platform.celery import app as celery_app


@pytest.fixture
def eager_celery():
    """Run tasks in-process; tests that need a real worker are the e2e ones."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Each test stores profile files in its own folder, so file assertions see only its files."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"
