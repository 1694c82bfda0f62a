"""`make run` / `make stop`: the Procfile's processes for one checkout, started once, stopped together.

`run` refuses a second copy (a live process group recorded in the data folder's run.pid, or the
port already taken), starts every Procfile process in one process group of their own, prefixes
their output with their name, and ends the whole group when interrupted, when any process
exits, or when the runner itself dies (the kernel sends each child SIGTERM: PR_SET_PDEATHSIG).
`stop` ends what `run` started. Standard library only, so `make stop` needs no virtualenv.
"""

import argparse
import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("PROFILING_DATA_DIR", ROOT / "data"))
PID_FILE = DATA_DIR / "run.pid"
LOCK_FILE = DATA_DIR / "run.lock"
STOP_SECONDS = 15


def procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def group_members(pgid: int) -> list[int]:
    """Live processes of the group; an exited process not yet reaped (a zombie) does not count."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(group) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def group_alive(pgid: int) -> bool:
    if Path("/proc/self/stat").exists():
        return bool(group_members(pgid))
    try:  # no /proc: ask the kernel (zombies count here)
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recorded() -> dict | None:
    """What the running copy wrote: its process group, port and runner pid (None if nothing runs)."""
    try:
        pgid, port, runner = (int(part) for part in PID_FILE.read_text().split())
    except (FileNotFoundError, ValueError):
        return None
    if not group_alive(pgid):
        return None
    return {"pgid": pgid, "port": port, "runner": runner}


def refusal(port: int) -> str | None:
    """Why a new copy must not start, or None."""
    running = recorded()
    if running:
        return (
            f"The platform is already running from this checkout (port {running['port']}, "
            f"process group {running['pgid']}). Stop it with `make stop`."
        )
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return (
                f"Port {port} is already in use by another program (another checkout's `make run`?). "
                f"Stop it, or choose another port: PORT={port + 1} make run"
            )
    return None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the runner dies, however it dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: `make stop` still ends the group


def _relay(name: str, stream, width: int, lock: threading.Lock) -> None:
    for line in iter(stream.readline, b""):
        with lock:
            sys.stdout.write(f"{name:<{width}} | {line.decode(errors='replace')}")
            sys.stdout.flush()


def stop_group(pgid: int, children: list[subprocess.Popen] = ()) -> None:
    """SIGTERM to the whole group, SIGKILL to whatever is left after STOP_SECONDS."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        for child in children:
            child.poll()  # reap, so a finished child stops counting as a member
        if not group_alive(pgid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in children:
        child.wait()


def run(port: int) -> int:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PORT": str(port), "PROFILING_SERVER_URL": f"http://127.0.0.1:{port}"}
    entries = procfile()
    children: list[subprocess.Popen] = []
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two `make run` at once: the second sees the first's pid file
        reason = refusal(port)
        if reason:
            print(reason, file=sys.stderr)
            return 1
        pgid = 0  # the first child leads a new group; the others join it
        for command in entries.values():
            child = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {command}"], cwd=ROOT, env=env, process_group=pgid,
                preexec_fn=_die_with_parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
            pgid = pgid or child.pid
            children.append(child)
        PID_FILE.write_text(f"{pgid} {port} {os.getpid()}\n")

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())
    output_lock = threading.Lock()
    width = max(map(len, entries))
    for name, child in zip(entries, children, strict=True):
        threading.Thread(target=_relay, args=(name, child.stdout, width, output_lock), daemon=True).start()
    print(f"Started {', '.join(entries)} (process group {pgid}); Ctrl-C or `make stop` stops them all.", flush=True)

    exited = None
    while not stopping.is_set() and exited is None:
        exited = next((c for c in children if c.poll() is not None), None)
        stopping.wait(0.2)
    if exited is not None:
        name = list(entries)[children.index(exited)]
        print(f"{name} exited with code {exited.returncode}: stopping the others.", file=sys.stderr, flush=True)
    stop_group(pgid, children)
    if PID_FILE.exists() and PID_FILE.read_text().split()[:1] == [str(pgid)]:
        PID_FILE.unlink()  # ours (not a copy started since)
    return 0 if exited is None else (exited.returncode or 1)


def stop() -> int:
    running = recorded()
    if running is None:
        PID_FILE.unlink(missing_ok=True)
        print("The platform is not running from this checkout.")
        return 0
    try:
        os.kill(running["runner"], signal.SIGTERM)  # the runner stops the group and cleans up
    except ProcessLookupError:
        pass
    stop_group(running["pgid"])
    PID_FILE.unlink(missing_ok=True)
    print(f"Stopped the platform (process group {running['pgid']}).")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "check", "stop"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8088")))
    args = parser.parse_args()
    if args.command == "run":
        return run(args.port)
    if args.command == "check":
        reason = refusal(args.port)
        if reason:
            print(reason, file=sys.stderr)
        return 1 if reason else 0
    return stop()


if __name__ == "__main__":
    sys.exit(main())
