"""The collectors' scratch folders, and the sweep of those a killed process left behind.

Every folder is ``profiles-agent-<pid>-<kind>-XXXXXXXX`` in the system's temporary directory and
is removed by the collector that made it. A process killed with SIGKILL (or the OOM killer)
removes nothing, and a memray capture or a ddtrace profile can be large: the first folder a
process makes sweeps the folders of processes of this user that are no longer running.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading

PREFIX = "profiles-agent-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-")
_swept_in_pid: int | None = None
_lock = threading.Lock()


def private_dir(kind: str) -> str:
    """A new folder only this user can read, for one collector's files."""
    _sweep_once()
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{kind}-")


def _sweep_once() -> None:
    global _swept_in_pid
    with _lock:
        if _swept_in_pid == os.getpid():  # a forked child sweeps again: it has its own pid
            return
        _swept_in_pid = os.getpid()
    sweep_stale()


def sweep_stale(root: str | None = None) -> list[str]:
    """Remove the scratch folders (and older loose files) of dead processes; returns their paths."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    uid = os.getuid()
    for name in names:
        match = _NAME.match(name)
        if match is None or _running(int(match.group(1))):
            continue
        path = os.path.join(root, name)
        try:
            if os.lstat(path).st_uid != uid:
                continue  # another user's: not ours to judge
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except OSError:
            continue  # gone meanwhile, or not removable: nothing the host should notice
        removed.append(path)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # alive, another user's (PermissionError): not ours to judge
    return True
