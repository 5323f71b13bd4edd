"""Who runs the embedded PostgreSQL server.

PostgreSQL refuses to run as root. When kq runs as root (containers, CI), the server runs as an
unprivileged system user instead: `KQ_POSTGRES_USER` if set, else `kq-postgres`, created with
`useradd --system` when missing. As any other user, the server runs as that user itself.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SERVER_USER = "kq-postgres"
_DROP_PRIVILEGES = (
    "import os, sys; uid, gid = int(sys.argv[1]), int(sys.argv[2]); os.setgroups([]); "
    "os.setresgid(gid, gid, gid); os.setresuid(uid, uid, uid); os.execv(sys.argv[3], sys.argv[3:])"
)


class ServerUserError(RuntimeError):
    """The unprivileged server user cannot be found or created."""


@dataclass(frozen=True)
class ServerUser:
    name: str
    uid: int
    gid: int

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()

    def run(self, args: list[str], *, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as this user (dropping root's supplementary groups too).

        The switch happens in a small Python child, not through subprocess's `user=`: with `user=`
        CPython forks instead of vforking, which runs every pthread_atfork handler in the child, and
        gRPC's (loaded in Dagster code servers) can crash it before exec (issue 13: SIGSEGV).
        """
        if not self.is_self:
            args = [sys.executable, "-I", "-S", "-c", _DROP_PRIVILEGES, str(self.uid), str(self.gid), *args]
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
            check=False,
        )

    def own(self, path: Path, mode: int) -> None:
        if not self.is_self:
            os.chown(path, self.uid, self.gid)
        path.chmod(mode)

    def allow_traversal(self, path: Path) -> None:
        """Give the server user search (x, not read) permission on every ancestor of `path`.

        Needed when running as root with the data directory under a 0700 home such as /root.
        """
        if self.is_self:
            return
        for parent in [path, *path.parents]:
            st = parent.stat()
            if st.st_uid == self.uid:
                continue
            if not st.st_mode & stat.S_IXOTH:
                parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)

    def allow_access(self, tree: Path) -> None:
        """Let the server user reach and read the PostgreSQL install (`tree`): a venv created
        under a restrictive umask would otherwise hide the binaries, libraries and share files."""
        if self.is_self:
            return
        self.allow_traversal(tree)
        readable = stat.S_IROTH
        for dirpath, _dirnames, filenames in os.walk(tree):
            d = Path(dirpath)
            mode = stat.S_IMODE(d.stat().st_mode)
            if mode & 0o005 != 0o005:
                d.chmod(mode | 0o005)
            for name in filenames:
                f = d / name
                st = f.lstat()
                if stat.S_ISLNK(st.st_mode):
                    continue
                mode = stat.S_IMODE(st.st_mode)
                wanted = readable | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
                if mode & wanted != wanted:
                    f.chmod(mode | wanted)


def server_user() -> ServerUser:
    """The user the server runs as: the current user, or an unprivileged one when we are root."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    name = os.environ.get("KQ_POSTGRES_USER") or DEFAULT_SERVER_USER
    entry = _lookup(name) or _create(name)
    if entry.pw_uid == 0:
        raise ServerUserError(f"KQ_POSTGRES_USER={name} is root; PostgreSQL cannot run as root")
    return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _create(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    if not Path(useradd).exists():
        raise ServerUserError(
            f"running as root and system user {name!r} is missing, and useradd is not available: "
            "create an unprivileged user and set KQ_POSTGRES_USER to its name"
        )
    proc = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "kq-pipeline embedded PostgreSQL",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    entry = _lookup(name)  # a concurrent creator may have won the race: that is fine too
    if entry is None:
        raise ServerUserError(f"could not create system user {name!r}: {proc.stderr.strip()}")
    return entry
