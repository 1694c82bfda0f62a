"""Settings come from the environment, with embedded defaults that need no server."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup();"
    "print(json.dumps({'db': settings.DATABASES['default']['ENGINE'],"
    " 'db_name': str(settings.DATABASES['default']['NAME']),"
    " 'broker': settings.CELERY_BROKER_URL, 'debug': settings.DEBUG, 'port': settings.PORT,"
    " 'hosts': settings.ALLOWED_HOSTS, 'ssl': getattr(settings, 'SECURE_SSL_REDIRECT', False)}))"
)
CONFIG_VARS = (
    "DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "ALLOWED_HOSTS",
    "PORT", "DJANGO_PRODUCTION", "PROFILING_DATA_DIR",
    "DJANGO_ALLOW_ASYNC_UNSAFE",  # set by the browser tests' harness, never in production
)


def _settings(tmp_path, **overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env.update(DJANGO_SETTINGS_MODULE="profiling_platform.settings", PROFILING_DATA_DIR=str(tmp_path))
    env.update(overrides)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_defaults_need_no_server(tmp_path):
    s = _settings(tmp_path)
    assert s["db"] == "django.db.backends.sqlite3"
    assert s["db_name"].startswith(str(tmp_path))
    assert s["broker"] == "filesystem://"
    assert (tmp_path / "broker" / "queue").is_dir()
    assert s["debug"] is False
    assert s["port"] == 8088


def test_environment_overrides_defaults(tmp_path):
    s = _settings(
        tmp_path,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/somewhere",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/3",
        DJANGO_DEBUG="1",
        PORT="9000",
        ALLOWED_HOSTS="profiling.example.com",
    )
    assert s["db"] == "profiling_platform.postgresql"  # Django's, with a cheaper health check
    assert s["db_name"] == "somewhere"
    assert s["broker"] == "redis://127.0.0.1:6379/3"
    assert s["debug"] is True
    assert s["port"] == 9000
    assert s["hosts"] == ["profiling.example.com"]


def test_production_requires_a_secret_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env.update(PROFILING_DATA_DIR=str(tmp_path), DJANGO_PRODUCTION="1", ALLOWED_HOSTS="x.example.com")
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_mode_passes_check_deploy(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env.update(
        PROFILING_DATA_DIR=str(tmp_path),
        DJANGO_PRODUCTION="1",
        ALLOWED_HOSTS="profiling.example.com",
        DJANGO_SECRET_KEY="x" * 20 + "a-long-random-production-secret-0123456789!",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
