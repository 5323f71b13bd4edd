"""A small simulated fleet in a real PostgreSQL, and the before/after comparisons every fault test makes.

Every fault test follows one recipe: load the fleet once clean, take each cluster's snapshot,
inject the fault for real, load again, then check that the other clusters loaded, the faulty
cluster's previous rows are identical row for row, `kq_meta.loads` names the failure, and a clean run
recovers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kq_pipeline import inventory
from kq_pipeline.refresh import ClusterOutcome, RefreshSettings, refresh_clusters
from kq_pipeline.registry import TABLES
from kq_pipeline.simulator import Fleet, serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec

FLEET = ("alpha", "bravo", "charlie")
"""The test fleet; `bravo` is the one tests break."""
FAULTY = "bravo"
PODS = 60
PAGE_LIMIT = 20
"""Small pages: 60 pods are listed in 3 pages, so faults can hit a middle page."""
FAST = RefreshSettings(concurrency=4, table_concurrency=4, deadline_s=20.0, page_limit=PAGE_LIMIT)
ALL_TABLES: tuple[str, ...] = (
    "kubernetes_info",
    "kubernetes_namespaces",
    "kubernetes_nodes",
    "kubernetes_pods",
    "kubernetes_pod_containers",
    "kubernetes_pod_volumes",
    "kubernetes_deployments",
    "kubernetes_secrets",
    "kubernetes_config_maps",
    "kubernetes_events",
)
"""The tables the fault tests load: every extraction path (the /version table, cluster-scoped and
namespaced lists, one list feeding three tables, Secrets with redaction, events with poll-time
values). All 51 tables take ~3.3 s per load of this fleet here, these 10 ~0.9 s; the fault
handling is the same code for every table."""
# Columns whose value is the poll time rather than cluster state: they differ between two polls.
VOLATILE = {"kubernetes_events": ("time",)}

Snapshot = dict[str, list[tuple]]


@dataclass
class FleetDb:
    """A served fleet registered in the test database (kubeconfig contexts)."""

    fleet: Fleet
    dsn: str
    kubeconfig: Path

    def cluster(self, name: str = FAULTY):
        return self.fleet.clusters[name]

    def load(
        self,
        run_id: str,
        names: Sequence[str] = FLEET,
        tables: Sequence[str] = ALL_TABLES,
        settings: RefreshSettings = FAST,
    ) -> dict[str, ClusterOutcome]:
        outcomes = refresh_clusters(self.dsn, list(names), list(tables), run_id=run_id, settings=settings)
        return {o.cluster: o for o in outcomes}


def register(dsn: str, fleet: Fleet, kubeconfig: Path) -> None:
    fleet.write_kubeconfig(kubeconfig)
    with psycopg.connect(dsn) as conn:
        inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))


@pytest.fixture
def fleet_db(pg_dsn: str, tmp_path: Path) -> Iterator[FleetDb]:
    specs = [ClusterSpec(name=n, seed=i, pods=PODS, namespaces=4) for i, n in enumerate(FLEET)]
    with serve_fleet(specs) as fleet:
        kubeconfig = tmp_path / "fleet.yaml"
        register(pg_dsn, fleet, kubeconfig)
        yield FleetDb(fleet, pg_dsn, kubeconfig)


def table_rows(conn: psycopg.Connection, table: str, cluster: str) -> list[tuple]:
    """Every stored row of one cluster in one table, as text, in a stable order."""
    columns = [c.name for c in TABLES[table].columns if c.name not in VOLATILE.get(table, ())]
    query = sql.SQL("SELECT {} FROM {} WHERE cluster_name = %s").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
        sql.Identifier(table),
    )
    return sorted(conn.execute(query, (cluster,)).fetchall(), key=repr)


def snapshot(dsn: str, cluster: str, tables: Sequence[str] = ALL_TABLES) -> Snapshot:
    with psycopg.connect(dsn) as conn:
        return {t: table_rows(conn, t, cluster) for t in tables}


def loads(dsn: str, run_id: str, cluster: str | None = None) -> list[tuple[str, str, str, str | None]]:
    """(cluster, table, status, error) of one run's kq_meta.loads rows."""
    query = "SELECT cluster_name, table_name, status, error FROM kq_meta.loads WHERE run_id = %s"
    params: tuple = (run_id,)
    if cluster:
        query += " AND cluster_name = %s"
        params += (cluster,)
    with psycopg.connect(dsn) as conn:
        return conn.execute(query + " ORDER BY cluster_name, table_name", params).fetchall()


def failed_tables(dsn: str, run_id: str, cluster: str) -> dict[str, str]:
    """table -> error of the run's failed loads of `cluster`; every error names the cluster."""
    failed = {t: err or "" for c, t, status, err in loads(dsn, run_id, cluster) if status == "failed"}
    assert all(e.startswith(f"cluster {cluster}: ") for e in failed.values()), failed
    return failed


def pod_count(dsn: str, cluster: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM kubernetes_pods WHERE cluster_name = %s", (cluster,)
        ).fetchone()[0]


def assert_all_ok(outcomes: dict[str, ClusterOutcome], names: Sequence[str]) -> None:
    for name in names:
        o = outcomes[name]
        assert o.ok, (name, o.error, {t: o.tables[t].error for t in o.failed_tables})


def assert_others_loaded(fdb: FleetDb, outcomes: dict[str, ClusterOutcome], run_id: str) -> None:
    others = [n for n in FLEET if n != FAULTY]
    assert_all_ok(outcomes, others)
    for name in others:
        statuses = {status for _, _, status, _ in loads(fdb.dsn, run_id, name)}
        assert statuses == {"success"}, name
        assert pod_count(fdb.dsn, name) == PODS


def assert_recovers(fdb: FleetDb, run_id: str) -> None:
    """The fault cleared, the next run loads every cluster, with no duplicate rows."""
    fdb.cluster().faults.clear()
    outcomes = fdb.load(run_id)
    assert_all_ok(outcomes, FLEET)
    assert {status for _, _, status, _ in loads(fdb.dsn, run_id)} == {"success"}
    for name in FLEET:
        assert pod_count(fdb.dsn, name) == PODS
