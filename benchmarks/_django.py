"""Django for a benchmark script: a scratch folder of its own (removed at exit) for the SQLite
database and the stored files, unless DATABASE_URL / a media folder are given."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(prefix: str, media: Path | None = None) -> Path:
    """Configure and set up Django; returns the scratch folder."""
    sys.path.insert(0, str(ROOT))
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "profiling_platform.settings")
    os.environ["MEDIA_ROOT"] = str(media or scratch / "media")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{scratch / 'bench.sqlite3'}")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()
    return scratch
