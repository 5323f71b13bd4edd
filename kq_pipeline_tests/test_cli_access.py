"""`kq db grant-reader / readers / revoke` and `kq clusters trust`, as a user types them."""

from __future__ import annotations

import os

import psycopg
import pytest
from psycopg import sql

from kq_pipeline import inventory
from kq_pipeline.cli import main


@pytest.fixture
def db(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(
            conn,
            [
                inventory.Cluster(name=n, server="https://127.0.0.1:1", token_env="T")
                for n in ("prod-eu-1", "prod-eu-2", "staging-1")
            ],
        )
    return pg_dsn


def test_grant_list_and_revoke_a_team_reader(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    role = f"kq_cli_team_{os.getpid()}"
    try:
        assert main(["db", "grant-reader", role, "--clusters", "prod-eu-*,prod-us-*"]) == 0
        out = capsys.readouterr().out
        assert f"created role {role} (NOLOGIN)" in out
        assert f"{role} may read clusters prod-eu-*, prod-us-* (2 in the inventory now)" in out
        assert main(["db", "readers"]) == 0
        (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(role)]
        assert "prod-eu-*, prod-us-*  (2 clusters now; granted " in line
        assert main(["db", "revoke", role]) == 0
        assert f"{role} may no longer read the fleet" in capsys.readouterr().out
        assert main(["db", "readers"]) == 0
        assert role not in capsys.readouterr().out
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_bad_input_is_one_line_not_a_traceback(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "grant-reader", "analyst", "--clusters", "prod_%"]) == 2
    assert capsys.readouterr().err.strip().startswith("kq: error: invalid cluster glob 'prod_%'")
    assert main(["clusters", "trust"]) == 2
    assert "name the clusters to trust, or --all" in capsys.readouterr().err


def test_trust_signs_a_row_edited_in_the_database_and_says_what_it_trusts(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(db) as conn:
        conn.execute(
            "UPDATE kq_meta.clusters SET server = 'https://10.1.2.3:6443', insecure_skip_tls_verify = true"
            " WHERE name = 'staging-1'"
        )
        with pytest.raises(Exception, match="changed outside kq"):
            inventory.verified_cluster(conn, "staging-1")
    assert main(["clusters", "trust", "staging-1", "ghost"]) == 2
    captured = capsys.readouterr()
    assert "trusted staging-1: https://10.1.2.3:6443  TLS NOT VERIFIED" in captured.out
    assert "no such active cluster: ghost" in captured.err
    with psycopg.connect(db) as conn:
        assert inventory.verified_cluster(conn, "staging-1") is not None
