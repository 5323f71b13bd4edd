"""The DDL: generated from the registry, idempotent, and what sql/schema.sql holds."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from kq_pipeline.db.schema import apply_schema, index_name, schema_sql
from kq_pipeline.registry import KUBEQUERY_TABLES, PROJECT_TABLES, TABLES

REPO = Path(__file__).resolve().parents[2]
PG_TYPE = {"TEXT": "text", "INTEGER": "integer", "BIGINT": "bigint"}


def test_committed_schema_sql_is_the_generated_ddl():
    committed = (REPO / "sql" / "schema.sql").read_text()
    assert committed == schema_sql(), "regenerate with: python -m kq_pipeline.db.schema > sql/schema.sql"


def test_schema_applies_to_an_empty_database_and_again_harmlessly(pg_empty_dsn):
    with psycopg.connect(pg_empty_dsn) as conn:
        apply_schema(conn)
        conn.execute("INSERT INTO kq_meta.clusters (name, server, source) VALUES ('c1', 'https://x', 'cli')")
        conn.commit()
        apply_schema(conn)
        assert conn.execute("SELECT count(*) FROM kq_meta.clusters").fetchone()[0] == 1


def test_an_up_to_date_schema_is_not_reapplied_so_running_loads_cannot_deadlock_it(pg_dsn):
    """Every run applies the schema at start; other runs' loads hold their tables meanwhile."""
    with psycopg.connect(pg_dsn) as loader, psycopg.connect(pg_dsn) as starter:
        apply_schema(starter)  # records this DDL's hash
        loader.execute("LOCK TABLE kubernetes_pods IN ROW EXCLUSIVE MODE")  # as a COPY into it does
        starter.execute("SET lock_timeout = '1s'")
        starter.commit()
        apply_schema(starter)  # current: touches no table, so it does not wait for the loader
        with pytest.raises(psycopg.errors.LockNotAvailable):
            apply_schema(starter, force=True)  # the DDL itself would wait (and could deadlock)
        loader.rollback()


def test_a_dropped_table_is_put_back_even_when_the_hash_matches(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_schema(conn)
        conn.execute("DROP TABLE kubernetes_pods")
        apply_schema(conn)
        assert conn.execute("SELECT to_regclass('kubernetes_pods') IS NOT NULL").fetchone() == (True,)
        digest = conn.execute("SELECT ddl_sha256 FROM kq_meta.schema_version").fetchone()[0]
        assert len(digest) == 64


def test_every_table_has_kubequerys_columns_in_order_with_jsonb_for_json(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            """SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
               WHERE table_schema = 'public' AND table_name LIKE 'kubernetes\\_%'
               ORDER BY table_name, ordinal_position"""
        ).fetchall()
    found: dict[str, list[tuple[str, str, str]]] = {}
    for table, column, data_type, nullable in rows:
        found.setdefault(table, []).append((column, data_type, nullable))
    assert set(found) == set(TABLES) and len(found) == len(KUBEQUERY_TABLES) + len(PROJECT_TABLES)
    for table in TABLES.values():
        expected = [
            (
                c.name,
                "jsonb" if c.is_json else PG_TYPE[c.kq_type],
                "NO" if c.name == "cluster_name" else "YES",
            )
            for c in table.columns
        ]
        assert found[table.name] == expected, table.name


def test_every_table_has_an_index_led_by_cluster_name_and_labels_are_gin_indexed(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        indexes = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        ).fetchall()
    led = {t for t, _, d in indexes if "USING btree (cluster_name" in d}
    assert set(TABLES) <= led
    defs = {name: d for _, name, d in indexes}
    assert "gin (labels jsonb_path_ops)" in defs[index_name("kubernetes_pods", ("labels",))]
    assert "(cluster_name, node_name)" in defs[index_name("kubernetes_pods", ("cluster_name", "node_name"))]
    assert "(image)" in defs[index_name("kubernetes_pod_containers", ("image",))]


def test_index_names_fit_postgresqls_limit_and_stay_unique():
    long = index_name("kubernetes_cluster_role_binding_subjects", ("cluster_name", "namespace", "x" * 30))
    assert len(long) <= 63
    assert long != index_name(
        "kubernetes_cluster_role_binding_subjects", ("cluster_name", "namespace", "y" * 30)
    )


@pytest.mark.parametrize(
    "bad", ["UPPER", "-lead", "trail-", "a_b", "a" * 64, "", "x'; DROP TABLE kq_meta.loads; --"]
)
def test_cluster_inventory_refuses_unsafe_names(pg_dsn, bad):
    with psycopg.connect(pg_dsn) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO kq_meta.clusters (name, server, source) VALUES (%s, 'https://x', 'cli')", (bad,)
        )


def test_cluster_inventory_defaults(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "INSERT INTO kq_meta.clusters (name, server, source) VALUES ('prod-1', 'https://x', 'yaml')"
        )
        row = conn.execute(
            "SELECT extractor, insecure_skip_tls_verify, retired_at, added_at IS NOT NULL"
            " FROM kq_meta.clusters"
        ).fetchone()
    assert row == ("native", False, None, True)


def fleet_queries() -> list[str]:
    text = (REPO / "sql" / "fleet_queries.sql").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [q.strip() for q in body.split(";") if q.strip()]


def test_the_example_fleet_queries_answer_over_loaded_clusters(pg_dsn):
    from datetime import UTC, datetime

    from kq_pipeline.db.snapshot import replace_snapshot
    from kq_pipeline.frames import to_frame

    def put(conn, table, cluster, rows):
        typed = to_frame(table, rows, cluster_name=cluster)
        replace_snapshot(
            conn, table, cluster, typed, run_id="r", started_at=datetime.now(UTC), rows_extracted=len(rows)
        )

    coredns = '{"app":"coredns"}'
    with psycopg.connect(pg_dsn) as conn:
        for cluster, n in (("a", 3), ("b", 2)):
            put(
                conn,
                "kubernetes_pods",
                cluster,
                [
                    {
                        "uid": f"{cluster}{i}",
                        "name": f"p{i}",
                        "namespace": f"ns{i % 2}",
                        "node_name": "n1",
                        "labels": coredns if i == 0 else '{"app":"db","tier":"x"}',
                        "host_network": "1" if i == 0 else "0",
                        "phase": "Running",
                        "creation_timestamp": str(1_700_000_000 + i),
                    }
                    for i in range(n)
                ],
            )
            put(
                conn,
                "kubernetes_pod_containers",
                cluster,
                [
                    {
                        "uid": f"{cluster}{i}",
                        "name": "c",
                        "namespace": f"ns{i % 2}",
                        "pod_name": f"p{i}",
                        "image": "nginx:1" if i else "redis:7",
                        "privileged": "1" if i == 0 else "0",
                    }
                    for i in range(n)
                ],
            )
            put(
                conn,
                "kubernetes_nodes",
                cluster,
                [
                    {"uid": "n", "name": "n1", "node_info": '{"kubeletVersion":"v1.30.0"}'},
                    {"uid": "m", "name": "n2", "node_info": '{"kubeletVersion":"v1.29.0"}'},
                ],
            )
        results = [conn.execute(q).fetchall() for q in fleet_queries()]
    # then the custom-resource and history queries, checked over a churned simulated fleet in
    # test_fleet_queries; here: no custom objects, and one load just now
    per_cluster, images, labelled, privileged, host_network, oldest, per_node, freshness, *later = results
    custom, (five_minutes_ago, image_changes, changed_per_table, pods_deleted, nodes_joined) = (
        later[:3],
        later[3:],
    )
    assert custom == [[]] * 3
    assert five_minutes_ago == image_changes == pods_deleted == []
    assert changed_per_table == [
        (c, t, n, 0, 0)
        for c, sizes in (("a", (2, 3, 3)), ("b", (2, 2, 2)))
        for t, n in zip(
            ("kubernetes_nodes", "kubernetes_pod_containers", "kubernetes_pods"), sizes, strict=True
        )
    ]
    assert [(c, n, gone) for c, n, _, gone in nodes_joined] == [  # newest first: b was loaded after a
        ("b", "n1", None),
        ("b", "n2", None),
        ("a", "n1", None),
        ("a", "n2", None),
    ]
    assert per_cluster == [("a", 2, 3), ("b", 2, 2)]
    assert images == [("nginx:1", 3), ("redis:7", 2)]
    assert labelled == [("a", "ns0", "p0"), ("b", "ns0", "p0")]
    assert privileged == [("a", "ns0", "p0", "c", "redis:7"), ("b", "ns0", "p0", "c", "redis:7")]
    assert host_network == [("a", 1), ("b", 1)]
    assert [(r[0], r[2]) for r in oldest] == [("a", "p0"), ("b", "p0"), ("a", "p1"), ("b", "p1"), ("a", "p2")]
    assert oldest[0][3] == datetime.fromtimestamp(1_700_000_000, UTC)
    assert per_node == [
        ("a", "n1", "v1.30.0", 3),
        ("a", "n2", "v1.29.0", 0),
        ("b", "n1", "v1.30.0", 2),
        ("b", "n2", "v1.29.0", 0),
    ]
    assert len(freshness) == 6 and {r[2] for r in freshness} == {"success"}


def test_an_older_database_is_upgraded_for_selections_and_excluded_loads(pg_empty_dsn):
    """A database made before per-cluster selections and the kq_meta schema: public.kq_clusters without
    `collect`, public.kq_loads whose status CHECK knows only success and failed. Applying the schema
    moves both into kq_meta (rows kept), adds the column and widens the CHECK."""
    with psycopg.connect(pg_empty_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE kq_clusters (name text PRIMARY KEY, server text NOT NULL, kubeconfig text,"
            " context text, token_env text, token_file text, ca_file text, ca_data text,"
            " insecure_skip_tls_verify boolean NOT NULL DEFAULT false,"
            " extractor text NOT NULL DEFAULT 'native',"
            " source text NOT NULL, cluster_uid text, added_at timestamptz NOT NULL DEFAULT now(),"
            " updated_at timestamptz NOT NULL DEFAULT now(), retired_at timestamptz)"
        )
        conn.execute(
            "CREATE TABLE kq_loads (id bigserial PRIMARY KEY, run_id text, cluster_name text NOT NULL,"
            " table_name text NOT NULL, status text NOT NULL CHECK (status IN ('success', 'failed')),"
            " rows_extracted integer, rows_loaded integer, rows_rejected integer NOT NULL DEFAULT 0,"
            " started_at timestamptz NOT NULL, finished_at timestamptz NOT NULL, error text)"
        )
        conn.execute(
            "INSERT INTO kq_loads (cluster_name, table_name, status, started_at, finished_at)"
            " VALUES ('c1', 'kubernetes_pods', 'success', now(), now())"
        )
        conn.execute("CREATE VIEW kq_latest_loads AS SELECT * FROM kq_loads")
        apply_schema(conn)
        assert conn.execute(
            "SELECT to_regclass('public.kq_loads'), to_regclass('public.kq_clusters')"
        ).fetchone() == (
            None,
            None,
        )
        assert conn.execute("SELECT status FROM kq_meta.loads").fetchall() == [("success",)]
        conn.execute(
            "INSERT INTO kq_meta.loads (cluster_name, table_name, status, started_at, finished_at)"
            " VALUES ('c1', 'kubernetes_pods', 'excluded', now(), now())"
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO kq_meta.loads (cluster_name, table_name, status, started_at, finished_at)"
                " VALUES ('c1', 'kubernetes_pods', 'skipped', now(), now())"
            )
        assert conn.execute("SELECT status FROM kq_latest_loads").fetchall() == [("excluded",)]
        assert conn.execute("SELECT to_regclass('kubernetes_custom_resources') IS NOT NULL").fetchone() == (
            True,
        )
        apply_schema(conn, force=True)  # and again: the widened CHECK is left as it is
        checks = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'kq_meta.loads'::regclass AND contype = 'c'"
        ).fetchone()
        assert checks == (1,)
        conn.execute(
            "INSERT INTO kq_meta.clusters (name, server, source, collect)"
            " VALUES ('c1', 'https://x', 'cli', '{}')"
        )


def test_the_custom_resource_tables_have_their_declared_indexes(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        defs = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'kubernetes_custom_resources'"
            ).fetchall()
        )
    cr = "kubernetes_custom_resources"
    assert "(cluster_name, api_group, kind)" in defs[index_name(cr, ("cluster_name", "api_group", "kind"))]
    assert "(cluster_name, namespace, name)" in defs[index_name(cr, ("cluster_name", "namespace", "name"))]
    assert "gin (labels jsonb_path_ops)" in defs[index_name(cr, ("labels",))]
