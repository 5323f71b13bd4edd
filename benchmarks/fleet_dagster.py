"""Case 3: a fleet refresh through the real orchestration path.

Many small simulated clusters (child-process fleet), registered from the fleet's kubeconfig, refreshed
by the `refresh_clusters` job run in-process with partition-range tags of `fleet_run_size` clusters
(as `kq load` and the schedule do), with in-run concurrency from PollingSettings. Dagster's cost is
what the wall time spends outside `refresh_clusters` (whose span per run comes from kq_meta.loads).
"""

from __future__ import annotations

import os
import re
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

import psycopg

from benchmarks.sizes import Sizes
from benchmarks.stats import CaseResult, Target

REFRESHED = re.compile(r"cluster\(s\) refreshed in ([0-9.]+)s")
CATALOG = re.compile(r"table catalog ([0-9.]+)s")


@contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _spans(dsn: str, run_ids: list[str]) -> tuple[float, list[float]]:
    """(sum over runs of the refresh span, per-cluster extract+load durations), from kq_meta.loads."""
    with psycopg.connect(dsn) as conn:
        per_run = conn.execute(
            "select run_id, extract(epoch from max(finished_at) - min(started_at)) from kq_meta.loads "
            "where run_id = any(%s) group by run_id",
            (run_ids,),
        ).fetchall()
        per_cluster = conn.execute(
            "select extract(epoch from max(finished_at) - min(started_at)) from kq_meta.loads "
            "where run_id = any(%s) group by run_id, cluster_name",
            (run_ids,),
        ).fetchall()
        failed = conn.execute(
            "select count(*) from kq_meta.loads where run_id = any(%s) and status <> 'success'", (run_ids,)
        ).fetchone()[0]
    if failed:
        raise RuntimeError(f"{failed} table loads failed in the fleet refresh")
    return sum(float(s) for _, s in per_run), [float(s) for (s,) in per_cluster]


def _refresh_fleet(
    instance, job, order: list[str], sizes: Sizes
) -> tuple[float, list[str], float, float, int, int]:
    """One full fleet refresh; returns (wall, run ids, sum of the asset's 'refreshed in' times, sum of
    its 'table catalog' times: the 51 table materializations with their fleet-wide row counts, and
    the events the runs stored in Dagster's event log with their serialized bytes)."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
    from dagster._serdes import serialize_value

    from kq_pipeline.defs.schedules import contiguous_ranges

    run_config = {
        "resources": {"polling": {"config": {"cluster_concurrency": sizes.fleet_concurrency}}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    run_ids: list[str] = []
    rss_mb: list[float] = []
    t0 = time.perf_counter()
    for start, end in contiguous_ranges(order, order, max_len=sizes.fleet_run_size):
        res = job.execute_in_process(
            instance=instance,
            run_config=run_config,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: start,
                ASSET_PARTITION_RANGE_END_TAG: end,
                "kq/reason": "benchmark",
            },
            raise_on_error=True,
        )
        run_ids.append(res.run_id)
        rss_mb.append(_rss_mb())
    wall = time.perf_counter() - t0
    asset_s = catalog_s = 0.0
    events = event_bytes = 0
    for run_id in run_ids:
        for entry in instance.all_logs(run_id):
            events += 1
            event_bytes += len(serialize_value(entry))
            m = REFRESHED.search(entry.user_message or "")
            if m:
                asset_s += float(m.group(1))
            m = CATALOG.search(entry.user_message or "")
            if m:
                catalog_s += float(m.group(1))
    return wall, run_ids, asset_s, catalog_s, events, event_bytes, rss_mb


def _storage_bytes() -> int:
    """On-disk size of the Dagster storage database (the repo's dagster.yaml, DAGSTER_PG_* env)."""
    from psycopg.conninfo import make_conninfo

    conninfo = make_conninfo(
        host=os.environ["DAGSTER_PG_HOST"],
        port=os.environ["DAGSTER_PG_PORT"],
        user=os.environ["DAGSTER_PG_USER"],
        password=os.environ["DAGSTER_PG_PASSWORD"],
        dbname=os.environ["DAGSTER_PG_DB"],
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM")  # what autovacuum does between ticks: deleted rows' space becomes reusable
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def _retention_cycle(instance, job, order: list[str], sizes: Sizes, result: CaseResult) -> None:
    """Refresh, prune every run as the retention job does, refresh again: the storage must not grow.

    Shows that deletion keeps pace with creation and what it costs (seconds per run deleted)."""
    from datetime import timedelta

    from kq_pipeline.defs.retention import prune_runs

    n = len(order)
    before = _storage_bytes()
    _, run_ids, *_ = _refresh_fleet(instance, job, order, sizes)
    first = _storage_bytes()
    t0 = time.perf_counter()
    pruned = prune_runs(instance, timedelta(0), max_runs=len(run_ids) * 4)
    prune_s = time.perf_counter() - t0
    _refresh_fleet(instance, job, order, sizes)
    second = _storage_bytes()
    result.add("Dagster storage on disk per cluster refresh", "bytes", [(first - before) / n])
    result.add("retention: seconds per run deleted", "s", [prune_s / max(1, pruned.deleted)])
    result.add(
        "retention: storage after prune + refresh / after refresh",
        "x",
        [second / first],
        note="1.0 = flat: the next refresh reuses the space the deleted runs freed",
    )
    result.params["retention_runs_deleted"] = pruned.deleted
    result.targets.append(
        Target("storage flat under retention", second / first, 1.1, "x", higher_is_better=False)
    )


def _rss_mb() -> float:
    """This process's resident set now (not the peak): whether it grows with the clusters refreshed."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_thousand(dsn: str, sizes: Sizes, work_dir: Path) -> CaseResult:
    """Case 5: 1,000 clusters of 50 pods through the orchestration path, PostgreSQL storage."""
    fleet = replace(
        sizes,
        fleet_clusters=sizes.thousand_clusters,
        fleet_pods=sizes.thousand_pods,
        fleet_namespaces=3,
        fleet_repeats=1,
    )
    result = run(dsn, fleet, work_dir, postgres_storage=True, case="5-thousand-clusters")
    result.targets = [t for t in result.targets if "bookkeeping" in t.name]  # the 60 s goal is case 3's
    return result


REPO_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"


@contextmanager
def _postgres_instance_env(dsn: str, home: Path) -> Iterator[None]:
    """DAGSTER_HOME with the repo's production dagster.yaml (pooled dagster-postgres storage), its
    storage in a scratch database of the benchmark's own server, dropped afterwards."""
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    password = params.get("password")
    if not password:  # the embedded server's DSN names a libpq passfile instead
        for line in Path(str(params["passfile"])).read_text().splitlines():
            *_, user, secret = line.split(":", 4)
            if user in ("*", params["user"]):
                password = secret
                break
    name = f"kqbench_dagster_{os.getpid()}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    (home / "dagster.yaml").write_text(REPO_DAGSTER_YAML.read_text())
    try:
        with _env(
            DAGSTER_PG_HOST=str(params.get("host", "127.0.0.1")),
            DAGSTER_PG_PORT=str(params.get("port", "5432")),
            DAGSTER_PG_USER=str(params["user"]),
            DAGSTER_PG_PASSWORD=str(password),
            DAGSTER_PG_DB=name,
        ):
            yield
    finally:
        with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
            admin.execute(drop)


def run_postgres_storage(dsn: str, sizes: Sizes, work_dir: Path) -> CaseResult:
    """Case 3 with the deployment's Dagster storage (PostgreSQL, pooled) instead of sqlite, then the
    retention cycle (refresh, prune, refresh) on that storage."""
    return run(dsn, sizes, work_dir, postgres_storage=True, retention=True)


def run(
    dsn: str,
    sizes: Sizes,
    work_dir: Path,
    *,
    postgres_storage: bool = False,
    retention: bool = False,
    case: str | None = None,
) -> CaseResult:
    from dagster import DagsterInstance

    from kq_pipeline import inventory
    from kq_pipeline.definitions import defs
    from kq_pipeline.defs.partitions import CLUSTERS_PARTITIONS_NAME, sync_partitions
    from kq_pipeline.defs.schedules import refresh_job
    from kq_pipeline.simulator.objects import ClusterSpec
    from kq_pipeline.simulator.process import serve_fleet_process

    n = sizes.fleet_clusters
    specs = [
        ClusterSpec(f"fleet-{i:03d}", seed=1000 + i, pods=sizes.fleet_pods, namespaces=sizes.fleet_namespaces)
        for i in range(n)
    ]
    result = CaseResult(
        case or ("3p-fleet-dagster-pg" if postgres_storage else "3-fleet-dagster"),
        "fleet refresh through Dagster (refresh_clusters job, partition ranges, in-process executor)",
        params={
            "clusters": n,
            "pods_per_cluster": sizes.fleet_pods,
            "clusters_per_run": sizes.fleet_run_size,
            "cluster_concurrency": sizes.fleet_concurrency,
            "repeats": sizes.fleet_repeats,
            "dagster_storage": "PostgreSQL (the repo's dagster.yaml, pooled)"
            if postgres_storage
            else "sqlite (DagsterInstance.local_temp)",
        },
    )
    kubeconfig = work_dir / "fleet-kubeconfig.yaml"
    home = work_dir / ("dagster-home-pg" if postgres_storage else "dagster-home")
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    storage = _postgres_instance_env(dsn, home) if postgres_storage else nullcontext()
    t0 = time.perf_counter()
    with (
        serve_fleet_process(specs, kubeconfig),
        _env(KQ_DATABASE_URL=dsn, DAGSTER_HOME=str(home)),
        storage,
    ):
        result.notes.append(f"simulator start ({n} clusters, child process): {time.perf_counter() - t0:.1f}s")
        with psycopg.connect(dsn) as conn:
            inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(kubeconfig))
        instance = (
            DagsterInstance.get() if postgres_storage else DagsterInstance.local_temp(tempdir=str(home))
        )
        sync_partitions(instance, [s.name for s in specs])
        order = instance.get_dynamic_partitions(CLUSTERS_PARTITIONS_NAME)
        job = defs.resolve_job_def(refresh_job.name)
        walls, inner, asset, catalog, ideal, per_cluster_all = [], [], [], [], [], []
        events, event_bytes, rss = [], [], []
        for _ in range(sizes.fleet_repeats):
            wall, run_ids, asset_s, catalog_s, n_events, n_bytes, rss_mb = _refresh_fleet(
                instance, job, order, sizes
            )
            rss.extend(rss_mb)
            events.append(n_events / n)
            event_bytes.append(n_bytes / n)
            refresh_s, per_cluster = _spans(dsn, run_ids)
            if len(per_cluster) != n:
                raise RuntimeError(f"{len(per_cluster)} of {n} clusters were loaded")
            walls.append(wall)
            inner.append(refresh_s)
            asset.append(asset_s)
            catalog.append(catalog_s)
            ideal.append(sum(per_cluster) / sizes.fleet_concurrency)
            per_cluster_all.extend(per_cluster)
        if postgres_storage and retention:
            _retention_cycle(instance, job, order, sizes, result)
        instance.dispose()
    result.add("wall time, whole fleet", "s", walls)
    result.add("wall per cluster", "s", [w / n for w in walls])
    result.add("sum of refresh_clusters spans (kq_meta.loads)", "s", inner)
    result.add("sum of asset bodies ('refreshed in')", "s", asset)
    result.add("ideal: sum(per-cluster extract+load) / concurrency", "s", ideal)
    result.add("per-cluster extract+load (all clusters)", "s", per_cluster_all)
    result.add(
        "orchestration share of wall (outside refresh)",
        "%",
        [100 * (w - i) / w for w, i in zip(walls, inner, strict=True)],
    )
    book = result.add(
        "Dagster bookkeeping per cluster (wall - refresh)/n",
        "s",
        [(w - i) / n for w, i in zip(walls, inner, strict=True)],
    )
    result.add(
        "  of which outside the asset body, per cluster",
        "s",
        [(w - a) / n for w, a in zip(walls, asset, strict=True)],
    )
    result.add("  of which the table catalog, per cluster", "s", [c / n for c in catalog])
    result.add("run process RSS after its first run", "MB", rss[:1])
    result.add("run process RSS after its last run", "MB", rss[-1:])
    result.params["rss_after_each_run_mb"] = [round(r) for r in rss]
    result.add("Dagster events stored per cluster refresh", "events", events)
    result.add("Dagster event bytes per cluster refresh (serialized)", "bytes", event_bytes)
    result.add(
        "in-run parallel efficiency (ideal / refresh span)",
        "x",
        [a / b for a, b in zip(ideal, inner, strict=True)],
    )
    result.params["per_cluster_median_s"] = round(statistics.median(per_cluster_all), 3)
    result.targets.append(
        Target(f"{n} clusters refreshed", statistics.median(walls), 60, "s", higher_is_better=False)
    )
    result.targets.append(
        Target("Dagster bookkeeping per cluster", book.median, 0.15, "s", higher_is_better=False)
    )
    return result
