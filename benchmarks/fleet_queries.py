"""Case 4: fleet queries on a fleet sized like the original's published example, on our schema and on
the original aggregator's schema (same rows, same database, schema `original`), after VACUUM ANALYZE."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import psycopg

from benchmarks.original_schema import SCHEMA, copy_to_original
from benchmarks.rowdata import cluster_rows
from benchmarks.sizes import Sizes
from benchmarks.stats import CaseResult, Target, ratio_samples
from kq_pipeline.db.snapshot import replace_snapshot
from kq_pipeline.frames import to_frame
from kq_pipeline.simulator.objects import ClusterSpec

TABLES = ("kubernetes_pods", "kubernetes_pod_containers", "kubernetes_nodes")
QUERIES: dict[str, str] = {
    "pods and namespaces per cluster (original's)": (
        "select cluster_name, count(distinct namespace) ns_count, count(*) pod_cnt "
        "from kubernetes_pods group by cluster_name"
    ),
    "top 10 images (original's)": (
        "select c.image, count(*) pod_cnt from kubernetes_pod_containers c "
        "group by c.image order by count(*) desc limit 10"
    ),
    "label filter labels @> {app}": (
        "select cluster_name, namespace, name from kubernetes_pods where labels @> %(labels)s"
    ),
    "join: pods per node instance type": (
        "select n.labels->>'node.kubernetes.io/instance-type' itype, count(*) from kubernetes_pods p "
        "join kubernetes_nodes n on n.cluster_name = p.cluster_name and n.name = p.node_name group by 1"
    ),
    "join: pods on one node (drill-down)": (
        "select p.namespace, p.name, n.provider_id from kubernetes_pods p "
        "join kubernetes_nodes n on n.cluster_name = p.cluster_name and n.name = p.node_name "
        "where n.cluster_name = %(cluster)s and n.name = %(node)s"
    ),
}
# The original schema's other way to filter on a label: text extraction on the unindexed jsonb.
LABEL_TEXT = "select cluster_name, namespace, name from kubernetes_pods where labels->>'app' = %(app)s"
LABEL_QUERY = "label filter labels @> {app}"


def _load_fleet(dsn: str, sizes: Sizes) -> dict[str, int]:
    counts = dict.fromkeys(TABLES, 0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i, (pods, namespaces) in enumerate(sizes.query_fleet()):
            spec = ClusterSpec(f"fleet-{i}", seed=40 + i, pods=pods, namespaces=namespaces)
            rows = cluster_rows(spec, TABLES)
            for table in TABLES:
                typed = to_frame(table, rows[table], cluster_name=spec.name)
                replace_snapshot(
                    conn,
                    table,
                    spec.name,
                    typed,
                    run_id=None,
                    started_at=datetime.now(UTC),
                    rows_extracted=len(rows[table]),
                )
                counts[table] += len(rows[table])
            del rows
        copy_to_original(conn, TABLES)
        for schema in ("public", SCHEMA):
            for table in TABLES:
                conn.execute(f'VACUUM ANALYZE "{schema}"."{table}"')
    return counts


def _time_query(conn: psycopg.Connection, schema: str, query: str, params: dict, repeats: int) -> list[float]:
    conn.execute(f'SET search_path = "{schema}"')
    conn.execute(query, params).fetchall()  # warm the cache and the plan
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        conn.execute(query, params).fetchall()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def run(dsn: str, sizes: Sizes, work_dir: object) -> CaseResult:
    result = CaseResult("4-fleet-queries", "fleet queries: our schema vs the original aggregator's schema")
    t0 = time.perf_counter()
    counts = _load_fleet(dsn, sizes)
    result.params.update(
        {
            "clusters": len(sizes.query_fleet()),
            **{f"{t}_rows": n for t, n in counts.items()},
            "repeats": sizes.query_repeats,
            "load_s": round(time.perf_counter() - t0, 1),
        }
    )
    # No server-side prepared statements: the same text runs against two schemas (search_path), and a
    # plan cached for one would not fit the other's column types.
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        app, n_app = conn.execute(
            "select labels->>'app', count(*) from kubernetes_pods where labels ? 'app' "
            "group by 1 order by 2 desc, 1 limit 1"
        ).fetchone()
        cluster, node = conn.execute(
            "select cluster_name, node_name from kubernetes_pods where node_name is not null "
            "group by 1, 2 order by count(*) desc, 1, 2 limit 1"
        ).fetchone()
        params = {"labels": json.dumps({"app": app}), "app": app, "cluster": cluster, "node": node}
        result.params.update({"label_app": app, "label_matches": n_app})
        for name, query in QUERIES.items():
            ours = _time_query(conn, "public", query, params, sizes.query_repeats)
            orig = _time_query(conn, SCHEMA, query, params, sizes.query_repeats)
            result.add(f"{name}: ours", "ms", ours)
            result.add(f"{name}: original", "ms", orig)
            if name == LABEL_QUERY:
                text = _time_query(conn, SCHEMA, LABEL_TEXT, params, sizes.query_repeats)
                result.add("label filter labels->>'app' =: original", "ms", text)
                if sorted(text)[len(text) // 2] < sorted(orig)[len(orig) // 2]:
                    orig = text  # compare against the original's faster way
            speedup = result.add(f"{name}: speed-up", "x", ratio_samples(orig, ours))
            goal = 10.0 if name == LABEL_QUERY else 1.0
            result.targets.append(Target(f"{name}: original/ours", speedup.median, goal, "x"))
    return result
