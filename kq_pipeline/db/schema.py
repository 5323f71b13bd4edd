"""The DDL of the fleet database, generated from the schema registry.

Identifiers come only from `kq_pipeline.registry` and are quoted with `psycopg.sql.Identifier`.
Every statement is idempotent (IF NOT EXISTS / OR REPLACE), so `apply_schema` can run on every
start. `python -m kq_pipeline.db.schema > sql/schema.sql` writes the committed copy for readers;
the package never reads `sql/`.
"""

from __future__ import annotations

import hashlib
import sys
import time
from typing import Any

import psycopg
from psycopg import sql

from kq_pipeline.db import access, history
from kq_pipeline.registry import TABLES, Column, Table

PG_TYPES = {"TEXT": "text", "INTEGER": "integer", "BIGINT": "bigint"}
MAX_IDENTIFIER = 63
# Tables joined to kubernetes_nodes in fleet queries, and the column naming the node (the pod
# template tables also have node_name, but it is almost never set there).
NODE_JOINED = {
    "kubernetes_pods": "node_name",
    "kubernetes_volume_attachments": "node_name",
    "kubernetes_nodes": "name",
}
# Taken inside apply_schema so that two processes creating the schema at once do not collide.
SCHEMA_LOCK_KEY = 0x6B715F736368656D  # "kq_schem"

KQ_SCHEMA_DDL = """\
CREATE SCHEMA IF NOT EXISTS kq_meta;
COMMENT ON SCHEMA kq_meta IS
    'kq-pipeline''s own records: the cluster inventory (where credentials are), the load records, the '
    'readers. Only the pipeline''s role writes here; readers see cluster names and their loads.';
REVOKE ALL ON SCHEMA kq_meta FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- Databases from before the kq_meta schema kept these tables in public as kq_schema, kq_clusters and
-- kq_loads: move them (a catalog change; indexes, sequence and the kq_latest_loads view follow).
DO $$
DECLARE
    moved CONSTANT text[][] := ARRAY[['kq_schema', 'schema_version'], ['kq_clusters', 'clusters'],
                                     ['kq_loads', 'loads']];
BEGIN
    FOR i IN 1 .. array_length(moved, 1) LOOP
        IF to_regclass('public.' || moved[i][1]) IS NOT NULL
           AND to_regclass('kq_meta.' || moved[i][2]) IS NULL THEN
            EXECUTE format('ALTER TABLE public.%I SET SCHEMA kq_meta', moved[i][1]);
            EXECUTE format('ALTER TABLE kq_meta.%I RENAME TO %I', moved[i][1], moved[i][2]);
        END IF;
    END LOOP;
END $$;"""

# The hash of the last DDL applied (see apply_schema).
SCHEMA_VERSION_DDL = """\
CREATE TABLE IF NOT EXISTS kq_meta.schema_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    ddl_sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);"""
CLUSTERS_DDL = """\
CREATE TABLE IF NOT EXISTS kq_meta.clusters (
    name text PRIMARY KEY CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    server text NOT NULL,
    kubeconfig text,
    context text,
    token_env text,
    token_file text,
    ca_file text,
    ca_data text,
    insecure_skip_tls_verify boolean NOT NULL DEFAULT false,
    extractor text NOT NULL DEFAULT 'native' CHECK (extractor IN ('native', 'kubequery')),
    source text NOT NULL CHECK (source IN ('yaml', 'kubeconfig', 'cli')),
    cluster_uid text,
    added_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    collect jsonb,
    signature text
);
-- Added after the first release: upgrade older databases in place.
ALTER TABLE kq_meta.clusters ADD COLUMN IF NOT EXISTS collect jsonb;
ALTER TABLE kq_meta.clusters ADD COLUMN IF NOT EXISTS signature text;
COMMENT ON TABLE kq_meta.clusters IS
    'Cluster inventory: where each API server and its credentials are (never the secrets). '
    'retired_at NULL = active.';
COMMENT ON COLUMN kq_meta.clusters.collect IS
    'What to collect (tables, custom_kinds, exclude_namespaces, max_objects_per_kind); NULL = everything.';
COMMENT ON COLUMN kq_meta.clusters.signature IS
    'HMAC of the credential columns with the inventory key (KQ_INVENTORY_KEY), which the database never '
    'holds: a row edited in the database is refused by the loader, so credentials cannot be redirected.';"""

LOADS_DDL = """\
CREATE TABLE IF NOT EXISTS kq_meta.loads (
    id bigserial PRIMARY KEY,
    run_id text,
    cluster_name text NOT NULL,
    table_name text NOT NULL,
    status text NOT NULL CONSTRAINT kq_loads_status_check CHECK (status IN ('success', 'failed', 'excluded')),
    rows_extracted integer,
    rows_loaded integer,
    rows_rejected integer NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    error text,
    duration_ms integer,
    note text
);
-- Added after the first release: upgrade older databases in place.
ALTER TABLE kq_meta.loads ADD COLUMN IF NOT EXISTS duration_ms integer;
ALTER TABLE kq_meta.loads ADD COLUMN IF NOT EXISTS note text;
-- 'excluded' came with the per-cluster selection: widen an older database's CHECK (once; NOT VALID:
-- the rows already there satisfy the narrower one, so a long load history is not scanned).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'kq_meta.loads'::regclass
                   AND conname = 'kq_loads_status_check'
                   AND pg_get_constraintdef(oid) LIKE '%excluded%') THEN
        ALTER TABLE kq_meta.loads DROP CONSTRAINT IF EXISTS kq_loads_status_check;
        ALTER TABLE kq_meta.loads ADD CONSTRAINT kq_loads_status_check
            CHECK (status IN ('success', 'failed', 'excluded')) NOT VALID;
    END IF;
END $$;
COMMENT ON COLUMN kq_meta.loads.status IS
    'success: snapshot replaced; failed: previous rows kept; excluded: not collected for this cluster '
    '(its rows deleted), see note.';
COMMENT ON COLUMN kq_meta.loads.note IS
    'Rejected rows and why, sanitised values, kind not served, why excluded, '
    'custom kinds whose previous rows were kept.';
COMMENT ON COLUMN kq_meta.loads.duration_ms IS
    'Time spent on this table: its list calls, rows, frame and load.';
CREATE INDEX IF NOT EXISTS kq_loads_cluster_table_finished_idx
    ON kq_meta.loads (cluster_name, table_name, finished_at DESC);
CREATE INDEX IF NOT EXISTS kq_loads_run_id_idx ON kq_meta.loads (run_id);
COMMENT ON TABLE kq_meta.loads IS
    'One row per cluster x table load attempt: status, row counts, timing, error.';
-- security_invoker: a reader sees the loads of the clusters row-level security lets it see.
CREATE OR REPLACE VIEW kq_latest_loads WITH (security_invoker = true) AS
    SELECT DISTINCT ON (cluster_name, table_name) *
    FROM kq_meta.loads
    ORDER BY cluster_name, table_name, finished_at DESC, id DESC;
COMMENT ON VIEW kq_latest_loads IS
    'The latest load (success, failed or excluded) of every cluster x table.';"""


def column_type(column: Column) -> str:
    return "jsonb" if column.is_json else PG_TYPES[column.kq_type]


def storage_columns(table: Table) -> tuple[Column, ...]:
    """The table's columns in kubequery's order, plus cluster_name/cluster_uid if kubequery lacked one."""
    cols = list(table.columns)
    names = {c.name for c in cols}
    for extra in ("cluster_name", "cluster_uid"):
        if extra not in names:
            cols.append(Column(extra, "TEXT", False, "string", "string", ()))
    return tuple(cols)


def storage_column_names(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in storage_columns(table))


def index_columns(table: Table) -> list[tuple[tuple[str, ...], str]]:
    """(columns, method) of each index of a table.

    Kept lean on purpose: every index slows each snapshot replace. Label (GIN) indexes are on
    object tables only, not on the larger per-container/per-volume tables that repeat the parent's
    labels. (cluster_name, namespace) replaces a separate (cluster_name) index on namespaced tables: its
    prefix serves the same lookups.
    """
    if table.indexes is not None:  # declared by the table's definition (the project's own tables)
        return list(table.indexes)
    names = set(storage_column_names(table))
    json_columns = set(table.json_columns)
    out: list[tuple[tuple[str, ...], str]] = []
    if "namespace" in names:
        out.append((("cluster_name", "namespace"), "btree"))
    if table.name in NODE_JOINED:
        out.append((("cluster_name", NODE_JOINED[table.name]), "btree"))
    if not out:
        out.append((("cluster_name",), "btree"))
    if table.row_per == "container" and "image" in names:
        out.append((("image",), "btree"))
    if table.row_per == "object" and "labels" in json_columns:
        out.append((("labels",), "gin"))
    return out


def index_name(table: str, columns: tuple[str, ...]) -> str:
    name = f"{table}_{'_'.join(columns)}_idx"
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_IDENTIFIER - 9]}_{digest}"


def column_definitions(table: Table) -> list[sql.Composed]:
    """The table's columns as CREATE TABLE lists them (its history's start the same way)."""
    return [
        sql.SQL("    {} {}{}").format(
            sql.Identifier(c.name),
            sql.SQL(column_type(c)),
            sql.SQL(" NOT NULL" if c.name == "cluster_name" else ""),
        )
        for c in storage_columns(table)
    ]


def table_ddl(table: Table) -> list[sql.Composed]:
    """CREATE TABLE and its indexes for one fleet table."""
    defs = column_definitions(table)
    stmts = [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (\n{}\n)").format(
            sql.Identifier(table.name), sql.SQL(",\n").join(defs)
        )
    ]
    for columns, method in index_columns(table):
        target = (
            sql.SQL("USING gin ({} jsonb_path_ops)").format(sql.Identifier(columns[0]))
            if method == "gin"
            else sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
        )
        stmts.append(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} {}").format(
                sql.Identifier(index_name(table.name, columns)), sql.Identifier(table.name), target
            )
        )
    return stmts


def schema_sql() -> str:
    """The whole schema as one SQL script (what `sql/schema.sql` holds)."""
    parts = [
        "-- kq-pipeline schema: GENERATED by `python -m kq_pipeline.db.schema` from the schema registry.",
        "-- Do not edit by hand; kq applies the same DDL itself (`kq db init`, or on first use).",
        "",
        KQ_SCHEMA_DDL,
        "",
        SCHEMA_VERSION_DDL,
        "",
        CLUSTERS_DDL,
        "",
        LOADS_DDL,
    ]
    for table in TABLES.values():
        parts.append("")
        parts.append(f"-- {table.name}: one row per {table.row_per}")
        parts.extend(stmt.as_string(None) + ";" for stmt in table_ddl(table))
    parts += ["", "-- History: every row each cluster held, and when (kq_pipeline/db/history.py)."]
    parts.append(history.CHANGES_DDL)
    for table in TABLES.values():
        parts.append("")
        parts.extend(stmt.as_string(None) + ";" for stmt in history.history_ddl(table))
    parts += ["", "-- Readers and row-level security (kq_pipeline/db/access.py).", access.READERS_DDL]
    parts += ["", access.policies_ddl()]
    return "\n".join(parts) + "\n"


DEADLOCK_RETRIES = 3


def _is_current(cur: psycopg.Cursor[Any], digest: str) -> bool:
    """This DDL was applied and no table has gone since (catalog reads only: no table locks)."""
    if cur.execute("SELECT to_regclass('kq_meta.schema_version') IS NOT NULL").fetchone() != (True,):
        return False
    if cur.execute("SELECT ddl_sha256 FROM kq_meta.schema_version").fetchone() != (digest,):
        return False
    own = cur.execute(
        "SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'"
        " AND relnamespace = 'kq_meta'::regnamespace",
        (["clusters", "loads", "readers"],),
    ).fetchone()
    if own != (3,):
        return False
    expected = list(TABLES)
    present = cur.execute(
        "SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'"
        " AND relnamespace = current_schema()::regnamespace",
        (expected,),
    ).fetchone()
    kept = cur.execute(
        "SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'"
        " AND relnamespace = to_regnamespace(%s)",
        ([*TABLES, history.CHANGE_LOG], history.SCHEMA),
    ).fetchone()
    return present == (len(expected),) and kept == (len(TABLES) + 1,)


def add_missing_columns(cur: psycopg.Cursor[Any]) -> list[str]:
    """Add the registry's columns that a table or its history lacks (a newer release added them).

    Nullable and without a default, so PostgreSQL only records the column in its catalog: no row,
    current or historical, is rewritten, and older history rows read NULL for it. Returns
    "schema.table.column" of each column added."""
    rows = cur.execute(
        "SELECT n.nspname, c.relname, a.attname FROM pg_attribute a"
        " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"
        " AND c.relname = ANY(%s) AND (n.oid = current_schema()::regnamespace OR n.nspname = %s)",
        (list(TABLES), history.SCHEMA),
    ).fetchall()
    have: dict[tuple[bool, str], set[str]] = {}
    for nsp, rel, col in rows:
        have.setdefault((nsp == history.SCHEMA, rel), set()).add(col)
    added: list[str] = []
    for table in TABLES.values():
        for in_history in (False, True):
            present = have.get((in_history, table.name))
            if present is None:
                continue  # not created (yet): CREATE TABLE makes it whole
            target = history.ident(table.name) if in_history else sql.Identifier(table.name)
            for column in storage_columns(table):
                if column.name not in present:
                    cur.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                            target, sql.Identifier(column.name), sql.SQL(column_type(column))
                        )
                    )
                    added.append(f"{history.SCHEMA if in_history else 'public'}.{table.name}.{column.name}")
    return added


def apply_schema(conn: psycopg.Connection, *, force: bool = False) -> None:
    """Create whatever is missing, in one transaction, unless this exact DDL was applied already.

    Every run process calls this. Running the DDL takes a ShareLock on every table (CREATE INDEX IF
    NOT EXISTS locks before it looks), which deadlocked against other runs' loads; so the DDL's hash is
    recorded in `kq_meta.schema_version` and an up-to-date database (same hash, every table there) is left
    untouched; `force` runs the DDL anyway (`kq db init`). A deadlock while upgrading (new DDL, loads
    running) is retried."""
    script = schema_sql()
    digest = hashlib.sha256(script.encode()).hexdigest()
    for attempt in range(DEADLOCK_RETRIES):
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                if not force and _is_current(cur, digest):
                    return
                cur.execute(script.encode())
                add_missing_columns(cur)
                access.apply_reader_grants(cur)  # a table this DDL created is granted like the others
                cur.execute(
                    "INSERT INTO kq_meta.schema_version (ddl_sha256) VALUES (%s) ON CONFLICT (only_row) "
                    "DO UPDATE SET ddl_sha256 = excluded.ddl_sha256, applied_at = now()",
                    (digest,),
                )
                return
        except psycopg.errors.DeadlockDetected:
            if attempt == DEADLOCK_RETRIES - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def main() -> None:
    sys.stdout.write(schema_sql())


if __name__ == "__main__":
    main()
