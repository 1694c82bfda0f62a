"""A fork in the middle of a collection window, for each collector: parent and child both keep working.

Each case runs in a fresh interpreter, so a deadlock shows as a bounded timeout, never a hung suite.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from profiling_agent.collectors import available_engines
from profiling_agent.profile_format import ENGINES_BY_TYPE

ROOT = Path(__file__).resolve().parents[2]

FORK_DURING_WINDOW = textwrap.dedent("""
    import os, sys, threading, time
    from profiling_agent.collectors import collect, install_lock_profiler
    install_lock_profiler()
    kind, engine = sys.argv[1], sys.argv[2]

    def work(stop):
        lock = threading.Lock()
        while not stop.is_set():
            with lock:
                sum(i * i for i in range(2000))
            time.sleep(0.001)

    stop = threading.Event()
    workers = [threading.Thread(target=work, args=(stop,), daemon=True) for _ in range(2)]
    for w in workers:
        w.start()
    result = {}
    underway = threading.Event()  # set by the window's first progress report (about 1 s in)
    window = threading.Thread(target=lambda: result.update(p=collect(
        kind, duration_seconds=2, sample_rate=50, engine=engine, progress=lambda _: underway.set())))
    window.start()
    assert underway.wait(10)  # mid-window
    pid = os.fork()
    if pid == 0:
        # The child: its own threads and locks work, and it can collect a window of its own.
        child_stop = threading.Event()
        t = threading.Thread(target=work, args=(child_stop,))
        t.start()
        try:
            profile = collect(kind, duration_seconds=0.5, sample_rate=50, engine=engine)
        except Exception as exc:
            print("child could not collect:", exc, flush=True)
            profile = {}
        child_stop.set()
        t.join(5)
        os._exit(0 if profile.get("profileType") == kind and not t.is_alive() else 3)
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            print("child deadlocked", flush=True)
            sys.exit(4)
        time.sleep(0.05)
    window.join(20)
    stop.set()
    if window.is_alive():
        print("parent window deadlocked", flush=True)
        sys.exit(5)
    print("child", os.waitstatus_to_exitcode(status), "parent", result["p"]["profileType"], flush=True)
""")

CASES = [
    pytest.param(kind, engine, id=f"{kind}-{engine}")
    for kind, engines in ENGINES_BY_TYPE.items()
    for engine in engines
]


@pytest.mark.parametrize("kind, engine", CASES)
def test_fork_during_a_window_leaves_parent_and_child_working(kind, engine, tmp_path):
    if engine not in available_engines().get(kind, []):
        pytest.skip(f"{engine} is not installed here")
    script = tmp_path / "fork_window.py"
    script.write_text(FORK_DURING_WINDOW)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), kind, engine], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["child", "0", "parent", kind]
