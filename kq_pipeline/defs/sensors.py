"""The inventory sensor: new clusters get a partition and a first load; removed ones are retired.

The cursor holds the names the sensor has already seen, so a cluster counts as new until the sensor
has requested its first load, even if `kq clusters add` already created its partition. A tick that
finds the inventory unchanged does a few small queries, writes nothing and returns a skip.

`KQ_INVENTORY_FILE`, if set, is synced on every tick: new clusters are added and changed ones updated,
but a cluster removed with `kq clusters remove` stays removed (the tick says so), or the file would
silently undo the removal within one interval.
"""

from __future__ import annotations

import json
import os

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from kq_pipeline import inventory
from kq_pipeline.db.connection import connect
from kq_pipeline.db.retire import RETIRE_POLICIES, retire_rows
from kq_pipeline.defs.partitions import CLUSTERS_PARTITIONS_NAME, clusters_partitions
from kq_pipeline.defs.resources import FleetDatabase
from kq_pipeline.defs.schedules import range_run_requests, refresh_job

SENSOR_INTERVAL_S = int(os.environ.get("KQ_SENSOR_INTERVAL_S", "30"))


def _retire_policy() -> str:
    policy = os.environ.get("KQ_RETIRED_ROWS", "keep")
    if policy not in RETIRE_POLICIES:
        raise ValueError(f"KQ_RETIRED_ROWS must be one of {RETIRE_POLICIES}, got {policy!r}")
    return policy


@sensor(
    name="inventory_sensor",
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=DefaultSensorStatus.RUNNING,
    job=refresh_job,
    description="Adds a partition and requests a first load for each new cluster; retires removed clusters.",
)
def inventory_sensor(context: SensorEvaluationContext, fleet_db: FleetDatabase) -> SensorResult | SkipReason:
    seen: list[str] = json.loads(context.cursor) if context.cursor else []
    notes: list[str] = []
    with connect(fleet_db.dsn()) as conn:
        inventory_file = inventory.default_inventory_file()
        if inventory_file is not None:
            synced = inventory.sync_clusters(conn, inventory.clusters_from_yaml(inventory_file))
            if synced.removed:
                notes.append(inventory.removed_but_listed(inventory_file, synced.removed))
        active = [c.name for c in inventory.active_clusters(conn)]
        existing = context.instance.get_dynamic_partitions(CLUSTERS_PARTITIONS_NAME)
        unseen = [n for n in active if n not in seen]
        # A cluster loaded since it was added (e.g. by `kq load`, as `kq demo` does before its UI
        # starts) needs no first load: the schedule keeps it fresh.
        loaded = set(inventory.loaded_since_added(conn, unseen)) if unseen else set()
        new = [n for n in unseen if n not in loaded]
        missing_partitions = [n for n in active if n not in existing]
        # Seen names too: `kq clusters remove` drops the partition itself, before this tick.
        gone = sorted((set(existing) | set(seen)) - set(active))
        if not unseen and not gone and not missing_partitions and set(seen) <= set(active):
            return SkipReason("; ".join([f"inventory unchanged: {len(active)} cluster(s)", *notes]))
        policy = _retire_policy()
        for name in gone:
            retire_rows(conn, name, policy)
    stale = [n for n in gone if n in existing]
    order = [n for n in existing if n not in gone] + missing_partitions
    run_requests: list[RunRequest] = range_run_requests(new, order, reason="first load")
    already = f" (already loaded: {sorted(loaded)})" if loaded else ""
    context.log.info(
        f"new: {new}{already}; retired: {gone} (rows: {policy}); {len(run_requests)} run(s) requested"
    )
    for note in notes:
        context.log.info(note)
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[
            *([clusters_partitions.build_add_request(missing_partitions)] if missing_partitions else []),
            *([clusters_partitions.build_delete_request(stale)] if stale else []),
        ],
        cursor=json.dumps(sorted(active)),
    )
