"""Everything Dagster loads: the group assets, the table catalog, checks, resources."""

from __future__ import annotations

from dagster import Definitions

from kq_pipeline.assets import kubequery_snapshot, table_specs
from kq_pipeline.resources import FleetDatabase, PollingSettings

defs = Definitions(
    assets=[kubequery_snapshot, *table_specs],
    resources={"fleet_db": FleetDatabase(), "polling": PollingSettings()},
)
