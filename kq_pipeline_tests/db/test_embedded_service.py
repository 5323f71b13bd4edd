"""The embedded PostgreSQL as a shared local service (issue 13): any number of processes find or
start exactly one server, a running server's port never changes, a crash is recovered, `kq db
status` tells what runs where, and the embedded server is used only where it is meant to be."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from kq_pipeline.cli import main
from kq_pipeline.db import embedded as embedded_module
from kq_pipeline.db import postmaster as postmaster_module
from kq_pipeline.db.connection import DatabaseConfigError, DatabaseUnavailable, resolve_dsn
from kq_pipeline.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from kq_pipeline.db.postmaster import processes_using, running_postmaster
from kq_pipeline.defs.resources import FleetDatabase
from kq_pipeline.errors import USER_ERRORS
from kq_pipeline_tests.postgres_fixtures import TEST_SETTINGS

REPO = Path(__file__).resolve().parents[2]
ENV_VARS = ("KQ_DATABASE_URL", "KQ_EMBEDDED_POSTGRES")
STARTER = """
import json, pathlib, sys
import psycopg
from kq_pipeline.db.embedded import EmbeddedPostgres
dsn = EmbeddedPostgres(pathlib.Path(sys.argv[1]), settings=json.loads(sys.argv[2])).ensure_running()
with psycopg.connect(dsn) as conn:
    assert conn.execute("select 1").fetchone() == (1,)
print(dsn)
"""

needs_embedded = pytest.mark.skipif(
    bool(os.environ.get("KQ_TEST_DATABASE_URL")), reason="the session uses KQ_TEST_DATABASE_URL"
)


@pytest.fixture
def server(pg_scratch: Path) -> Iterator[EmbeddedPostgres]:
    """A not yet initialised server in a private KQ_HOME (pg_scratch), always stopped afterwards."""
    srv = EmbeddedPostgres(pg_scratch / "postgres", settings=TEST_SETTINGS)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def no_db_env(monkeypatch: pytest.MonkeyPatch, pg_scratch: Path) -> Path:
    """This process sees neither KQ_DATABASE_URL nor KQ_EMBEDDED_POSTGRES, and KQ_HOME is private."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KQ_HOME", str(pg_scratch))
    return pg_scratch


def _env(kq_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return {**env, "KQ_HOME": str(kq_home), **extra}


def _kq(kq_home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """The real `kq` entry point, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "kq_pipeline.cli", *args],
        env=_env(kq_home, **extra),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _postmasters(data_dir: Path) -> list[int]:
    """PIDs of the postmasters working in `data_dir`: the processes there whose parent is not."""
    parents = {}
    for pid in processes_using(data_dir):
        try:
            parents[pid] = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except FileNotFoundError:  # a backend that just exited
            continue
    return [pid for pid, ppid in parents.items() if ppid not in parents]


def _kill_postmaster(srv: EmbeddedPostgres) -> None:
    """SIGKILL the postmaster and wait until it is dead (a kill is not instantaneous)."""
    os.kill(running_postmaster(srv.data_dir).pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while running_postmaster(srv.data_dir) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _log_count(srv: EmbeddedPostgres, text: str) -> int:
    return srv.log_file.read_text().count(text) if srv.log_file.exists() else 0


# -- one server, whatever the number of processes -----------------------------------------------


@needs_embedded
def test_ten_processes_at_once_share_one_server_on_one_port_from_stopped_and_from_running(server):
    ports: set[int] = set()
    for round_no in range(10):
        from_stopped = round_no < 5
        if from_stopped:
            server.stop()
        starts_before = _log_count(server, "database system is ready to accept connections")
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", STARTER, str(server.base_dir), json.dumps(TEST_SETTINGS)],
                cwd=REPO,
                env=_env(server.base_dir.parent),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(10)
        ]
        outputs = [p.communicate(timeout=180) for p in procs]
        assert [p.returncode for p in procs] == [0] * 10, [err[-1500:] for _, err in outputs if err]
        assert len({out.strip() for out, _ in outputs}) == 1, "every process got the same DSN"
        assert len(_postmasters(server.data_dir)) == 1
        status = server.status()
        ports.add(status.port)
        started = _log_count(server, "database system is ready to accept connections") - starts_before
        assert started == (1 if from_stopped else 0), f"round {round_no}"
    assert len(ports) == 1, "the port never changed"
    assert "lock file" not in server.log_file.read_text()


@needs_embedded
def test_a_stale_pid_of_another_process_does_not_count_as_running(server):
    server.ensure_running()
    port = server.status().port
    server.stop()
    pidfile = server.data_dir / "postmaster.pid"
    # as if the server had crashed and its PID were now this (python) test process
    pidfile.write_text(f"{os.getpid()}\n{server.data_dir}\n0\n{port}\n\n127.0.0.1\n\nready   \n")
    assert running_postmaster(server.data_dir) is None
    assert not server.status().running
    dsn = server.ensure_running()
    assert running_postmaster(server.data_dir).pid != os.getpid()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# -- a running server's port never changes; a failed start changes nothing -----------------------


@needs_embedded
def test_a_failed_running_check_neither_restarts_nor_moves_a_running_server(server, monkeypatch):
    """The reported case: the server runs (so its port is busy), one check wrongly says it is not."""
    dsn = server.ensure_running()
    conf_before = server.conf_file.read_bytes()
    starts_before = _log_count(server, "starting PostgreSQL")
    real = embedded_module.running_postmaster
    wrong_once = [None]

    def flaky(data_dir: Path):
        return wrong_once.pop() if wrong_once else real(data_dir)

    monkeypatch.setattr(embedded_module, "running_postmaster", flaky)
    assert server.ensure_running() == dsn
    assert server.conf_file.read_bytes() == conf_before
    assert _log_count(server, "starting PostgreSQL") == starts_before, "no second start was attempted"
    assert "lock file" not in server.log_file.read_text()


@needs_embedded
def test_a_failed_start_puts_kq_conf_back_and_says_so_in_one_line(server):
    server.ensure_running()
    port = server.status().port
    server.stop()
    conf_before = server.conf_file.read_bytes()
    broken = EmbeddedPostgres(server.base_dir, settings={"shared_buffers": "plenty"})
    with socket.socket() as squatter:  # the recorded port is taken, so the start would pick another
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(EmbeddedPostgresError) as err:
            broken.ensure_running()
    message = str(err.value)
    assert "\n" not in message and "shared_buffers" in message and str(server.log_file) in message
    assert server.conf_file.read_bytes() == conf_before
    assert not [p for p in server.data_dir.iterdir() if p.name.endswith(".tmp")]
    assert server.ensure_running() and server.status().port == port  # the next start is unaffected


@needs_embedded
def test_kq_conf_and_the_password_files_are_private_from_their_creation(server):
    server.ensure_running()
    for f in (server.conf_file, server.passfile):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert server.conf_file.stat().st_uid == server.data_dir.stat().st_uid  # the server user's
    assert not (server.base_dir / "initdb-password").exists()


# -- crash recovery, through the real entry point ------------------------------------------------


@needs_embedded
def test_after_sigkill_of_the_postmaster_the_next_kq_command_recovers_with_the_data(pg_scratch):
    kq_home = pg_scratch
    try:
        url = _kq(kq_home, "db", "url")
        assert url.returncode == 0, url.stderr
        dsn = url.stdout.strip()
        base = EmbeddedPostgres(kq_home / "postgres")
        port = base.status().port
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        held = psycopg.connect(dsn)  # its backend is orphaned by the kill and holds the shared memory
        _kill_postmaster(base)
        assert (base.data_dir / "postmaster.pid").exists(), "a stale postmaster.pid is left behind"

        status = _kq(kq_home, "db", "status")
        assert status.returncode == 0, status.stderr
        assert "embedded PostgreSQL: stopped" in status.stdout  # status starts nothing

        listed = _kq(kq_home, "db", "url")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.strip() == dsn
        assert base.status().running and base.status().port == port
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
        held.close()
    finally:
        stopped = _kq(kq_home, "db", "stop")
        assert stopped.returncode == 0, stopped.stderr


@needs_embedded
def test_a_killed_servers_busy_backend_keeps_a_new_server_off_even_if_its_cwd_is_unreadable(
    server, monkeypatch
):
    """Root without CAP_SYS_PTRACE (a container) cannot read the server user's /proc/PID/cwd, and
    with the recorded PID taken (an unreaped zombie, or reused) PostgreSQL cannot check by itself:
    the shared memory interlock must still keep a new server off until the orphaned backend is gone."""
    dsn = server.ensure_running()
    busy = psycopg.connect(dsn, autocommit=True)
    finished: list[float] = []

    def keep_busy() -> None:  # a CPU-bound loop does not notice the postmaster's death
        loop = "WHILE clock_timestamp() < now() + interval '3 s' LOOP END LOOP"
        try:
            busy.execute(f"DO $$ BEGIN {loop}; END $$")
        finally:
            finished.append(time.time())

    worker = threading.Thread(target=keep_busy)
    worker.start()
    time.sleep(0.5)
    _kill_postmaster(server)
    pidfile = server.data_dir / "postmaster.pid"
    pidfile.write_text("\n".join([str(os.getpid()), *pidfile.read_text().splitlines()[1:]]) + "\n")
    monkeypatch.setattr(postmaster_module, "processes_using", lambda data_dir: [])
    try:
        assert server.ensure_running() == dsn
    finally:
        worker.join()
        busy.close()
    log = server.log_file.read_text()
    assert "still in use" not in log, "we waited for it rather than have PostgreSQL refuse to start"
    parts = log.split("LOG:  starting PostgreSQL")
    assert len(parts) == 3, "started twice: first, then once to recover"
    restart = parts[1].splitlines()[-1][:23]  # the log line prefix: "2026-12-01 22:20:37.167 UTC [pid] "
    started_at = datetime.strptime(restart, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    assert started_at.timestamp() >= finished[0] - 0.05, "the new server started after the orphan ended"


# -- kq db status ----------------------------------------------------------------------------


@needs_embedded
def test_db_status_tells_state_pid_port_paths_user_and_masked_url_without_starting(no_db_env, capsys):
    srv = EmbeddedPostgres(no_db_env / "postgres")
    assert main(["db", "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("embedded PostgreSQL: not initialised\n")
    assert not srv.data_dir.exists(), "status started nothing"
    try:
        srv.ensure_running()
        pm = running_postmaster(srv.data_dir)
        assert main(["db", "status"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("embedded PostgreSQL: running\n")
        for line in (
            f"pid:         {pm.pid}",
            f"port:        {pm.port}",
            f"data dir:    {srv.data_dir}",
            f"log file:    {srv.log_file}",
            f"server user: {srv.status().server_user}",
            f"url:         postgresql://kq@127.0.0.1:{pm.port}/kq?passfile={srv.passfile}",
        ):
            assert f"  {line}\n" in out
        password = srv.passfile.read_text().strip().rpartition(":")[2]
        assert password not in out
        assert main(["db", "stop"]) == 0
        assert main(["db", "status"]) == 0
        out = capsys.readouterr().out
        assert "embedded PostgreSQL: stopped\n" in out and "  pid:         -\n" in out
        assert f"  port:        {pm.port}\n" in out  # the port the next start uses
    finally:
        srv.stop()


def test_db_status_with_an_external_url_shows_it_masked_and_touches_no_embedded_server(
    no_db_env, monkeypatch, capsys
):
    monkeypatch.setenv("KQ_DATABASE_URL", "postgresql://fleet:hunter2@db.example:5432/fleet")
    assert main(["db", "status"]) == 0
    out = capsys.readouterr().out
    assert out == "external database (KQ_DATABASE_URL): postgresql://fleet:***@db.example:5432/fleet\n"
    assert not (no_db_env / "postgres").exists()


# -- the embedded server only where it is meant ----------------------------------------------


def test_a_malformed_url_is_one_line_on_stderr_and_exit_2_through_the_real_entry_point(pg_scratch):
    result = _kq(pg_scratch, "clusters", "list", KQ_DATABASE_URL="not a url")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("kq: error: KQ_DATABASE_URL is not a valid PostgreSQL connection string")
    assert not (pg_scratch / "postgres").exists()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KQ_DATABASE_URL": ""}, "KQ_DATABASE_URL is empty; unset it to use the embedded PostgreSQL"),
        ({"KQ_DATABASE_URL": "  \t"}, "KQ_DATABASE_URL is empty; unset it to use the embedded PostgreSQL"),
        (
            {"KQ_EMBEDDED_POSTGRES": "0"},
            "KQ_DATABASE_URL is not set and the embedded PostgreSQL is disabled (KQ_EMBEDDED_POSTGRES=0)",
        ),
        ({"KQ_EMBEDDED_POSTGRES": "False"}, "the embedded PostgreSQL is disabled"),
        ({"KQ_EMBEDDED_POSTGRES": "no"}, "the embedded PostgreSQL is disabled"),
        ({"KQ_DATABASE_URL": "mysql://kq:hunter2@db/kq"}, "KQ_DATABASE_URL must be a postgresql:// URL"),
        (
            {"KQ_DATABASE_URL": "postgresql://kq:hunter2@db/kq?bogus=1"},
            'invalid URI query parameter: "bogus"',
        ),
        ({"KQ_DATABASE_URL": "postgresql://kq:hunter2%zz@db/kq"}, "not a valid PostgreSQL connection string"),
        ({"KQ_DATABASE_URL": "host=db password=hunter2 secret dbname=kq"}, "password=*** dbname=kq"),
        ({"KQ_DATABASE_URL": 'postgresql://kq:hun"ter2@[::1/kq'}, "not a valid PostgreSQL connection string"),
    ],
)
def test_database_settings_that_cannot_work_are_one_line_exit_2_without_the_password(
    no_db_env, monkeypatch, capsys, env, expected
):
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert main(["clusters", "list"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and expected in captured.err, captured.err
    for secret in ("hunter2", "ter2", "secret"):
        assert secret not in captured.err
    assert not (no_db_env / "postgres").exists(), "no embedded server was started"


def test_config_errors_are_user_errors_and_database_unavailable_so_every_caller_handles_them(
    no_db_env, monkeypatch
):
    monkeypatch.setenv("KQ_EMBEDDED_POSTGRES", "0")
    with pytest.raises(DatabaseUnavailable) as err:
        resolve_dsn()
    assert isinstance(err.value, DatabaseConfigError)
    assert issubclass(DatabaseConfigError, USER_ERRORS)


def test_the_fleet_database_resource_is_configured_by_a_variable_name_never_a_dsn(monkeypatch, pg_empty_dsn):
    from kq_pipeline.definitions import defs

    configured = defs.resources["fleet_db"]
    assert configured.url_env == "KQ_DATABASE_URL"
    monkeypatch.setenv("KQ_TEST_FLEET_URL", pg_empty_dsn)
    assert FleetDatabase(url_env="KQ_TEST_FLEET_URL").dsn() == pg_empty_dsn
    with psycopg.connect(pg_empty_dsn) as conn:  # the schema was applied on first use
        assert conn.execute("SELECT to_regclass('kq_meta.clusters') IS NOT NULL").fetchone() == (True,)
