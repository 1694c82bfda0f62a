"""The profiling agent that embeds in any Python process (standard library only, no Django).

    from profiling_agent import start, start_from_env
    handle = start_from_env()          # PROFILING_SERVER_URL, _TENANT_ID, _TOKEN, _SERVICE
    handle = start("ai-service", "http://profiling:8088", "550e8400", token)
    handle.stop()

or wrap a program: `python -m profiling_agent run -- app.py [args]` (see `--help`).
"""

from .client import AGENT_VERSION
from .labels import profiling_labels
from .runtime import AgentHandle, start, start_from_env

__all__ = ["AGENT_VERSION", "AgentHandle", "profiling_labels", "start", "start_from_env"]
