"""The benchmark's own PostgreSQL: an embedded server in its own data directory, a scratch database per case.

The server runs with PostgreSQL's default (durable) settings, as a user's embedded server would.
`--dsn` points the benchmark at another server instead (its user needs CREATEDB).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from kq_pipeline.db.embedded import EmbeddedPostgres
from kq_pipeline.db.schema import apply_schema


@contextmanager
def bench_server(data_dir: Path | None, dsn: str | None) -> Iterator[str]:
    """The server DSN: `dsn` as given, or an embedded server under `data_dir` stopped on exit."""
    if dsn:
        yield dsn
        return
    assert data_dir is not None
    server = EmbeddedPostgres(data_dir / "postgres")
    url = server.ensure_running()
    try:
        yield url
    finally:
        server.stop()


@contextmanager
def scratch_database(server_dsn: str, name: str, *, schema: bool = True) -> Iterator[str]:
    """A fresh database (kq schema applied unless told otherwise), dropped afterwards."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(server_dsn, dbname=name)
    try:
        if schema:
            with psycopg.connect(dsn) as conn:
                apply_schema(conn)
        yield dsn
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(drop)
