"""Everything Dagster loads: the group assets, the table catalog, checks, sensor, schedules, resources."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from kq_pipeline.defs.assets import kubequery_snapshot, table_specs
from kq_pipeline.defs.resources import FleetDatabase, PollingSettings
from kq_pipeline.defs.retention import prune_job, retention_schedule
from kq_pipeline.defs.schedules import fleet_refresh, refresh_job
from kq_pipeline.defs.sensors import inventory_sensor

defs = Definitions(
    assets=[kubequery_snapshot, *table_specs],
    jobs=[refresh_job, prune_job],
    schedules=[fleet_refresh, retention_schedule],
    sensors=[inventory_sensor],
    resources={"fleet_db": FleetDatabase(url_env="KQ_DATABASE_URL"), "polling": PollingSettings()},
    # One op per run, concurrency from threads inside it: a step subprocess would only add start-up time.
    executor=in_process_executor,
)
