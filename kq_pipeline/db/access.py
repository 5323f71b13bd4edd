"""Who may read what in the fleet database: reader roles, per-team cluster scopes, row-level security.

The pipeline's own role (the one in KQ_DATABASE_URL) owns every table and is the only writer; table
owners are not subject to row-level security, so loads pay nothing for it. A reader is a role
registered in `kq_meta.readers` by `kq db grant-reader ROLE [--clusters GLOB ...]`:

* it may SELECT every fleet table, their history (`history.*`, the change feed included) and the
  freshness view `kq_latest_loads`, and nothing else: no write anywhere, and of the inventory
  `kq_meta.clusters` only the `name` column (server URLs, kubeconfig paths, token files and CA stay hidden);
* with `--clusters`, only the rows of the clusters whose names match one of its globs (`prod-eu-*`),
  through one policy on every fleet and history table, the change feed and the load records; a
  cluster added later that matches is visible at once (the match is made at query time).

The policy compares `cluster_name` with an array computed once per query (an InitPlan), so a team's
query still uses the `(cluster_name, ...)` indexes. The policies and grants come from the registry,
applied by `apply_schema`, so a table added by a later release is covered when the schema is applied;
grants are then re-applied to every registered reader.

Superusers and roles with BYPASSRLS ignore row-level security: `grant-reader --clusters` refuses them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from kq_pipeline.db import history
from kq_pipeline.registry import TABLES

POLICY = "kq_reader_v1"
"""The policy's name on every table; a later release that changes the rule bumps the version."""
ROLE_PATTERN = re.compile(r"^[a-z_][a-z0-9_$-]{0,62}$")
GLOB_PATTERN = re.compile(r"^[a-z0-9*?-]{1,63}$")

READERS_DDL = """\
CREATE TABLE IF NOT EXISTS kq_meta.readers (
    role_oid oid PRIMARY KEY,
    role name NOT NULL,
    clusters text[],
    patterns text[],
    granted_at timestamptz NOT NULL DEFAULT now(),
    granted_by name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE kq_meta.readers IS
    'Roles given read access by `kq db grant-reader`: clusters holds the globs (NULL = every cluster), '
    'patterns the same as LIKE patterns, which the row-level security policies match cluster names with.';
ALTER TABLE kq_meta.readers ENABLE ROW LEVEL SECURITY;
ALTER TABLE kq_meta.clusters ENABLE ROW LEVEL SECURITY;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_policy
                   WHERE polrelid = 'kq_meta.readers'::regclass AND polname = 'kq_own_grant') THEN
        -- A reader sees its own grants (and those of the roles it belongs to), not other teams'.
        CREATE POLICY kq_own_grant ON kq_meta.readers FOR SELECT USING (pg_has_role(role_oid, 'USAGE'));
    END IF;
    IF NOT EXISTS (SELECT FROM pg_policy
                   WHERE polrelid = 'kq_meta.clusters'::regclass AND polname = 'kq_reader_v1') THEN
        CREATE POLICY kq_reader_v1 ON kq_meta.clusters FOR SELECT USING (EXISTS (
            SELECT FROM kq_meta.readers r WHERE pg_has_role(r.role_oid, 'USAGE')
            AND (r.patterns IS NULL OR name LIKE ANY (r.patterns))));
    END IF;
END $$;
-- Security invoker: evaluated with the reader's rights, so kq_meta.clusters' policy does the matching.
CREATE OR REPLACE FUNCTION kq_meta.visible_clusters() RETURNS text[]
    LANGUAGE sql STABLE SECURITY INVOKER SET search_path = pg_catalog
    AS $$ SELECT coalesce(array_agg(name), '{}') FROM kq_meta.clusters $$;
REVOKE ALL ON FUNCTION kq_meta.visible_clusters() FROM PUBLIC;"""


def secured_tables() -> list[str]:
    """Every table a reader's rows are filtered in, schema-qualified: the fleet tables (in the
    current schema), their history, the change feed's log and the load records."""
    return [
        *(sql.Identifier(t).as_string(None) for t in TABLES),
        *(history.ident(t).as_string(None) for t in TABLES),
        f"{history.SCHEMA}.{history.CHANGE_LOG}",
        "kq_meta.loads",
    ]


def policies_ddl() -> str:
    """Row-level security on every secured table, created where missing (no lock where present)."""
    names = ", ".join(sql.Literal(t).as_string(None) for t in secured_tables())
    return f"""\
DO $$
DECLARE
    t regclass;
BEGIN
    FOREACH t IN ARRAY ARRAY[{names}]::regclass[] LOOP
        IF NOT (SELECT relrowsecurity FROM pg_class WHERE oid = t) THEN
            EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
        END IF;
        IF NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = t AND polname = '{POLICY}') THEN
            EXECUTE format('CREATE POLICY {POLICY} ON %s FOR SELECT USING ('
                           'cluster_name = ANY ((SELECT kq_meta.visible_clusters())::text[]))', t);
        END IF;
    END LOOP;
END $$;"""


class AccessError(ValueError):
    """A user mistake or a refused grant: reported as one line, not a traceback."""


@dataclass(frozen=True)
class Reader:
    role: str
    clusters: tuple[str, ...] | None
    """Globs; None: every cluster."""
    matching: int
    """Clusters of the inventory its globs match now."""
    granted_at: datetime
    granted_by: str


def like_pattern(glob: str) -> str:
    """A cluster-name glob as a LIKE pattern (names hold no % or _, so only * and ? translate)."""
    if not GLOB_PATTERN.match(glob):
        raise AccessError(f"invalid cluster glob {glob!r}: use lowercase letters, digits, '-', '*' and '?'")
    return glob.replace("*", "%").replace("?", "_")


def _check_role(role: str) -> str:
    if not ROLE_PATTERN.match(role):
        raise AccessError(f"invalid role name {role!r}: lowercase letters, digits, '_', '$' and '-'")
    return role


def _grants(role: str, *, revoke: bool = False) -> list[sql.Composed]:
    """What a reader is given (or, `revoke`, taken back)."""
    verb, to = (sql.SQL("REVOKE"), sql.SQL("FROM")) if revoke else (sql.SQL("GRANT"), sql.SQL("TO"))
    r = sql.Identifier(role)
    tables = sql.SQL(", ").join(sql.SQL(t) for t in secured_tables())
    schemas = sql.SQL(", ").join(map(sql.Identifier, ("public", history.SCHEMA, "kq_meta")))
    return [
        sql.SQL("{} USAGE ON SCHEMA {} {} {}").format(verb, schemas, to, r),
        sql.SQL("{} SELECT ON {}, kq_latest_loads, history.changes, kq_meta.readers {} {}").format(
            verb, tables, to, r
        ),
        sql.SQL("{} SELECT (name) ON kq_meta.clusters {} {}").format(verb, to, r),
        sql.SQL("{} EXECUTE ON FUNCTION kq_meta.visible_clusters() {} {}").format(verb, to, r),
    ]


def apply_reader_grants(cur: psycopg.Cursor) -> list[str]:
    """Grant every registered reader what readers get (after the schema created a new table)."""
    cur.execute("SELECT r.role FROM kq_meta.readers r JOIN pg_roles p ON p.oid = r.role_oid ORDER BY r.role")
    roles = [role for (role,) in cur.fetchall()]
    for role in roles:
        for stmt in _grants(role):
            cur.execute(stmt)
    return roles


def grant_reader(conn: psycopg.Connection, role: str, clusters: Sequence[str] = ()) -> tuple[Reader, bool]:
    """Make `role` a reader (of every cluster, or of those matching `clusters`); creates the role
    (NOLOGIN) if missing. Returns the reader and whether the role was created."""
    _check_role(role)
    patterns = [like_pattern(g) for g in clusters] or None
    created = False
    with conn.transaction(), conn.cursor() as cur:
        row = cur.execute(
            "SELECT oid, rolsuper OR rolbypassrls, rolname = current_user FROM pg_roles WHERE rolname = %s",
            (role,),
        ).fetchone()
        if row is None:
            try:
                cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
            except psycopg.errors.InsufficientPrivilege:
                raise AccessError(
                    f"role {role} does not exist and this database user may not create roles: "
                    f"create it first (CREATE ROLE {role} LOGIN PASSWORD '...')"
                ) from None
            created = True
            row = cur.execute("SELECT oid, false, false FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        oid, bypasses, is_self = row
        if is_self:
            raise AccessError(f"role {role} is the pipeline's own role: it owns the data already")
        if bypasses and patterns is not None:
            raise AccessError(
                f"role {role} is a superuser or has BYPASSRLS, so row-level security cannot limit it to "
                f"{', '.join(clusters)}: use an ordinary role"
            )
        for stmt in _grants(role):
            cur.execute(stmt)
        cur.execute(
            "INSERT INTO kq_meta.readers (role_oid, role, clusters, patterns) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (role_oid) DO UPDATE SET role = EXCLUDED.role, clusters = EXCLUDED.clusters,"
            " patterns = EXCLUDED.patterns, granted_at = now(), granted_by = current_user",
            (oid, role, list(clusters) or None, patterns),
        )
    (reader,) = [r for r in list_readers(conn) if r.role == role]
    return reader, created


def revoke_reader(conn: psycopg.Connection, role: str) -> bool:
    """Take a reader's access away (the role itself stays); False if it was not a reader."""
    _check_role(role)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "DELETE FROM kq_meta.readers WHERE role_oid = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (role,),
        )
        was_reader = cur.rowcount == 1
        exists = cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if exists:
            for stmt in _grants(role, revoke=True):
                cur.execute(stmt)
    return was_reader


def list_readers(conn: psycopg.Connection) -> list[Reader]:
    """Every reader, with how many inventory clusters its globs match now."""
    with conn.cursor() as cur:
        cur.execute(
            """
            SELECT r.role, r.clusters,
                   (SELECT count(*) FROM kq_meta.clusters c
                    WHERE r.patterns IS NULL OR c.name LIKE ANY (r.patterns)),
                   r.granted_at, r.granted_by
            FROM kq_meta.readers r ORDER BY r.role
            """
        )
        return [
            Reader(role, tuple(globs) if globs is not None else None, n, at, by)
            for role, globs, n, at, by in cur.fetchall()
        ]
