"""The raw profile format ("pyprof-raw/1"): the one definition the agent and the platform share.

Profile types, their units, the engines that can collect each (the first is the default) and the
limits an upload must stay within. The platform imports these names; nothing else repeats them.
"""

from __future__ import annotations

FORMAT = "pyprof-raw/1"

UNIT_BY_TYPE: dict[str, str] = {
    "cpu": "nanoseconds",
    "memory": "bytes",
    "alloc": "bytes",
    "block": "nanoseconds",
    "mutex": "nanoseconds",
    "goroutine": "count",
}
PROFILE_TYPES: tuple[str, ...] = tuple(UNIT_BY_TYPE)

#: Engines per type; the first one is what a run gets when it names none.
#: stack-sampler and alloc-sampler are the in-process samplers (collectors/ddprof.py);
#: py-spy, yappi and memray are the exact engines a request can choose.
ENGINES_BY_TYPE: dict[str, tuple[str, ...]] = {
    "cpu": ("stack-sampler", "py-spy", "yappi"),
    "memory": ("alloc-sampler", "memray"),
    "alloc": ("alloc-sampler", "memray"),
    "block": ("stack-sampler", "thread-sampler"),
    "mutex": ("lock-wrapper",),
    "goroutine": ("stack-sampler", "thread-sampler"),
}
DEFAULT_ENGINES: dict[str, str] = {kind: engines[0] for kind, engines in ENGINES_BY_TYPE.items()}
ENGINES: frozenset[str] = frozenset(e for engines in ENGINES_BY_TYPE.values() for e in engines)

#: Engines that install the per-thread profile hook: one of them at a time per process.
EXCLUSIVE_ENGINES: frozenset[str] = frozenset({"yappi", "memray"})

#: Mean bytes between two sampled allocations (alloc-sampler); PROFILING_ALLOC_SAMPLE_BYTES.
DEFAULT_ALLOC_SAMPLE_BYTES = 512 * 1024

#: The agent's CPU over the process's CPU in the window, percent: what "overheadPercent" holds.
MAX_OVERHEAD_PERCENT = 10_000

#: Engines that record every call or allocation instead of sampling: no sampling noise in their values.
EXACT_ENGINES: frozenset[str] = frozenset({"yappi", "memray"})

#: Engines that slow the host several-fold: the server caps their windows (seconds).
HEAVY_ENGINE_MAX_SECONDS: dict[str, int] = {"yappi": 300, "memray": 300}
#: Runs one agent instance collects at once (the server claims no more for it).
MAX_CONCURRENT_RUNS = 8

# What the server accepts in one upload. The collectors stay inside these with a margin.
MAX_FRAMES = 200_000
MAX_SAMPLES = 500_000
MAX_STACK_DEPTH = 512
MAX_INT64 = 2**63 - 1  # pprof stores values as int64
#: Sum of all stack depths: the work an upload implies (the flame tree, the exports) grows with it.
MAX_STACK_ENTRIES = 5_000_000
#: Longest function, file, thread or note string.
MAX_STRING_CHARS = 4096
#: What a PositiveIntegerField (sampleCount) holds on every database.
MAX_INT32 = 2**31 - 1

# Labels on samples: a sample may carry "labels": {key: value}, both strings. The agent sets
# these keys itself; users add their own with profiling_agent.profiling_labels(...). The
# sample's "thread" field doubles as the label key "thread" for filtering and grouping.
LABEL_VIEW = "view"    # Django: the view's dotted name of the request the thread serves
LABEL_ROUTE = "route"  # Django: its URL pattern, e.g. "api/items/<int:pk>/"
LABEL_TASK = "task"    # Celery: the name of the task the thread runs
LABEL_THREAD = "thread"
#: Keys per sample and distinct values per key in one profile; values past the cap become
#: LABEL_OVERFLOW_VALUE and the raw profile's "labelsOverflow" counts the samples that lost theirs.
MAX_LABEL_KEYS = 8
MAX_LABEL_VALUES_PER_KEY = 200
LABEL_OVERFLOW_VALUE = "(other)"
MAX_LABEL_CHARS = 200
