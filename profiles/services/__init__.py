"""Writes: views, tasks and commands call these, never the ORM directly. One module per concern."""

from .continuous import (  # noqa: F401
    continuous_dispatch,
    continuous_profile_delete,
    continuous_profile_update,
    continuous_profile_upsert,
)
from .processing import (  # noqa: F401
    COMPACT_LEVEL9_MAX_BYTES,
    PROCESSING_DEADLINE,
    profile_accept_upload,
    profile_process_upload,
)
from .retention import (  # noqa: F401
    PURGE_BATCH,
    profiles_purge_expired,
    rollups_purge_expired,
)
from .rollups import (  # noqa: F401
    rollup_build,
    rollups_refresh,
)
from .runs import (  # noqa: F401
    RunConflict,
    lease_hash,
    profile_claim_next,
    profile_fail,
    profile_record_progress,
    profile_start,
    profiles_reap_overdue,
)
