"""CPU profile with yappi: deterministic, CPU clock, exact call counts, approximate stacks.

For hosts where py-spy cannot attach (no ptrace). yappi hooks every call and return and
reads the thread's CPU clock each time -- a syscall -- so it slows call-heavy code several
times (4.8-5.4x on the service-like workload of shared/PROFILERS.md); use it for short windows.
Builtins are profiled (``builtins=True``): without them the C functions' own time vanishes
from every function's self time and callbacks of C code (a generator consumed by ``sum``) turn
into roots, so the totals no longer add up.

yappi keeps no stacks, only per thread: each function's total/self time and call count, and
per caller->callee edge the time spent in that callee when called from that caller. A tree is
rebuilt from those edges top-down: a root is a function whose total time is not explained by
its callers; a node that stands for a fraction q of its function's total time gets q of its
self time and calls, and q of each outgoing edge becomes a child. When a function has several
callers, its callees are split among them in proportion (the approximation). Direct recursion
is folded (yappi already counts a recursive function's time once); a cycle back to a function
already on the path is cut.

Labels: yappi asks a tag callback at every call and keeps the stats of each function per tag.
The callback maps the labels the calling code runs under (``labels.running_labels``: the
thread's Context, inside asyncio the running task's) to a tag, so each call counts under the
labels in force when it began; a function's own time after it opens a labels block stays
under the labels it was called with (its callees' time moves to the block's labels). yappi's
merged stats fold a function's tags together and drop the edges between tags, so the entries
are read one by one (``filter_callback`` sees each before the merge, its edges still
``(entry index, calls, non-recursive calls, ttot, tsub)``; an entry's index is unique while
yappi runs): the tree is rebuilt over (function, tag) entries, so a labelled block's stacks
keep the callers outside the block. The tag table is per window and bounded (MAX_LABEL_SETS).

yappi only sees calls made after it starts, so in a thread that was already inside its main
loop every callee of that loop would be a root. The frames that were on a thread's stack both
when the window opened and when it closed (the same frame objects) were its callers the whole
time: they are put above that thread's roots, which gives the stacks the depth py-spy shows.
yappi names methods ``Class.method`` and functions by ``co_name``; names are turned into
qualified names from the source where it can be read, so the same function is the same frame
whichever engine profiled it.
"""

from __future__ import annotations

import os
import sys
import threading

from ..labels import Labels, running_labels
from ..profile_format import LABEL_OVERFLOW_VALUE
from . import _source
from ._common import (
    MAX_DEPTH,
    CollectorError,
    ProfileBuilder,
    Window,
    is_agent_thread,
)

ENGINE = "yappi"
_NS = 1e9
_MIN_NODE_FRACTION = 1e-5  # subtrees under this share of the thread's time are not split
_MAX_NODES_PER_THREAD = 20_000
MAX_LABEL_SETS = 512  # yappi keeps a table of function stats per tag and thread: bound their number


class _Tags:
    """Label sets of one window and their yappi tags (0: no labels)."""

    def __init__(self) -> None:
        self.labels: list[Labels] = [()]  # tag -> labels
        self.overflow: set[int] = set()  # tags standing for label sets past the cap
        self._tag_of: dict[Labels, int] = {(): 0}
        self._last: tuple[Labels, int] = ((), 0)  # one tuple: threads read it whole
        self._lock = threading.Lock()

    def tag(self) -> int:
        """yappi's tag callback, at every call. It must not raise: yappi would drop it."""
        labels = running_labels()
        last = self._last
        if labels is last[0]:  # most calls run under the labels of the call before: no hashing
            return last[1]
        tag = self._tag_of.get(labels)
        if tag is None:
            tag = self._new(labels)
        self._last = (labels, tag)
        return tag

    def _new(self, labels: Labels) -> int:
        overflow = len(self._tag_of) >= MAX_LABEL_SETS
        if overflow:
            # the values go, the keys stay: keys come from the code and values from data,
            # so this adds at most one tag per set of keys the program uses
            labels = tuple((key, LABEL_OVERFLOW_VALUE) for key, _ in labels)
        with self._lock:  # two threads meeting the same new labels get one tag
            tag = self._tag_of.get(labels)
            if tag is None:
                tag = len(self.labels)
                self.labels.append(labels)
                self._tag_of[labels] = tag
                if overflow:
                    self.overflow.add(tag)
            return tag


class _Func:
    """One function under one tag: a yappi stats entry."""

    __slots__ = ("name", "file", "line", "ttot", "tsub", "ncall", "tag", "labels", "children")

    def __init__(self, stat, name: str, labels: Labels) -> None:
        self.name = name
        self.file = stat.module or ""
        self.line = stat.lineno or 0
        self.ttot = float(stat.ttot)
        self.tsub = float(stat.tsub)
        self.ncall = int(stat.ncall)
        self.tag = stat.tag
        self.labels = labels
        # entry index -> seconds; the entry itself is direct recursion, already in ttot
        self.children: dict[int, float] = {
            index: float(ttot) for index, _calls, _nonrecursive, ttot, _tsub in stat.children
            if index != stat.index}


_window_in_progress = False  # yappi was started by this module, not by the host


def _stop_inherited_yappi() -> None:
    """In a forked child: the parent's window is not the child's, and only the parent's thread
    would stop yappi; left running, it slows the child and refuses the child's own windows."""
    global _window_in_progress
    if not _window_in_progress:
        return
    _window_in_progress = False
    try:
        import yappi

        yappi.stop()
        yappi.set_tag_callback(None)
        yappi.clear_stats()
    except Exception:  # noqa: BLE001 - the child's own windows then report yappi's state
        pass


os.register_at_fork(after_in_child=_stop_inherited_yappi)


def collect(*, profile_type: str, duration: float, rate: float, window: Window) -> dict:
    global _window_in_progress
    try:
        import yappi
    except ImportError as exc:
        raise CollectorError(f"yappi is not installed here ({exc}); pip install yappi") \
            from None
    if yappi.is_running():
        raise CollectorError("yappi is already running in this process (started by the host)")
    own = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    yappi.clear_stats()
    yappi.set_clock_type("cpu")
    tags = _Tags()
    yappi.set_tag_callback(tags.tag)
    at_start = _stacks(own)
    try:
        yappi.start(builtins=True, profile_threads=True)
        _window_in_progress = True
        window.start()
        window.wait()
    finally:
        elapsed = window.elapsed
        yappi.stop()
        yappi.set_tag_callback(None)
        _window_in_progress = False
    at_end = _stacks(own)
    try:
        names.update({t.ident: t.name for t in threading.enumerate()})
        builder = ProfileBuilder(profile_type, ENGINE, rate)
        resolver = _source.shared()
        calls = overflow_calls = 0
        entries = _entries_by_thread(yappi, tags, resolver)
        for thread in yappi.get_thread_stats():
            name = names.get(thread.tid) or f"{thread.name}-{thread.tid}"
            if thread.tid == own or is_agent_thread(name):
                continue
            prefix = builder.code_stack_indices(
                _common_prefix(at_start.get(thread.tid, []), at_end.get(thread.tid, [])))
            funcs = entries.get(thread.id, {})
            calls += _build(funcs, builder, name, prefix)
            overflow_calls += sum(f.ncall for f in funcs.values() if f.tag in tags.overflow)
        builder.notes.append(
            "yappi (deterministic, CPU clock): exact call counts (sample count = calls); "
            "stacks are rebuilt from caller->callee edges and are approximate for functions "
            "with several callers; the profiled program ran several times slower")
        if len(tags.labels) > 1:
            builder.notes.append(
                "yappi labels: each call counts under the labels in force when it began, so a "
                "function's own time after it opens a labels block stays under the labels it "
                "was called with")
        result = builder.result(started_at=window.started_at, duration_seconds=elapsed,
                                sample_count=calls)
        if overflow_calls:
            result["notes"].append(
                f"more than {MAX_LABEL_SETS} distinct label sets in the window: {overflow_calls} "
                f"calls under later ones carry {LABEL_OVERFLOW_VALUE!r} values")
            result["labelsOverflow"] = result.get("labelsOverflow", 0) + overflow_calls
        return result
    finally:
        yappi.clear_stats()


def _stacks(own: int) -> dict[int, list]:
    """Every other thread's frames, root first (the frame objects themselves)."""
    out = {}
    for ident, frame in sys._current_frames().items():
        if ident == own:
            continue
        frames = []
        while frame is not None and len(frames) < MAX_DEPTH:
            frames.append(frame)
            frame = frame.f_back
        frames.reverse()
        out[ident] = frames
    return out


def _common_prefix(start: list, end: list) -> tuple:
    """Code objects of the frames that stayed on the stack through the window."""
    codes = []
    for before, after in zip(start, end, strict=False):
        if before is not after:
            break
        codes.append(before.f_code)
    return tuple(codes)


def _entries_by_thread(yappi, tags: _Tags,
                       resolver: _source.SourceResolver) -> dict[int, dict[int, _Func]]:
    """Every thread's (function, tag) entries by yappi's entry index, per yappi thread id: one
    pass over yappi's stats (a pass per thread reads every thread's entries each time)."""
    by_thread: dict[int, dict[int, _Func]] = {}
    names: dict[str, str] = {}  # full_name -> qualified name

    def keep(stat) -> bool:
        name = names.get(stat.full_name)
        if name is None:
            name = names[stat.full_name] = _qualified(stat, resolver)
        by_thread.setdefault(stat.ctx_id, {})[stat.index] = _Func(stat, name, tags.labels[stat.tag])
        return False  # kept here, before yappi merges the tags of a function

    yappi.get_func_stats(filter_callback=keep)
    return by_thread


def _qualified(stat, resolver: _source.SourceResolver) -> str:
    if stat.module and stat.lineno:
        short = stat.name.rsplit(".", 1)[-1]
        qualname, first = resolver.resolve(short, stat.module, stat.lineno)
        if first == stat.lineno and qualname.endswith(short):
            return qualname
    return stat.name


def _build(funcs: dict[int, _Func], builder: ProfileBuilder, thread: str,
           prefix: tuple[int, ...]) -> int:
    """Add one thread's rebuilt tree to ``builder``; returns the calls attributed."""
    incoming: dict[int, float] = {}
    for key, func in funcs.items():
        for child, seconds in func.children.items():
            if child in funcs and child != key:
                incoming[child] = incoming.get(child, 0.0) + seconds
    total = sum(func.tsub for func in funcs.values()) or 1.0
    min_node = total * _MIN_NODE_FRACTION
    budget = [_MAX_NODES_PER_THREAD]
    frame_of: dict[int, int] = {}
    calls = 0

    def frame(key: int) -> int:
        index = frame_of.get(key)
        if index is None:
            func = funcs[key]
            index = frame_of[key] = builder.frame(func.name, func.file, func.line)
        return index

    # iterative depth-first walk: (entry index, seconds this node stands for, path)
    pending = []
    for key, func in funcs.items():
        root_seconds = func.ttot - incoming.get(key, 0.0)
        if root_seconds > min_node:
            pending.append((key, root_seconds, prefix + (frame(key),), frozenset((key,))))
    while pending:
        key, seconds, stack, on_path = pending.pop()
        func = funcs[key]
        share = min(1.0, seconds / func.ttot) if func.ttot > 0 else 0.0
        # unexpanded subtrees stay with this node, under their own labels
        values = {func.labels: share * func.tsub}
        expand = seconds > min_node and len(stack) < MAX_DEPTH and budget[0] > 0
        for child, edge in func.children.items():
            if child not in funcs or child in on_path:
                continue
            child_seconds = share * edge
            if expand:
                budget[0] -= 1
                pending.append((child, child_seconds, stack + (frame(child),),
                                on_path | {child}))
            else:
                labels = funcs[child].labels
                values[labels] = values.get(labels, 0.0) + child_seconds
        count = max(1, round(share * func.ncall))
        calls += count
        for labels, value in values.items():
            if value > 0:
                builder.add(stack, value * _NS, count if labels == func.labels else 0, thread,
                            labels)
    return calls
