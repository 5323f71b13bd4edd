"""Case 11: what row-level security costs (issue 17: loads within 5 % with it on vs off, same run).

Loads: a simulated cluster's 53 tables are extracted once and built into typed frames; then every
table's snapshot is replaced (`replace_snapshot`, history on, as a refresh does) again and again, with
row-level security enabled on every secured table (fleet, history, change log, load records) and
disabled (`ALTER TABLE ... DISABLE ROW LEVEL SECURITY`), alternating. The pipeline's role owns the
tables, and owners are not subject to the policies, so the two should cost the same.

Queries: the same rows loaded as 20 clusters; the original's two fleet queries and a drill-down (one
namespace of one cluster) timed as the owner, as a reader of every cluster and as a team reader of
one cluster (`kq db grant-reader ... --clusters`), logged in as those roles: what readers pay.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from benchmarks.sizes import Sizes
from benchmarks.stats import CaseResult, Target, ratio_samples

CLUSTER = "rls"
QUERY_CLUSTERS = 20
GOAL = 1.05
"""load wall with row-level security on / off (issue 17)."""
PASSWORD = "kq-bench-reader"
QUERIES = {
    "pods and namespaces per cluster": "SELECT cluster_name, count(DISTINCT namespace), count(*)"
    " FROM kubernetes_pods GROUP BY cluster_name",
    "top 10 images": "SELECT image, count(*) FROM kubernetes_pod_containers GROUP BY image"
    " ORDER BY count(*) DESC LIMIT 10",
    "one namespace of one cluster": "SELECT name, node_name FROM kubernetes_pods"
    " WHERE cluster_name = 'q-0' AND namespace = 'ns-1'",
}


def _rows(kubeconfig: Path) -> dict[str, list]:
    """Every table's rows of the simulated cluster, extracted once."""
    from kq_pipeline.extract.native import extract_cluster
    from kq_pipeline.kube.kubeconfig import access_from_kubeconfig
    from kq_pipeline.registry import TABLES

    extract = extract_cluster(access_from_kubeconfig(str(kubeconfig), CLUSTER), CLUSTER, list(TABLES))
    failed = [t for t, e in extract.tables.items() if e.rows is None]
    if failed:
        raise RuntimeError(f"extraction failed: {failed}")
    return {t: e.rows or [] for t, e in extract.tables.items()}


def _load_all(dsn: str, rows: dict[str, list], cluster: str) -> float:
    from kq_pipeline.db.snapshot import replace_snapshot
    from kq_pipeline.frames import to_frame

    typed = {t: to_frame(t, r, cluster_name=cluster, validate_json=False) for t, r in rows.items()}
    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, frame in typed.items():
            replace_snapshot(
                conn,
                table,
                cluster,
                frame,
                run_id=None,
                started_at=datetime.now(UTC),
                rows_extracted=len(frame.frame),
            )
    return time.perf_counter() - t0


def _set_rls(dsn: str, enabled: bool) -> None:
    from kq_pipeline.db.access import secured_tables

    verb = "ENABLE" if enabled else "DISABLE"
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in secured_tables():
            conn.execute(sql.SQL(f"ALTER TABLE {table} {verb} ROW LEVEL SECURITY"))  # registry names only


def _timed(connect: Any, query: str, repeats: int) -> float:
    with connect() as conn:
        conn.execute(query).fetchall()  # warm-up
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            conn.execute(query).fetchall()
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run(dsn: str, sizes: Sizes, work_dir: Path) -> CaseResult:
    from kq_pipeline import inventory
    from kq_pipeline.db import access
    from kq_pipeline.simulator.objects import ClusterSpec
    from kq_pipeline.simulator.process import serve_fleet_process

    pods = max(50, sizes.mechanism_pods // 2)
    spec = ClusterSpec(CLUSTER, seed=11, pods=pods, namespaces=8)
    result = CaseResult(
        "11-access",
        "row-level security: loads with it on vs off (same run), and what readers' queries cost",
        params={"pods": pods, "repeats": sizes.repeats * 2, "query_clusters": QUERY_CLUSTERS},
    )
    kubeconfig = work_dir / "access-kubeconfig.yaml"
    with serve_fleet_process([spec], kubeconfig):
        rows = _rows(kubeconfig)
    result.params["rows_per_load"] = sum(len(r) for r in rows.values())
    _load_all(dsn, rows, CLUSTER)  # the first load: history starts with every row
    walls: dict[bool, list[float]] = {True: [], False: []}
    try:
        for i in range(sizes.repeats * 2):
            for enabled in (True, False) if i % 2 == 0 else (False, True):
                _set_rls(dsn, enabled)
                walls[enabled].append(_load_all(dsn, rows, CLUSTER))
    finally:
        _set_rls(dsn, True)
    on = result.add("load of every table, row-level security on", "s", walls[True])
    off = result.add("load of every table, row-level security off", "s", walls[False])
    ratio = result.add(
        "on / off", "x", ratio_samples(on.samples, off.samples), note="pairs of the same round"
    )
    result.targets.append(
        Target(f"loads with RLS on / off <= {GOAL}", ratio.median, GOAL, "x", higher_is_better=False)
    )

    with psycopg.connect(dsn) as conn:
        for i in range(QUERY_CLUSTERS):
            name = f"q-{i}"
            inventory.upsert_clusters(
                conn, [inventory.Cluster(name=name, server="https://127.0.0.1:1", token_env="T")]
            )
    for i in range(QUERY_CLUSTERS):
        _load_all(dsn, {t: rows[t] for t in ("kubernetes_pods", "kubernetes_pod_containers")}, f"q-{i}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE kubernetes_pods; ANALYZE kubernetes_pod_containers")
    roles = {
        "every cluster": (f"kq_bench_all_{os.getpid()}", ()),
        "team of 1": (f"kq_bench_team_{os.getpid()}", ("q-0",)),
    }
    params = conninfo_to_dict(dsn)
    params.pop("passfile", None)
    connects: dict[str, Any] = {"owner": lambda: psycopg.connect(dsn)}
    with psycopg.connect(dsn, autocommit=True) as owner:
        for label, (role, globs) in roles.items():
            owner.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), PASSWORD))
            access.grant_reader(owner, role, globs)
            role_dsn = make_conninfo(**{**params, "user": role, "password": PASSWORD})
            connects[f"reader, {label}"] = lambda d=role_dsn: psycopg.connect(d)
        try:
            for qname, query in QUERIES.items():
                for who, connect in connects.items():
                    result.add(f"{qname}: {who}", "ms", [1000 * _timed(connect, query, 5)])
        finally:
            for role, _ in roles.values():
                access.revoke_reader(owner, role)
                owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    return result
