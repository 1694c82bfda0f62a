"""Pure-Python profile analysis: the data model and functions on it (no Django imports).

The Celery task, the API and the pages use this package; so can the agent and any script.
"""

from .compare import IncomparableProfiles, compare_profiles, differential_tree
from .export import parse_pprof, to_folded, to_pprof, to_speedscope
from .flamegraph import flame_tree
from .model import (
    MAX_FRAMES,
    MAX_SAMPLES,
    MAX_STACK_DEPTH,
    UNIT_BY_TYPE,
    Frame,
    InvalidProfile,
    Profile,
    Sample,
    load_gzip_json,
)
from .summary import top_functions

__all__ = [
    "MAX_FRAMES",
    "MAX_SAMPLES",
    "MAX_STACK_DEPTH",
    "UNIT_BY_TYPE",
    "Frame",
    "IncomparableProfiles",
    "InvalidProfile",
    "Profile",
    "Sample",
    "compare_profiles",
    "differential_tree",
    "flame_tree",
    "load_gzip_json",
    "parse_pprof",
    "to_folded",
    "to_pprof",
    "to_speedscope",
    "top_functions",
]
