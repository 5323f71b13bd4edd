"""What a refresh run leaves in Dagster: per-cluster group materializations and checks, every output the
framework expects, and the table entries stamped with their fleet-wide row counts.

The refresh job runs in-process against a simulated fleet and a real PostgreSQL, as `kq load` runs it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    ExecuteInProcessResult,
    instance_for_test,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from psycopg import sql

from kq_pipeline import inventory
from kq_pipeline.definitions import defs
from kq_pipeline.defs.assets import fleet_row_counts, group_key
from kq_pipeline.defs.checks import ROW_COUNT_CHECK
from kq_pipeline.defs.partitions import CLUSTERS_PARTITIONS_NAME
from kq_pipeline.defs.schedules import refresh_job
from kq_pipeline.registry import ASSET_GROUPS, CUSTOM_RESOURCES_TABLE, TABLES
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import CUSTOM_KINDS, OPERATORS, ClusterSpec, custom_counts
from kq_pipeline.simulator.objects.custom import KINDS

FLEET = ["as-0", "as-1", "as-2"]


@pytest.fixture
def fleet(pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Three small simulated clusters in the inventory; yields the fleet database's DSN."""
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    specs = [ClusterSpec(name=n, seed=20 + i, pods=8 + 4 * i, namespaces=2) for i, n in enumerate(FLEET)]
    with serve_fleet(specs) as served:
        kubeconfig = served.write_kubeconfig(tmp_path / "k.yaml")
        with psycopg.connect(pg_dsn) as conn:
            inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))
        yield pg_dsn


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as inst:
        inst.add_dynamic_partitions(CLUSTERS_PARTITIONS_NAME, [*FLEET, "ghost"])  # ghost: no such cluster
        yield inst


def _refresh(
    instance: DagsterInstance, first: str, last: str, selection: Sequence[AssetKey] | None = None
) -> ExecuteInProcessResult:
    """One batched run over the partition range first..last, as `kq load` and the schedule launch it."""
    return defs.resolve_job_def(refresh_job.name).execute_in_process(
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        asset_selection=selection,
        raise_on_error=False,
    )


def _messages(instance: DagsterInstance, run_id: str) -> list[str]:
    return [e.message for e in instance.all_logs(run_id)]


def _failure(result: ExecuteInProcessResult) -> str:
    """The description of the run's Failure."""
    (failure,) = result.get_step_failure_events()
    return failure.step_failure_data.user_failure_data.description


def _events(instance: DagsterInstance, run_id: str, kind: DagsterEventType) -> list:
    return [e.dagster_event for e in instance.all_logs(run_id, of_type=kind)]


def _table_materializations(instance: DagsterInstance, run_id: str) -> dict[str, dict[str, object]]:
    """table -> metadata values, of the run's materializations of the table entries."""
    out: dict[str, dict[str, object]] = {}
    for event in _events(instance, run_id, DagsterEventType.ASSET_MATERIALIZATION):
        m = event.step_materialization_data.materialization
        if len(m.asset_key.path) == 1:
            assert m.partition is None
            out[m.asset_key.path[0]] = {k: v.value for k, v in m.metadata.items()}
    return out


def _count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def test_a_batched_run_emits_every_expected_output_and_a_check_result_per_cluster(
    fleet: str, instance: DagsterInstance
) -> None:
    result = _refresh(instance, FLEET[0], FLEET[-1])

    assert result.success
    assert not [m for m in _messages(instance, result.run_id) if "did not yield" in m]
    evaluations = Counter(
        (e.event_specific_data.asset_key, e.event_specific_data.partition)
        for e in _events(instance, result.run_id, DagsterEventType.ASSET_CHECK_EVALUATION)
    )
    assert evaluations == Counter({(group_key(g), c): 1 for g in ASSET_GROUPS for c in FLEET})
    for group in ASSET_GROUPS:  # what the UI's per-partition check view reads
        records = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(group_key(group), ROW_COUNT_CHECK), limit=10
        )
        assert sorted((r.partition, r.status.value) for r in records) == [(c, "SUCCEEDED") for c in FLEET]


def test_every_table_is_stamped_with_its_fleet_wide_row_count_and_this_runs_clusters(
    fleet: str, instance: DagsterInstance
) -> None:
    assert _refresh(instance, FLEET[0], FLEET[-1]).success

    result = _refresh(instance, FLEET[1], FLEET[1])  # one cluster: the counts are still fleet-wide

    assert result.success
    tables = _table_materializations(instance, result.run_id)
    assert set(tables) == set(TABLES)
    for table, metadata in tables.items():
        assert metadata["dagster/row_count"] == _count(fleet, table), table
        assert metadata["clusters_loaded"] == 1
        assert metadata["clusters"] == FLEET[1]
    assert tables["kubernetes_pods"]["rows_loaded"] == 12  # as-1's pods
    assert tables["kubernetes_pods"]["dagster/row_count"] == 8 + 12 + 16
    latest = instance.get_latest_materialization_event(AssetKey("kubernetes_pods"))
    assert latest is not None and latest.run_id == result.run_id  # what the catalog shows


def test_only_the_tables_of_the_selected_groups_are_stamped(fleet: str, instance: DagsterInstance) -> None:
    result = _refresh(instance, FLEET[0], FLEET[-1], selection=[group_key("batch")])

    assert result.success
    assert set(_table_materializations(instance, result.run_id)) == set(ASSET_GROUPS["batch"])
    assert not [m for m in _messages(instance, result.run_id) if "did not yield" in m]


def test_a_run_where_some_clusters_fail_stamps_the_tables_the_others_loaded_and_fails(
    fleet: str, instance: DagsterInstance
) -> None:
    result = _refresh(instance, FLEET[2], "ghost")

    assert not result.success
    assert _failure(result) == "1 of 2 cluster(s) failed: ghost"
    tables = _table_materializations(instance, result.run_id)
    assert set(tables) == set(TABLES)
    assert {m["clusters"] for m in tables.values()} == {FLEET[2]}
    assert tables["kubernetes_pods"]["dagster/row_count"] == _count(fleet, "kubernetes_pods") == 16


def test_a_run_where_every_cluster_fails_still_fails_and_stamps_nothing(
    fleet: str, instance: DagsterInstance
) -> None:
    result = _refresh(instance, "ghost", "ghost")

    assert not result.success
    assert _failure(result) == "1 of 1 cluster(s) failed: ghost"
    assert not [m for m in _messages(instance, result.run_id) if "did not yield" in m]
    assert _events(instance, result.run_id, DagsterEventType.ASSET_MATERIALIZATION) == []
    assert _events(instance, result.run_id, DagsterEventType.ASSET_CHECK_EVALUATION) == []


def _record_load(conn: psycopg.Connection, cluster: str, table: str, rows: int | None, at: datetime) -> None:
    status = "failed" if rows is None else "success"
    conn.execute(
        "INSERT INTO kq_meta.loads (run_id, cluster_name, table_name, status, rows_extracted, rows_loaded, "
        "started_at, finished_at) VALUES ('r', %s, %s, %s, %s, %s, %s, %s)",
        (cluster, table, status, rows, rows, at, at),
    )


def test_fleet_row_counts_follow_the_latest_successful_load_and_skip_deleted_rows(pg_dsn: str) -> None:
    """Without reading the tables: each cluster's rows are its latest successful load's, unless the
    retire policy deleted them."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(
            conn,
            [inventory.Cluster(name=n, server="https://127.0.0.1:1", token_env="T") for n in ("a", "b", "c")],
        )
        for cluster, n in (("a", 2), ("b", 3)):
            for _ in range(n):
                conn.execute("INSERT INTO kubernetes_nodes (cluster_name) VALUES (%s)", (cluster,))
        _record_load(conn, "a", "kubernetes_nodes", 5, t0)
        _record_load(conn, "a", "kubernetes_nodes", 2, t0 + timedelta(minutes=15))
        _record_load(conn, "a", "kubernetes_nodes", None, t0 + timedelta(minutes=30))  # failed: rows stay
        _record_load(conn, "b", "kubernetes_nodes", 3, t0)
        _record_load(conn, "c", "kubernetes_nodes", 4, t0)  # then retired, its rows deleted
        conn.commit()

        assert fleet_row_counts(conn, ["kubernetes_nodes", "kubernetes_pods"]) == {
            "kubernetes_nodes": 5,
            "kubernetes_pods": 0,
        }
    assert _count(pg_dsn, "kubernetes_nodes") == 5


def test_each_cluster_is_recorded_in_dagster_as_soon_as_it_is_loaded_not_after_the_batch(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that dies mid-batch must not leave committed clusters unrecorded: with one cluster of the
    batch hanging, the others' materializations are already in the instance while the run still runs."""
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    specs = [ClusterSpec(name=n, seed=40 + i, pods=6, namespaces=2) for i, n in enumerate(FLEET)]
    with serve_fleet(specs) as served, instance_for_test() as instance:
        kubeconfig = served.write_kubeconfig(tmp_path / "k.yaml")
        with psycopg.connect(pg_dsn) as conn:
            inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))
        instance.add_dynamic_partitions(CLUSTERS_PARTITIONS_NAME, FLEET)
        served.clusters["as-2"].faults.hang()
        results: list[ExecuteInProcessResult] = []
        run = threading.Thread(target=lambda: results.append(_refresh(instance, FLEET[0], FLEET[-1])))
        run.start()
        try:
            deadline = time.monotonic() + 60
            recorded: set[str | None] = set()
            while recorded != {"as-0", "as-1"} and time.monotonic() < deadline:
                time.sleep(0.2)
                recorded = {
                    r.partition_key
                    for r in instance.fetch_materializations(group_key("core"), limit=100).records
                }
            assert recorded == {"as-0", "as-1"}
            assert run.is_alive()  # as-2 still hangs: the batch has not ended
        finally:
            served.clusters["as-2"].faults.hang(False)
            run.join(120)
    assert results and results[0].success


OPS_FLEET = ["ops-0", "ops-1"]


def _group_materializations(
    instance: DagsterInstance, run_id: str, group: str
) -> dict[str, dict[str, object]]:
    """partition (cluster) -> metadata values, of the run's materializations of one group asset."""
    out: dict[str, dict[str, object]] = {}
    for event in _events(instance, run_id, DagsterEventType.ASSET_MATERIALIZATION):
        m = event.step_materialization_data.materialization
        if m.asset_key == group_key(group):
            out[m.partition] = {k: v.value for k, v in m.metadata.items()}
    return out


def test_the_custom_group_carries_rows_per_kind_and_the_kept_kinds_notes(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per cluster, `kinds` holds the snapshot's rows per custom kind (what the simulator serves); a kind
    that failed (403) keeps its previous rows, still counted under `kinds`, and the note says why."""
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    specs = [
        ClusterSpec("ops-0", seed=61, pods=10, namespaces=2, operators=OPERATORS, custom_objects=60),
        ClusterSpec("ops-1", seed=62, pods=10, namespaces=2),  # no CRDs at all
    ]
    expected = {
        f"{key.split('/')[0]}/{CUSTOM_KINDS[key][0]}": n for key, n in sorted(custom_counts(specs[0]).items())
    }
    with serve_fleet(specs) as served, instance_for_test() as instance:
        kubeconfig = served.write_kubeconfig(tmp_path / "k.yaml")
        with psycopg.connect(pg_dsn) as conn:
            inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))
        instance.add_dynamic_partitions(CLUSTERS_PARTITIONS_NAME, OPS_FLEET)
        selection = [group_key("custom")]

        first = _refresh(instance, OPS_FLEET[0], OPS_FLEET[-1], selection)
        assert first.success
        custom = _group_materializations(instance, first.run_id, "custom")
        assert set(custom) == set(OPS_FLEET)
        assert custom["ops-0"]["kinds"] == dict(sorted(expected.items())) and len(expected) == len(KINDS)
        assert custom["ops-0"][CUSTOM_RESOURCES_TABLE] == sum(expected.values())
        assert custom["ops-1"]["kinds"] == {} and custom["ops-1"][CUSTOM_RESOURCES_TABLE] == 0
        assert "notes" not in custom["ops-0"]
        assert len(json.dumps(custom["ops-0"]["kinds"])) < 400  # one small entry per cluster and refresh

        served.clusters["ops-0"].faults.fail_page("certificates.cert-manager.io", 1, code=403)
        second = _refresh(instance, OPS_FLEET[0], OPS_FLEET[0], selection)

        assert second.success
        (metadata,) = _group_materializations(instance, second.run_id, "custom").values()
        assert metadata["kinds"] == expected  # the Certificates' previous rows are kept, and counted
        note = metadata["notes"][CUSTOM_RESOURCES_TABLE]
        certs = expected["cert-manager.io/Certificate"]
        assert note.startswith("cert-manager.io/Certificate: permission denied: ")
        assert note.endswith(f"previous rows kept ({certs})")


def test_each_group_materialization_says_what_changed_since_the_clusters_previous_load(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`changes`: rows added/removed/modified per table with any, from the history's own counts."""
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    monkeypatch.delenv("KQ_HISTORY_SKIP", raising=False)
    with (
        serve_fleet([ClusterSpec("ch-0", seed=71, pods=20, namespaces=2)]) as served,
        instance_for_test() as instance,
    ):
        kubeconfig = served.write_kubeconfig(tmp_path / "k.yaml")
        with psycopg.connect(pg_dsn) as conn:
            inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))
        instance.add_dynamic_partitions(CLUSTERS_PARTITIONS_NAME, ["ch-0"])
        selection = [group_key("core"), group_key("apps")]

        first = _refresh(instance, "ch-0", "ch-0", selection)
        core = _group_materializations(instance, first.run_id, "core")["ch-0"]
        assert core["changes"]["kubernetes_pods"] == {"added": 20, "removed": 0, "modified": 0}
        assert "kubernetes_events" not in core["changes"]  # its history is skipped by default

        unchanged = _refresh(instance, "ch-0", "ch-0", selection)
        assert _group_materializations(instance, unchanged.run_id, "core")["ch-0"]["changes"] == {}

        deployment = next(
            d for d in served.clusters["ch-0"].objects["apps/v1/deployments"] if d["spec"]["replicas"]
        )
        meta = deployment["metadata"]
        served.clusters["ch-0"].churn_action("roll", namespace=meta["namespace"], name=meta["name"])
        rolled = _refresh(instance, "ch-0", "ch-0", selection)
        apps = _group_materializations(instance, rolled.run_id, "apps")["ch-0"]["changes"]
        pods = _group_materializations(instance, rolled.run_id, "core")["ch-0"]["changes"]["kubernetes_pods"]
    replicas = deployment["spec"]["replicas"]
    assert apps["kubernetes_deployments_containers"]["modified"] >= 1  # the new image
    assert apps["kubernetes_replica_sets"]["added"] == 1  # the rollout's new replica set
    assert pods == {"added": replicas, "removed": replicas, "modified": 0}  # replaced: new uids
