"""The platform's settings for tests, with a data folder of the test run's own (never ./data/).

So `make test` and `make run` in one checkout share nothing: not the folder broker (each side's
worker would take the other's tasks), not the SQLite files, not the media. The folder is made
once per run and inherited through the environment by xdist workers and e2e subprocesses
(web, worker, beat, agents); each xdist worker gets a subfolder, so their brokers are apart too.
The process that made it removes it at the end (tests/conftest.py).
"""

import os
import tempfile

if "PROFILING_TEST_RUN_DIR" not in os.environ:
    os.environ["PROFILING_TEST_RUN_DIR"] = tempfile.mkdtemp(prefix="profiling-tests-")
    os.environ["PROFILING_TEST_RUN_DIR_OWNER"] = str(os.getpid())
os.environ["PROFILING_DATA_DIR"] = os.path.join(
    os.environ["PROFILING_TEST_RUN_DIR"], os.environ.get("PYTEST_XDIST_WORKER", "main")
)

from profiling_platform.settings import *  # noqa: E402, F403
