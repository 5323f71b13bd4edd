"""Is a PostgreSQL server running in a data directory? Decided from `postmaster.pid` and /proc, here.

Not from `pg_ctl status`: that is a child process, and a child that fails for its own reasons (in
issue 13 it died of SIGSEGV between fork and exec inside a gRPC code server) must never be taken
for a stopped server. Reading small files cannot fail that way.

`postmaster.pid` (PostgreSQL's src/include/utils/pidfile.h) holds, one per line: the postmaster's
PID, the data directory, its start time, the port, the socket directory, the listen address, the
SysV shared memory key and id, and the status (`starting`, `ready`, `stopping`, `standby`). A PID
only counts when it is a live, non-zombie `postgres` process working in this data directory (the
postmaster chdirs there), so a stale file whose PID was reused by another process does not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Postmaster:
    """What postmaster.pid says; `running_postmaster` only returns one whose process is alive."""

    pid: int
    port: int | None
    status: str
    """`ready` once it accepts connections; empty while the file is still being written."""
    shmid: int | None = None

    @property
    def ready(self) -> bool:
        return self.status == "ready" and self.port is not None


def read_pidfile(data_dir: Path) -> Postmaster | None:
    """The content of `data_dir/postmaster.pid`, unverified; None if there is none or it is junk."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    lines += [""] * (8 - len(lines))
    try:
        pid = abs(int(lines[0]))  # negative for a single-user backend
    except ValueError:
        return None
    shm = lines[6].split()
    return Postmaster(
        pid=pid,
        port=int(lines[3]) if lines[3].strip().isdigit() else None,
        status=lines[7].strip(),
        shmid=int(shm[1]) if len(shm) == 2 and shm[1].isdigit() else None,
    )


def running_postmaster(data_dir: Path) -> Postmaster | None:
    """The live postmaster of `data_dir`, or None when no server runs there."""
    recorded = read_pidfile(data_dir)
    return recorded if recorded and is_server_of(recorded.pid, data_dir) else None


def is_server_of(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is a live PostgreSQL process working in `data_dir`."""
    if pid <= 0:
        return False
    if not PROC.is_dir():  # not Linux: the best we can do is "some process has that PID"
        return pid_exists(pid)
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    comm, _, rest = stat.partition("(")[2].rpartition(")")
    if comm != "postgres" or rest.split()[:1] in (["Z"], ["X"]):  # zombies hold nothing
        return False
    return _works_in(pid, data_dir)


def leftovers(data_dir: Path) -> bool:
    """Whether processes of a killed server still hold `data_dir`: its orphaned backends keep
    working there, attached to its shared memory, until they notice and exit."""
    return bool(processes_using(data_dir)) or shared_memory_in_use(data_dir)


def processes_using(data_dir: Path) -> list[int]:
    """PIDs of the processes working in `data_dir` whose working directory we may read."""
    if not PROC.is_dir():
        return []
    target = data_dir.resolve()
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == target:
                    found.append(int(entry.name))
            except OSError:  # gone, or not ours to read (root without CAP_SYS_PTRACE in a container)
                continue
    return found


def shared_memory_in_use(data_dir: Path) -> bool:
    """PostgreSQL's own interlock: is anything attached to the SysV segment postmaster.pid names?
    /proc/sysvipc/shm is world-readable, so this works where other processes' /proc entries do not."""
    recorded = read_pidfile(data_dir)
    if recorded is None or recorded.shmid is None:
        return False
    try:
        rows = (PROC / "sysvipc" / "shm").read_text().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        cols = row.split()  # key shmid perms size cpid lpid nattch ...
        if len(cols) > 6 and cols[1] == str(recorded.shmid):
            return int(cols[6]) > 0
    return False


def pid_exists(pid: int) -> bool:
    """Whether any process (a zombie too) has this PID."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _works_in(pid: int, data_dir: Path) -> bool:
    try:
        return Path(os.readlink(PROC / str(pid) / "cwd")) == data_dir.resolve()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except PermissionError:  # hidepid, or root without CAP_SYS_PTRACE: its command line then
        try:
            args = (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return False
        return str(data_dir) in args or str(data_dir.resolve()) in args
