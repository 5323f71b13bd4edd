"""History end to end: a simulated cluster that changes between loads, the refresh, PostgreSQL.

Acceptance of issue 16: load, churn, load, churn, load (times t1 < t2 < t3). For every versioned
table the as-of query at t1 and t2 returns row for row what the table held after those loads, and at
t3 what it holds now; the change feed between t1 and t2 names exactly the objects the churn touched;
unchanged refreshes and failed loads leave the history as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kq_pipeline import inventory
from kq_pipeline.db import history
from kq_pipeline.db.schema import storage_column_names
from kq_pipeline.refresh import RefreshSettings, refresh_clusters
from kq_pipeline.registry import TABLES
from kq_pipeline.simulator import Fleet, serve_fleet
from kq_pipeline.simulator.objects import OPERATORS, ClusterSpec

CLUSTER = "hist"
SPEC = ClusterSpec(CLUSTER, seed=16, pods=60, namespaces=3, operators=OPERATORS, custom_objects=40)
VERSIONED = [t for t in TABLES if t not in history.skipped_tables(history.DEFAULT_SKIP)]


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with serve_fleet([SPEC]) as f:
        yield f


@pytest.fixture
def dsn(fleet: Fleet, pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("KQ_HISTORY_SKIP", raising=False)
    kubeconfig = fleet.write_kubeconfig(tmp_path / "k.yaml")
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))
    return pg_dsn


def _refresh(dsn: str) -> datetime:
    """Refresh the cluster; returns the database's clock right after the load committed."""
    (outcome,) = refresh_clusters(dsn, [CLUSTER], list(TABLES), run_id=None, settings=RefreshSettings())
    assert outcome.ok, (outcome.error, outcome.failed_tables)
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def _current(conn: psycopg.Connection, table: str) -> list[tuple]:
    return _select(conn, table, sql.Identifier(table), sql.SQL("cluster_name = %s"), (CLUSTER,))


def _as_of(conn: psycopg.Connection, table: str, when: datetime) -> list[tuple]:
    where = sql.SQL("cluster_name = %s AND valid_from <= %s AND (valid_to IS NULL OR valid_to > %s)")
    return _select(conn, table, history.ident(table), where, (CLUSTER, when, when))


def _select(
    conn: psycopg.Connection, table: str, source: sql.Composable, where: sql.Composable, params: tuple
) -> list[tuple]:
    columns = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(c)) for c in storage_column_names(TABLES[table])
    )
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(columns, source, where)
    return sorted(conn.execute(query, params).fetchall(), key=repr)


def _collected(ref: dict[str, str]) -> bool:
    """Is this changed object one the fleet tables hold? (Churn may touch kinds no table reads.)"""
    group = ref["resource"].rsplit("/", 2)[0] if ref["resource"].count("/") == 2 else "core"
    plural = ref["resource"].rsplit("/", 1)[1]
    held = {(t.source.api_group, t.source.resource) for t in TABLES.values()}
    return (group, plural) in held or "." in group and not group.endswith("k8s.io")  # custom kinds


def _rows_by_uid(snapshot: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """Every row of every table, grouped by the uid column (the object it belongs to)."""
    out: dict[str, list[tuple]] = {}
    for table, rows in snapshot.items():
        names = storage_column_names(TABLES[table])
        if "uid" in names:
            at = names.index("uid")
            for row in rows:
                out.setdefault(row[at], []).append((table, *row))
    return {uid: sorted(rows, key=repr) for uid, rows in out.items()}


def test_as_of_each_load_and_a_change_feed_that_names_what_the_churn_touched(fleet: Fleet, dsn: str) -> None:
    cluster = fleet.clusters[CLUSTER]
    t1 = _refresh(dsn)
    with psycopg.connect(dsn) as conn:
        after_1 = {t: _current(conn, t) for t in VERSIONED}
    report = cluster.churn(0.10, seed=1)
    assert report.added and report.removed and report.modified
    t2 = _refresh(dsn)
    with psycopg.connect(dsn) as conn:
        after_2 = {t: _current(conn, t) for t in VERSIONED}
    cluster.churn(0.10, seed=2)
    t3 = _refresh(dsn)

    with psycopg.connect(dsn) as conn:
        changed_tables = 0
        for table in VERSIONED:
            assert _as_of(conn, table, t1) == after_1[table], table
            assert _as_of(conn, table, t2) == after_2[table], table
            assert _as_of(conn, table, t3) == _current(conn, table), table
            changed_tables += after_1[table] != after_2[table]
        assert changed_tables >= 5  # pods, containers, volumes, deployments, replica sets, ...

        feed = conn.execute(
            "SELECT table_name, uid, change FROM history.changes WHERE cluster_name = %s"
            " AND at > %s AND at <= %s",
            (CLUSTER, t1, t2),
        ).fetchall()
    touched = {r.uid for r in (*report.added, *report.removed, *report.modified) if _collected(r.as_dict())}
    feed_uids = {uid for _, uid, _ in feed}
    assert feed_uids <= touched, "the feed names objects the churn did not touch"
    # A touched object whose rows read the same (a node added and one removed leave a daemon set's
    # counts as they were) has nothing to record; every other touched object is in the feed.
    before, after = _rows_by_uid(after_1), _rows_by_uid(after_2)
    unchanged = {uid for uid in touched - feed_uids if before.get(uid) == after.get(uid)}
    assert touched - feed_uids == unchanged
    assert len(unchanged) < len(touched) / 4, (len(unchanged), len(touched))
    said = {(uid, change) for _, uid, change in feed}
    for change, refs in (("added", report.added), ("removed", report.removed), ("modified", report.modified)):
        expected = {(r.uid, change) for r in refs if r.uid in touched and r.uid not in unchanged}
        assert expected <= said, change


def test_unchanged_refreshes_add_nothing_and_a_failed_load_keeps_the_history(fleet: Fleet, dsn: str) -> None:
    _refresh(dsn)

    def counts() -> tuple[int, int]:
        with psycopg.connect(dsn) as conn:
            rows = sum(
                conn.execute(sql.SQL("SELECT count(*) FROM {}").format(history.ident(t))).fetchone()[0]
                for t in TABLES
            )
            return rows, conn.execute("SELECT count(*) FROM history.change_log").fetchone()[0]

    before = counts()
    for _ in range(10):
        _refresh(dsn)
    assert counts() == before

    fleet.clusters[CLUSTER].churn(0.10, seed=3)
    fleet.clusters[CLUSTER].faults.refuse(True, seconds=30)  # the cluster is unreachable
    (outcome,) = refresh_clusters(
        dsn, [CLUSTER], list(TABLES), run_id=None, settings=RefreshSettings(deadline_s=3)
    )
    assert not outcome.ok
    assert counts() == before
