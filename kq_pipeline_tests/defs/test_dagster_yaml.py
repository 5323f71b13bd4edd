"""The production `dagster.yaml` really works: PostgreSQL storage from environment variables.

A DAGSTER_HOME holding the repo's own file, its DAGSTER_PG_* variables pointed at a fresh database on
the test server; one simulated cluster materialized in-process through that instance must leave its
run, materializations and check evaluations in PostgreSQL, and pruning must remove them from there.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from psycopg.conninfo import conninfo_to_dict

from kq_pipeline import inventory
from kq_pipeline.definitions import defs
from kq_pipeline.defs.partitions import CLUSTERS_PARTITIONS_NAME
from kq_pipeline.defs.retention import prune_runs
from kq_pipeline.defs.schedules import refresh_job
from kq_pipeline.registry import ASSET_GROUPS, TABLES
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec

REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def _password(params: dict[str, str]) -> str:
    """The password of the DSN, or the one its libpq passfile holds (the embedded server's way)."""
    if params.get("password"):
        return params["password"]
    for line in Path(params["passfile"]).read_text().splitlines():
        host, port, db, user, password = line.split(":", 4)
        if user in ("*", params["user"]) and host in ("*", params.get("host")):
            return password
    raise AssertionError("no password for the test server")


@pytest.fixture
def production_home(
    tmp_path: Path, pg_empty_dsn: str, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """DAGSTER_HOME with the repo's dagster.yaml; yields the DSN of Dagster's own database."""
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(REPO_DAGSTER_YAML, home / "dagster.yaml")
    params = conninfo_to_dict(pg_empty_dsn)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_HOST", str(params.get("host", "127.0.0.1")))
    monkeypatch.setenv("DAGSTER_PG_PORT", str(params.get("port", "5432")))
    monkeypatch.setenv("DAGSTER_PG_USER", str(params["user"]))
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", _password(params))
    monkeypatch.setenv("DAGSTER_PG_DB", str(params["dbname"]))
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    yield pg_empty_dsn


def _one(dsn: str, query: str, params: tuple = ()) -> object:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchone()[0]


def test_the_production_instance_stores_runs_events_and_partitions_in_postgresql(
    production_home: str, pg_dsn: str, tmp_path: Path
) -> None:
    with serve_fleet([ClusterSpec(name="prod-0", seed=5, pods=10, namespaces=2)]) as fleet:
        kubeconfig = fleet.write_kubeconfig(tmp_path / "k.yaml")
        with psycopg.connect(pg_dsn) as conn:
            inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))

        with DagsterInstance.get() as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
            # Pooled connections (kq_pipeline/defs/dagster_storage.py), in this process and in run workers.
            for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
                assert type(storage._engine.pool).__name__ != "NullPool"
            assert instance.get_ref().storage_data.class_name == "PooledPostgresStorage"
            assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
            concurrency = instance.get_concurrency_config()
            assert concurrency.run_queue_config.max_concurrent_runs == 4
            assert concurrency.pool_config.default_pool_limit == 4

            instance.add_dynamic_partitions(CLUSTERS_PARTITIONS_NAME, ["prod-0"])
            result = defs.resolve_job_def(refresh_job.name).execute_in_process(
                instance=instance, partition_key="prod-0"
            )
            assert result.success
            run_id = result.run_id

            events = "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s"
            assert _one(production_home, "SELECT status FROM runs WHERE run_id = %s", (run_id,)) == "SUCCESS"
            materializations = len(ASSET_GROUPS) + len(TABLES)  # each group's partition, each table entry
            assert _one(production_home, events, (run_id, "ASSET_MATERIALIZATION")) == materializations
            assert _one(production_home, events, (run_id, "ASSET_CHECK_EVALUATION")) == len(ASSET_GROUPS)
            partitions = "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'clusters'"
            assert _one(production_home, partitions) == "prod-0"
            assert _one(pg_dsn, "SELECT count(*) FROM kubernetes_pods WHERE cluster_name = 'prod-0'") == 10

            # Retention works against PostgreSQL storage too: the run's rows leave event_logs.
            assert prune_runs(instance, timedelta(0), max_runs=10).deleted == 1
            assert _one(production_home, "SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,)) == 0
            assert _one(production_home, "SELECT count(*) FROM runs") == 0


def test_a_missing_storage_variable_is_named_when_the_instance_loads(
    production_home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_PG_HOST")
    with pytest.raises(Exception, match="DAGSTER_PG_HOST"):
        DagsterInstance.get()
