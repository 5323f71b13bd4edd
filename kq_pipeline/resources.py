"""Dagster resources: where the fleet database is and how hard to poll.

The DSN is read from the environment at run time (never put in Dagster config, so a password
never reaches the UI or the event log); with no `KQ_DATABASE_URL` the embedded PostgreSQL is used.
"""

from __future__ import annotations

from dagster import ConfigurableResource

from kq_pipeline.db.connection import resolve_dsn
from kq_pipeline.refresh import RefreshSettings


class FleetDatabase(ConfigurableResource):
    """The PostgreSQL database that holds every cluster's tables."""

    def dsn(self) -> str:
        return resolve_dsn()


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
