"""Case 7: a fleet refresh the way a deployment runs it.

The same fleet as case 3 (child-process simulator, registered from its kubeconfig), Dagster storage in
PostgreSQL (the repo's dagster.yaml, as case 3p), and the real `dagster-daemon run` on the repo's
workspace.yaml: the daemon loads the code location in its own code server (gRPC over a unix socket),
its scheduler evaluates the `fleet_refresh` schedule on a tick (`KQ_REFRESH_CRON='* * * * *'`, so
the first minute boundary after the daemon is up) and creates the schedule's own batches as queued
runs; the queued-run coordinator starts at most `concurrency.runs.max_concurrent_runs` of them at
once, each in its own run worker process launched through the code server (DefaultRunLauncher).

The schedule is stopped as soon as its first tick has begun (creating its runs can outlast the
minute to the next tick), so one fleet refresh is measured. The inventory sensor keeps running, as
deployed, with its cursor set to the registered clusters before the daemon starts (the state after
their first loads), so it requests no runs.

Measured from Dagster's run records and event log and from kq_meta.loads: wall = first run created to
last run ended; per run the queue wait (created to started; split into queued, created to the
coordinator daemon's RUN_STARTING, and the launch, RUN_STARTING to RUN_START: the code server
spawning the run worker until it reports "Started process for run", during which the coordinator
daemon waits in its gRPC StartRun call, then the worker loading the job), the run's duration
(started to ended) and its refresh span (kq_meta.loads, as in case 3). Bookkeeping per cluster = (sum of
run durations - sum of refresh spans) / clusters; the launches are reported apart. The daemon's and
code server's start-up is reported but not counted. The daemon's process group is sampled once a
second for the code servers it starts (it replaces its code server every 60 s) and the CPU of the
daemon, code servers, run workers and row workers. `KQ_BENCH_DAEMON_LOG=FILE` keeps the daemon's
log (code server and run output included) there instead of in the run's temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from benchmarks.fleet_dagster import _env, _postgres_instance_env
from benchmarks.sizes import Sizes
from benchmarks.stats import CaseResult, Target

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "workspace.yaml"
SCHEDULE = "fleet_refresh"
SENSOR = "inventory_sensor"
WORKER_UP = "run worker process up"
DAEMON_START_TIMEOUT_S = 180.0
TICK_TIMEOUT_S = 150.0
"""The first tick comes at the first minute boundary after the scheduler's first iteration."""


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no daemon log)"
    return "\n".join(text[-lines:])


def _log_findings(path: Path) -> dict[str, int]:
    """Counts of what went wrong in the deployment path without failing a run (daemon log)."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return {
        "code server shut down (no heartbeat from the daemon in 20 s)": text.count("No heartbeat received"),
        "daemon errors caught": text.count('"Caught an error') + text.count("caught an error"),
        "runs failed to launch": text.count("DagsterLaunchFailedError"),
    }


class _ProcessWatch:
    """Samples the daemon's process group once a second: the code servers (`dagster api grpc`) the
    daemon started and how many were alive at once, and the CPU (user + system, as last sampled, so a
    process's last second may be missed) of the daemon, its code servers, the run workers they spawned
    and those workers' own children (row workers)."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.cpu_s: dict[int, float] = {}  # pid -> utime + stime, last sample
        self.kind: dict[int, str] = {}  # pid -> daemon | code server | run worker | other
        self.max_code_servers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kq-bench-process-watch", daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> _ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(1.0):
                return

    def sample(self) -> None:
        seen: list[tuple[int, int, bool, float]] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is the state, field 3
                if int(fields[2]) != self.pgid:
                    continue
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            cpu = (int(fields[11]) + int(fields[12])) / self._tick
            seen.append((int(entry.name), int(fields[1]), b"api" in argv and b"grpc" in argv, cpu))
        for pid, _, grpc, cpu in seen:
            self.cpu_s[pid] = cpu
            if pid == self.pgid:
                self.kind[pid] = "daemon"
            elif grpc:
                self.kind[pid] = "code server"
        for pid, ppid, _, _ in seen:
            if pid not in self.kind:
                self.kind[pid] = "run worker" if self.kind.get(ppid) == "code server" else "other"
        self.max_code_servers = max(
            self.max_code_servers, sum(1 for pid, *_ in seen if self.kind[pid] == "code server")
        )

    def count(self, kind: str) -> int:
        return sum(1 for k in self.kind.values() if k == kind)

    def cpu(self, kind: str | None = None) -> float:
        return sum(v for pid, v in self.cpu_s.items() if kind is None or self.kind.get(pid) == kind)


def _start_daemon(log_path: Path) -> subprocess.Popen:
    """`dagster-daemon run -w workspace.yaml` in its own process group (so it can be stopped whole)."""
    env = os.environ.copy()
    env.pop("KQ_INVENTORY_FILE", None)  # the sensor syncs only kq_meta.clusters, as registered here
    log = log_path.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "dagster._daemon", "run", "-w", str(WORKSPACE), "--log-format", "json"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def _stop_daemon(proc: subprocess.Popen) -> None:
    """SIGTERM to the daemon's process group (daemon, its code server, their run workers), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    # whatever is left of the group (a code server or run worker that outlived the daemon)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=10)


def _prime_sensor(instance, names: list[str]) -> None:
    """Set the inventory sensor's cursor to the registered clusters, as `dagster sensor cursor --set`
    would (that command also stops a sensor that has no state yet; this keeps it running)."""
    from dagster import __version__
    from dagster._cli.workspace.cli_target import get_repository_from_cli_opts
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        SensorInstigatorData,
    )
    from dagster_shared.cli import WorkspaceOpts

    with get_repository_from_cli_opts(
        instance, __version__, WorkspaceOpts(workspace=[str(WORKSPACE)]), None
    ) as repo:
        sensor = repo.get_sensor(SENSOR)
        if instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id):
            raise RuntimeError(f"{SENSOR} already has a state in a fresh Dagster storage")
        instance.add_instigator_state(
            InstigatorState(
                sensor.get_remote_origin(),
                InstigatorType.SENSOR,
                InstigatorStatus.RUNNING,
                SensorInstigatorData(
                    min_interval=sensor.min_interval_seconds,
                    cursor=json.dumps(sorted(names)),
                    sensor_type=sensor.sensor_type,
                ),
            )
        )


def _schedule_state(instance):
    from dagster._core.scheduler.instigation import InstigatorType

    for state in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE):
        if state.instigator_name == SCHEDULE:
            return state
    return None


def _check_alive(proc: subprocess.Popen, log_path: Path, what: str) -> None:
    if proc.poll() is not None:
        raise RuntimeError(
            f"dagster-daemon exited ({proc.returncode}) while {what}; its log:\n{_log_tail(log_path)}"
        )


def _wait_ready(instance, proc: subprocess.Popen, log_path: Path) -> float:
    """Seconds until the scheduler has loaded the code location and seen the schedule (its first
    iteration writes the schedule's state) and every required daemon has sent a heartbeat."""
    t0 = time.perf_counter()
    required = set(instance.get_required_daemon_types())
    while True:
        _check_alive(proc, log_path, "starting")
        beating = set(instance.get_daemon_heartbeats())
        if required <= beating and _schedule_state(instance) is not None:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > DAEMON_START_TIMEOUT_S:
            raise TimeoutError(
                f"dagster-daemon not ready after {DAEMON_START_TIMEOUT_S:.0f}s (heartbeats: "
                f"{sorted(beating)}, required {sorted(required)}); its log:\n{_log_tail(log_path)}"
            )
        time.sleep(0.5)


def _wait_tick(instance, proc: subprocess.Popen, log_path: Path, runs_timeout_s: float):
    """The schedule's first tick, once it has created its runs. The schedule is stopped as soon as that
    tick has begun: creating the runs can take longer than the minute to the next tick, which the
    scheduler then evaluates at once (one fleet refresh is measured, not two overlapping)."""
    from dagster._core.scheduler.instigation import InstigatorStatus, TickStatus

    state = _schedule_state(instance)
    deadline = time.perf_counter() + TICK_TIMEOUT_S
    stopped = False
    while True:
        _check_alive(proc, log_path, "waiting for the schedule's tick")
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5)
        current = instance.get_instigator_state(state.instigator_origin_id, state.selector_id)
        if ticks and current.status != InstigatorStatus.STOPPED:
            instance.update_instigator_state(current.with_status(InstigatorStatus.STOPPED))
            if stopped:  # the daemon wrote its own copy of the state back over ours
                raise RuntimeError(f"{SCHEDULE} could not be stopped after its first tick")
            stopped = True
            deadline = time.perf_counter() + runs_timeout_s  # now the tick's time to create its runs
        first = min(ticks, key=lambda t: t.timestamp) if ticks else None
        if first is not None:
            if first.status == TickStatus.FAILURE:
                raise RuntimeError(f"{SCHEDULE} tick failed: {first.error}")
            if first.status == TickStatus.SKIPPED:
                raise RuntimeError(f"{SCHEDULE} tick skipped: {first.skip_reason}")
            if first.status == TickStatus.SUCCESS:
                if not first.run_ids:
                    raise RuntimeError(f"{SCHEDULE} tick created no runs")
                return first
        if time.perf_counter() > deadline:
            raise TimeoutError(
                f"no finished {SCHEDULE} tick in time (ticks: "
                f"{[t.status.value for t in ticks]}); daemon log:\n{_log_tail(log_path)}"
            )
        time.sleep(0.2)


def _wait_runs(instance, run_ids: list[str], proc: subprocess.Popen, log_path: Path, timeout_s: float):
    from dagster import DagsterRunStatus, RunsFilter

    finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    t0 = time.perf_counter()
    while True:
        _check_alive(proc, log_path, "the runs were in progress")
        records = instance.get_run_records(filters=RunsFilter(run_ids=run_ids))
        if len(records) == len(run_ids) and all(r.dagster_run.status in finished for r in records):
            return records
        if time.perf_counter() - t0 > timeout_s:
            statuses = sorted(str(r.dagster_run.status.value) for r in records)
            raise TimeoutError(
                f"runs not finished after {timeout_s:.0f}s: {statuses}; daemon log:\n{_log_tail(log_path)}"
            )
        time.sleep(1.0)


def _run_failures(instance, records) -> list[str]:
    from dagster import DagsterEventType, DagsterRunStatus

    out = []
    for r in records:
        if r.dagster_run.status == DagsterRunStatus.SUCCESS:
            continue
        messages = [
            e.user_message or (e.dagster_event.message if e.dagster_event else "")
            for e in instance.all_logs(
                r.dagster_run.run_id,
                of_type={
                    DagsterEventType.RUN_FAILURE,
                    DagsterEventType.STEP_FAILURE,
                    DagsterEventType.ENGINE_EVENT,
                },
            )
        ]
        out.append(f"{r.dagster_run.run_id} {r.dagster_run.status.value}: {' | '.join(messages[-3:])[:600]}")
    return out


def _loads_per_run(dsn: str, run_ids: list[str]) -> dict[str, tuple[float, float, int]]:
    """(first started_at, last finished_at as epoch seconds, clusters) per run, from kq_meta.loads."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select run_id, extract(epoch from min(started_at)), extract(epoch from max(finished_at)), "
            "count(distinct cluster_name) from kq_meta.loads where run_id = any(%s) group by run_id",
            (run_ids,),
        ).fetchall()
    return {run_id: (float(a), float(b), int(c)) for run_id, a, b, c in rows}


def _run_events(instance, run_id: str) -> tuple[dict[str, float], int, int]:
    """Timestamps of the run's lifecycle events by type, and the events stored with their bytes."""
    from dagster._serdes import serialize_value

    stamps: dict[str, float] = {}
    events = n_bytes = 0
    for entry in instance.all_logs(run_id):
        events += 1
        n_bytes += len(serialize_value(entry))
        if entry.dagster_event is not None:
            stamps.setdefault(entry.dagster_event.event_type_value, entry.timestamp)
            text = entry.user_message or entry.dagster_event.message or ""
            if text.startswith("Started process for run"):  # the run worker is up (dagster imported)
                stamps.setdefault(WORKER_UP, entry.timestamp)

    return stamps, events, n_bytes


def run(dsn: str, sizes: Sizes, work_dir: Path) -> CaseResult:
    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    from benchmarks.fleet_dagster import _spans
    from kq_pipeline import inventory
    from kq_pipeline.defs.assets import MAX_CLUSTERS_PER_RUN
    from kq_pipeline.defs.partitions import sync_partitions
    from kq_pipeline.simulator.objects import ClusterSpec
    from kq_pipeline.simulator.process import serve_fleet_process

    n = sizes.fleet_clusters
    specs = [
        ClusterSpec(f"fleet-{i:03d}", seed=1000 + i, pods=sizes.fleet_pods, namespaces=sizes.fleet_namespaces)
        for i in range(n)
    ]
    result = CaseResult(
        "7-fleet-deployment",
        "fleet refresh as deployed (dagster-daemon, schedule tick, queued runs, PostgreSQL storage)",
        params={
            "clusters": n,
            "pods_per_cluster": sizes.fleet_pods,
            "clusters_per_run": MAX_CLUSTERS_PER_RUN,
            "cluster_concurrency": "PollingSettings default (the schedule's runs carry no run config)",
            "dagster_storage": "PostgreSQL (the repo's dagster.yaml, pooled)",
            "workspace": str(WORKSPACE.relative_to(REPO)),
        },
    )
    kubeconfig = work_dir / "deploy-kubeconfig.yaml"
    home = work_dir / "dagster-home-deploy"
    home.mkdir(exist_ok=True)
    log_path = Path(os.environ.get("KQ_BENCH_DAEMON_LOG") or work_dir / "dagster-daemon.log")
    log_path.write_bytes(b"")
    t0 = time.perf_counter()
    with (
        serve_fleet_process(specs, kubeconfig),
        _env(
            KQ_DATABASE_URL=dsn,
            KQ_EMBEDDED_POSTGRES="0",
            KQ_REFRESH_CRON="* * * * *",
            DAGSTER_HOME=str(home),
        ),
        _postgres_instance_env(dsn, home),
    ):
        result.notes.append(f"simulator start ({n} clusters, child process): {time.perf_counter() - t0:.1f}s")
        with psycopg.connect(dsn) as conn:
            inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))
        names = [s.name for s in specs]
        instance = DagsterInstance.get()
        try:
            coordinator = instance.run_coordinator
            result.params["run_coordinator"] = type(coordinator).__name__
            result.params["run_launcher"] = type(instance.run_launcher).__name__
            if type(coordinator).__name__ != "QueuedRunCoordinator":
                raise RuntimeError(f"expected the QueuedRunCoordinator, the instance has {coordinator!r}")
            # what the QueuedRunCoordinatorDaemon applies: dagster.yaml's concurrency.runs merged in
            max_runs = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
            result.params["max_concurrent_runs"] = max_runs
            sync_partitions(instance, names)
            t1 = time.perf_counter()
            _prime_sensor(instance, names)
            result.notes.append(
                f"inventory sensor cursor set (workspace loaded once): {time.perf_counter() - t1:.1f}s"
            )

            daemon = _start_daemon(log_path)
            try:
                with _ProcessWatch(daemon.pid) as watch:
                    ready_s = _wait_ready(instance, daemon, log_path)
                    tick = _wait_tick(instance, daemon, log_path, runs_timeout_s=120 + 2 * n)
                    run_ids = list(tick.run_ids)
                    records = _wait_runs(instance, run_ids, daemon, log_path, timeout_s=300 + 5 * n)
                    # the schedule was stopped at its first tick, the sensor had nothing new: no other run
                    all_fleet_runs = instance.get_run_records(filters=RunsFilter(job_name="refresh_clusters"))
                    watch.sample()
            finally:
                _stop_daemon(daemon)

            failures = _run_failures(instance, records)
            if failures:
                raise RuntimeError(
                    f"{len(failures)} of {len(records)} scheduled runs did not succeed:\n"
                    + "\n".join(failures)
                    + f"\ndaemon log:\n{_log_tail(log_path)}"
                )
            extra = [r.dagster_run for r in all_fleet_runs if r.dagster_run.run_id not in run_ids]
            if extra:
                raise RuntimeError(
                    f"{len(extra)} refresh_clusters run(s) besides the schedule tick's "
                    f"(tags of one: {dict(extra[0].tags)})"
                )
            refresh_s, per_cluster = _spans(dsn, run_ids)  # raises if a table load failed
            if len(per_cluster) != n:
                raise RuntimeError(f"{len(per_cluster)} of {n} clusters were loaded")
            loads = _loads_per_run(dsn, run_ids)

            created = [r.create_timestamp.timestamp() for r in records]
            starts = [float(r.start_time) for r in records]
            ends = [float(r.end_time) for r in records]
            wall = max(ends) - min(created)
            durations = [e - s for s, e in zip(starts, ends, strict=True)]
            queue_wait = [s - c for c, s in zip(created, starts, strict=True)]
            slot_wait, launch, spawn, job_load, before, after = [], [], [], [], [], []
            events = event_bytes = 0
            for r, c, s, e in zip(records, created, starts, ends, strict=True):
                stamps, n_events, n_bytes = _run_events(instance, r.dagster_run.run_id)
                events += n_events
                event_bytes += n_bytes
                # the coordinator daemon reports RUN_STARTING when it takes a run off the queue and
                # hands it to the launcher (there is no RUN_DEQUEUED event on this path)
                starting = stamps.get(DagsterEventType.RUN_STARTING.value)
                if starting is not None:
                    slot_wait.append(starting - c)
                    launch.append(s - starting)
                    if WORKER_UP in stamps:
                        spawn.append(stamps[WORKER_UP] - starting)
                        job_load.append(s - stamps[WORKER_UP])
                first, last, _ = loads[r.dagster_run.run_id]
                before.append(first - s)
                after.append(e - last)
            book = (sum(durations) - refresh_s) / n
        finally:
            instance.dispose()

    result.params["runs"] = len(run_ids)
    result.params["daemon_log"] = findings = _log_findings(log_path)
    result.notes.extend(f"daemon log: {what}: {count}" for what, count in findings.items() if count)
    result.params["clusters_in_each_run"] = sorted(c for *_, c in loads.values())
    result.params["tick_time"] = tick.timestamp
    result.notes.append(
        f"{len(run_ids)} runs from one {SCHEDULE} tick, at most {max_runs} at once "
        f"({result.params['run_coordinator']}, {result.params['run_launcher']})"
    )
    result.add("daemon + code server start (not counted)", "s", [ready_s])
    result.add("tick time -> first run created", "s", [min(created) - tick.timestamp])
    result.add("first -> last run created (schedule's batches)", "s", [max(created) - min(created)])
    result.add("schedule tick: evaluation + creating the runs", "s", [tick.end_timestamp - tick.timestamp])
    result.add("wall time, first run created -> last run ended", "s", [wall])
    result.add("wall per cluster", "s", [wall / n])
    result.add("run-queue wait (created -> started), per run", "s", queue_wait)
    if slot_wait:
        result.add("  of which queued (-> taken off the queue)", "s", slot_wait)
        result.add("  of which launch (-> run worker started run)", "s", launch)
    if spawn:
        result.add("    launch: worker process up (coordinator waits)", "s", spawn)
        result.add("    launch: job load in the worker", "s", job_load)
    result.add("run duration (started -> ended), per run", "s", durations)
    result.add("runs at once (sum of run durations / wall)", "x", [sum(durations) / wall])
    result.add("sum of run durations", "s", [sum(durations)])
    result.add("sum of refresh_clusters spans (kq_meta.loads)", "s", [refresh_s])
    metric = result.add("Dagster bookkeeping per cluster (sum run - refresh)/n", "s", [book])
    result.add("  of which run start -> first load, per cluster", "s", [sum(before) / n])
    result.add("  of which last load -> run end, per cluster", "s", [sum(after) / n])
    if launch:
        result.add("run launches (sum of launch) per cluster", "s", [sum(launch) / n])
    result.add("per-cluster extract+load (all clusters)", "s", per_cluster)
    result.add("code server processes started by the daemon (count)", "x", [watch.count("code server")])
    result.add("  most alive at once (count)", "x", [watch.max_code_servers])
    result.add("CPU, whole case: daemon", "s", [watch.cpu("daemon")])
    result.add("CPU, whole case: code servers", "s", [watch.cpu("code server")])
    result.add("CPU, whole case: run workers", "s", [watch.cpu("run worker")])
    result.add("CPU, whole case: their children (row workers)", "s", [watch.cpu("other")])
    result.add("CPU per cluster, all of the above", "s", [watch.cpu() / n])
    result.add("Dagster events stored per cluster refresh", "events", [events / n])
    result.add("Dagster event bytes per cluster refresh (serialized)", "bytes", [event_bytes / n])
    result.params["per_cluster_median_s"] = round(statistics.median(per_cluster), 3)
    result.targets.append(Target(f"{n} clusters refreshed", wall, 60, "s", higher_is_better=False))
    result.targets.append(
        Target("Dagster bookkeeping per cluster", metric.median, 0.15, "s", higher_is_better=False)
    )
    return result
