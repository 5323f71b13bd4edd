"""Dagster's storage stays flat: finished runs past the retention age are deleted with their events,
while `kq_meta.loads` keeps every load's history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    build_schedule_context,
    instance_for_test,
)

from kq_pipeline import inventory
from kq_pipeline.db.snapshot import replace_snapshot
from kq_pipeline.definitions import defs
from kq_pipeline.defs.partitions import CLUSTERS_PARTITIONS_NAME
from kq_pipeline.defs.retention import prune_job, prune_runs, retention_schedule
from kq_pipeline.defs.schedules import refresh_job
from kq_pipeline.frames import to_frame
from kq_pipeline.registry import TABLES
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec

KEEP_ALL = {"ops": {"prune_old_runs": {"config": {"retention_days": 1000}}}}
KEEP_NONE = {"ops": {"prune_old_runs": {"config": {"retention_days": 0}}}}


@pytest.fixture
def instance(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    """A Dagster instance; the prune job also prunes the fleet database's history, so it has one."""
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    with instance_for_test() as inst:
        yield inst


PRUNE_JOB = defs.resolve_job_def(prune_job.name)


def _finished_runs(instance: DagsterInstance, n: int) -> list[str]:
    """n real, finished runs (of the prune job, keeping everything), oldest first."""
    return [PRUNE_JOB.execute_in_process(instance=instance, run_config=KEEP_ALL).run_id for _ in range(n)]


def _run_ids(instance: DagsterInstance) -> set[str]:
    return {r.dagster_run.run_id for r in instance.get_run_records()}


def test_runs_younger_than_the_retention_age_are_kept(instance: DagsterInstance) -> None:
    runs = _finished_runs(instance, 3)
    assert prune_runs(instance, timedelta(days=7), max_runs=100).deleted == 0
    assert _run_ids(instance) == set(runs)

    eight_days_later = datetime.now(UTC) + timedelta(days=8)
    result = prune_runs(instance, timedelta(days=7), max_runs=100, now=eight_days_later)

    assert (result.deleted, result.remaining_old) == (3, False)
    assert _run_ids(instance) == set()
    assert all(instance.all_logs(r) == [] for r in runs)  # the event log goes with the run


def test_each_tick_deletes_at_most_its_bound_oldest_first(instance: DagsterInstance) -> None:
    runs = _finished_runs(instance, 5)

    result = prune_runs(instance, timedelta(0), max_runs=2)

    assert (result.deleted, result.remaining_old) == (2, True)
    assert _run_ids(instance) == set(runs[2:])
    assert prune_runs(instance, timedelta(0), max_runs=3).remaining_old is False
    assert _run_ids(instance) == set()


def test_runs_not_finished_are_never_deleted(instance: DagsterInstance) -> None:
    queued = instance.create_run_for_job(prune_job, run_config=KEEP_ALL)
    started = instance.create_run_for_job(prune_job, run_config=KEEP_ALL, status=DagsterRunStatus.STARTED)

    result = prune_runs(instance, timedelta(0), max_runs=100, now=datetime.now(UTC) + timedelta(days=30))

    assert result.deleted == 0
    assert _run_ids(instance) == {queued.run_id, started.run_id}


def test_the_retention_schedule_is_registered_and_requests_the_prune_job() -> None:
    assert defs.resolve_schedule_def("dagster_run_retention").job_name == "prune_dagster_runs"
    with instance_for_test() as instance:
        result = retention_schedule.evaluate_tick(build_schedule_context(instance=instance))
    assert len(result.run_requests) == 1
    assert retention_schedule.job_name == "prune_dagster_runs"


def test_the_same_job_prunes_fleet_history_closed_before_the_history_age(
    pg_dsn: str, instance: DagsterInstance
) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(pg_dsn) as conn:
        for days_ago, prefix in ((45, "a"), (40, "b"), (2, "c")):  # a closed 40, b closed 2 days ago
            rows = [{"uid": f"{prefix}-{i}", "name": f"{prefix}-{i}", "namespace": "ns"} for i in range(3)]
            replace_snapshot(
                conn,
                "kubernetes_pods",
                "c1",
                to_frame("kubernetes_pods", rows, cluster_name="c1"),
                run_id=None,
                started_at=now,
                rows_extracted=3,
                at=now - timedelta(days=days_ago),
            )
    config = {**KEEP_ALL["ops"], "prune_fleet_history": {"config": {"history_days": 30}}}
    result = PRUNE_JOB.execute_in_process(instance=instance, run_config={"ops": config})
    # a's 3 history rows; the feed's 3 additions at -45 days and 3 + 3 changes at -40 days
    assert result.output_for_node("prune_fleet_history") == 3 + 3 + 6
    with psycopg.connect(pg_dsn) as conn:
        left = conn.execute(
            "SELECT left(name, 1), count(*) FROM history.kubernetes_pods GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert left == [("b", 3), ("c", 3)]


@pytest.fixture
def one_cluster(pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    with serve_fleet([ClusterSpec(name="ret-0", seed=3, pods=10, namespaces=2)]) as fleet:
        kubeconfig = fleet.write_kubeconfig(tmp_path / "k.yaml")
        with psycopg.connect(pg_dsn) as conn:
            inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))
        yield "ret-0"


def _event_count(instance: DagsterInstance) -> int:
    return sum(len(instance.all_logs(run_id)) for run_id in _run_ids(instance))


def _loads(dsn: str, cluster: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM kq_meta.loads WHERE cluster_name = %s", (cluster,)
        ).fetchone()[0]


def test_refreshes_plus_pruning_keep_dagster_storage_bounded_and_history_in_kq_loads(
    one_cluster: str, pg_dsn: str, instance: DagsterInstance
) -> None:
    instance.add_dynamic_partitions(CLUSTERS_PARTITIONS_NAME, [one_cluster])
    refresh = defs.resolve_job_def(refresh_job.name)
    core = AssetKey(["kubequery", "core"])
    refreshes = 3
    after_prune: list[tuple[int, int]] = []
    for i in range(1, refreshes + 1):
        result = refresh.execute_in_process(instance=instance, partition_key=one_cluster)
        assert result.success
        events_before_prune = _event_count(instance)
        assert len(instance.fetch_materializations(core, limit=100).records) == 1

        PRUNE_JOB.execute_in_process(instance=instance, run_config=KEEP_NONE)

        # The refresh run and its events are gone; only the prune run (running while it pruned) is left.
        assert result.run_id not in _run_ids(instance)
        assert instance.fetch_materializations(core, limit=100).records == []
        after_prune.append((len(_run_ids(instance)), _event_count(instance)))
        assert after_prune[-1][1] < events_before_prune
        assert _loads(pg_dsn, one_cluster) == i * len(TABLES)  # history is ours, and it grows

    assert len(set(after_prune)) == 1, after_prune  # flat: the same run and event count every cycle
    assert after_prune[0][0] == 1
