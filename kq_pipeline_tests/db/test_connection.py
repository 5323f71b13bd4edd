"""Where the database is, and that a password never shows."""

from __future__ import annotations

import os
import socket

import psycopg
import pytest

from kq_pipeline.db.connection import DatabaseUnavailable, connect, masked_dsn, resolve_dsn


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("postgresql://kq:s3cr%40t@db:5432/kq", "postgresql://kq:***@db:5432/kq"),
        ("postgres://kq:pw@db/kq?sslmode=require", "postgres://kq:***@db/kq?sslmode=require"),
        (
            "postgresql://kq@db/kq?password=pw&sslmode=require",
            "postgresql://kq@db/kq?password=***&sslmode=require",
        ),
        ("host=db user=kq password=pw dbname=kq", "host=db user=kq password=*** dbname=kq"),
        ("host=db password='p w\\'x' dbname=kq", "host=db password=*** dbname=kq"),
        (
            "postgresql://kq@127.0.0.1:5/kq?passfile=/x/pgpass",
            "postgresql://kq@127.0.0.1:5/kq?passfile=/x/pgpass",
        ),
    ],
)
def test_masked_dsn_hides_every_password_form(dsn, masked):
    assert masked_dsn(dsn) == masked


def test_database_url_wins_over_the_embedded_server(monkeypatch, tmp_path):
    monkeypatch.setenv("KQ_DATABASE_URL", "postgresql://u:p@db.example:5432/fleet")
    monkeypatch.setenv("KQ_HOME", str(tmp_path))
    assert resolve_dsn() == "postgresql://u:p@db.example:5432/fleet"
    assert not (tmp_path / "postgres").exists()


def test_without_a_url_the_embedded_server_of_kq_home_is_used(monkeypatch, pg_home, pg_server_dsn):
    if os.environ.get("KQ_TEST_DATABASE_URL"):
        pytest.skip("the session uses KQ_TEST_DATABASE_URL, not an embedded server")
    monkeypatch.delenv("KQ_DATABASE_URL", raising=False)
    monkeypatch.setenv("KQ_HOME", str(pg_home))
    dsn = resolve_dsn()
    assert psycopg.conninfo.conninfo_to_dict(dsn)["dbname"] == "kq"
    assert "password" not in psycopg.conninfo.conninfo_to_dict(dsn)
    with connect() as conn:
        assert conn.execute("SELECT current_user, inet_server_addr()::text").fetchone() == (
            "kq",
            "127.0.0.1/32",
        )


def test_an_unreachable_server_raises_database_unavailable_without_the_password():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(DatabaseUnavailable) as err:
            connect(f"postgresql://kq:hunter2-secret@127.0.0.1:{port}/kq")
    assert "hunter2-secret" not in str(err.value)
    assert f"127.0.0.1:{port}" in str(err.value)
