"""A Dagster run process SIGKILLed in the middle of a batched refresh: Dagster's record must match
what PostgreSQL committed.

Why: a run process can die without a chance to clean up (the OOM killer, a node lost, a pod evicted
with no grace period). Nothing in the run then gets to write a final event, so whatever Dagster holds
about the run is exactly what it had recorded before the kill. The refresh op therefore records each
cluster's group materializations and check evaluations as soon as the cluster's transaction has
committed (kq_pipeline/defs/assets.py), never after the batch. The specification, for a kill while one
cluster of the batch hangs and the others are done:

- every cluster PostgreSQL committed for the run (its `kq_meta.loads` success rows) has a materialization and
  a check evaluation of every asset group recorded by the run, and no other cluster has;
- the cluster that was still in flight has neither committed rows in `kq_meta.loads` nor a materialization
  from the run, and Dagster still names the previous run as its latest materialization, like
  `kq_latest_loads` does;
- nothing is lost: the in-flight cluster's previous snapshot is still there, row for row;
- the killed run is never recorded as a success.

What this does not claim: the two records cannot be written atomically. Dagster's events of a cluster
are written after its commit, one per group and check, so a kill inside that window (tenths of a
second per cluster, longer when other clusters' outcomes queue behind it) leaves PostgreSQL ahead of
Dagster: committed data that Dagster does not show (yet), never the reverse; the next run reloads it.
This test kills outside that window, when every finished cluster is fully recorded and the remaining
one is still extracting.

The run is a real child process (`execute_in_process`, as `kq load` runs it) against a Dagster instance
in a DAGSTER_HOME on disk with Dagster's default SQLite storage, which this test process reads at the
same time; the fleet is served in this process, so the hang is switched from here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import AssetCheckKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus
from dagster._core.instance.ref import InstanceRef
from dagster._core.utils import make_new_run_id

from kq_pipeline.defs.assets import group_key
from kq_pipeline.defs.checks import ROW_COUNT_CHECK
from kq_pipeline.defs.partitions import CLUSTERS_PARTITIONS_NAME
from kq_pipeline.registry import ASSET_GROUPS, TABLES
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec
from kq_pipeline_tests.postgres_fixtures import private_tmp_dir
from kq_pipeline_tests.reliability.conftest import (
    FAULTY,
    FLEET,
    PODS,
    FleetDb,
    pod_count,
    register,
    snapshot,
)

DEADLINE_S = 90.0
"""Bound of every wait: the test fails instead of hanging."""
DAGSTER_YAML = """\
# the instance of this test's run processes: Dagster's default SQLite storage, without compute-log
# capture (as `kq load`: capture would start `tail -F` helpers that a SIGKILL leaves orphaned)
telemetry:
  enabled: false
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
"""
RUN = """
import sys
from dagster import DagsterInstance
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from kq_pipeline.definitions import defs
from kq_pipeline.defs.schedules import refresh_job

run_id, first, last = sys.argv[1:4]
with DagsterInstance.get() as instance:
    result = defs.resolve_job_def(refresh_job.name).execute_in_process(
        instance=instance,
        run_id=run_id,
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        raise_on_error=False,
    )
sys.exit(0 if result.success else 1)
"""
"""A run process: one batched refresh over the partition range first..last, as `kq load` launches it."""


@pytest.fixture
def scratch() -> Iterator[Path]:
    """Where the kubeconfig, the DAGSTER_HOME and the run logs live: outside pytest's basetemp, which a
    concurrent pytest session of the same user may prune while this test's run processes still read
    it (postgres_fixtures.private_tmp_dir)."""
    with private_tmp_dir("kq-test-run-killed-") as path:
        yield path


@pytest.fixture
def fleet(pg_dsn: str, scratch: Path) -> Iterator[FleetDb]:
    """The reliability tests' fleet (conftest's `fleet_db`), its kubeconfig in `scratch`."""
    specs = [ClusterSpec(name=n, seed=i, pods=PODS, namespaces=4) for i, n in enumerate(FLEET)]
    with serve_fleet(specs) as served:
        register(pg_dsn, served, scratch / "fleet.yaml")
        yield FleetDb(served, pg_dsn, scratch / "fleet.yaml")


@pytest.fixture
def dagster_home(scratch: Path) -> Path:
    """A DAGSTER_HOME on disk, shared by the run processes and this one; the fleet's partitions added."""
    home = scratch / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    with _instance(home) as instance:
        instance.add_dynamic_partitions(CLUSTERS_PARTITIONS_NAME, list(FLEET))
    return home


def _instance(home: Path) -> DagsterInstance:
    """This process's view of the on-disk instance (instance_for_test's is private to one process)."""
    return DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def _start_run(fdb: FleetDb, home: Path, run_id: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KQ_DATABASE_URL": fdb.dsn,
        "KQ_HOME": str(home.parent / "kq-home"),
        "DAGSTER_HOME": str(home),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", RUN, run_id, FLEET[0], FLEET[-1]],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _tail(log: Path, lines: int = 15) -> str:
    """For a failure message: the run's INFO lines (each cluster's outcome), then its last lines."""
    text = log.read_text(errors="replace").splitlines()
    return "\n".join([line for line in text if " - INFO - " in line] + ["..."] + text[-lines:])


def _recorded(instance: DagsterInstance, run_id: str) -> dict[str, set[str | None]]:
    """group -> the clusters whose materialization of the group the run recorded (the asset catalog's
    view: the per-asset index, not the run's own event log)."""
    return {
        group: {
            r.partition_key
            for r in instance.fetch_materializations(group_key(group), limit=100).records
            if r.run_id == run_id
        }
        for group in ASSET_GROUPS
    }


def _checked(instance: DagsterInstance, run_id: str) -> dict[str, dict[str | None, str]]:
    """group -> cluster -> status of the run's row-count check executions of the group."""
    out: dict[str, dict[str | None, str]] = {}
    for group in ASSET_GROUPS:
        records = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(group_key(group), ROW_COUNT_CHECK), limit=100
        )
        out[group] = {r.partition: r.status.value for r in records if r.run_id == run_id}
    return out


def _committed(dsn: str, run_id: str) -> dict[str, dict[str, set[str]]]:
    """cluster -> status -> tables, of the run's committed kq_meta.loads rows."""
    out: dict[str, dict[str, set[str]]] = {}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT cluster_name, status, table_name FROM kq_meta.loads WHERE run_id = %s", (run_id,)
        ).fetchall()
    for cluster, status, table in rows:
        out.setdefault(cluster, {}).setdefault(status, set()).add(table)
    return out


def _latest_loads(dsn: str, cluster: str) -> set[tuple[str | None, str]]:
    """(run_id, status) of the cluster's latest load of each table, as `kq_latest_loads` shows them."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT run_id, status FROM kq_latest_loads WHERE cluster_name = %s", (cluster,)
        ).fetchall()
    return set(rows)


def _wait(what: str, done: Callable[[], bool], child: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        assert child.poll() is None, (
            f"the run process ended ({child.returncode}) before {what}:\n{_tail(log)}"
        )
        assert time.monotonic() < deadline, f"not within {DEADLINE_S:.0f} s: {what}\n{_tail(log)}"
        time.sleep(0.2)


def test_a_run_killed_mid_batch_leaves_dagster_recording_exactly_the_clusters_postgres_committed(
    fleet: FleetDb, dagster_home: Path, scratch: Path
) -> None:
    dsn = fleet.dsn
    done = [n for n in FLEET if n != FAULTY]
    everywhere = {g: set(done) for g in ASSET_GROUPS}

    # A clean run first: every cluster loaded, in PostgreSQL and in Dagster.
    clean = make_new_run_id()
    child = _start_run(fleet, dagster_home, clean, scratch / "clean.log")
    try:
        assert child.wait(DEADLINE_S) == 0, _tail(scratch / "clean.log")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert set(_committed(dsn, clean)) == set(FLEET)
    before = snapshot(dsn, FAULTY, list(TABLES))
    assert pod_count(dsn, FAULTY) == PODS

    # The run to kill: FAULTY's API server accepts requests and never answers, the others load. (FAULTY
    # cannot fail on its own before the kill: each request waits 30 s and is tried 5 times, and the
    # cluster deadline is 300 s, all beyond DEADLINE_S.)
    killed = make_new_run_id()
    log = scratch / "killed.log"
    fleet.cluster(FAULTY).faults.hang()
    child = _start_run(fleet, dagster_home, killed, log)
    try:
        with _instance(dagster_home) as instance:
            _wait(
                "the other clusters' materializations and checks are recorded",
                lambda: (
                    _recorded(instance, killed) == everywhere
                    and all(
                        {c for c, status in checks.items() if status == "SUCCEEDED"} == set(done)
                        for checks in _checked(instance, killed).values()
                    )
                ),
                child,
                log,
            )
        assert child.poll() is None, "the run ended although FAULTY still hangs"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(DEADLINE_S) == -signal.SIGKILL
    finally:
        fleet.cluster(FAULTY).faults.hang(False)
        if child.poll() is None:
            child.kill()
            child.wait()

    committed = _committed(dsn, killed)
    with _instance(dagster_home) as instance:
        recorded = _recorded(instance, killed)
        checked = _checked(instance, killed)
        latest_faulty = {
            group: instance.fetch_materializations(
                AssetRecordsFilter(group_key(group), asset_partitions=[FAULTY]), limit=1
            ).records
            for group in ASSET_GROUPS
        }
        run = instance.get_run_by_id(killed)

    # What PostgreSQL committed for the killed run: the finished clusters, whole, and nothing else.
    assert set(committed) == set(done)
    for cluster in done:
        assert committed[cluster] == {"success": set(TABLES)}, cluster
    # Dagster recorded exactly those clusters, for every group, each with its check evaluation.
    assert recorded == {g: set(committed) for g in ASSET_GROUPS}
    # (Dagster writes a PLANNED check execution for every cluster of the batch when the run starts; the
    # in-flight cluster's stays PLANNED: never evaluated.)
    assert checked == {g: {**dict.fromkeys(committed, "SUCCEEDED"), FAULTY: "PLANNED"} for g in ASSET_GROUPS}
    # The in-flight cluster: nothing from the killed run on either side, its latest load still the
    # clean run's in both, and its previous snapshot untouched.
    assert FAULTY not in committed
    for group, records in latest_faulty.items():
        assert [r.run_id for r in records] == [clean], group
    assert _latest_loads(dsn, FAULTY) == {(clean, "success")}
    assert snapshot(dsn, FAULTY, list(TABLES)) == before
    assert pod_count(dsn, FAULTY) == PODS
    # The kill left no chance to end the run: it is not recorded as a success. (It stays STARTED: an
    # in-process run has no run monitoring; deployed runs do, which marks a run whose pod died failed.)
    assert run is not None and run.status != DagsterRunStatus.SUCCESS
