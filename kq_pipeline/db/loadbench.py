"""Measure the load path on 30,000 pod rows: to_frame, replace_snapshot, and a raw CSV COPY of the
same rows into an empty table (the physical limit). Run: `python -m kq_pipeline.db.loadbench [N]`
(uses KQ_DATABASE_URL or the embedded server; works in a scratch database it drops afterwards)."""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
import time
from datetime import UTC, datetime

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from kq_pipeline.db.connection import resolve_dsn
from kq_pipeline.db.schema import apply_schema, storage_column_names
from kq_pipeline.db.snapshot import replace_snapshot
from kq_pipeline.frames import to_frame
from kq_pipeline.registry import table as registry_table

SCRATCH_DB = "kq_loadbench"
DROP_SCRATCH = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(SCRATCH_DB))
TABLE = "kubernetes_pods"
SEPARATORS = (",", ":")


def base_pod_row() -> dict[str, str]:
    """One pod row as kubequery renders it: a Deployment's pod of a small simulated cluster.

    Generated, not read from a file, so the bench also runs from an installed package; its size
    (~2.2 kB of JSON, 30-odd keys) is that of a typical application pod.
    """
    from kq_pipeline.rows import kubequery_rows
    from kq_pipeline.simulator.objects import ClusterSpec, generate_objects

    pods = generate_objects(ClusterSpec("bench", seed=1, pods=30, namespaces=3))["v1/pods"]
    pod = next(
        p
        for p in pods
        if p["metadata"]["namespace"] != "kube-system"
        and [o["kind"] for o in p["metadata"].get("ownerReferences") or []] == ["ReplicaSet"]
    )
    return kubequery_rows(TABLE, [pod], cluster_name="bench", cluster_uid="uid-bench")[0]


def synthetic_pods(n: int) -> list[dict[str, str]]:
    """n pod rows shaped like kubequery's (one simulated pod's row, varied)."""
    base = base_pod_row()
    rows = []
    for i in range(n):
        row = dict(base)
        row.update(
            name=f"pod-{i}",
            uid=f"00000000-0000-0000-0000-{i:012d}",
            namespace=f"ns-{i % 300}",
            node_name=f"node-{i % 500}",
            labels=json.dumps({"app": f"app-{i % 97}", "tier": "web"}, separators=SEPARATORS),
        )
        rows.append(row)
    return rows


def _csv(frame, columns) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for row in zip(*(frame[c].to_numpy(dtype=object, na_value=None) for c in columns), strict=True):
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue().encode()


def main(n: int = 30_000, repeats: int = 5) -> None:
    server = resolve_dsn()
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(DROP_SCRATCH)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SCRATCH_DB)))
    dsn = make_conninfo(server, dbname=SCRATCH_DB)
    try:
        rows = synthetic_pods(n)
        frame_s, replace_s, copy_s, copy_idx_s = [], [], [], []
        with psycopg.connect(dsn) as conn:
            apply_schema(conn)
            columns = storage_column_names(registry_table(TABLE))
            for _ in range(repeats):
                t0 = time.perf_counter()
                typed = to_frame(TABLE, rows, cluster_name="bench")
                frame_s.append(time.perf_counter() - t0)
                result = replace_snapshot(
                    conn, TABLE, "bench", typed, run_id=None, started_at=datetime.now(UTC), rows_extracted=n
                )
                replace_s.append(result.duration_s)
            payload = _csv(typed.frame, columns)
            conn.execute("CREATE TABLE raw_copy (LIKE kubernetes_pods)")
            conn.execute("CREATE TABLE raw_copy_indexed (LIKE kubernetes_pods INCLUDING INDEXES)")
            conn.commit()
            for target, samples in (("raw_copy", copy_s), ("raw_copy_indexed", copy_idx_s)):
                copy_stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                    sql.Identifier(target), sql.SQL(", ").join(map(sql.Identifier, columns))
                )
                for _ in range(repeats):
                    conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(target)))
                    conn.commit()
                    t0 = time.perf_counter()
                    with conn.cursor() as cur, cur.copy(copy_stmt) as copy:
                        copy.write(payload)
                    conn.commit()
                    samples.append(time.perf_counter() - t0)
        for label, samples in (
            ("to_frame", frame_s),
            ("replace_snapshot", replace_s),
            ("raw COPY csv, no index", copy_s),
            ("raw COPY csv, same indexes", copy_idx_s),
        ):
            med = statistics.median(samples)
            print(f"{label:28s} median {med:6.3f} s  {n / med:9,.0f} rows/s  (n={n}, {len(samples)} runs)")
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(DROP_SCRATCH)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30_000)
