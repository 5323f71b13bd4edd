"""The product as users see it: the real webserver and daemon, driven through the UI's GraphQL API.

One `dagster dev` serves the whole scenario (it takes several seconds to start): the sensor finds a
cluster, a second cluster added while it runs gets a partition and a first load without a human,
the catalog shows the group assets and the fleet tables (with their fleet-wide row counts), checks are
evaluated per cluster, and re-materializing one partition refreshes only that cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from kq_pipeline import inventory
from kq_pipeline.registry import ASSET_GROUPS, TABLES
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec
from kq_pipeline_tests.defs.dagster_dev import DagsterDev, wait_for

SENSOR_INTERVAL_S = 3

ASSET_NODES = """
query { assetNodes { assetKey { path } isPartitioned groupName } }
"""
PARTITIONS = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode { partitionKeys } }
}
"""
MATERIALIZATIONS = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 100) { partition runId } }
  }
}
"""
LATEST_MATERIALIZATION = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 1) { runId metadataEntries { label ... on IntMetadataEntry { intValue } } }
    }
  }
}
"""
CHECKS = """
query ($path: [String!]!, $partition: String) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: "row_counts", partition: $partition, limit: 10) {
    runId status partition evaluation { success }
  }
}
"""
LAUNCH = """
mutation ($partition: String!) {
  launchRun(executionParams: {
    selector: {repositoryLocationName: "kq_pipeline.definitions", repositoryName: "__repository__",
               jobName: "refresh_clusters"},
    executionMetadata: {tags: [{key: "dagster/partition", value: $partition}]}
  }) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN_STATUS = """
query ($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }
"""


@pytest.fixture
def fleet() -> Iterator:
    with serve_fleet(
        [ClusterSpec(name=f"ui-{i}", seed=10 + i, pods=40, namespaces=3) for i in range(2)]
    ) as f:
        yield f


@pytest.fixture
def dagster(tmp_path: Path, pg_dsn: str) -> Iterator[DagsterDev]:
    home = tmp_path / "dagster"
    home.mkdir()
    dev = DagsterDev(
        {
            "KQ_DATABASE_URL": pg_dsn,
            "DAGSTER_HOME": str(home),
            "KQ_HOME": str(tmp_path / "kq"),
            "KQ_SENSOR_INTERVAL_S": str(SENSOR_INTERVAL_S),
        },
        tmp_path / "dagster-dev.log",
    )
    try:
        dev.wait_ready()
        yield dev
    finally:
        dev.stop()


def _materialized(dev: DagsterDev) -> set[str]:
    """Partitions of kubequery/core with a materialization: written when a run's op finishes."""
    data = dev.graphql(MATERIALIZATIONS, {"path": ["kubequery", "core"]})
    return {m["partition"] for m in data["assetOrError"].get("assetMaterializations", [])}


def _loaded_ok(dsn: str, cluster: str) -> bool:
    with psycopg.connect(dsn) as conn:
        n = conn.execute(
            "SELECT count(DISTINCT table_name) FROM kq_meta.loads"
            " WHERE cluster_name = %s AND status = 'success'",
            (cluster,),
        ).fetchone()[0]
    return n == len(TABLES)


def _run_finished(dev: DagsterDev, run_id: str) -> str | None:
    status = dev.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
    return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None


def test_sensor_catalog_checks_and_one_cluster_rematerialized(
    fleet, dagster: DagsterDev, pg_dsn: str, tmp_path: Path
) -> None:
    kubeconfig = fleet.write_kubeconfig(tmp_path / "k.yaml")
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig, ["ui-0"]))

    # The sensor adds the partition and requests the first load, without a human.
    wait_for(lambda: "ui-0" in _materialized(dagster), 180, "first load of ui-0 by the sensor")
    assert _loaded_ok(pg_dsn, "ui-0")

    # A cluster added while dagster runs gets a partition and its first load within a sensor interval.
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig, ["ui-1"]))
    wait_for(lambda: "ui-1" in _materialized(dagster), 180, "first load of ui-1 by the sensor")
    assert _loaded_ok(pg_dsn, "ui-1")
    partitions = dagster.graphql(PARTITIONS, {"path": ["kubequery", "core"]})["assetNodeOrError"][
        "partitionKeys"
    ]
    assert partitions == ["ui-0", "ui-1"]

    # The catalog: the partitioned API-group assets (and "custom") and every fleet table.
    nodes = dagster.graphql(ASSET_NODES)["assetNodes"]
    keys = {tuple(n["assetKey"]["path"]) for n in nodes}
    assert {("kubequery", g) for g in ASSET_GROUPS} <= keys
    assert {(t,) for t in TABLES} <= keys
    assert all(n["isPartitioned"] for n in nodes if n["assetKey"]["path"][0] == "kubequery")

    # Each cluster's group materializations and check evaluations are recorded per partition.
    mats = dagster.graphql(MATERIALIZATIONS, {"path": ["kubequery", "core"]})["assetOrError"][
        "assetMaterializations"
    ]
    assert {m["partition"] for m in mats} == {"ui-0", "ui-1"}
    checks = wait_for(
        lambda: dagster.graphql(CHECKS, {"path": ["kubequery", "core"], "partition": "ui-1"})[
            "assetCheckExecutions"
        ],
        60,
        "row_counts check evaluated for ui-1",
    )
    assert checks[0]["partition"] == "ui-1" and checks[0]["status"] == "SUCCEEDED"

    # Re-materializing one partition from the UI refreshes only that cluster.
    launched = dagster.graphql(LAUNCH, {"partition": "ui-1"})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    assert wait_for(lambda: _run_finished(dagster, run_id), 180, "UI-launched run to finish") == "SUCCESS"
    with psycopg.connect(pg_dsn) as conn:
        clusters = conn.execute(
            "SELECT DISTINCT cluster_name FROM kq_meta.loads WHERE run_id = %s", (run_id,)
        ).fetchall()
    assert clusters == [("ui-1",)]

    # The table entries are not "Never materialized": each run stamps them with the fleet-wide count.
    for table in ("kubernetes_pods", "kubernetes_namespaces", "kubernetes_info"):
        (latest,) = dagster.graphql(LATEST_MATERIALIZATION, {"path": [table]})["assetOrError"][
            "assetMaterializations"
        ]
        assert latest["runId"] == run_id
        metadata = {e["label"]: e.get("intValue") for e in latest["metadataEntries"]}
        with psycopg.connect(pg_dsn) as conn:
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        assert metadata["dagster/row_count"] == rows > 0, table
