"""The embedded PostgreSQL: initialised once, kept running between commands, TCP on 127.0.0.1 only,
never running as root, and safe to start from several processes at once."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest

from kq_pipeline.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from kq_pipeline_tests.postgres_fixtures import TEST_SETTINGS

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KQ_TEST_DATABASE_URL")), reason="the session uses KQ_TEST_DATABASE_URL"
)


@pytest.fixture(scope="module")
def session_server(pg_home: Path, pg_server_dsn: str) -> EmbeddedPostgres:
    return EmbeddedPostgres(pg_home / "postgres", settings=TEST_SETTINGS)


def test_status_reports_the_running_server_and_its_recorded_port(session_server, pg_server_dsn):
    status = session_server.status()
    assert status.initialized and status.running
    assert status.dsn == pg_server_dsn
    assert f"port = {status.port}" in (session_server.data_dir / "kq.conf").read_text()
    with psycopg.connect(pg_server_dsn) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW unix_socket_directories").fetchone() == ("",)
        assert conn.execute("SHOW port").fetchone() == (str(status.port),)


def test_the_dsn_carries_no_secret_and_the_passfile_is_private(session_server, pg_server_dsn):
    params = psycopg.conninfo.conninfo_to_dict(pg_server_dsn)
    assert "password" not in params
    assert Path(params["passfile"]) == session_server.passfile
    assert stat.S_IMODE(session_server.passfile.stat().st_mode) == 0o600
    assert stat.S_IMODE(session_server.data_dir.stat().st_mode) == 0o700


def test_a_password_is_required(session_server):
    port = session_server.status().port
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://kq:wrong@127.0.0.1:{port}/kq", connect_timeout=5)


def test_the_server_never_runs_as_root(session_server):
    pid = int((session_server.data_dir / "postmaster.pid").read_text().split()[0])
    assert psutil.Process(pid).uids().effective != 0


def test_ensure_running_is_idempotent(session_server, pg_server_dsn):
    assert session_server.ensure_running() == pg_server_dsn


START = (
    "import sys, pathlib; from kq_pipeline.db.embedded import EmbeddedPostgres as E; "
    "print(E(pathlib.Path(sys.argv[1])).ensure_running())"
)


def test_concurrent_starters_share_one_server_that_outlives_them_and_keeps_data(pg_scratch):
    base = pg_scratch / "postgres"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", START, str(base)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    dsns = {out.strip() for out, _ in outputs}
    assert len(dsns) == 1
    (dsn,) = dsns
    server = EmbeddedPostgres(base)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:  # the starters have all exited
            conn.execute("CREATE TABLE kept (x int)")
        assert server.stop() is True
        assert server.stop() is False
        assert not server.status().running
        assert server.ensure_running() == dsn
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    finally:
        server.stop()


def test_a_port_taken_while_stopped_is_replaced(pg_scratch):
    server = EmbeddedPostgres(pg_scratch / "postgres", settings=TEST_SETTINGS)
    try:
        server.ensure_running()
        port = server.status().port
        server.stop()
        with socket.socket() as squatter:
            # the stopped server's closed connections may leave the port in TIME_WAIT; a listener
            # still keeps PostgreSQL off it (Linux refuses a second bind next to a listening socket)
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            dsn = server.ensure_running()
        assert server.status().port != port
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()


def test_a_start_interrupted_after_initdb_is_finished_by_the_next_start(pg_scratch):
    server = EmbeddedPostgres(pg_scratch / "postgres", settings=TEST_SETTINGS)
    try:
        dsn = server.ensure_running()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
        server.stop()
        server.conf_file.unlink()  # as if the first start died before writing kq.conf
        assert not server.status().initialized
        dsn = server.ensure_running()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
        main_conf = (server.data_dir / "postgresql.conf").read_text()
        assert main_conf.count("include_if_exists = 'kq.conf'") == 1
    finally:
        server.stop()


def test_a_non_empty_foreign_data_dir_is_never_overwritten(pg_scratch):
    server = EmbeddedPostgres(pg_scratch / "postgres")
    server.data_dir.mkdir(parents=True)
    (server.data_dir / "precious.txt").write_text("keep me")
    with pytest.raises(EmbeddedPostgresError, match="not empty"):
        server.ensure_running()
    assert (server.data_dir / "precious.txt").read_text() == "keep me"
