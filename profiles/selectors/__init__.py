"""Reads: querysets and derived data for the API, the pages and the admin. The caller scopes by tenant."""

from .compare import (  # noqa: F401
    ProfilesIncomparable,
    normalization_of,
    profile_compare,
)
from .continuous import (  # noqa: F401
    continuous_next_run_at,
    continuous_profile_list,
    continuous_slot_for,
)
from .history import (  # noqa: F401
    function_point,
    profile_history,
)
from .profiles import (  # noqa: F401
    EXPORT_FORMATS,
    ExportedProfile,
    ProfileNotReady,
    export_analysis,
    profile_export,
    profile_load_analysis,
)
from .ranges import (  # noqa: F401
    MergedRange,
    MixedEngines,
    RangeEmpty,
    RangeNotRolledUp,
    RangePlan,
    range_compare,
    range_merge,
    range_plan,
    range_timeline,
)
