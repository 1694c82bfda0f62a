"""Settings from the environment (django-environ), with embedded defaults for a machine with no servers.

Production mode (`DJANGO_PRODUCTION=1`) requires a real secret and allowed hosts and turns on
the HTTPS hardening that `manage.py check --deploy` asks for.
"""

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DATA_DIR = Path(env("PROFILING_DATA_DIR", default=str(BASE_DIR / "data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

PRODUCTION = env.bool("DJANGO_PRODUCTION", default=False)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
if PRODUCTION:
    SECRET_KEY = env("DJANGO_SECRET_KEY")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
else:
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-insecure-key-change-me-in-production-0123456789")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PORT = env.int("PORT", default=8088)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tenants",
    "profiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "profiling_platform.middleware.RejectNulCharactersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "profiling_platform.urls"
WSGI_APPLICATION = "profiling_platform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that test subprocesses (web, worker, agent) share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
# Persistent connections: opening one per request (CONN_MAX_AGE=0) doubled the cost of a status GET
# on PostgreSQL (benchmarks/load.py); health checks drop a connection the server has closed, on
# PostgreSQL without a round trip (profiling_platform/postgresql).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "profiling_platform.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(DATA_DIR / "media")))
MEDIA_URL = "/media/"
# Profile files and rollups: MEDIA_ROOT by default, any S3-compatible object store when
# PROFILING_S3_BUCKET is set (credentials from PROFILING_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY, or
# boto3's usual chain: AWS_* variables, instance roles).
PROFILING_S3_BUCKET = env("PROFILING_S3_BUCKET", default="")


def s3_storage(bucket: str, **options) -> dict:
    """The STORAGES entry of an S3 bucket (the tests build theirs with the same function)."""
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": bucket, "file_overwrite": False, **options}}


STORAGES = {
    "default": s3_storage(
        PROFILING_S3_BUCKET,
        endpoint_url=env("PROFILING_S3_ENDPOINT_URL", default=None),
        region_name=env("PROFILING_S3_REGION", default=None),
        access_key=env("PROFILING_S3_ACCESS_KEY_ID", default=None),
        secret_key=env("PROFILING_S3_SECRET_ACCESS_KEY", default=None),
        location=env("PROFILING_S3_PREFIX", default=""),
    )
    if PROFILING_S3_BUCKET
    else {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.permissions.TenantTokenPermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tenants.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Profiling API",
    "DESCRIPTION": "Continuous profiling for Python services.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: Redis in production and CI, a folder-backed broker when nothing is configured.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = DATA_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
# No accepted upload lost: a task is acknowledged once done and redelivered when its worker dies;
# on Redis an unacknowledged task comes back after the visibility timeout (not Celery's 1 h), and
# the sweep (profiles.tasks.reap_overdue_runs) enqueues again what the broker lost.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_VISIBILITY_SECONDS = env.int("CELERY_BROKER_VISIBILITY_SECONDS", default=600)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_BROKER_VISIBILITY_SECONDS}
# An upload answers 202 in about a second when the broker is down, rather than waiting for it.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# A prefork child that grew past this (KiB) while processing a large profile is replaced after its
# task, so the memory goes back to the system.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", default=400_000)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# Profiling behaviour.
PROFILING_CLAIM_TIMEOUT_SECONDS = env.int("PROFILING_CLAIM_TIMEOUT_SECONDS", default=30)
PROFILING_UPLOAD_GRACE_SECONDS = env.int("PROFILING_UPLOAD_GRACE_SECONDS", default=300)
PROFILING_REAPER_PERIOD_SECONDS = env.int("PROFILING_REAPER_PERIOD_SECONDS", default=10)
PROFILING_MAX_UPLOAD_BYTES = env.int("PROFILING_MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)
# Budget of one processing attempt (the task's 300 s hard time limit, plus time in the queue):
# a processing run still there after it is enqueued again by the sweep, up to 3 attempts.
PROFILING_PROCESSING_ATTEMPT_SECONDS = env.int("PROFILING_PROCESSING_ATTEMPT_SECONDS", default=360)
PROFILING_MAX_RAW_BYTES = env.int("PROFILING_MAX_RAW_BYTES", default=100 * 1024 * 1024)
PROFILING_FLAMEGRAPH_LINK_SECONDS = env.int("PROFILING_FLAMEGRAPH_LINK_SECONDS", default=7 * 24 * 3600)
PROFILING_CONTINUOUS_PERIOD_SECONDS = env.int("PROFILING_CONTINUOUS_PERIOD_SECONDS", default=60)
# Windows are back to back by default: each as long as the period.
PROFILING_CONTINUOUS_WINDOW_SECONDS = env.int(
    "PROFILING_CONTINUOUS_WINDOW_SECONDS", default=PROFILING_CONTINUOUS_PERIOD_SECONDS
)
# An agent instance that polled this recently is live (inventory, routing, failure reasons).
PROFILING_AGENT_LIVE_SECONDS = env.int("PROFILING_AGENT_LIVE_SECONDS", default=60)
# An agent instance silent this long is forgotten (the daily purge); its profiles stay.
PROFILING_AGENT_FORGET_DAYS = env.int("PROFILING_AGENT_FORGET_DAYS", default=7)
# Resolved alerts, and webhook deliveries, are kept this long.
PROFILING_ALERT_RETENTION_DAYS = env.int("PROFILING_ALERT_RETENTION_DAYS", default=90)
PROFILING_DEFAULT_RETENTION_DAYS = env.int("PROFILING_DEFAULT_RETENTION_DAYS", default=30)
# Rollups (per-period merges of continuous windows) outlive raw windows; built every few minutes.
PROFILING_ROLLUP_RETENTION_DAYS = env.int("PROFILING_ROLLUP_RETENTION_DAYS", default=400)
PROFILING_ROLLUP_PERIOD_SECONDS = env.int("PROFILING_ROLLUP_PERIOD_SECONDS", default=300)
# A merge reads at most this many raw windows (the rest comes from rollups), so it never stalls a worker.
PROFILING_MERGE_MAX_RAW_WINDOWS = env.int("PROFILING_MERGE_MAX_RAW_WINDOWS", default=2000)
PROFILING_POLL_SECONDS = env.float("PROFILING_POLL_SECONDS", default=5.0)
# Regression alerts: windows are checked as often as they are made; webhook retries; private targets (tests, dev).
PROFILING_ALERT_CHECK_SECONDS = env.int("PROFILING_ALERT_CHECK_SECONDS", default=PROFILING_CONTINUOUS_PERIOD_SECONDS)
PROFILING_WEBHOOK_RETRY_SECONDS = env.float("PROFILING_WEBHOOK_RETRY_SECONDS", default=30.0)
PROFILING_WEBHOOK_ALLOW_PRIVATE = env.bool("PROFILING_WEBHOOK_ALLOW_PRIVATE", default=DEBUG)
# The platform can profile its own workers (service "profiling-worker").
PROFILING_SELF = env.bool("PROFILING_SELF", default=False)

CELERY_BEAT_SCHEDULE = {
    "reap-overdue-runs": {
        "task": "profiles.tasks.reap_overdue_runs",
        "schedule": timedelta(seconds=PROFILING_REAPER_PERIOD_SECONDS),
    },
    "dispatch-continuous-profiles": {
        "task": "profiles.tasks.dispatch_continuous_profiles",
        "schedule": timedelta(seconds=PROFILING_CONTINUOUS_PERIOD_SECONDS),
        # A tick still queued when the next one is due is dropped: that slot is gone.
        "options": {"expires": PROFILING_CONTINUOUS_PERIOD_SECONDS},
    },
    "check-regression-alerts": {
        "task": "profiles.tasks.check_regression_alerts",
        "schedule": timedelta(seconds=PROFILING_ALERT_CHECK_SECONDS),
        "options": {"expires": PROFILING_ALERT_CHECK_SECONDS},
    },
    "rollup-profiles": {
        "task": "profiles.tasks.rollup_profiles",
        "schedule": timedelta(seconds=PROFILING_ROLLUP_PERIOD_SECONDS),
        "options": {"expires": PROFILING_ROLLUP_PERIOD_SECONDS},
    },
    "purge-expired-profiles": {
        "task": "profiles.tasks.purge_expired_profiles",
        "schedule": crontab(hour=3, minute=17),
    },
}

DATA_UPLOAD_MAX_MEMORY_SIZE = PROFILING_MAX_UPLOAD_BYTES + 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
