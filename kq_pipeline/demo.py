"""`kq demo`: a simulated fleet, the embedded PostgreSQL and the Dagster UI, from one command.

The fleet runs in a child process (so serving it does not compete with loading for the GIL) and
writes a kubeconfig under $KQ_HOME/demo; the clusters are registered from it, loaded once through
the same Dagster job as everything else, and then `dagster dev` serves the UI, schedule and sensor
until Ctrl-C or SIGTERM, also when the demo runs in the background (a script, a service manager).
Stopping ends every process the demo started; only the embedded PostgreSQL stays, as after any
`kq` command, and the demo says so.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from kq_pipeline.settings import dagster_home, kq_home

STOP_GRACE_S = 6.0
"""How long `dagster dev` gets to stop its services before the rest of its session is signalled."""
KILL_WAIT_S = 3.0
"""How long what is left of the session gets after SIGTERM, before SIGKILL."""

# Varied sizes, so the UI's charts and the fleet queries have something to compare.
DEMO_FLEET: tuple[tuple[int, int], ...] = ((60, 4), (150, 6), (300, 8), (600, 12), (1200, 20))
# Different CRD sets per cluster (one without any), so the custom-resource queries have certificates
# and Argo CD applications in several clusters; custom objects default to half the pods.
DEMO_OPERATORS: tuple[tuple[str, ...], ...] = (
    (),
    ("cert-manager", "argocd"),
    ("cert-manager", "prometheus-operator", "argocd", "istio"),
    ("cert-manager", "prometheus-operator", "istio"),
    ("argocd", "istio"),
)

DEMO_CHURN = 0.02
DEMO_CHURN_INTERVAL_S = 60.0
"""The demo fleet changes a little between loads (2 % of the objects a minute), as live clusters do, so
the change feed and the history have something to show."""

QUERY_HINTS = """
Data for {n} simulated clusters is in PostgreSQL. Query it with:

  psql '{dsn}'

  -- namespaces and pods per cluster
  select cluster_name, count(distinct namespace) ns_count, count(*) pod_cnt
  from kubernetes_pods group by cluster_name;

  -- most used container images
  select image, count(*) from kubernetes_pod_containers group by image order by 2 desc limit 10;

  -- custom resources per cluster and kind
  select cluster_name, api_group, kind, count(*) from kubernetes_custom_resources group by 1, 2, 3;
"""


def demo_specs(clusters: int) -> list:
    from kq_pipeline.simulator.objects import ClusterSpec

    return [
        ClusterSpec(
            name=f"demo-{i}",
            seed=100 + i,
            pods=DEMO_FLEET[i % len(DEMO_FLEET)][0],
            namespaces=DEMO_FLEET[i % len(DEMO_FLEET)][1],
            operators=DEMO_OPERATORS[i % len(DEMO_OPERATORS)],
        )
        for i in range(clusters)
    ]


def run_demo(
    *,
    clusters: int,
    ui: bool,
    port: int,
    kq: Callable[[list[str]], int],
    churn: float = DEMO_CHURN,
    churn_interval: float = DEMO_CHURN_INTERVAL_S,
) -> int:
    """`kq` runs a kq sub-command in this process (cli.main), so the demo is made of ordinary commands.
    The fleet changes `churn` of its objects every `churn_interval` seconds (0: never)."""
    from kq_pipeline.extract import row_workers

    _stop_on_signals()
    try:
        return _demo(clusters, ui, port, kq, churn, churn_interval)
    finally:
        row_workers.shutdown()  # idle by now: the load is over
        for line in left_running():
            print(line, flush=True)


def _demo(
    clusters: int, ui: bool, port: int, kq: Callable[[list[str]], int], churn: float, churn_interval: float
) -> int:
    from kq_pipeline.db.connection import masked_dsn, resolve_dsn
    from kq_pipeline.simulator.process import serve_fleet_process

    kubeconfig = kq_home() / "demo" / "kubeconfig.yaml"
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting {clusters} simulated clusters ...", flush=True)
    options = {"churn": churn, "churn_interval": churn_interval} if churn > 0 else {}
    with serve_fleet_process(demo_specs(clusters), kubeconfig, **options) as fleet:
        for name, url in fleet.urls.items():
            print(f"  {name}  {url}")
        if churn > 0:
            print(f"  each changes {churn:.0%} of its objects every {churn_interval:g} s (--churn)")
        for step in (["db", "init"], ["clusters", "add", "--kubeconfig", str(kubeconfig)], ["load"]):
            code = kq(step)
            _stop_on_signals()  # an in-process Dagster run resets them
            if code != 0:
                return code
        print(QUERY_HINTS.format(n=clusters, dsn=masked_dsn(resolve_dsn())), flush=True)
        if not ui:
            return 0
        return _serve_ui(port)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Ctrl-C, SIGTERM and a closed terminal all stop the demo the same way (KeyboardInterrupt).

    SIGINT is set explicitly: a shell starts background jobs with it ignored. SIGHUP stays ignored
    under nohup."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _interrupt)


def left_running() -> list[str]:
    """What the demo leaves running on purpose: the embedded PostgreSQL (not with KQ_DATABASE_URL)."""
    if os.environ.get("KQ_DATABASE_URL") is not None:
        return []
    try:
        from kq_pipeline.db.embedded import embedded_status

        status = embedded_status()
    except Exception:  # saying what is left must never turn an exit into a traceback
        return []
    if not getattr(status, "running", False):
        return []
    return [
        f"embedded PostgreSQL still running on 127.0.0.1:{status.port} (data in {status.base_dir}); "
        "stop it with `kq db stop`"
    ]


def dagster_dev_env() -> dict[str, str]:
    """The environment of `dagster dev`, less two kinds of noise no user can act on.

    - `SupersessionWarning: Function dev_command is superseded ... Use 'dg dev'`: kq starts
      `dagster dev` itself (`dg dev` needs a dg project); the filter matches that one message only.
    - gRPC's `fork_posix.cc ... skipping fork() handlers`: the code server runs pg_ctl (fork + exec)
      while its gRPC threads are busy. The fork handlers exist for children that use gRPC after a
      fork without exec, which no Dagster or kq process does; gRPC documents turning them off then.
    """
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home())}
    env.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    env["PYTHONWARNINGS"] = ",".join(w for w in (env.get("PYTHONWARNINGS"), DEV_SUPERSEDED_WARNING) if w)
    return env


DEV_SUPERSEDED_WARNING = "ignore:Function `dev_command` is superseded"


def _serve_ui(port: int) -> int:
    """Run `dagster dev` (webserver + daemon) on 127.0.0.1 until stopped, in a session of its own
    (so a terminal's Ctrl-C reaches only the demo, which then stops it in order)."""
    cmd = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)]
    # warning level: the query hints printed above stay readable under the services' start-up logs
    cmd += ["--log-level", "warning", "-m", "kq_pipeline.definitions"]
    log_path = kq_home() / "demo" / "dagster.log"
    print(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops the UI and the simulated fleet)", flush=True)
    print(f"  its full log: {log_path}", flush=True)
    # cwd: dagster dev warns about any dagster.yaml in the current folder that DAGSTER_HOME doesn't use.
    proc = subprocess.Popen(
        cmd,
        env=dagster_dev_env(),
        start_new_session=True,
        cwd=dagster_home(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    relay = LogRelay(proc.stdout, log_path, sys.stdout)
    try:
        return proc.wait()  # only if dagster dev ends by itself (a port in use): it said why
    except KeyboardInterrupt:
        relay.forward = False  # what stopping makes the services say is for the log file only
        print("stopping the Dagster UI and the simulated fleet ...", flush=True)
        return 0
    finally:
        stop_session(proc)
        relay.join(timeout=5)


DAGSTER_LOG_LINE = re.compile(
    r"^(?:\x1b\[[0-9;]*m)?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}(?:\x1b\[[0-9;]*m)? - [^ ]+ - "
    r"(?:\x1b\[[0-9;]*m)?(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b"
)


class LogRelay(threading.Thread):
    """Copies everything `dagster dev` and its processes print into a log file, and all but Dagster's
    DEBUG and INFO lines to the terminal.

    The run workers the schedule and sensor start log every event of their run (about 100 lines a
    run) at DEBUG on the console they inherit; `--log-level` only reaches the services. A line that
    continues a log record (a stack trace) goes where its record went."""

    def __init__(self, source: IO[bytes], log_path: Path, out: TextIO) -> None:
        super().__init__(name="kq-dagster-log", daemon=True)
        self.source = source
        self.log_path = log_path
        self.out = out
        self.forward = True
        self.start()

    def run(self) -> None:
        shown = True
        with open(self.log_path, "ab") as log:
            for raw in iter(self.source.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace")
                record = DAGSTER_LOG_LINE.match(line)
                if record:
                    shown = record.group(1) not in ("DEBUG", "INFO")
                if shown and self.forward:
                    try:
                        self.out.write(line)
                        self.out.flush()
                    except (OSError, ValueError):  # the terminal or pipe is gone: keep draining
                        self.forward = False


def stop_session(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """End `proc` (a session leader) and every process of its session.

    `dagster dev` shuts its webserver, daemon and code servers down on SIGTERM; run workers and the
    row workers they spawned may outlive that (Dagster starts them with plain fork + exec, so they
    stay in the session, reparented to init once their parent is gone). Those get SIGTERM, and what
    is still there a few seconds later SIGKILL. A second Ctrl-C skips the waiting."""
    sid = proc.pid
    try:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
        _signal_all(session_members(sid), signal.SIGTERM)
        _wait_gone(lambda: session_members(sid), KILL_WAIT_S)
    except KeyboardInterrupt:
        pass
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the last sweep must finish
        try:
            _signal_all(session_members(sid), signal.SIGKILL)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            _wait_gone(lambda: session_members(sid), 2.0)  # SIGKILL is delivered asynchronously
        finally:
            signal.signal(signal.SIGINT, previous)


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid` (zombies excluded), from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ", which may hold spaces
        state, session = fields[0], int(fields[3])
        if session == sid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(members: Callable[[], list[int]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while members() and time.monotonic() < deadline:
        time.sleep(0.1)
