"""Case 1: one cluster of the original's largest size, all 51 tables, list → rows → frames → COPY → swap.

Each repeat runs in a fresh child process (`python -m benchmarks.large_cluster`), so its peak RSS is
the loader's own. The child follows `kq_pipeline.refresh._refresh_locked` step by step (extract every
table, then frame and replace one table at a time), timing each stage.

Each repeat also lists the pods alone in another fresh child (`--pods-only`): list + rows of the three
tables pods feed (pods, pod containers, pod volumes), cold, row worker processes started included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.child import run_child
from benchmarks.sizes import Sizes
from benchmarks.stats import CaseResult, Target, ratio_samples

REPO = Path(__file__).resolve().parents[1]
CLUSTER = "large"
DSN_ENV = "KQ_BENCH_DSN"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _extract(kubeconfig: str, tables: list[str], concurrency: int, page_limit: int) -> Any:
    """The large cluster's tables, extracted as a refresh does; raises if any table failed."""
    from kq_pipeline.extract.native import extract_cluster
    from kq_pipeline.kube.kubeconfig import access_from_kubeconfig

    access = access_from_kubeconfig(kubeconfig, CLUSTER)
    extract = extract_cluster(access, CLUSTER, tables, concurrency=concurrency, page_limit=page_limit)
    failed = {t: e.error for t, e in extract.tables.items() if e.rows is None}
    if failed:
        raise RuntimeError(f"extraction failed: {failed}")
    return extract


def measure_once(kubeconfig: str, dsn: str, concurrency: int = 4, page_limit: int = 500) -> dict[str, Any]:
    """One full refresh of the large cluster in this process; returns stage timings and peak RSS."""
    from kq_pipeline.db.connection import connect
    from kq_pipeline.db.snapshot import replace_snapshot
    from kq_pipeline.frames import to_frame
    from kq_pipeline.registry import TABLES

    tables = list(TABLES)
    started = datetime.now(UTC)
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    extract = _extract(kubeconfig, tables, concurrency, page_limit)
    extract_s = time.perf_counter() - t0
    frames_s = load_s = 0.0
    rows = 0
    with connect(dsn) as conn:
        conn.autocommit = True
        for table in tables:
            te = extract.tables[table]
            f0 = time.perf_counter()
            typed = to_frame(table, te.rows, cluster_name=CLUSTER, validate_json=False)  # as refresh does
            f1 = time.perf_counter()
            result = replace_snapshot(
                conn, table, CLUSTER, typed, run_id=None, started_at=started, rows_extracted=len(te.rows)
            )
            load_s += time.perf_counter() - f1
            frames_s += f1 - f0
            rows += result.rows_loaded
            del typed
            te.rows = None  # as refresh would drop them once loaded
    wall = time.perf_counter() - t0
    return {
        "cpu_s": _cpu_seconds() - cpu0,
        "wall_s": wall,
        "extract_s": extract_s,
        "frames_s": frames_s,
        "load_s": load_s,
        "rows": rows,
        "pods": len(extract.tables["kubernetes_pods"].rows or []) or None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_rss_mb": _worker_peak_rss_mb(),
    }


def _worker_peak_rss_mb() -> float:
    """Peak RSS of the largest row worker process (they are reaped here to be counted)."""
    from kq_pipeline.extract import row_workers

    row_workers.shutdown()
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


POD_TABLES = ["kubernetes_pods", "kubernetes_pod_containers", "kubernetes_pod_volumes"]


def measure_pods(kubeconfig: str, concurrency: int = 4, page_limit: int = 500) -> dict[str, Any]:
    """List the pods and build the rows of the tables they feed, in a fresh process."""
    from kq_pipeline.extract.row_workers import worker_count

    t0 = time.perf_counter()
    extract = _extract(kubeconfig, POD_TABLES, concurrency, page_limit)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "pods": extract.tables["kubernetes_pods"].objects,
        "rows": sum(len(extract.tables[t].rows or []) for t in POD_TABLES),
        "row_workers": worker_count(),
    }


def _child_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--pods-only", action="store_true")
    args = p.parse_args(argv)
    if args.pods_only:
        out = measure_pods(args.kubeconfig)
    else:
        out = measure_once(args.kubeconfig, os.environ[DSN_ENV])
    print(json.dumps(out))
    return 0


def _run_child(
    kubeconfig: Path, dsn: str, *flags: str, env_extra: dict[str, str] | None = None
) -> dict[str, Any]:
    return run_child(
        "benchmarks.large_cluster",
        "--kubeconfig",
        str(kubeconfig),
        *flags,
        env={DSN_ENV: dsn, **(env_extra or {})},
    )


def run(dsn: str, sizes: Sizes, work_dir: Path) -> CaseResult:
    from kq_pipeline.simulator.objects import ClusterSpec
    from kq_pipeline.simulator.process import serve_fleet_process

    spec = ClusterSpec(CLUSTER, seed=1, pods=sizes.large_pods, namespaces=sizes.large_namespaces)
    result = CaseResult(
        "1-large-cluster",
        "one large cluster, full 51-table refresh (child process per repeat)",
        params={
            "pods": spec.pods,
            "namespaces": spec.namespaces,
            "nodes": spec.nodes,
            "repeats": sizes.repeats,
            "table_concurrency": 4,
            "page_limit": 500,
        },
    )
    kubeconfig = work_dir / "large-kubeconfig.yaml"
    t0 = time.perf_counter()
    with serve_fleet_process([spec], kubeconfig):
        result.notes.append(
            f"simulator start (generate + serve, child process): {time.perf_counter() - t0:.1f}s"
        )
        runs, pod_runs, pod_runs_inline = [], [], []
        for _ in range(sizes.repeats):
            pod_runs.append(_run_child(kubeconfig, dsn, "--pods-only"))
            # the row worker processes off, same run: what the mechanism earns
            pod_runs_inline.append(
                _run_child(kubeconfig, dsn, "--pods-only", env_extra={"KQ_ROW_WORKERS": "0"})
            )
            runs.append(_run_child(kubeconfig, dsn))
    result.params["rows_all_tables"] = runs[0]["rows"]
    result.params["row_workers"] = pod_runs[0]["row_workers"]
    pod_rates = result.add(
        "pods: list + rows (pods, containers, volumes)",
        "pods/s",
        [r["pods"] / r["wall_s"] for r in pod_runs],
        note="fresh process per sample: row worker start included",
    )
    result.add("pods: list + rows, wall", "s", [r["wall_s"] for r in pod_runs])
    inline_rates = result.add(
        "pods: list + rows, row workers off (0)",
        "pods/s",
        [r["pods"] / r["wall_s"] for r in pod_runs_inline],
        note="KQ_ROW_WORKERS=0: every page built in the polling process",
    )
    result.add("pods: row workers on / off", "x", ratio_samples(pod_rates.samples, inline_rates.samples))
    result.add("pods: rows built (3 tables)", "rows/s", [r["rows"] / r["wall_s"] for r in pod_runs])
    walls = [r["wall_s"] for r in runs]
    result.add("wall time", "s", walls)
    rates = result.add("rows/s end to end (all tables)", "rows/s", [r["rows"] / r["wall_s"] for r in runs])
    result.add("stage: extract (list + rows)", "s", [r["extract_s"] for r in runs])
    result.add("stage: frames (to_frame)", "s", [r["frames_s"] for r in runs])
    result.add("stage: load (COPY + swap)", "s", [r["load_s"] for r in runs])
    result.add(
        "loader CPU time (its own process)",
        "s",
        [r["cpu_s"] for r in runs],
        note="less sensitive than wall time to other work on a shared machine",
    )
    result.add("rows per loader CPU-second", "rows/s", [r["rows"] / r["cpu_s"] for r in runs])
    result.add("share: extract", "%", [100 * x for x in ratio_samples([r["extract_s"] for r in runs], walls)])
    rss = result.add("peak RSS of the loader process", "MB", [r["peak_rss_mb"] for r in runs])
    result.add("peak RSS of a row worker process", "MB", [r["worker_peak_rss_mb"] for r in runs])
    result.targets.append(Target("pods list + rows", pod_rates.median, 5_000, "pods/s"))
    result.targets.append(Target("rows/s end to end", rates.median, 20_000, "rows/s"))
    result.targets.append(Target("peak RSS", rss.median, 1024, "MB", higher_is_better=False))
    return result


if __name__ == "__main__":
    sys.exit(_child_main())
