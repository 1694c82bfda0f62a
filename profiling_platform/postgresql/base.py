"""Django's PostgreSQL backend with a health check that costs no round trip.

With persistent connections and CONN_HEALTH_CHECKS, Django sends ``SELECT 1`` before the first
query of every request: under benchmarks/load.py that wait was 17 % of the web threads' time.
An idle connection that the server has closed (a restart, pg_terminate_backend, an idle timeout)
has something to read, its termination notice and then the end of the stream; a usable one has
nothing, so a poll of its socket that does not wait tells them apart. Anything unexpected on an
idle connection counts as unusable: it is closed and a new one opened, never an error for the
request.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable
