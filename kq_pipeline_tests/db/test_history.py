"""A table's history: every row each cluster held, and when, kept in the load's own transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from kq_pipeline.db import history
from kq_pipeline.db.retire import retire_rows
from kq_pipeline.db.schema import apply_schema
from kq_pipeline.db.snapshot import exclude_snapshot, replace_snapshot
from kq_pipeline.frames import to_frame
from kq_pipeline_tests.db.test_snapshot import pods

T0 = datetime(2024, 1, 1, tzinfo=UTC)
AS_OF = """
    SELECT name, namespace, priority, labels FROM history.kubernetes_pods
    WHERE cluster_name = %s AND valid_from <= %s AND (valid_to IS NULL OR valid_to > %s)
    ORDER BY name, priority"""
CURRENT = """
    SELECT name, namespace, priority, labels FROM kubernetes_pods WHERE cluster_name = %s
    ORDER BY name, priority"""


def load(conn: psycopg.Connection, cluster: str, rows: list[dict[str, str]], at: datetime, **kw):
    typed = to_frame("kubernetes_pods", rows, cluster_name=cluster)
    return replace_snapshot(
        conn,
        "kubernetes_pods",
        cluster,
        typed,
        run_id="r",
        started_at=T0,
        rows_extracted=len(rows),
        at=at,
        **kw,
    )


def as_of(conn: psycopg.Connection, cluster: str, when: datetime) -> list[tuple]:
    return conn.execute(AS_OF, (cluster, when, when)).fetchall()


def changes(conn: psycopg.Connection, cluster: str = "c1") -> list[tuple]:
    return conn.execute(
        "SELECT at, change, name, changed_columns FROM history.changes WHERE cluster_name = %s"
        " AND table_name = 'kubernetes_pods' ORDER BY at, change, name",
        (cluster,),
    ).fetchall()


def history_rows(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM history.kubernetes_pods").fetchone()[0]


def test_as_of_returns_each_loads_snapshot_and_the_change_feed_says_what_happened(pg_dsn):
    t1, t2, t3 = T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    first = pods(4)
    second = pods(4)
    del second[0]  # pod-0 removed
    second[1]["labels"] = json.dumps({"app": "web", "tier": "front"})  # pod-2 relabelled
    second.append(pods(6)[5])  # pod-5 added
    third = pods(1, prefix="new")  # everything replaced
    with psycopg.connect(pg_dsn) as conn:
        snapshots = []
        for rows, at in ((first, t1), (second, t2), (third, t3)):
            result = load(conn, "c1", rows, at)
            snapshots.append(conn.execute(CURRENT, ("c1",)).fetchall())
        assert result.changes == history.ChangeCounts(added=1, removed=4, modified=0)

        assert as_of(conn, "c1", t1) == snapshots[0]
        assert as_of(conn, "c1", t1 + timedelta(minutes=59)) == snapshots[0]
        assert as_of(conn, "c1", t2) == snapshots[1]
        assert as_of(conn, "c1", t3) == snapshots[2] == as_of(conn, "c1", t3 + timedelta(days=1))
        assert as_of(conn, "c1", t1 - timedelta(seconds=1)) == []
        assert [c for c in changes(conn) if c[0] == t2] == [
            (t2, "added", "pod-5", None),
            (t2, "modified", "pod-2", ["labels"]),
            (t2, "removed", "pod-0", None),
        ]


def test_unchanged_refreshes_add_no_history_rows(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        load(conn, "c1", pods(50), T0)
        before = history_rows(conn)
        for i in range(10):
            result = load(conn, "c1", pods(50), T0 + timedelta(minutes=i + 1))
            assert result.changes == history.ChangeCounts()
        assert (before, history_rows(conn)) == (50, 50)
        assert len(changes(conn)) == 50  # the first load's additions only


def test_a_load_that_fails_after_its_history_was_written_leaves_no_trace_there(pg_dsn, monkeypatch):
    """The history is written in the load's transaction: a failure after it rolls both back."""
    from kq_pipeline.db import snapshot

    with psycopg.connect(pg_dsn) as conn:
        load(conn, "c1", pods(5), T0)
        before = conn.execute("SELECT * FROM history.kubernetes_pods ORDER BY name").fetchall()

        def fail(*args, **kwargs):
            raise RuntimeError("recording the load failed")

        monkeypatch.setattr(snapshot, "_load_row", fail)  # runs after the history's statement
        with pytest.raises(RuntimeError, match="recording the load failed"):
            load(conn, "c1", pods(3, prefix="new"), T0 + timedelta(hours=1))
        assert conn.execute("SELECT * FROM history.kubernetes_pods ORDER BY name").fetchall() == before
        assert len(changes(conn)) == 5
        assert conn.execute(CURRENT, ("c1",)).fetchall() == as_of(conn, "c1", T0)


def test_equal_rows_pair_up_one_by_one(pg_dsn):
    """Content identity counts duplicates: two equal rows, then one, is one removal."""
    with psycopg.connect(pg_dsn) as conn:
        twice = pods(1) * 2
        load(conn, "c1", twice, T0)
        result = load(conn, "c1", pods(1), T0 + timedelta(hours=1))
        assert result.changes == history.ChangeCounts(removed=1)
        assert len(as_of(conn, "c1", T0)) == 2
        assert len(as_of(conn, "c1", T0 + timedelta(hours=1))) == 1


def test_skipped_tables_keep_no_history(pg_dsn, monkeypatch):
    monkeypatch.setenv("KQ_HISTORY_SKIP", "kubernetes_pods")
    with psycopg.connect(pg_dsn) as conn:
        assert load(conn, "c1", pods(3), T0).changes is None
        assert history_rows(conn) == 0
        assert load(conn, "c1", pods(3), T0, versioned=True).changes is not None  # an explicit choice wins


def test_the_history_skip_setting_defaults_to_events_and_rejects_unknown_tables(monkeypatch):
    monkeypatch.delenv("KQ_HISTORY_SKIP", raising=False)
    assert history.skipped_tables() == {"kubernetes_events"}
    assert history.skipped_tables("kubernetes_events") == {"kubernetes_events"}
    assert history.skipped_tables("") == frozenset()
    assert len(history.skipped_tables("*")) == len(history.TABLES)
    with pytest.raises(ValueError, match="unknown table.*kubernetes_podz"):
        history.skipped_tables("kubernetes_pods, kubernetes_podz")
    with pytest.raises(ValueError, match="KQ_HISTORY_DAYS must be a number"):
        history.retention_days("thirty")
    with pytest.raises(ValueError, match="must be positive"):
        history.retention_days("0")


def test_an_excluded_table_and_a_retired_cluster_close_their_history_and_keep_it(pg_dsn):
    t1, t2 = T0, T0 + timedelta(hours=1)
    with psycopg.connect(pg_dsn) as conn:
        load(conn, "c1", pods(3), t1)
        load(conn, "c2", pods(2), t1)
        exclude_snapshot(
            conn, "kubernetes_pods", "c1", run_id="r", started_at=T0, note="not collected", at=t2
        )
        assert as_of(conn, "c1", t2) == [] and len(as_of(conn, "c1", t1)) == 3
        conn.execute("INSERT INTO kq_meta.clusters (name, server, source) VALUES ('c2', 'https://x', 'cli')")
        retire_rows(conn, "c2", "delete")
        assert conn.execute(CURRENT, ("c2",)).fetchall() == []
        assert len(as_of(conn, "c2", t1)) == 2  # the removed cluster's history is kept
        gone = conn.execute(
            "SELECT count(*) FROM history.changes WHERE cluster_name = 'c2' AND change = 'removed'"
        ).fetchone()
        assert gone == (2,)


def test_retention_prunes_closed_rows_in_batches_and_never_current_ones(pg_dsn):
    old, recent = datetime.now(UTC) - timedelta(days=40), datetime.now(UTC) - timedelta(days=1)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        load(conn, "c1", pods(7), old - timedelta(days=1))
        load(conn, "c1", pods(7, prefix="b"), old)  # closes the 7 first rows 40 days ago
        load(conn, "c1", pods(7, prefix="c"), recent)  # closes the b rows a day ago
        deleted = history.prune(conn, datetime.now(UTC) - timedelta(days=30), batch=3)
        assert deleted == {"kubernetes_pods": 7, "change_log": 7 + 14}
        assert len(as_of(conn, "c1", old)) == 7  # the b rows, closed a day ago, are kept
        assert as_of(conn, "c1", datetime.now(UTC)) == conn.execute(CURRENT, ("c1",)).fetchall()
        assert history.prune(conn, datetime.now(UTC) + timedelta(days=1)) == {
            "kubernetes_pods": 7,
            "change_log": 7 + 7,  # the last load's removals and additions
        }
        assert len(as_of(conn, "c1", datetime.now(UTC))) == 7  # current rows are never pruned


def test_a_column_added_by_an_upgrade_joins_the_history_without_rewriting_it(pg_dsn):
    """An older release's database lacks a column; the upgrade adds it to the table and its history
    (catalog only: same files), and as-of queries read across the change."""
    t1, t2 = T0, T0 + timedelta(hours=1)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        load(conn, "c1", pods(3), t1)
        for table in ("kubernetes_pods", "history.kubernetes_pods"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN priority")  # as the older release had it
        files = conn.execute(
            "SELECT relfilenode FROM pg_class WHERE oid = 'history.kubernetes_pods'::regclass"
        ).fetchone()
        apply_schema(conn, force=True)  # the upgrade
        assert (
            files
            == conn.execute(
                "SELECT relfilenode FROM pg_class WHERE oid = 'history.kubernetes_pods'::regclass"
            ).fetchone()
        )
        result = load(conn, "c1", pods(3), t2)
        assert result.changes == history.ChangeCounts(modified=3)  # priority is known from now on
        assert [r[2] for r in as_of(conn, "c1", t1)] == [None, None, None]
        assert [r[2] for r in as_of(conn, "c1", t2)] == [0, 1, 2]
        assert {tuple(c[3]) for c in changes(conn) if c[0] == t2} == {("priority",)}


def test_an_as_of_query_for_one_cluster_reads_the_index_not_the_whole_history(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        for c in range(30):
            for hour in range(3):  # each load replaces a third of the pods
                rows = pods(100) if hour == 0 else pods(100)[:66] + pods(34, prefix=f"h{hour}")
                load(conn, f"c{c}", rows, T0 + timedelta(hours=hour))
        conn.execute("ANALYZE history.kubernetes_pods")
        when = T0 + timedelta(minutes=90)
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + AS_OF, ("c7", when, when)).fetchall())
    assert "kubernetes_pods_cluster_name_valid_to_idx" in plan, plan
    assert "Seq Scan" not in plan, plan
