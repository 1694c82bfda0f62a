"""Writes: views, tasks and commands call these, never the ORM directly. One module per concern."""

from .alerts import (  # noqa: F401
    WEBHOOK_MAX_ATTEMPTS,
    DeliveryFailed,
    WebhookRefused,
    alert_policy_set,
    alert_webhook_delete,
    alert_webhook_set,
    alerts_check_all,
    alerts_check_service,
    webhook_deliver,
    webhook_signature,
)
from .continuous import (  # noqa: F401
    continuous_dispatch,
    continuous_profile_delete,
    continuous_profile_update,
    continuous_profile_upsert,
)
from .processing import (  # noqa: F401
    COMPACT_LEVEL9_MAX_BYTES,
    PROCESSING_MAX_ATTEMPTS,
    ProcessingRetry,
    profile_accept_upload,
    profile_process_upload,
    profiles_requeue_stalled,
)
from .retention import (  # noqa: F401
    PURGE_BATCH,
    agent_instances_forget_silent,
    alerts_purge_expired,
    profiles_purge_expired,
    rollups_purge_expired,
)
from .rollups import (  # noqa: F401
    rollup_build,
    rollups_refresh,
)
from .runs import (  # noqa: F401
    Claim,
    RunConflict,
    agent_instance_record,
    heavy_engine_problem,
    lease_hash,
    profile_agent_fail,
    profile_check_lease,
    profile_claim_for,
    profile_fail,
    profile_record_progress,
    profile_start,
    profiles_reap_overdue,
    resolve_engine,
)
