"""Process faults, for real: the loader SIGKILLed mid-COPY, PostgreSQL restarted mid-run, two loads of
one cluster at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from kq_pipeline.db.embedded import EmbeddedPostgres
from kq_pipeline.db.schema import apply_schema
from kq_pipeline.refresh import ClusterOutcome
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec
from kq_pipeline_tests.postgres_fixtures import TEST_SETTINGS, private_tmp_dir
from kq_pipeline_tests.reliability.conftest import (
    FAULTY,
    FLEET,
    PODS,
    FleetDb,
    Snapshot,
    assert_all_ok,
    assert_recovers,
    loads,
    pod_count,
    register,
    snapshot,
)

BIG_PODS = 3000
"""Enough pods that the COPY of kubernetes_pods is in flight for ~0.3 s (measured here)."""
LOADER = """
import os, sys
from kq_pipeline.refresh import RefreshSettings, refresh_clusters
refresh_clusters(os.environ["KQ_DATABASE_URL"], [sys.argv[1]], [sys.argv[2]], run_id=sys.argv[3],
                 settings=RefreshSettings(page_limit=500))
"""
APP = "kq-reliability-loader"


def _copy_in_flight(conn: psycopg.Connection) -> int | None:
    """The backend pid of the loader child while its COPY has received rows, else None."""
    row = conn.execute(
        "SELECT a.pid FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid) "
        "WHERE a.application_name = %s AND a.query LIKE 'COPY %%' AND p.tuples_processed > 0",
        (APP,),
    ).fetchone()
    return row[0] if row else None


def _wait_gone(conn: psycopg.Connection, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (APP,)
    ).fetchone()[0]:
        assert time.monotonic() < deadline, "the killed loader's backend is still there"
        time.sleep(0.05)


def test_a_loader_killed_with_sigkill_mid_copy_leaves_the_previous_snapshot_and_no_leftovers(
    pg_dsn: str, tmp_path: Path
) -> None:
    with serve_fleet([ClusterSpec(name="big", seed=5, pods=BIG_PODS)]) as fleet:
        register(pg_dsn, fleet, tmp_path / "k.yaml")
        fdb = FleetDb(fleet, pg_dsn, tmp_path / "k.yaml")
        assert_all_ok(fdb.load("clean", names=["big"], tables=["kubernetes_pods"]), ["big"])
        before = snapshot(pg_dsn, "big", ["kubernetes_pods"])
        cluster = fleet.clusters["big"]
        cluster.store.mutate(cluster.catalog.lookup("", "v1", "pods"))  # the next load has new rows

        env = {**os.environ, "KQ_DATABASE_URL": pg_dsn, "PGAPPNAME": APP}
        child = subprocess.Popen(
            [sys.executable, "-c", LOADER, "big", "kubernetes_pods", "killed"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with psycopg.connect(pg_dsn, autocommit=True) as watch:
                deadline = time.monotonic() + 60
                while _copy_in_flight(watch) is None:
                    assert child.poll() is None, "the loader ended before its COPY was seen"
                    assert time.monotonic() < deadline, "no COPY seen within 60 s"
                    time.sleep(0.002)
                os.kill(child.pid, signal.SIGKILL)
                assert child.wait(10) == -signal.SIGKILL
                _wait_gone(watch)

                assert snapshot(pg_dsn, "big", ["kubernetes_pods"]) == before
                assert loads(pg_dsn, "killed") == []  # nothing committed by the killed run
                locks = watch.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
                assert locks == (0,)  # the killed session's cluster lock went with it
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

        assert_all_ok(fdb.load("recovered", names=["big"], tables=["kubernetes_pods"]), ["big"])
        after = snapshot(pg_dsn, "big", ["kubernetes_pods"])
        assert after != before and len(after["kubernetes_pods"]) == BIG_PODS


@pytest.fixture(scope="module")
def private_pg() -> Iterator[EmbeddedPostgres]:
    """A server of this module's own, so restarting it cannot disturb the session's."""
    with private_tmp_dir("kq-test-restart-") as scratch:
        server = EmbeddedPostgres(scratch / "postgres", settings=TEST_SETTINGS)
        dsn = server.ensure_running()
        with psycopg.connect(dsn) as conn:
            apply_schema(conn)
        try:
            yield server
        finally:
            server.stop()


@dataclass
class RestartedRun:
    fdb: FleetDb
    before: dict[str, Snapshot]
    outcomes: list[ClusterOutcome] | None
    raised: BaseException | None


@pytest.fixture(scope="module")
def restarted_run(
    private_pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RestartedRun]:
    """A clean load, then a run during which PostgreSQL is restarted (fast shutdown: every session is
    terminated) while every cluster is inside its refresh, holding its lock. Shared by the two tests
    below, which only read what happened (the recovery test loads afterwards)."""
    dsn = private_pg.ensure_running()
    tmp_path = tmp_path_factory.mktemp("restart")
    specs = [ClusterSpec(name=n, seed=i, pods=PODS, namespaces=4) for i, n in enumerate(FLEET)]
    with serve_fleet(specs) as fleet:
        register(dsn, fleet, tmp_path / "k.yaml")
        fdb = FleetDb(fleet, dsn, tmp_path / "k.yaml")
        assert_all_ok(fdb.load("clean"), FLEET)
        before = {n: snapshot(dsn, n) for n in FLEET}
        for c in fleet.clusters.values():
            c.faults.latency(40)  # every cluster is mid-extraction when the server goes away
        result: dict[str, object] = {}

        def run() -> None:
            try:
                result["outcomes"] = fdb.load("restart")
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
                result["raised"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        _wait_for_locks(dsn, len(FLEET))
        private_pg.stop()
        private_pg.ensure_running()
        worker.join(60)
        assert not worker.is_alive()
        for c in fleet.clusters.values():
            c.faults.clear()
        outcomes = result.get("outcomes")
        yield RestartedRun(
            fdb,
            before,
            list(outcomes.values()) if isinstance(outcomes, dict) else None,
            result.get("raised"),  # type: ignore[arg-type]
        )


def test_postgres_restarted_mid_run_keeps_every_previous_snapshot_and_the_next_run_recovers(
    restarted_run: RestartedRun,
) -> None:
    fdb = restarted_run.fdb
    assert restarted_run.outcomes is None or not any(o.ok for o in restarted_run.outcomes)
    for name in FLEET:
        assert snapshot(fdb.dsn, name) == restarted_run.before[name]
    with psycopg.connect(fdb.dsn) as conn:
        assert conn.execute(
            "SELECT count(*) FROM kq_meta.loads WHERE run_id = 'restart' AND status = 'success'"
        ).fetchone() == (0,)
    assert_all_ok(fdb.load("recovered"), FLEET)
    for name in FLEET:
        assert pod_count(fdb.dsn, name) == PODS


def test_postgres_restarted_mid_run_fails_each_cluster_by_name_instead_of_raising(
    restarted_run: RestartedRun,
) -> None:
    assert restarted_run.raised is None, repr(restarted_run.raised)
    assert restarted_run.outcomes is not None
    for o in restarted_run.outcomes:
        assert not o.ok and o.error and o.error.startswith(f"cluster {o.cluster}:")


def _wait_for_locks(dsn: str, n: int, timeout_s: float = 20.0) -> None:
    """Until `n` cluster refreshes hold their advisory locks (they are inside their runs)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0] < n:
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_two_loads_of_one_cluster_at_once_are_serialized_without_duplicate_rows(fleet_db: FleetDb) -> None:
    fleet_db.cluster().faults.latency(30)  # each load takes a while, so the two really overlap
    barrier = threading.Barrier(2)
    outcomes: dict[str, ClusterOutcome] = {}

    def run(run_id: str) -> None:
        barrier.wait()
        outcomes[run_id] = fleet_db.load(run_id, names=[FAULTY])[FAULTY]

    threads = [threading.Thread(target=run, args=(r,)) for r in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert_all_ok(outcomes, ["first", "second"])
    assert pod_count(fleet_db.dsn, FAULTY) == PODS  # replaced twice, never appended
    with psycopg.connect(fleet_db.dsn) as conn:
        spans = conn.execute(
            "SELECT run_id, min(finished_at), max(finished_at) FROM kq_meta.loads WHERE cluster_name = %s "
            "GROUP BY run_id ORDER BY 2",
            (FAULTY,),
        ).fetchall()
        dupes = conn.execute(
            "SELECT count(*) - count(DISTINCT uid) FROM kubernetes_pods WHERE cluster_name = %s", (FAULTY,)
        ).fetchone()
    (_, _, first_end), (_, second_start, _) = spans
    assert first_end < second_start, spans  # one run's loads all finished before the other's began
    assert dupes == (0,)
    assert_recovers(fleet_db, "recovered")
