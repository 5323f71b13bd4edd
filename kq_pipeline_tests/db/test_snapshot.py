"""replace_snapshot keeps exactly one snapshot per (cluster, table), replaced whole or not at all."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pandas as pd
import psycopg
import pytest

from kq_pipeline.db.snapshot import LoadResult, exclude_snapshot, record_failed_load, replace_snapshot
from kq_pipeline.frames import to_frame

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def pods(n: int, *, prefix: str = "pod", **extra: str) -> list[dict[str, str]]:
    return [
        {
            "uid": f"{prefix}-uid-{i}",
            "name": f"{prefix}-{i}",
            "namespace": f"ns-{i % 3}",
            "creation_timestamp": "1611191305",
            "labels": json.dumps({"app": "web" if i % 2 else "db"}),
            "priority": str(i),
            **extra,
        }
        for i in range(n)
    ]


def load(conn, cluster: str, rows, table: str = "kubernetes_pods", run_id: str | None = "r1") -> LoadResult:
    typed = to_frame(table, rows, cluster_name=cluster)
    return replace_snapshot(
        conn, table, cluster, typed, run_id=run_id, started_at=T0, rows_extracted=len(rows)
    )


def snapshot(conn, cluster: str) -> list[tuple]:
    return conn.execute(
        "SELECT name, namespace, labels, priority FROM kubernetes_pods WHERE cluster_name = %s ORDER BY name",
        (cluster,),
    ).fetchall()


def test_a_second_load_replaces_the_first_and_leaves_other_clusters_alone(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        assert load(conn, "c1", pods(200)).rows_loaded == 200
        load(conn, "c2", pods(5, prefix="other"))
        other_before = snapshot(conn, "c2")
        result = load(conn, "c1", pods(150, prefix="new"))
        assert (result.rows_loaded, result.rows_rejected) == (150, 0)
        names = [r[0] for r in snapshot(conn, "c1")]
        assert len(names) == 150 and all(n.startswith("new-") for n in names)
        assert snapshot(conn, "c2") == other_before


def test_values_arrive_typed_json_as_jsonb(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        load(conn, "c1", pods(2))
        rows = conn.execute(
            "SELECT name, labels->>'app', priority, creation_timestamp, pod_ip"
            " FROM kubernetes_pods ORDER BY name"
        ).fetchall()
    assert rows == [("pod-0", "db", 0, 1611191305, None), ("pod-1", "web", 1, 1611191305, None)]


def test_success_is_recorded_in_kq_loads_and_the_latest_view(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        load(conn, "c1", pods(3), run_id="run-a")
        rows = pods(3)
        rows[1]["priority"] = str(2**40)  # int32 overflow: rejected, counted
        load(conn, "c1", rows, run_id="run-b")
        latest = conn.execute(
            """SELECT run_id, status, rows_extracted, rows_loaded, rows_rejected, started_at, error,
                      finished_at >= started_at FROM kq_latest_loads WHERE cluster_name = 'c1'"""
        ).fetchall()
        assert conn.execute("SELECT count(*) FROM kq_meta.loads").fetchone()[0] == 2
    assert latest == [("run-b", "success", 3, 2, 1, T0, None, True)]


def test_a_failing_copy_leaves_the_previous_snapshot_identical(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        load(conn, "c1", pods(20))
        before = snapshot(conn, "c1")
        bad = to_frame("kubernetes_pods", pods(30, prefix="bad"), cluster_name="c1").frame
        bad.loc[25, "labels"] = "{not json"  # bypasses to_frame's checks: jsonb input fails mid-COPY
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            replace_snapshot(
                conn, "kubernetes_pods", "c1", bad, run_id="r2", started_at=T0, rows_extracted=30
            )
        record_failed_load(
            conn, "kubernetes_pods", "c1", error="load failed: bad json", run_id="r2", started_at=T0
        )
        assert snapshot(conn, "c1") == before
        latest = conn.execute(
            "SELECT status, rows_loaded, error FROM kq_latest_loads WHERE cluster_name = 'c1'"
        ).fetchone()
        assert latest == ("failed", None, "load failed: bad json")
        history = conn.execute("SELECT status FROM kq_meta.loads ORDER BY id").fetchall()
        assert history == [("success",), ("failed",)]


def test_a_nul_byte_smuggled_past_to_frame_fails_the_load_not_the_data(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # refresh.py uses autocommit connections
        load(conn, "c1", pods(4))
        before = snapshot(conn, "c1")
        frame = to_frame("kubernetes_pods", pods(4, prefix="x"), cluster_name="c1").frame
        frame.loc[3, "name"] = "nul\x00"
        with pytest.raises(psycopg.DataError):
            replace_snapshot(
                conn, "kubernetes_pods", "c1", frame, run_id=None, started_at=T0, rows_extracted=4
            )
        assert snapshot(conn, "c1") == before
        assert conn.execute("SELECT count(*) FROM kq_meta.loads").fetchone()[0] == 1


def test_a_frame_of_another_cluster_or_shape_is_refused_before_touching_the_table(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        load(conn, "c1", pods(2))
        frame = to_frame("kubernetes_pods", pods(2), cluster_name="c2").frame
        with pytest.raises(ValueError, match="other than"):
            replace_snapshot(
                conn, "kubernetes_pods", "c1", frame, run_id=None, started_at=T0, rows_extracted=2
            )
        with pytest.raises(ValueError, match="columns"):
            replace_snapshot(
                conn, "kubernetes_pods", "c1", frame.iloc[:, :5], run_id=None, started_at=T0, rows_extracted=2
            )
        assert len(snapshot(conn, "c1")) == 2


def test_an_empty_extraction_empties_the_snapshot(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        load(conn, "c1", pods(3))
        assert load(conn, "c1", []).rows_loaded == 0
        assert snapshot(conn, "c1") == []


def test_injection_looking_names_and_values_are_stored_literally(pg_dsn):
    evil = "x'); DROP TABLE kubernetes_pods; --"
    rows = pods(
        1, name=evil, namespace='"; DELETE FROM kq_meta.loads; --', phase="\\N", node_name="a\tb\nc\\d"
    )
    with psycopg.connect(pg_dsn) as conn:
        load(conn, evil, rows)
        record_failed_load(conn, "kubernetes_pods", evil, error=evil, run_id=evil, started_at=T0)
        row = conn.execute(
            "SELECT cluster_name, name, namespace, phase, node_name FROM kubernetes_pods"
        ).fetchone()
        assert row == (evil, evil, '"; DELETE FROM kq_meta.loads; --', "\\N", "a\tb\nc\\d")
        assert (
            conn.execute("SELECT count(*) FROM kq_meta.loads WHERE cluster_name = %s", (evil,)).fetchone()[0]
            == 2
        )


def test_unknown_tables_never_reach_sql(pg_dsn):
    with psycopg.connect(pg_dsn) as conn, pytest.raises(KeyError):
        record_failed_load(conn, "kubernetes_pods; DROP TABLE x", "c1", error="e", run_id=None, started_at=T0)


def test_two_loads_of_one_cluster_serialize_on_its_advisory_lock(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as holder, psycopg.connect(pg_dsn) as loader:
        holder.execute("SELECT pg_advisory_lock(hashtextextended('kq-cluster:' || %s, 0))", ("c1",))
        done = threading.Event()

        def run() -> None:
            load(loader, "c1", pods(5))
            done.set()

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.5)
        assert not done.is_set(), "the load must wait for the cluster's lock"
        waiting = holder.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        assert waiting.fetchone()[0] == 1
        assert snapshot(holder, "c1") == []
        holder.execute("SELECT pg_advisory_unlock(hashtextextended('kq-cluster:' || %s, 0))", ("c1",))
        worker.join(10)
        assert done.is_set()
        assert len(snapshot(holder, "c1")) == 5


def test_a_plain_dataframe_with_nan_for_missing_loads_as_null(pg_dsn):
    frame = to_frame("kubernetes_namespaces", [{"name": "a", "uid": "u"}], cluster_name="c1").frame
    frame["phase"] = pd.Series([float("nan")], dtype=object)
    with psycopg.connect(pg_dsn) as conn:
        result = replace_snapshot(
            conn, "kubernetes_namespaces", "c1", frame, run_id=None, started_at=T0, rows_extracted=1
        )
        assert result.rows_loaded == 1
        assert conn.execute("SELECT phase FROM kubernetes_namespaces").fetchone() == (None,)


def test_a_session_already_holding_the_cluster_lock_can_replace(pg_dsn):
    """refresh.py holds the cluster's session-level lock around all its tables' replaces."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtextextended('kq-cluster:' || %s, 0))", ("c1",))
        assert load(conn, "c1", pods(3)).rows_loaded == 3
        assert conn.execute(
            "SELECT pg_advisory_unlock(hashtextextended('kq-cluster:' || %s, 0))", ("c1",)
        ).fetchone()


# -- custom resources: failed kinds keep their previous rows -------------------------------------------
CR = "kubernetes_custom_resources"


def objects(kinds: dict[tuple[str, str], int], *, generation: str = "g1") -> list[dict[str, str]]:
    return [
        {
            "api_group": group,
            "api_version": f"{group}/v1",
            "kind": kind,
            "resource": kind.lower() + "s",
            "namespace": "ns",
            "name": f"{kind.lower()}-{i}",
            "uid": f"{generation}-{kind}-{i}",
            "spec": json.dumps({"n": i}),
        }
        for (group, kind), n in kinds.items()
        for i in range(n)
    ]


def custom_snapshot(conn, cluster: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for group, kind, uid in conn.execute(
        f"SELECT api_group, kind, uid FROM {CR} WHERE cluster_name = %s", (cluster,)
    ).fetchall():
        out.setdefault((group, kind), set()).add(uid)
    return out


CERT, ISSUER, APP = (
    ("cert-manager.io", "Certificate"),
    ("cert-manager.io", "Issuer"),
    ("argoproj.io", "Application"),
)


def test_a_failed_kind_keeps_its_previous_rows_and_the_others_are_replaced(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        load(conn, "c1", objects({CERT: 3, ISSUER: 2, APP: 1}), table=CR)
        load(conn, "c2", objects({CERT: 1}), table=CR)
        fresh = to_frame(CR, objects({ISSUER: 4}, generation="g2"), cluster_name="c1")
        why = {CERT: "permission denied: 403 Forbidden", APP: "more than 10 objects (limit), not loaded"}
        result = replace_snapshot(
            conn, CR, "c1", fresh, run_id="r2", started_at=T0, rows_extracted=4, note="n1", keep=why
        )
        assert (result.rows_loaded, result.rows_kept) == (8, 4)  # what the snapshot holds: 4 new + 4 kept
        assert result.parts == {APP: 1, CERT: 3, ISSUER: 4}  # per kind, kept ones included
        got = custom_snapshot(conn, "c1")
        assert got[CERT] == {"g1-Certificate-0", "g1-Certificate-1", "g1-Certificate-2"}  # kept
        assert got[APP] == {"g1-Application-0"}  # kept
        assert got[ISSUER] == {f"g2-Issuer-{i}" for i in range(4)}  # replaced: old Issuers gone
        assert custom_snapshot(conn, "c2") == {CERT: {"g1-Certificate-0"}}
        status, loaded, note = conn.execute(
            "SELECT status, rows_loaded, note FROM kq_latest_loads WHERE cluster_name = 'c1'"
        ).fetchone()
    assert (status, loaded) == ("success", 8)
    assert note == (
        "n1; cert-manager.io/Certificate: permission denied: 403 Forbidden: previous rows kept (3); "
        "argoproj.io/Application: more than 10 objects (limit), not loaded: previous rows kept (1)"
    )


def test_a_kind_gone_from_the_new_snapshot_disappears(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        load(conn, "c1", objects({CERT: 2, APP: 2}), table=CR)
        load(conn, "c1", objects({CERT: 2}, generation="g2"), table=CR)  # the Application CRD was removed
        assert set(custom_snapshot(conn, "c1")) == {CERT}


def test_only_tables_with_kept_by_columns_can_keep_rows(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        typed = to_frame("kubernetes_pods", pods(1), cluster_name="c1")
        with pytest.raises(ValueError, match="replaced whole"):
            replace_snapshot(
                conn,
                "kubernetes_pods",
                "c1",
                typed,
                run_id="r",
                started_at=T0,
                rows_extracted=1,
                keep={("x",): "y"},
            )


def test_a_kind_that_failed_before_it_ever_loaded_counts_zero_rows(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        fresh = to_frame(CR, objects({ISSUER: 2}), cluster_name="c1")
        result = replace_snapshot(
            conn, CR, "c1", fresh, run_id="r1", started_at=T0, rows_extracted=2, keep={CERT: "403"}
        )
        plain = load(conn, "c1", pods(3))
    assert result.parts == {CERT: 0, ISSUER: 2} and result.rows_kept == 0
    assert plain.parts is None  # a table replaced whole has no parts


# -- excluded tables: emptied for the cluster, recorded as such --------------------------------------


def test_excluding_a_table_deletes_the_clusters_rows_and_records_it_as_excluded(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        load(conn, "c1", pods(5))
        load(conn, "c2", pods(2, prefix="other"))
        deleted = exclude_snapshot(
            conn, "kubernetes_pods", "c1", run_id="r2", started_at=T0, note="excluded by the selection"
        )
        again = exclude_snapshot(
            conn, "kubernetes_pods", "c1", run_id="r3", started_at=T0, note="excluded by the selection"
        )
        assert (deleted, again) == (5, 0)
        assert snapshot(conn, "c1") == [] and len(snapshot(conn, "c2")) == 2
        rows = conn.execute(
            "SELECT run_id, status, rows_loaded, note FROM kq_meta.loads"
            " WHERE cluster_name = 'c1' ORDER BY id"
        ).fetchall()
    assert rows[1:] == [
        ("r2", "excluded", 0, "excluded by the selection; its 5 previous rows deleted"),
        ("r3", "excluded", 0, "excluded by the selection"),
    ]
