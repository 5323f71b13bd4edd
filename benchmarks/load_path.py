"""Case 2: the same rows loaded three ways on this server.

(a) our loader, `replace_snapshot` (delete the cluster's rows + COPY into the table, one transaction);
(b) the physical limit: one raw `COPY ... FROM STDIN (FORMAT csv)` of the same rows, prepared as CSV
    beforehand, into a table of the same shape and indexes (and, for reference, without indexes);
(c) the original Go loader's method: delete the cluster's rows, then one prepared INSERT per row,
    autocommit off, one transaction (timed on a subset; the rate is extrapolated).
"""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime

import pandas as pd
import psycopg
from psycopg import sql

from benchmarks.rowdata import cluster_rows
from benchmarks.sizes import Sizes
from benchmarks.stats import CaseResult, Target, ratio_samples
from kq_pipeline.db.schema import storage_column_names
from kq_pipeline.db.snapshot import replace_snapshot
from kq_pipeline.frames import to_frame
from kq_pipeline.registry import table as registry_table
from kq_pipeline.simulator.objects import ClusterSpec

CLUSTER = "large"
TABLES = ("kubernetes_pods", "kubernetes_pod_containers")


def _csv(frame: pd.DataFrame, columns: tuple[str, ...]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    cols = [frame[c].to_numpy(dtype=object, na_value=None) for c in columns]
    for row in zip(*cols, strict=True):
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue().encode()


def _raw_copy(conn: psycopg.Connection, target: str, columns: tuple[str, ...], payload: bytes) -> float:
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(target)))
    conn.commit()
    t0 = time.perf_counter()
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(target), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.write(payload)
    conn.commit()
    return time.perf_counter() - t0


def _row_by_row(conn: psycopg.Connection, table: str, columns: tuple[str, ...], frame: pd.DataFrame) -> float:
    """Delete the cluster's rows, then one prepared INSERT per row, one transaction."""
    stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    rows = list(zip(*(frame[c].to_numpy(dtype=object, na_value=None) for c in columns), strict=True))
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE cluster_name = %s").format(sql.Identifier(table)), (CLUSTER,)
        )
        for row in rows:
            cur.execute(stmt, row, prepare=True)
    conn.commit()
    return time.perf_counter() - t0


def run(dsn: str, sizes: Sizes, work_dir: object) -> CaseResult:
    spec = ClusterSpec(CLUSTER, seed=1, pods=sizes.large_pods, namespaces=sizes.large_namespaces)
    result = CaseResult(
        "2-load-path", "same rows: our loader vs raw COPY (limit) vs row-by-row INSERT (original)"
    )
    rows = cluster_rows(spec, TABLES)
    result.params.update(
        {"pods": spec.pods, "repeats": sizes.repeats, "row_by_row_rows": sizes.row_by_row_rows}
    )
    headline: dict[str, tuple[list[float], list[float], list[float]]] = {}
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            n = len(rows[table])
            result.params[f"{table}_rows"] = n
            columns = storage_column_names(registry_table(table))
            frame_s, frame_checked_s, ours_s = [], [], []
            for _ in range(sizes.repeats):
                t0 = time.perf_counter()
                to_frame(table, rows[table], cluster_name=CLUSTER, validate_json=True)
                frame_checked_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                typed = to_frame(table, rows[table], cluster_name=CLUSTER, validate_json=False)  # as refresh
                frame_s.append(time.perf_counter() - t0)
                conn.autocommit = True
                loaded = replace_snapshot(
                    conn, table, CLUSTER, typed, run_id=None, started_at=datetime.now(UTC), rows_extracted=n
                )
                conn.autocommit = False
                ours_s.append(loaded.duration_s)
            payload = _csv(typed.frame, columns)
            conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING INDEXES)").format(
                    sql.Identifier(f"raw_{table}"), sql.Identifier(table)
                )
            )
            conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {})").format(
                    sql.Identifier(f"raw_noidx_{table}"), sql.Identifier(table)
                )
            )
            conn.commit()
            raw_s = [_raw_copy(conn, f"raw_{table}", columns, payload) for _ in range(sizes.repeats)]
            raw_noidx_s = [
                _raw_copy(conn, f"raw_noidx_{table}", columns, payload) for _ in range(sizes.repeats)
            ]
            subset = typed.frame.iloc[: sizes.row_by_row_rows]
            rbr_s = [_row_by_row(conn, table, columns, subset) for _ in range(sizes.repeats)]
            m = len(subset)
            short = table.removeprefix("kubernetes_")
            ours_rate = [n / s for s in ours_s]
            raw_rate = [n / s for s in raw_s]
            rbr_rate = [m / s for s in rbr_s]
            result.add(f"{short}: to_frame", "rows/s", [n / s for s in frame_s])
            result.add(f"{short}: to_frame, JSON re-parsed (off)", "rows/s", [n / s for s in frame_checked_s])
            result.add(f"{short}: (a) ours replace_snapshot", "rows/s", ours_rate)
            result.add(
                f"{short}: (a') ours to_frame + replace",
                "rows/s",
                [n / (a + b) for a, b in zip(frame_s, ours_s, strict=True)],
            )
            result.add(f"{short}: (b) raw COPY csv, same indexes", "rows/s", raw_rate)
            result.add(f"{short}: (b') raw COPY csv, no indexes", "rows/s", [n / s for s in raw_noidx_s])
            result.add(
                f"{short}: (c) row-by-row prepared INSERT",
                "rows/s",
                rbr_rate,
                note=f"timed on {m} of {n} rows, rate extrapolated",
            )
            result.add(f"{short}: (a)/(b) ours vs raw COPY", "x", ratio_samples(ours_rate, raw_rate))
            result.add(f"{short}: (a)/(c) ours vs row-by-row", "x", ratio_samples(ours_rate, rbr_rate))
            headline[short] = (ours_rate, raw_rate, rbr_rate)
    if sizes.row_by_row_rows < max(result.params[f"{t}_rows"] for t in TABLES):
        result.notes.append(
            f"(c) timed on the first {sizes.row_by_row_rows} rows of each table; rows/s extrapolated"
        )
    ours, raw, rbr = headline["pods"]
    result.targets.append(
        Target(
            "pods: ours / raw COPY (same indexes)",
            result.metric("pods: (a)/(b) ours vs raw COPY").median,
            0.85,  # issue 14
            "x",
        )
    )
    result.targets.append(
        Target(
            "pods: ours / row-by-row INSERT",
            result.metric("pods: (a)/(c) ours vs row-by-row").median,
            20,
            "x",
        )
    )
    return result
