"""One kubequery call: run `kubequery/runquery.sh` for one table of one cluster and return its stdout.

The token reaches the child only through its environment (`/proc/<pid>/environ` is private to the
user; `/proc/<pid>/cmdline` is world-readable), and the child gets a minimal environment, so no
other secret of this process (a DSN password, cloud credentials) leaks into basequery. The runner
is started in its own session so a timeout or an abort ends basequery and the extension with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

RUNNER_ENV = "KQ_KUBEQUERY_RUNNER"
DEFAULT_RUNNER = Path(__file__).resolve().parents[2] / "kubequery" / "runquery.sh"
TABLE_TIMEOUT_ENV = "KQ_KUBEQUERY_TABLE_TIMEOUT_S"
DEFAULT_TABLE_TIMEOUT_S = 120.0
# Inherited from this process: what the runner needs to find programs, and its own settings.
PASSED_ENV = ("PATH", "LANG", "LC_ALL")
PASSED_ENV_PREFIXES = ("KQ_BASEQUERY", "KQ_KUBEQUERY_")
STDERR_KEPT = 2000
_POLL_S = 0.2
_TERM_GRACE_S = 2.0


class KubequeryRunError(RuntimeError):
    """A kubequery call failed; the message names cluster and table and never holds a credential."""


class Aborted(KubequeryRunError):
    """Another table of the same cluster failed first, so this call was stopped."""


@dataclass(frozen=True)
class Target:
    """Where and as whom kubequery connects. The token is excluded from repr."""

    cluster_name: str
    address: str
    token: str = field(repr=False)
    ca_file: str | None = None
    tls_server_name: str | None = None
    insecure_skip_tls_verify: bool = False


def runner_path(runner: str | os.PathLike[str] | None = None) -> Path:
    """The runner to call: the argument, else $KQ_KUBEQUERY_RUNNER, else the repo's kubequery/runquery.sh."""
    return Path(runner or os.environ.get(RUNNER_ENV) or DEFAULT_RUNNER)


def table_timeout_s() -> float:
    raw = os.environ.get(TABLE_TIMEOUT_ENV)
    try:
        return float(raw) if raw else DEFAULT_TABLE_TIMEOUT_S
    except ValueError:
        return DEFAULT_TABLE_TIMEOUT_S


def child_env(
    target: Target, cluster_uid: str, tmpdir: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k in PASSED_ENV or k.startswith(PASSED_ENV_PREFIXES)}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["TMPDIR"] = tmpdir
    env["KUBEQUERY_TOKEN"] = target.token
    if target.ca_file:
        env["KUBEQUERY_CA_FILE"] = target.ca_file
    if target.tls_server_name:
        env["KUBEQUERY_TLS_SERVER_NAME"] = target.tls_server_name
    if target.insecure_skip_tls_verify:
        env["KUBEQUERY_INSECURE_SKIP_TLS_VERIFY"] = "1"
    return env


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "<redacted>") if secret else text


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the runner's process group (the runner removes its temp dir), SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, _TERM_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_table(
    runner: Path,
    target: Target,
    table: str,
    *,
    cluster_uid: str,
    index: int,
    tmpdir: str,
    timeout_s: float,
    abort: threading.Event | None = None,
) -> bytes:
    """kubequery's stdout for `select * from <table>;`, or KubequeryRunError (exit code, timeout, abort)."""
    where = f"cluster {target.cluster_name}: kubequery table {table}"
    argv = [str(runner), table, target.address, target.cluster_name, cluster_uid, str(index)]
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(target, cluster_uid, tmpdir),
            start_new_session=True,
            close_fds=True,
        )
    except FileNotFoundError:
        raise KubequeryRunError(f"{where}: runner {runner} not found (set {RUNNER_ENV})") from None
    except PermissionError:
        raise KubequeryRunError(f"{where}: runner {runner} is not executable") from None
    deadline = time.monotonic() + timeout_s
    out = err = b""
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=_POLL_S)
                break
            except subprocess.TimeoutExpired:
                if abort is not None and abort.is_set():
                    _end_group(proc)
                    raise Aborted(f"{where}: stopped because another table of the cluster failed") from None
                if time.monotonic() >= deadline:
                    _end_group(proc)
                    raise KubequeryRunError(f"{where}: timed out after {timeout_s:.0f}s") from None
    finally:
        if proc.returncode is None:
            _end_group(proc)
            proc.communicate()
    if proc.returncode != 0:
        tail = _scrub(err.decode(errors="replace"), target.token).strip()[-STDERR_KEPT:]
        raise KubequeryRunError(
            f"{where}: runner exited with code {proc.returncode}: {tail or '(no stderr)'}"
        )
    return out
