"""The inventory sensor, ticked the way the daemon ticks it: against a real instance and a real PostgreSQL.

`tick()` evaluates one sensor tick and then applies its partition requests to the instance, which is
what the daemon does between ticks; the cursor is carried from tick to tick. Run requests are
checked by expanding their partition-range tags over the instance's partition order, as the
daemon does when it launches them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from dagster import (
    DagsterInstance,
    RunRequest,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from psycopg import sql

from kq_pipeline import inventory
from kq_pipeline.db.snapshot import record_failed_load
from kq_pipeline.definitions import defs
from kq_pipeline.defs.partitions import CLUSTERS_PARTITIONS_NAME, sync_partitions
from kq_pipeline.defs.resources import FleetDatabase
from kq_pipeline.defs.schedules import fleet_refresh
from kq_pipeline.defs.sensors import inventory_sensor
from kq_pipeline.registry import PROJECT_TABLES, TABLES
from kq_pipeline_tests.conftest import write_inventory_file


class SensorDriver:
    """Ticks the sensor like the daemon: cursor carried over, partition requests applied, and the tick's
    log lines (what the UI shows for a tick) kept in `logs`."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.instance = instance
        self.cursor: str | None = None
        self.logs: list[str] = []

    def tick(self) -> SensorExecutionData:
        ctx = build_sensor_context(
            instance=self.instance,
            instance_ref=self.instance.get_ref(),
            definitions=defs,
            resources={"fleet_db": FleetDatabase()},
            cursor=self.cursor,
        )
        self.logs = []
        ctx.log.addHandler(_Collect(self.logs))
        result = inventory_sensor.evaluate_tick(ctx)
        for request in result.dynamic_partitions_requests or []:
            if type(request).__name__.startswith("Add"):
                self.instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
            else:
                for key in request.partition_keys:
                    self.instance.delete_dynamic_partition(request.partitions_def_name, key)
        if result.cursor is not None:
            self.cursor = result.cursor
        return result

    def partitions(self) -> list[str]:
        return list(self.instance.get_dynamic_partitions(CLUSTERS_PARTITIONS_NAME))

    def requested_clusters(self, requests: Sequence[RunRequest]) -> list[str]:
        """Every partition the run requests cover, in launch order, duplicates kept."""
        order = self.partitions()
        covered: list[str] = []
        for r in requests:
            start = order.index(r.tags[ASSET_PARTITION_RANGE_START_TAG])
            end = order.index(r.tags[ASSET_PARTITION_RANGE_END_TAG])
            covered += order[start : end + 1]
        return covered


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__()
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@pytest.fixture
def fleet_env(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    monkeypatch.delenv("KQ_INVENTORY_FILE", raising=False)
    monkeypatch.delenv("KQ_RETIRED_ROWS", raising=False)
    return pg_dsn


@pytest.fixture
def driver() -> Iterator[SensorDriver]:
    with instance_for_test() as instance:
        yield SensorDriver(instance)


def _cluster(name: str) -> inventory.Cluster:
    return inventory.Cluster(name=name, server="https://127.0.0.1:6443", token_env="KQ_TEST_TOKEN")


def _add(dsn: str, *names: str) -> None:
    with psycopg.connect(dsn) as conn:
        inventory.upsert_clusters(conn, [_cluster(n) for n in names])


def _remove(dsn: str, instance: DagsterInstance, *names: str) -> None:
    """What `kq clusters remove` does: retire in the inventory and drop the partitions at once."""
    with psycopg.connect(dsn) as conn:
        for n in names:
            assert inventory.retire_cluster(conn, n)
        sync_partitions(instance, [c.name for c in inventory.active_clusters(conn)])


def _retire_in_inventory_only(dsn: str, *names: str) -> None:
    with psycopg.connect(dsn) as conn:
        for n in names:
            assert inventory.retire_cluster(conn, n)


def _put_one_row_in_every_table(dsn: str, cluster: str) -> None:
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            conn.execute(
                sql.SQL("INSERT INTO {} (cluster_name) VALUES (%s)").format(sql.Identifier(table)), (cluster,)
            )


def _rows_per_table(dsn: str, cluster: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE cluster_name = %s").format(sql.Identifier(t)),
                (cluster,),
            ).fetchone()[0]
            for t in TABLES
        }


def _retired_at(dsn: str, cluster: str) -> object:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT retired_at FROM kq_meta.clusters WHERE name = %s", (cluster,)).fetchone()[
            0
        ]


def test_new_clusters_get_partitions_and_first_loads_in_batches(fleet_env: str, driver: SensorDriver) -> None:
    names = [f"c{i:02d}" for i in range(30)]
    _add(fleet_env, *names)

    result = driver.tick()

    assert driver.partitions() == names
    assert len(result.run_requests) == 2  # 30 clusters, at most 25 per run
    assert driver.requested_clusters(result.run_requests) == names
    assert {r.job_name for r in result.run_requests} == {"refresh_clusters"}
    assert {r.tags["kq/reason"] for r in result.run_requests} == {"first load"}
    assert all(r.run_key is None for r in result.run_requests)  # a run_key would block a re-added cluster


def test_an_unchanged_inventory_is_a_skip(fleet_env: str, driver: SensorDriver) -> None:
    _add(fleet_env, "a", "b")
    driver.tick()

    result = driver.tick()

    assert result.run_requests == [] or result.run_requests is None
    assert result.skip_message == "inventory unchanged: 2 cluster(s)"
    assert driver.partitions() == ["a", "b"]


def test_only_clusters_added_since_the_last_tick_are_loaded(fleet_env: str, driver: SensorDriver) -> None:
    _add(fleet_env, "a", "b")
    driver.tick()
    _add(fleet_env, "c")

    result = driver.tick()

    assert driver.partitions() == ["a", "b", "c"]
    assert driver.requested_clusters(result.run_requests) == ["c"]


def test_a_cluster_whose_partition_the_cli_already_made_still_gets_its_first_load(
    fleet_env: str, driver: SensorDriver
) -> None:
    _add(fleet_env, "a")
    driver.tick()
    _add(fleet_env, "b")
    sync_partitions(driver.instance, ["a", "b"])  # `kq clusters add` makes the partition itself

    result = driver.tick()

    assert driver.requested_clusters(result.run_requests) == ["b"]
    assert not result.dynamic_partitions_requests


def test_a_cluster_already_loaded_since_it_was_added_gets_no_second_first_load(
    fleet_env: str, driver: SensorDriver
) -> None:
    """`kq demo` adds and loads its clusters before the UI's sensor first ticks: loading them again
    would only double the demo's start-up work."""
    _add(fleet_env, "a", "b")
    with psycopg.connect(fleet_env) as conn:  # `kq load` recorded an attempt for "a"
        record_failed_load(
            conn, "kubernetes_pods", "a", error="x", run_id="cli", started_at=datetime.now(UTC)
        )

    result = driver.tick()

    assert driver.requested_clusters(result.run_requests) == ["b"]
    assert sorted(driver.partitions()) == ["a", "b"]
    assert any("already loaded: ['a']" in line for line in driver.logs)


def test_removed_cluster_keeps_its_rows_by_default_and_is_flagged_retired(
    fleet_env: str, driver: SensorDriver
) -> None:
    _add(fleet_env, "a", "b")
    driver.tick()
    _put_one_row_in_every_table(fleet_env, "b")
    _retire_in_inventory_only(fleet_env, "b")

    result = driver.tick()

    assert driver.partitions() == ["a"]
    assert not result.run_requests
    assert set(_rows_per_table(fleet_env, "b").values()) == {1}
    assert _retired_at(fleet_env, "b") is not None


def test_removed_cluster_rows_are_deleted_from_all_tables_with_the_delete_policy(
    fleet_env: str, driver: SensorDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KQ_RETIRED_ROWS", "delete")
    _add(fleet_env, "a", "b")
    driver.tick()
    _put_one_row_in_every_table(fleet_env, "a")
    _put_one_row_in_every_table(fleet_env, "b")
    _retire_in_inventory_only(fleet_env, "b")

    driver.tick()

    assert set(PROJECT_TABLES) <= set(TABLES)  # retiring covers the custom-resource tables too
    assert set(_rows_per_table(fleet_env, "b").values()) == {0}
    assert set(_rows_per_table(fleet_env, "a").values()) == {1}
    assert driver.partitions() == ["a"]


def test_rows_of_a_cluster_removed_with_the_cli_are_deleted_too(
    fleet_env: str, driver: SensorDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kq clusters remove` drops the partition before the sensor's tick: the cursor still knows it."""
    monkeypatch.setenv("KQ_RETIRED_ROWS", "delete")
    _add(fleet_env, "a", "b")
    driver.tick()
    _put_one_row_in_every_table(fleet_env, "b")
    _remove(fleet_env, driver.instance, "b")

    result = driver.tick()

    assert set(_rows_per_table(fleet_env, "b").values()) == {0}
    assert not result.dynamic_partitions_requests  # the partition was already gone
    assert driver.tick().skip_message == "inventory unchanged: 1 cluster(s)"


def test_a_removed_and_re_added_cluster_gets_a_new_first_load(fleet_env: str, driver: SensorDriver) -> None:
    _add(fleet_env, "a", "b")
    driver.tick()
    _retire_in_inventory_only(fleet_env, "b")
    driver.tick()
    assert driver.partitions() == ["a"]

    _add(fleet_env, "b")  # upsert makes a retired cluster active again
    result = driver.tick()

    assert driver.partitions() == ["a", "b"]
    assert driver.requested_clusters(result.run_requests) == ["b"]
    assert _retired_at(fleet_env, "b") is None


def test_an_unknown_retire_policy_is_refused_before_anything_is_deleted(
    fleet_env: str, driver: SensorDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add(fleet_env, "a")
    driver.tick()
    _put_one_row_in_every_table(fleet_env, "a")
    _retire_in_inventory_only(fleet_env, "a")
    monkeypatch.setenv("KQ_RETIRED_ROWS", "purge")

    with pytest.raises(Exception, match="KQ_RETIRED_ROWS must be one of"):
        driver.tick()
    assert set(_rows_per_table(fleet_env, "a").values()) == {1}


def test_clusters_in_the_inventory_file_are_added_on_each_tick(
    fleet_env: str, driver: SensorDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_inventory_file(tmp_path, monkeypatch)

    result = driver.tick()

    assert driver.partitions() == ["prod-eu", "prod-us"]
    assert driver.requested_clusters(result.run_requests) == ["prod-eu", "prod-us"]
    with psycopg.connect(fleet_env) as conn:
        assert [(c.name, c.source) for c in inventory.active_clusters(conn)] == [
            ("prod-eu", "yaml"),
            ("prod-us", "yaml"),
        ]


def _row_versions(dsn: str) -> list[tuple[str, str, object, object]]:
    """(name, xmin, updated_at, retired_at) per inventory row: xmin changes whenever a row is rewritten."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT name, xmin::text, updated_at, retired_at FROM kq_meta.clusters ORDER BY name"
        ).fetchall()


def test_a_cluster_removed_with_the_cli_stays_removed_though_the_inventory_file_lists_it(
    fleet_env: str, driver: SensorDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory_file = write_inventory_file(tmp_path, monkeypatch)
    driver.tick()
    _remove(fleet_env, driver.instance, "prod-us")
    why = (
        f"1 cluster(s) in {inventory_file} ignored because removed with `kq clusters remove`: prod-us "
        "(`kq clusters add` re-adds)"
    )

    result = driver.tick()  # retires prod-us's rows per the policy, and says why the file is ignored

    assert driver.partitions() == ["prod-eu"]
    assert not result.run_requests
    assert _retired_at(fleet_env, "prod-us") is not None
    assert any(why in line for line in driver.logs)
    assert driver.tick().skip_message == f"inventory unchanged: 1 cluster(s); {why}"
    assert _retired_at(fleet_env, "prod-us") is not None

    _add(fleet_env, "prod-us")  # `kq clusters add`: an explicit add brings it back
    result = driver.tick()

    assert driver.partitions() == ["prod-eu", "prod-us"]
    assert driver.requested_clusters(result.run_requests) == ["prod-us"]
    assert driver.tick().skip_message == "inventory unchanged: 2 cluster(s)"


def test_a_tick_with_an_unchanged_inventory_file_rewrites_no_row(
    fleet_env: str, driver: SensorDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_inventory_file(tmp_path, monkeypatch)
    driver.tick()
    before = _row_versions(fleet_env)

    driver.tick()
    driver.tick()

    assert _row_versions(fleet_env) == before


def test_a_changed_entry_in_the_inventory_file_is_written_once(
    fleet_env: str, driver: SensorDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_inventory_file(tmp_path, monkeypatch)
    driver.tick()
    eu_before, us_before = _row_versions(fleet_env)
    write_inventory_file(tmp_path, monkeypatch, server="https://10.0.0.3:6443")

    driver.tick()
    eu_after, us_after = _row_versions(fleet_env)
    driver.tick()

    assert eu_after == eu_before
    assert us_after[1] != us_before[1] and us_after[2] > us_before[2]
    assert _row_versions(fleet_env) == [eu_after, us_after]
    with psycopg.connect(fleet_env) as conn:
        assert inventory.get_cluster(conn, "prod-us").server == "https://10.0.0.3:6443"


@pytest.mark.parametrize("clusters", [1, 25, 26, 60])
def test_the_schedule_covers_every_partition_once_in_runs_of_at_most_25(clusters: int) -> None:
    names = [f"s{i:03d}" for i in range(clusters)]
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(CLUSTERS_PARTITIONS_NAME, names)
        result = fleet_refresh.evaluate_tick(build_schedule_context(instance=instance))
        driver = SensorDriver(instance)

        assert len(result.run_requests) == math.ceil(clusters / 25)
        assert driver.requested_clusters(result.run_requests) == names
        assert {r.tags["kq/reason"] for r in result.run_requests} == {"scheduled refresh"}
        assert len({r.run_key for r in result.run_requests}) == len(result.run_requests)  # required


def test_the_schedule_skips_when_there_are_no_clusters() -> None:
    with instance_for_test() as instance:
        result = fleet_refresh.evaluate_tick(build_schedule_context(instance=instance))
    assert not result.run_requests
    assert result.skip_message == "no clusters in the inventory yet"
