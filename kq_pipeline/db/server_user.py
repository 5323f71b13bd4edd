"""Who runs the embedded PostgreSQL server.

PostgreSQL refuses to run as root. When kq runs as root (containers, CI), the server runs as an
unprivileged system user instead: `KQ_POSTGRES_USER` if set, else `kq-postgres`, created with
`useradd --system` when missing. As any other user, the server runs as that user itself.

That user must reach its data directory through folders that are root's and often private (/root,
a 0700 KQ_HOME). It is given search permission (x: pass through, not list) on exactly those folders,
and to itself alone: a POSIX ACL entry `user:<server user>:--x` (written as the
`system.posix_acl_access` extended attribute, what `setfacl -m u:kq-postgres:x DIR` does, so no `acl`
package is needed). Only on a filesystem without ACL support does a folder get `o+x` instead (every
local user may then pass through it; the data directory itself stays 0700), with a warning.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import shutil
import stat
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_SERVER_USER = "kq-postgres"
_DROP_PRIVILEGES = (
    "import os, sys; uid, gid = int(sys.argv[1]), int(sys.argv[2]); os.setgroups([]); "
    "os.setresgid(gid, gid, gid); os.setresuid(uid, uid, uid); os.execv(sys.argv[3], sys.argv[3:])"
)


class ServerUserError(RuntimeError):
    """The unprivileged server user cannot be found or created."""


# --- POSIX ACLs, in the Linux xattr format (include/uapi/linux/posix_acl_xattr.h) --------------------
ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_ACL_HEADER = struct.Struct("<I")
_ACL_ENTRY = struct.Struct("<HHI")  # tag, permissions (rwx bits), uid/gid
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_NO_ID = 0xFFFFFFFF
_SEARCH = 0o1
_ACL_UNSUPPORTED = {errno.ENOTSUP, errno.EOPNOTSUPP}


def read_acl(path: Path) -> list[tuple[int, int, int]] | None:
    """The access ACL of `path` as (tag, permissions, id) entries; None when it has none beyond its mode."""
    try:
        raw = os.getxattr(path, ACL_XATTR)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise
    (version,) = _ACL_HEADER.unpack_from(raw)
    if version != _ACL_VERSION:
        raise OSError(errno.EINVAL, f"unknown POSIX ACL version {version}", str(path))
    return list(_ACL_ENTRY.iter_unpack(raw[_ACL_HEADER.size :]))


def grant_search_acl(path: Path, uid: int) -> None:
    """Add search (x) for user `uid` to the ACL of directory `path`, as `setfacl -m u:UID:x` does,
    changing nothing else but the mask, which gains x so the entry takes effect. OSError with errno
    ENOTSUP/EOPNOTSUPP where the filesystem has no ACLs."""
    if not hasattr(os, "setxattr"):
        raise OSError(errno.ENOTSUP, "extended attributes are not available on this platform", str(path))
    entries = read_acl(path)
    if entries is None:  # the minimal ACL the mode stands for
        mode = stat.S_IMODE(path.stat().st_mode)
        entries = [
            (ACL_USER_OBJ, mode >> 6 & 7, _NO_ID),
            (ACL_GROUP_OBJ, mode >> 3 & 7, _NO_ID),
            (ACL_OTHER, mode & 7, _NO_ID),
        ]
    by_key = {(tag, ident): perm for tag, perm, ident in entries}
    user_perm = by_key.get((ACL_USER, uid), 0)
    mask = by_key.get((ACL_MASK, _NO_ID))
    if user_perm & _SEARCH and mask is not None and mask & _SEARCH:
        return  # already granted
    by_key[(ACL_USER, uid)] = user_perm | _SEARCH
    if mask is None:  # a first named entry needs a mask: the group class's union, as setfacl computes it
        mask = by_key[(ACL_GROUP_OBJ, _NO_ID)] | _SEARCH
    by_key[(ACL_MASK, _NO_ID)] = mask | _SEARCH
    body = b"".join(_ACL_ENTRY.pack(tag, perm, ident) for (tag, ident), perm in sorted(by_key.items()))
    os.setxattr(path, ACL_XATTR, _ACL_HEADER.pack(_ACL_VERSION) + body)


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
        """Let the server user pass through `path` and every folder above it: search (x, not read)
        for that user alone by an ACL entry, `o+x` only where the filesystem has no ACLs.

        Needed when running as root with the data directory under a 0700 home such as /root. A folder
        the user can already pass through (its own, o+x, or its group's with g+x) is left as it is.
        """
        if self.is_self:
            return
        for parent in [path, *path.parents]:
            st = parent.stat()
            if (
                st.st_uid == self.uid
                or st.st_mode & stat.S_IXOTH
                or (st.st_gid == self.gid and st.st_mode & stat.S_IXGRP and read_acl(parent) is None)
            ):
                continue
            try:
                grant_search_acl(parent, self.uid)
            except OSError as exc:
                if exc.errno not in _ACL_UNSUPPORTED:
                    raise
                log.warning(
                    "%s: no POSIX ACL support, so o+x instead: every local user may pass through it "
                    "(the server user %s needs to)",
                    parent,
                    self.name,
                )
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
