"""Tests keep to a data folder of their own, so `make run` in the same checkout is untouched."""

from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def test_tests_use_a_data_folder_that_is_not_the_checkouts(db):
    data = Path(settings.DATA_DIR).resolve()
    assert data != (ROOT / "data").resolve()
    assert (ROOT / "data").resolve() not in data.parents
    if connection.vendor == "sqlite":
        assert data in Path(connection.settings_dict["NAME"]).resolve().parents
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        assert data in Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]).resolve().parents
    assert data in Path(settings.CELERY_BEAT_SCHEDULE_FILENAME).resolve().parents
    assert data in Path(settings.STATIC_ROOT).resolve().parents
