"""Reads: querysets and derived data for the API, the pages and the admin. The caller scopes by tenant."""

from .agents import (  # noqa: F401
    agent_instances_live,
    service_inventory,
    start_warnings,
)
from .alerts import (  # noqa: F401
    alert_compare_url,
    alert_list,
    alert_policy_for,
)
from .compare import (  # noqa: F401
    ProfilesIncomparable,
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
    profile_flame_tree,
    profile_labelled,
    profile_load_analysis,
    profile_read_artifact,
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
