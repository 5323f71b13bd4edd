"""Dagster resources: where the fleet database is and how hard to poll.

The DSN is read from the environment at run time, in the process that uses it (never put in Dagster
config, so a password never reaches the UI or the event log); with `KQ_DATABASE_URL` unset, the
embedded PostgreSQL is used outside deployments (the rule is in `kq_pipeline/db/connection.py`).
"""

from __future__ import annotations

import threading

from dagster import ConfigurableResource

from kq_pipeline.db.connection import connect, resolve_dsn
from kq_pipeline.db.schema import apply_schema
from kq_pipeline.refresh import RefreshSettings

_SCHEMA_LOCK = threading.Lock()
_SCHEMA_READY: set[str] = set()


class FleetDatabase(ConfigurableResource):
    """The PostgreSQL database that holds every cluster's tables.

    Configured by the *name* of the environment variable holding its DSN, not by `EnvVar(...)`: an
    EnvVar whose variable is unset fails every run and sensor tick at resource set-up (Dagster 1.13),
    and unset is exactly how local use asks for the embedded PostgreSQL. The UI shows the name only.
    """

    url_env: str = "KQ_DATABASE_URL"

    def dsn(self) -> str:
        """The DSN, with the schema applied once per process: a code upgrade that adds a column or
        index takes effect on its first run, not only after someone runs `kq db init`."""
        dsn = resolve_dsn(self.url_env)
        with _SCHEMA_LOCK:
            if dsn not in _SCHEMA_READY:
                with connect(dsn) as conn:
                    apply_schema(conn)
                _SCHEMA_READY.add(dsn)
        return dsn


class PollingSettings(ConfigurableResource):
    """How many clusters and list calls run at once, and how long one cluster may take."""

    cluster_concurrency: int = 4
    table_concurrency: int = 4
    cluster_deadline_s: float = 300.0
    page_limit: int = 500

    def settings(self) -> RefreshSettings:
        return RefreshSettings(
            concurrency=self.cluster_concurrency,
            table_concurrency=self.table_concurrency,
            deadline_s=self.cluster_deadline_s,
            page_limit=self.page_limit,
        )
