"""The original aggregator's schema beside ours, for query comparisons: kubequery's columns with `labels`
as jsonb, other text as varchar(40000) (annotations varchar(60000)), INTEGER/BIGINT, and no indexes."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from kq_pipeline.db.schema import storage_columns
from kq_pipeline.registry import Column
from kq_pipeline.registry import table as registry_table

SCHEMA = "original"


def original_type(column: Column) -> str:
    if column.name == "labels":
        return "jsonb"
    if column.kq_type == "INTEGER":
        return "integer"
    if column.kq_type == "BIGINT":
        return "bigint"
    return "varchar(60000)" if column.name == "annotations" else "varchar(40000)"


def copy_to_original(conn: psycopg.Connection, tables: Sequence[str]) -> None:
    """Create `original.<table>` for each table and fill it with the rows of `public.<table>`."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    for name in tables:
        columns = storage_columns(registry_table(name))
        target = sql.Identifier(SCHEMA, name)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(
                target,
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(original_type(c)))
                    for c in columns
                ),
            )
        )
        casts = [
            sql.SQL("{}::text").format(sql.Identifier(c.name))
            if c.is_json and c.name != "labels"
            else sql.Identifier(c.name)
            for c in columns
        ]
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                target,
                sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
                sql.SQL(", ").join(casts),
                sql.Identifier("public", name),
            )
        )
