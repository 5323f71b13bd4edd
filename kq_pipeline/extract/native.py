"""The native extractor: list a cluster's resources through the API and build kubequery rows.

Per poll: GET kube-system (its uid is the cluster uid) and /version, read discovery, then list each
needed resource ONCE (pods feed kubernetes_pods, _pod_containers and _pod_volumes), several
resources at a time, turning each page into rows as it arrives so raw pages never pile up (from a
list's second page on, partly in worker processes: see `row_workers`).
A table whose list fails gets `rows=None` and an error naming cluster and table; the others load.
A kind the cluster no longer serves (PodSecurityPolicy since 1.25) gives an empty table and a note.
The custom-resource tables come from the CRD list and each selected kind's list (see `custom`),
beside the built-in lists in the same pool.

`kubernetes_events` differs from kubequery by nature: kubequery streams informer events; a poll
sees the Events that exist at poll time, each as one "add" row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kq_pipeline.collect import Collect
from kq_pipeline.extract import row_workers
from kq_pipeline.extract.custom import CUSTOM_TABLES, extract_custom
from kq_pipeline.extract.discovery import Discovery, ListTarget, discover
from kq_pipeline.extract.prefetch import RESTART, prefetched
from kq_pipeline.extract.result import ClusterExtract, Row, TableExtract
from kq_pipeline.extract.row_workers import PageResult, PageRows, build_page
from kq_pipeline.kube.access import ClusterAccess
from kq_pipeline.kube.client import KubeClient
from kq_pipeline.kube.errors import KubeError, KubeForbidden
from kq_pipeline.kube.list_meta import MalformedList
from kq_pipeline.registry import table as registry_table
from kq_pipeline.rows import kubequery_rows

log = logging.getLogger(__name__)

INFO_TABLE = "kubernetes_info"
API_RESOURCES_TABLE = "kubernetes_api_resources"
EVENTS_NOTE = "events listed at poll time (kubequery streams informer events instead)"
# Listed first: the big lists bound the poll's duration, so start them before the small ones.
_BIG_FIRST = ("pods", "events", "replicasets", "secrets", "configmaps", "endpoints")


@dataclass
class _Job:
    target: ListTarget
    tables: list[str]
    is_secret: bool
    note: str | None = None
    rows: dict[str, list[Row]] = field(default_factory=dict)
    objects: int = 0


def _reason(cluster: str, exc: BaseException) -> str:
    return str(exc).removeprefix(f"cluster {cluster}: ")


def _table_error(cluster: str, table: str, exc: BaseException) -> str:
    if isinstance(exc, KubeForbidden):
        return f"cluster {cluster}: table {table}: permission denied: {_reason(cluster, exc)}"
    if isinstance(exc, KubeError):
        return f"cluster {cluster}: table {table}: {_reason(cluster, exc)}"
    return f"cluster {cluster}: table {table}: rows could not be built: {exc.__class__.__name__}: {exc}"


def _list_job(
    client: KubeClient, job: _Job, cluster_name: str, cluster_uid: str, limit: int, now: datetime
) -> None:
    """List one resource page by page into the rows of every table that reads it."""
    job.rows = {t: [] for t in job.tables}
    job.objects = 0
    path = job.target.path
    names = tuple(job.tables)

    def build_inline(body: bytes) -> PageResult:
        return build_page(body, names, cluster_name, cluster_uid, now, secrets=job.is_secret)

    pages = PageRows(
        names,
        cluster_name,
        cluster_uid,
        now,
        build_inline,
        parallel=not job.is_secret,  # a Secret's page never leaves this process
        remaining_s=client.remaining_s,
    )

    def collect(results: Iterator[PageResult]) -> None:
        try:
            for count, built in results:
                for name, rows in built.items():
                    job.rows[name].extend(rows)
                job.objects += count
        except MalformedList as exc:  # the page is not a list (parsed here or by a worker)
            raise client.malformed(path, exc) from None

    bodies = prefetched(lambda on_restart: client.list_bodies(path, limit=limit, on_restart=on_restart))
    try:
        for body in bodies:
            if body is RESTART:  # 410 mid-list: the pages so far belong to an abandoned snapshot
                pages.discard()
                for rows in job.rows.values():
                    rows.clear()
                job.objects = 0
                continue
            collect(pages.add(body))
            del body
        collect(pages.finish())
    finally:
        pages.discard()


def _failed_all(
    cluster_name: str, tables: Sequence[str], exc: BaseException, duration: float
) -> dict[str, TableExtract]:
    return {t: TableExtract(t, None, _table_error(cluster_name, t, exc), 0, duration) for t in tables}


def extract_cluster(
    access: ClusterAccess,
    cluster_name: str,
    tables: Sequence[str],
    *,
    concurrency: int = 4,
    deadline_s: float = 300,
    page_limit: int = 500,
    client: KubeClient | None = None,
    collect: Collect | None = None,
) -> ClusterExtract:
    """Every requested table of one cluster; never raises for a cluster-side failure.

    `collect` chooses the custom kinds and their object limit (the caller has already left out the
    tables it excludes: those are not in `tables`)."""
    t0 = time.perf_counter()
    wanted = list(dict.fromkeys(tables))
    for name in wanted:
        registry_table(name)  # unknown names are a caller bug: raise UnknownTableError now
    own_client = client is None
    client = client or KubeClient(access, deadline_s=deadline_s, pool_size=max(1, concurrency) + 1)
    now = datetime.now(UTC)
    try:
        try:
            kube_system = client.get_json("/api/v1/namespaces/kube-system")
            cluster_uid = str((kube_system.get("metadata") or {}).get("uid") or "")
            version = client.get_json("/version")
        except KubeError as exc:
            log.warning("%s", exc)
            out = ClusterExtract(cluster_name, None, {}, _failed_all(cluster_name, wanted, exc, 0.0))
            out.error = str(exc)
            out.duration_s = time.perf_counter() - t0
            return out
        result = ClusterExtract(cluster_name, cluster_uid, version)
        if INFO_TABLE in wanted:
            rows = kubequery_rows(INFO_TABLE, [version], cluster_name=cluster_name, cluster_uid=cluster_uid)
            result.tables[INFO_TABLE] = TableExtract(INFO_TABLE, rows, None, 1, time.perf_counter() - t0)
        rest = [t for t in wanted if t != INFO_TABLE]
        if rest:
            _extract_listed(client, result, rest, concurrency, page_limit, now, t0, collect or Collect())
        result.tables = {t: result.tables[t] for t in wanted}
        result.duration_s = time.perf_counter() - t0
        return result
    finally:
        if own_client:
            client.close()


def _extract_listed(
    client: KubeClient,
    result: ClusterExtract,
    tables: list[str],
    concurrency: int,
    page_limit: int,
    now: datetime,
    t0: float,
    collect: Collect,
) -> None:
    name, uid = result.cluster_name, result.cluster_uid or ""
    try:
        disc = discover(client, concurrency=concurrency)
    except KubeError as exc:
        result.tables.update(_failed_all(name, tables, exc, time.perf_counter() - t0))
        return
    if API_RESOURCES_TABLE in tables:
        result.tables[API_RESOURCES_TABLE] = _api_resources(disc, name, uid, time.perf_counter() - t0)

    jobs: dict[str, _Job] = {}
    for t in tables:
        if t == API_RESOURCES_TABLE or t in CUSTOM_TABLES:
            continue
        src = registry_table(t).source
        target = disc.resolve(src)
        if target is None:
            why = disc.group_version_failed(src)
            if why:  # discovery of the group broke: we do not know whether the kind is served
                result.tables[t] = TableExtract(
                    t, None, f"cluster {name}: table {t}: discovery failed: {_reason(name, why)}", 0, 0.0
                )
            else:
                note = (
                    f"{src.kind} ({src.resource}.{src.api_group}) is not served by this cluster "
                    f"(Kubernetes {result.server_version.get('gitVersion', '?')}): empty table"
                )
                result.tables[t] = TableExtract(t, [], None, 0, 0.0, note)
            continue
        job = jobs.get(target.path)
        if job is None:
            note = None
            if target.group_version != (src.group_version or "").removeprefix("core/"):
                note = f"listed {target.kind} at {target.group_version} (kubequery reads {src.group_version})"
            is_secret = target.kind == "Secret" and target.group_version == "v1"
            job = jobs[target.path] = _Job(target, [], is_secret=is_secret, note=note)
        job.tables.append(t)

    def run(job: _Job) -> tuple[_Job, BaseException | None, float]:
        start = time.perf_counter()
        try:
            _list_job(client, job, name, uid, page_limit, now)
        except Exception as exc:  # one resource's failure (or row bug) must not sink the other tables
            if not isinstance(exc, KubeError):
                log.exception("cluster %s: building rows of %s failed", name, job.tables)
            job.rows = {}
            return job, exc, time.perf_counter() - start
        return job, None, time.perf_counter() - start

    order = sorted(
        jobs.values(),
        key=lambda j: (
            j.target.resource not in _BIG_FIRST,
            _BIG_FIRST.index(j.target.resource) if j.target.resource in _BIG_FIRST else 0,
        ),
    )
    big = [tuple(j.tables) for j in order if j.target.resource in _BIG_FIRST and not j.is_secret]
    row_workers.warm_up(big)
    custom = [t for t in tables if t in CUSTOM_TABLES]

    def run_custom() -> dict[str, TableExtract]:
        try:
            return extract_custom(client, disc, name, uid, custom, collect, page_limit=page_limit)
        except Exception as exc:  # a bug here must not sink the built-in tables
            log.exception("cluster %s: custom resources failed", name)
            return {t: TableExtract(t, None, _table_error(name, t, exc), 0, 0.0) for t in custom}

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=f"kq-{name}") as pool:
        custom_future = pool.submit(run_custom) if custom else None  # first: it may be big
        for job, exc, duration in pool.map(run, order):
            for t in job.tables:
                if exc is not None:
                    result.tables[t] = TableExtract(t, None, _table_error(name, t, exc), 0, duration)
                    continue
                note = EVENTS_NOTE if t == "kubernetes_events" else job.note
                result.tables[t] = TableExtract(t, job.rows[t], None, job.objects, duration, note)
        if custom_future is not None:
            result.tables.update(custom_future.result())


def _api_resources(disc: Discovery, name: str, uid: str, duration: float) -> TableExtract:
    if disc.failed:
        failed = ", ".join(sorted(disc.failed))
        return TableExtract(
            API_RESOURCES_TABLE,
            None,
            f"cluster {name}: table {API_RESOURCES_TABLE}: discovery of {failed} failed: "
            f"{_reason(name, next(iter(disc.failed.values())))}",
            0,
            duration,
        )
    lists: list[dict[str, Any]] = disc.resource_lists
    rows = kubequery_rows(API_RESOURCES_TABLE, lists, cluster_name=name, cluster_uid=uid)
    return TableExtract(API_RESOURCES_TABLE, rows, None, len(rows), duration)
