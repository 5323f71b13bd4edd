"""A backfill over 100 clusters, launched from the UI's GraphQL API and run by the real daemon.

BackfillPolicy.multi_run(25) must turn it into a handful of runs (4), not 100; every cluster's
partition of every group asset ends materialized with its row-count check evaluated. The test also
prints Dagster's bookkeeping per cluster (run wall time minus the time spent refreshing clusters),
which is a measurement for the report, not an assertion.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from kq_pipeline import inventory
from kq_pipeline.defs.partitions import sync_partitions
from kq_pipeline.registry import ASSET_GROUPS, TABLES
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec
from kq_pipeline_tests.defs.dagster_dev import DagsterDev, wait_for

pytestmark = pytest.mark.slow

CLUSTERS = 100
PER_RUN = 25
NEVER = "0 0 1 1 *"  # keep the cron schedules out of the measured window

SENSOR_TICKS = """
query ($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { ... on Sensor { sensorState { ticks(limit: 1) { status } } } }
}
"""
LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""
BACKFILL = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status numPartitions runs { runId status } }
  }
}
"""
PARTITION_STATS = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionStats { numMaterialized numFailed numPartitions } }
  }
}
"""
CHECKS = """
query ($path: [String!]!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: "row_counts", limit: 500) {
    status partition evaluation { success }
  }
}
"""
REFRESHED = re.compile(r"(\d+)/(\d+) cluster\(s\) refreshed in ([\d.]+)s")


@pytest.fixture
def fleet() -> Iterator:
    specs = [ClusterSpec(name=f"bf-{i:03d}", seed=i, pods=10, namespaces=2) for i in range(CLUSTERS)]
    with serve_fleet(specs) as f:
        yield f


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def dagster(tmp_path: Path, pg_dsn: str, dagster_home: Path) -> Iterator[DagsterDev]:
    dev = DagsterDev(
        {
            "KQ_DATABASE_URL": pg_dsn,
            "DAGSTER_HOME": str(dagster_home),
            "KQ_HOME": str(tmp_path / "kq"),
            "KQ_SENSOR_INTERVAL_S": "100000",  # one tick at start (empty inventory), then none
            "KQ_REFRESH_CRON": NEVER,
            "KQ_RETENTION_CRON": NEVER,
        },
        tmp_path / "dagster-dev.log",
    )
    try:
        dev.wait_ready()
        yield dev
    finally:
        dev.stop()


def _sensor_ticked(dev: DagsterDev) -> bool:
    selector = {
        "repositoryLocationName": "kq_pipeline.definitions",
        "repositoryName": "__repository__",
        "sensorName": "inventory_sensor",
    }
    sensor = dev.graphql(SENSOR_TICKS, {"selector": selector})["sensorOrError"]
    return bool(sensor.get("sensorState", {}).get("ticks"))


def _backfill_done(dev: DagsterDev, backfill_id: str) -> dict | None:
    backfill = dev.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
    return (
        backfill
        if backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED")
        else None
    )


def _bookkeeping(instance: DagsterInstance, run_id: str) -> tuple[int, float, float, float]:
    """(clusters, run wall s, s inside refresh_clusters, s from its start to the "refreshed" log line)."""
    record = instance.get_run_record_by_id(run_id)
    assert record is not None and record.start_time and record.end_time
    messages = [(e.timestamp, e.user_message) for e in instance.all_logs(run_id)]
    first = next(ts for ts, m in messages if m.startswith("refreshing "))
    last_progress = max(ts for ts, m in messages if re.match(r"\[\d+/\d+\] ", m))
    match = next(REFRESHED.search(m) for _, m in messages if REFRESHED.search(m))
    clusters = int(match.group(2))
    return clusters, record.end_time - record.start_time, last_progress - first, float(match.group(3))


def test_a_100_cluster_backfill_runs_as_4_runs_and_materializes_every_partition(
    fleet, dagster: DagsterDev, pg_dsn: str, tmp_path: Path
) -> None:
    wait_for(lambda: _sensor_ticked(dagster), 60, "the sensor's first (empty) tick")
    kubeconfig = fleet.write_kubeconfig(tmp_path / "k.yaml")
    clusters = inventory.clusters_from_kubeconfig(kubeconfig)
    names = [c.name for c in clusters]
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(conn, clusters)
    with DagsterInstance.get() as instance:
        sync_partitions(instance, names)

    t0 = time.perf_counter()
    launched = dagster.graphql(
        LAUNCH_BACKFILL,
        {
            "params": {
                "partitionNames": names,
                "assetSelection": [{"path": ["kubequery", g]} for g in ASSET_GROUPS],
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill = wait_for(lambda: _backfill_done(dagster, launched["backfillId"]), 600, "backfill to finish")
    wall = time.perf_counter() - t0

    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), backfill
    assert backfill["numPartitions"] == CLUSTERS
    runs = backfill["runs"]
    assert len(runs) == CLUSTERS // PER_RUN
    assert {r["status"] for r in runs} == {"SUCCESS"}

    for group in ASSET_GROUPS:
        stats = dagster.graphql(PARTITION_STATS, {"path": ["kubequery", group]})["assetNodeOrError"]
        assert stats["partitionStats"] == {
            "numMaterialized": CLUSTERS,
            "numFailed": 0,
            "numPartitions": CLUSTERS,
        }
        checks = dagster.graphql(CHECKS, {"path": ["kubequery", group]})["assetCheckExecutions"]
        assert sorted(c["partition"] for c in checks) == names, group
        assert {c["status"] for c in checks} == {"SUCCEEDED"}, group
    with psycopg.connect(pg_dsn) as conn:
        loads = conn.execute(
            "SELECT count(DISTINCT (cluster_name, table_name)) FROM kq_meta.loads WHERE status = 'success'"
        ).fetchone()[0]
    assert loads == CLUSTERS * len(TABLES)

    with DagsterInstance.get() as instance:
        assert len(instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))) == len(runs)
        measured = [_bookkeeping(instance, r["runId"]) for r in runs]
    print(f"\nbackfill of {CLUSTERS} clusters in {len(runs)} runs: {wall:.1f}s wall (launch to completed)")
    for n, run_s, refresh_s, logged_s in measured:
        print(
            f"  run of {n} clusters: {run_s:.1f}s wall, {refresh_s:.1f}s inside refresh_clusters, "
            f"asset logged {logged_s:.1f}s; bookkeeping {(run_s - refresh_s) / n:.3f}s/cluster "
            f"({(run_s - logged_s) / n:.3f}s/cluster against the logged time)"
        )
