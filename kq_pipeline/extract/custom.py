"""Custom resources: the CRD list once per refresh, then each established kind once, at its preferred version.

The CRD list (paged like every list) gives kubernetes_custom_resource_definitions (every CRD, whatever
the selection) and the kinds to list. A kind is listed when its CRD is Established and the cluster's
selection (`collect.custom_kinds`) takes it, at the version discovery prefers for its group if that
version serves it, else the highest served version (the CRD's own list when discovery lacks the kind).

One kind failing never fails the table: kubernetes_custom_resources gets the other kinds' rows, and
the failed kinds in `kept_kinds`, so the load keeps their previous rows and says why. Failing means a
list error (403, 5xx after retries, the deadline) or more objects than `max_objects_per_kind`
(never a silent truncation). A CRD that is not established yet is skipped and noted; one removed
mid-refresh (404) has no objects. If the CRD list itself fails, both tables fail as any table does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from kq_pipeline.collect import Collect
from kq_pipeline.extract.discovery import Discovery, version_priority
from kq_pipeline.extract.result import Row, TableExtract
from kq_pipeline.kube.client import KubeClient
from kq_pipeline.kube.errors import KubeError, KubeForbidden, KubeNotFound
from kq_pipeline.registry import CUSTOM_RESOURCE_DEFINITIONS_TABLE as CRD_TABLE
from kq_pipeline.registry import CUSTOM_RESOURCES_TABLE as CR_TABLE
from kq_pipeline.rows.custom import (
    CustomKind,
    crd_is_established,
    crd_kind,
    crd_not_established_reason,
    crd_row,
    custom_resource_row,
    served_versions,
)

log = logging.getLogger(__name__)

CUSTOM_TABLES = (CRD_TABLE, CR_TABLE)
CRD_GROUP = "apiextensions.k8s.io"
CRD_RESOURCE = "customresourcedefinitions"


class TooManyObjects(Exception):
    """A kind has more objects than the selection's limit: not loaded rather than truncated."""


@dataclass
class _KindList:
    kind: CustomKind
    version: str
    rows: list[Row] = field(default_factory=list)
    error: str | None = None
    note: str | None = None


def _reason(cluster: str, exc: BaseException) -> str:
    return str(exc).removeprefix(f"cluster {cluster}: ")


def list_version(disc: Discovery, crd: dict, kind: CustomKind) -> tuple[str | None, str | None]:
    """(version to list, note): discovery's preferred version of the group if it serves the kind,
    else its highest served version; the CRD's served versions when discovery does not show the kind."""
    served = [v for v, k in disc.served_versions(kind.group, kind.plural).items() if k == kind.kind]
    if served:
        preferred = disc.preferred.get(kind.group)
        return (preferred if preferred in served else max(served, key=version_priority)), None
    versions = served_versions(crd)
    if not versions:
        return None, None
    return max(versions, key=version_priority), "not in discovery: listed at the CRD's highest served version"


def _list_kind(
    client: KubeClient,
    job: _KindList,
    cluster_name: str,
    cluster_uid: str,
    page_limit: int,
    max_objects: int,
) -> None:
    """Every object of one kind, page by page, into rows; raises TooManyObjects past the limit."""
    kind, version = job.kind, job.version
    api_version = f"{kind.group}/{version}"
    path = f"/apis/{api_version}/{kind.plural}"
    rows = job.rows

    def restart() -> None:  # 410 mid-list: the pages so far belong to an abandoned snapshot
        rows.clear()

    pages = client.list_pages(path, limit=page_limit, on_restart=restart)
    try:
        for items in pages:
            if len(rows) + len(items) > max_objects:
                raise TooManyObjects(f"more than {max_objects} objects (limit), not loaded")
            rows.extend(custom_resource_row(o, kind, api_version, cluster_name, cluster_uid) for o in items)
    finally:
        pages.close()  # past the limit: no further page is requested


def _kind_failure(cluster: str, exc: BaseException) -> str:
    if isinstance(exc, TooManyObjects):
        return str(exc)
    if isinstance(exc, KubeForbidden):
        return f"permission denied: {_reason(cluster, exc)}"
    if isinstance(exc, KubeError):
        return _reason(cluster, exc)
    return f"rows could not be built: {exc.__class__.__name__}: {exc}"


def _failed(cluster: str, tables: Sequence[str], why: str, duration: float) -> dict[str, TableExtract]:
    return {t: TableExtract(t, None, f"cluster {cluster}: table {t}: {why}", 0, duration) for t in tables}


def extract_custom(
    client: KubeClient,
    disc: Discovery,
    cluster_name: str,
    cluster_uid: str,
    tables: Sequence[str],
    collect: Collect,
    *,
    page_limit: int = 500,
) -> dict[str, TableExtract]:
    """The custom-resource tables among `tables`; never raises for a cluster-side failure."""
    t0 = time.perf_counter()
    tables = [t for t in CUSTOM_TABLES if t in tables]
    if not tables:
        return {}
    if not disc.served_versions(CRD_GROUP, CRD_RESOURCE):
        why = next((w for gv, w in disc.failed.items() if gv.startswith(f"{CRD_GROUP}/")), None)
        if why:
            why = f"discovery failed: {_reason(cluster_name, why)}"
            return _failed(cluster_name, tables, why, time.perf_counter() - t0)
        note = f"CustomResourceDefinition ({CRD_RESOURCE}.{CRD_GROUP}) is not served: empty table"
        return {t: TableExtract(t, [], None, 0, 0.0, note) for t in tables}
    try:
        crds = client.list_all(f"/apis/{CRD_GROUP}/v1/{CRD_RESOURCE}", limit=page_limit)
    except KubeError as exc:
        return _failed(cluster_name, tables, _kind_failure(cluster_name, exc), time.perf_counter() - t0)
    out: dict[str, TableExtract] = {}
    if CRD_TABLE in tables:
        try:
            rows = [crd_row(c, cluster_name, cluster_uid) for c in crds]
        except Exception as exc:  # a row bug fails this table, not the cluster
            log.exception("cluster %s: building rows of %s failed", cluster_name, CRD_TABLE)
            why = _kind_failure(cluster_name, exc)
            out.update(_failed(cluster_name, [CRD_TABLE], why, time.perf_counter() - t0))
        else:
            out[CRD_TABLE] = TableExtract(CRD_TABLE, rows, None, len(crds), time.perf_counter() - t0)
    if CR_TABLE in tables:
        out[CR_TABLE] = _custom_resources(
            client, disc, crds, cluster_name, cluster_uid, collect, page_limit, t0
        )
    return out


def _custom_resources(
    client: KubeClient,
    disc: Discovery,
    crds: list[dict],
    cluster_name: str,
    cluster_uid: str,
    collect: Collect,
    page_limit: int,
    t0: float,
) -> TableExtract:
    notes: list[str] = []
    jobs: list[_KindList] = []
    not_selected = 0
    for crd in crds:
        kind = crd_kind(crd)
        if not (kind.group and kind.kind and kind.plural):
            notes.append(f"CRD {kind.crd_name or '?'} names no group, kind or plural: skipped")
            continue
        if not collect.kind_collected(kind.group, kind.kind, kind.plural):
            not_selected += 1
            continue
        if not crd_is_established(crd):
            why = crd_not_established_reason(crd)
            notes.append(f"{kind.label}: CRD {kind.crd_name} not established ({why}): skipped")
            continue
        version, note = list_version(disc, crd, kind)
        if version is None:
            notes.append(f"{kind.label}: CRD {kind.crd_name} serves no version: skipped")
            continue
        jobs.append(_KindList(kind, version, note=note))
    kept: dict[tuple[str, str], str] = {}
    rows: list[Row] = []
    for job in jobs:  # one kind at a time: the built-in lists run beside this in the extractor's pool
        try:
            _list_kind(client, job, cluster_name, cluster_uid, page_limit, collect.max_objects_per_kind)
        except KubeNotFound:  # the CRD went away since the CRD list: so did its objects
            notes.append(f"{job.kind.label}: no longer served (CRD removed during the refresh): no rows")
            continue
        except Exception as exc:  # one kind's failure must not sink the others
            if not isinstance(exc, KubeError | TooManyObjects):
                log.exception("cluster %s: building rows of %s failed", cluster_name, job.kind.label)
            kept[(job.kind.group, job.kind.kind)] = _kind_failure(cluster_name, exc)
            continue
        if job.note:
            notes.append(f"{job.kind.label}: {job.note} ({job.version})")
        rows.extend(job.rows)
    if not_selected:
        notes.append(f"{not_selected} custom kind(s) not selected (collect.custom_kinds)")
    objects = len(rows)
    return TableExtract(
        CR_TABLE,
        rows,
        None,
        objects,
        time.perf_counter() - t0,
        "; ".join(notes) or None,
        kept_kinds=kept,
    )
