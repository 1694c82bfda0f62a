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
ENGINES_BY_TYPE: dict[str, tuple[str, ...]] = {
    "cpu": ("py-spy", "yappi"),
    "memory": ("memray",),
    "alloc": ("memray",),
    "block": ("thread-sampler",),
    "mutex": ("lock-wrapper",),
    "goroutine": ("thread-sampler",),
}
DEFAULT_ENGINES: dict[str, str] = {kind: engines[0] for kind, engines in ENGINES_BY_TYPE.items()}
ENGINES: frozenset[str] = frozenset(e for engines in ENGINES_BY_TYPE.values() for e in engines)

#: Engines that record every call or allocation instead of sampling: no sampling noise in their values.
EXACT_ENGINES: frozenset[str] = frozenset({"yappi", "memray"})

#: Engines that slow the host several-fold: the server caps their windows (seconds).
HEAVY_ENGINE_MAX_SECONDS: dict[str, int] = {"yappi": 300, "memray": 300}

# What the server accepts in one upload. The collectors stay inside these with a margin.
MAX_FRAMES = 200_000
MAX_SAMPLES = 500_000
MAX_STACK_DEPTH = 512
MAX_INT64 = 2**63 - 1  # pprof stores values as int64
