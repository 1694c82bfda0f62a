"""`make install` / `make install-test`: create the virtualenv if it has no working pip, then
install the given projects into it (editable), holding a lock on ``<venv>.lock`` all along.

`make run` and `make test` started together in a fresh checkout take turns here: without the
lock the second found the venv the first was still creating, with no pip in it yet, and failed.
Standard library only: it runs before the venv exists.

Usage: python scripts/install_venv.py VENV PROJECT...   (e.g. .venv './agent[all]' '.[test]')
"""

import fcntl
import subprocess
import sys
import venv
from pathlib import Path


def has_pip(python: Path) -> bool:
    try:
        return subprocess.call([python, "-m", "pip", "--version"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) == 0
    except OSError:  # no interpreter there yet
        return False


def main(folder: str, *projects: str) -> int:
    python = Path(folder) / "bin" / "python"
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not has_pip(python):  # absent, or left half-made by an interrupted install
            venv.create(folder, with_pip=True, clear=True)
            subprocess.check_call([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        editable = [arg for project in projects for arg in ("-e", project)]
        return subprocess.call([python, "-m", "pip", "install", "--quiet", *editable])


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
