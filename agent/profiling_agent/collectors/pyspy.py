"""CPU profile by py-spy sampling this very process from a child process.

Why py-spy: it reads the interpreter's memory from outside, without needing the GIL, so its
samples land where the threads really are. A sampler living inside the process only runs when
it gets the GIL and was measured to put 0 % into pure-Python code that took ~30 % of the CPU
(shared/PROFILERS.md). ``--gil`` is not used: it drops C code that releases the GIL (a sha256
loop showed 0 % instead of ~20 %).

py-spy decides *where*, the thread's CPU clock decides *how much*. py-spy leaves out idle
threads by reading ``/proc/<tid>/stat``, and state R means running *or runnable*: a thread that
waits for a core, or has just been woken to take the GIL, counts as running. Measured on a
loaded 2-core machine: threads contending for the GIL were in state R 54-73 % of the time while
on a CPU 6-19 %; charging 1/rate seconds per sample turned 3.7 s of real CPU into 12.7 s and
gave a thread that mostly sleeps 12 % of the profile instead of 1 %. So each thread's samples
share that thread's measured CPU time over the window (``/proc/self/task/<tid>/schedstat``,
read about once a second so threads that exit keep their last figure). Per-thread totals are
then exact; only the split inside a thread comes from sampling, and it still leans towards
the places where the thread waits for the GIL. tests/agent/test_cpu_ground_truth.py holds
the result to within 5 points of the program's own ``time.thread_time()`` accounting.

Mode: ``--nonblocking``. The default blocking mode ptrace-stops every thread for every sample
(100 times a second); blocking system calls are interrupted and restarted each time, which
made sleeping threads look running (a thread asleep in 0.5 s sleeps was "active" in 41 of 200
samples blocking, 0 of 200 non-blocking), and a stop signal can make some calls (epoll_wait,
semop, ...) fail with EINTR in C code that does not retry (signal(7)). The target's own CPU
overhead of both modes was below this machine's noise (see benchmarks/agent_overhead.py,
``--design``); accuracy against the ground truth was the same. The price is the occasional
torn stack read while the process runs: py-spy drops those it detects (counted in the notes).

Self-attach: on kernels with Yama ``ptrace_scope = 1`` a process may only be traced by its
ancestors or by a tracer it declared; py-spy is our child, so we declare ourselves with
``prctl(PR_SET_PTRACER, own pid)`` -- Yama then accepts any descendant of ours -- for the
length of the window only (not testable on this machine, which has no Yama).
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

from . import _tempfiles
from ._common import (
    CollectorError,
    ProfileBuilder,
    ThreadCpu,
    Window,
    agent_thread_name,
    is_agent_thread,
)

ENGINE = "py-spy"

#: py-spy's blocking mode (stop the process per sample) or --nonblocking; see the docstring.
BLOCKING = False

_FRAME_RE = re.compile(r"^(?P<function>.*?) \((?P<file>.*):(?P<line>\d+)\)$")
_THREAD_RE = re.compile(r"^thread \((?P<tid>0x[0-9a-fA-F]+|\d+)\)(?:: (?P<name>.*))?$")
_START_TIMEOUT = 15.0  # seconds py-spy may take to attach and print its first line
_PR_SET_PTRACER = 0x59616D61


def find_pyspy() -> str | None:
    """The py-spy binary of this interpreter's environment first, then anything on PATH."""
    candidates = [Path(sys.executable).parent / "py-spy"]
    try:
        candidates.append(Path(sysconfig.get_path("scripts")) / "py-spy")
    except (KeyError, TypeError):
        pass
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("py-spy")


def _ptrace_scope() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip())
    except (OSError, ValueError):
        return None


def _set_ptracer(pid: int) -> bool:
    """prctl(PR_SET_PTRACER, pid); True when the kernel accepted it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PTRACER, ctypes.c_ulong(pid), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _refused(output: str) -> bool:
    text = output.lower()
    return "permission" in text or "not permitted" in text or "ptrace" in text


def _fix_hint(output: str) -> str:
    scope = _ptrace_scope()
    hint = (
        "py-spy could not read this process. Allow ptrace: run the service with the "
        "CAP_SYS_PTRACE capability (docker: --cap-add SYS_PTRACE; kubernetes: "
        "securityContext.capabilities.add: [SYS_PTRACE])"
    )
    if scope is not None and scope >= 1:
        hint += f", or lower kernel.yama.ptrace_scope (now {scope}) with " \
                "`sysctl kernel.yama.ptrace_scope=0`"
        if scope == 3:
            hint = ("py-spy cannot attach: kernel.yama.ptrace_scope is 3 (ptrace disabled until "
                    "reboot)")
    return f"{hint}; or use engine \"yappi\" (slower, no ptrace needed). py-spy said: {output}"


class _OutputReader(threading.Thread):
    """Drains py-spy's stdout+stderr so it never blocks, and notes when sampling began."""

    def __init__(self, stream):
        super().__init__(name=agent_thread_name("pyspy-output"), daemon=True)
        self.stream = stream
        self.lines: list[str] = []
        self.started = threading.Event()
        self.started_at: float | None = None
        self.started_perf: float | None = None

    def run(self) -> None:
        try:
            for raw in self.stream:
                line = raw.decode("utf-8", "replace").rstrip()
                if len(self.lines) < 200:
                    self.lines.append(line)
                if not self.started.is_set() and "Sampling process" in line:
                    self.started_at = time.time()
                    self.started_perf = time.perf_counter()
                    self.started.set()
        except (OSError, ValueError):
            pass
        finally:
            self.started.set()  # also wakes the waiter when py-spy died before sampling

    def text(self) -> str:
        return " | ".join(line for line in self.lines if line.strip())[-2000:]


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """SIGINT makes py-spy stop sampling and still write its output; SIGKILL only as last resort."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def collect(*, profile_type: str, duration: float, rate: float, window: Window) -> dict:
    binary = find_pyspy()
    if binary is None:
        raise CollectorError(
            "py-spy binary not found next to the interpreter or on PATH; install the py-spy "
            "wheel into this environment (pip install py-spy) or use engine \"yappi\""
        )
    rate_hz = max(1, int(round(rate)))
    workdir = _tempfiles.private_dir("pyspy")
    out_path = os.path.join(workdir, "samples.txt")
    cmd = [binary, "record", "--pid", str(os.getpid()), "--rate", str(rate_hz),
           "--duration", str(int(math.ceil(duration)) + 5), "--format", "raw", "--function",
           "--threads", "--full-filenames", "-o", out_path]
    if not BLOCKING:
        cmd.append("--nonblocking")
    declared_ptracer = _ptrace_scope() == 1 and _set_ptracer(os.getpid())
    agent_tids: set[int] = set()
    names_by_tid: dict[int, str] = {}
    native_by_ident: dict[int, int] = {}
    proc = None
    try:
        _note_threads(agent_tids, names_by_tid, native_by_ident)
        agent_tids.add(threading.get_native_id())  # the collecting thread is the agent's
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise CollectorError(f"could not start py-spy ({binary}): {exc}") from None
        reader = _OutputReader(proc.stdout)
        reader.start()
        reader.started.wait(_START_TIMEOUT)
        if reader.started_at is None:
            _stop(proc, 2.0)
            reader.join(2.0)
            output = reader.text() or f"exit status {proc.returncode}"
            if proc.returncode not in (None, 0) and _refused(output):
                raise CollectorError(_fix_hint(output))
            raise CollectorError(f"py-spy did not start sampling: {output}")
        window.start(reader.started_at, reader.started_perf)  # what py-spy really sampled
        cpu = ThreadCpu()
        cpu.start()

        def finished() -> bool:
            cpu.update()
            return proc.poll() is not None

        window.wait(until=finished)
        cpu.update(every=0.0)
        _note_threads(agent_tids, names_by_tid, native_by_ident)
        ended = time.perf_counter()
        _stop(proc, grace=30.0)
        reader.join(5.0)
        if proc.returncode not in (0, -signal.SIGINT, 130):
            output = reader.text()
            if _refused(output):
                raise CollectorError(_fix_hint(output))
            raise CollectorError(f"py-spy failed with status {proc.returncode}: {output}")
        builder = ProfileBuilder(profile_type, ENGINE, rate)
        samples = _parse(out_path, builder, rate_hz, agent_tids, names_by_tid, native_by_ident,
                         cpu if cpu.available else None)
        errors = re.search(r"Errors: (\d+)", reader.text())
        mode = "blocking" if BLOCKING else "--nonblocking"
        if cpu.available:
            builder.notes.append(
                f"py-spy {mode} sampling at {rate_hz} Hz decides where each thread's CPU went; "
                "how much CPU each thread used is its own CPU clock over the window, shared "
                "among its samples (py-spy counts runnable threads waiting for a core as "
                "running, which inflates busy machines)")
        else:
            builder.notes.append(
                f"py-spy {mode} sampling at {rate_hz} Hz; each sample of a running thread "
                "counts 1/rate seconds (per-thread CPU clocks unavailable: values can exceed "
                "the real CPU time when threads wait for a core)")
        if errors and int(errors.group(1)):
            builder.notes.append(f"py-spy could not read {errors.group(1)} samples")
        return builder.result(started_at=window.started_at,
                              duration_seconds=ended - window.started_perf, sample_count=samples)
    finally:
        if proc is not None and proc.poll() is None:
            _stop(proc, 5.0)
        if declared_ptracer:
            _set_ptracer(0)
        shutil.rmtree(workdir, ignore_errors=True)


def _note_threads(agent_tids: set[int], names_by_tid: dict[int, str],
                  native_by_ident: dict[int, int]) -> None:
    for thread in threading.enumerate():
        native = getattr(thread, "native_id", None)
        if native is None:
            continue
        names_by_tid.setdefault(native, thread.name)
        if thread.ident is not None:
            native_by_ident[thread.ident] = native
        if is_agent_thread(thread.name):
            agent_tids.add(native)


def _parse(path: str, builder: ProfileBuilder, rate_hz: int, agent_tids: set[int],
           names_by_tid: dict[int, str], native_by_ident: dict[int, int],
           cpu: ThreadCpu | None) -> int:
    """Folded lines ``thread (tid): name;func (file:line);... count`` -> samples; returns the
    number of samples kept. Streams the file and aggregates per (thread, stack), so memory
    follows distinct stacks, not lines.

    With ``cpu``, each thread's samples share that thread's measured CPU time in proportion
    to their counts; without it a sample is worth 1/rate seconds.
    """
    frame_cache: dict[str, int] = {}
    counts: dict[tuple[int, str, tuple[int, ...]], int] = {}
    per_thread: dict[int, int] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            folded, _, count_text = line.rstrip("\n").rpartition(" ")
            if not folded or not count_text.isdigit():
                continue
            count = int(count_text)
            parts = folded.split(";")
            tid, thread = -1, "unknown"
            match = _THREAD_RE.match(parts[0])
            if match:
                parts = parts[1:]
                # py-spy names a thread by its OS id where CPython records one (3.11+), else
                # by its pthread id, which is threading's ident: CPU clocks go by the OS id
                tid = int(match.group("tid"), 0)
                tid = native_by_ident.get(tid, tid)
                thread = match.group("name") or names_by_tid.get(tid) or f"thread-{tid}"
                if tid in agent_tids or is_agent_thread(thread):
                    continue
            stack = []
            for part in parts:
                index = frame_cache.get(part)
                if index is None:
                    m = _FRAME_RE.match(part)
                    if m:
                        index = builder.frame(m.group("function"), m.group("file"),
                                              int(m.group("line")))
                    else:
                        index = builder.frame(part, "", 0)
                    frame_cache[part] = index
                stack.append(index)
            if not stack:
                continue
            key = (tid, thread, tuple(stack))
            counts[key] = counts.get(key, 0) + count
            per_thread[tid] = per_thread.get(tid, 0) + count
    ns_per_sample = 1e9 / rate_hz
    for (tid, thread, stack), count in counts.items():
        if cpu is not None and tid >= 0:
            value = cpu.used_ns(tid) * count / per_thread[tid]
        else:
            value = count * ns_per_sample
        builder.add(stack, value, count, thread)
    if cpu is not None:
        # Python threads that used CPU in the window but were never caught running
        marker = None
        for tid, name in names_by_tid.items():
            if tid in per_thread or tid in agent_tids or is_agent_thread(name):
                continue
            used = cpu.used_ns(tid)
            if used >= ns_per_sample / 2:
                marker = marker or builder.frame_marker("(CPU between samples)")
                builder.add((marker,), used, 0, name)
    return sum(per_thread.values())
