"""Case 9: custom resources load as fast as pods (issue 15: within 0.8x of kubernetes_pods' rows/s).

One simulated cluster (child-process simulator over HTTPS) with 20,000 custom objects over the seven
kinds of four operators (cert-manager Certificate, Issuer, ClusterIssuer; Prometheus operator
ServiceMonitor, PrometheusRule; Argo CD Application; istio VirtualService at its preferred version)
and 20,000 pods. Each sample loads ONE table end to end in a fresh child process
(`python -m benchmarks.custom_resources`), as `refresh._refresh_locked` does: list + rows
(`extract_cluster`, the row worker processes included for pods), `to_frame`, `replace_snapshot`
(COPY + swap). The two tables alternate in the same run, so machine noise hits both alike, and the
reported ratio pairs each custom sample with the pods sample beside it.

`kubernetes_custom_resources` also lists the CRDs first (one small list), and then each kind one
after the other at its preferred version; `kubernetes_pods` is one paged list. Rows/s is rows loaded
over the child's wall time from the first request to the commit (imports and process start excluded).
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
CLUSTER = "custom"
DSN_ENV = "KQ_BENCH_DSN"
PODS = "kubernetes_pods"
CUSTOM = "kubernetes_custom_resources"
GOAL = 0.8
"""custom resources' rows/s over pods' rows/s, same run (issue 15)."""


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_table(kubeconfig: str, dsn: str, table: str) -> dict[str, Any]:
    """List, build rows, frame and load one table of the cluster in this (fresh) process."""
    from kq_pipeline.db.connection import connect
    from kq_pipeline.db.snapshot import replace_snapshot
    from kq_pipeline.extract import row_workers
    from kq_pipeline.extract.native import extract_cluster
    from kq_pipeline.frames import to_frame
    from kq_pipeline.kube.kubeconfig import access_from_kubeconfig

    access = access_from_kubeconfig(kubeconfig, CLUSTER)
    with connect(dsn) as conn:
        conn.autocommit = True
        started = datetime.now(UTC)
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        extract = extract_cluster(access, CLUSTER, [table], concurrency=4, page_limit=500)
        te = extract.tables[table]
        if te.rows is None or te.kept_kinds:
            raise RuntimeError(f"extraction failed: {te.error or te.kept_kinds}")
        t1 = time.perf_counter()
        typed = to_frame(table, te.rows, cluster_name=CLUSTER, validate_json=False)  # as refresh does
        t2 = time.perf_counter()
        result = replace_snapshot(
            conn, table, CLUSTER, typed, run_id=None, started_at=started, rows_extracted=len(te.rows)
        )
        t3 = time.perf_counter()
    cpu = _cpu_seconds() - cpu0
    row_workers.shutdown()
    return {
        "table": table,
        "rows": result.rows_loaded,
        "kinds": len(result.parts or {}),
        "wall_s": t3 - t0,
        "extract_s": t1 - t0,
        "frames_s": t2 - t1,
        "load_s": t3 - t2,
        "cpu_s": cpu,
        "row_workers": row_workers.worker_count(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--table", required=True, choices=[PODS, CUSTOM])
    args = p.parse_args(argv)
    print(json.dumps(measure_table(args.kubeconfig, os.environ[DSN_ENV], args.table)))
    return 0


def _run_child(kubeconfig: Path, dsn: str, table: str) -> dict[str, Any]:
    return run_child(
        "benchmarks.custom_resources", "--kubeconfig", str(kubeconfig), "--table", table, env={DSN_ENV: dsn}
    )


def run(dsn: str, sizes: Sizes, work_dir: Path) -> CaseResult:
    from kq_pipeline.simulator.objects import OPERATORS, ClusterSpec, custom_counts
    from kq_pipeline.simulator.process import serve_fleet_process

    spec = ClusterSpec(
        CLUSTER,
        seed=9,
        pods=sizes.custom_pods,
        namespaces=sizes.custom_namespaces,
        operators=OPERATORS,
        custom_objects=sizes.custom_objects,
    )
    per_kind = custom_counts(spec)
    result = CaseResult(
        "9-custom-resources",
        "custom resources vs pods: rows/s of list + rows + frame + load, one table per fresh child",
        params={
            "pods": spec.pods,
            "custom_objects": sum(per_kind.values()),
            "custom_kinds": len(per_kind),
            "objects_per_kind": {k: n for k, n in sorted(per_kind.items())},
            "namespaces": spec.namespaces,
            "repeats": sizes.repeats,
            "page_limit": 500,
        },
    )
    kubeconfig = work_dir / "custom-kubeconfig.yaml"
    t0 = time.perf_counter()
    samples: dict[str, list[dict[str, Any]]] = {PODS: [], CUSTOM: []}
    with serve_fleet_process([spec], kubeconfig):
        result.notes.append(
            f"simulator start (generate + serve, child process): {time.perf_counter() - t0:.1f}s"
        )
        _run_child(kubeconfig, dsn, CUSTOM)  # warm-up: the simulator's first responses, disk caches
        for i in range(sizes.repeats):
            order = (PODS, CUSTOM) if i % 2 == 0 else (CUSTOM, PODS)  # neither always goes first
            for table in order:
                samples[table].append(_run_child(kubeconfig, dsn, table))
    pods, custom = samples[PODS], samples[CUSTOM]
    if any(s["rows"] != spec.pods for s in pods) or any(s["rows"] != sum(per_kind.values()) for s in custom):
        raise RuntimeError(f"row counts differ from the simulator's: {pods} {custom}")
    result.params["row_workers"] = pods[0]["row_workers"]
    pod_rates = result.add(f"{PODS}: rows/s", "rows/s", [s["rows"] / s["wall_s"] for s in pods])
    custom_rates = result.add(f"{CUSTOM}: rows/s", "rows/s", [s["rows"] / s["wall_s"] for s in custom])
    ratio = result.add(
        "custom / pods rows/s",
        "x",
        ratio_samples(custom_rates.samples, pod_rates.samples),
        note="each custom sample over the pods sample of the same round",
    )
    for table, runs in ((PODS, pods), (CUSTOM, custom)):
        short = "pods" if table == PODS else "custom"
        result.add(f"{short}: wall", "s", [s["wall_s"] for s in runs])
        result.add(f"{short}: stage extract (list + rows)", "s", [s["extract_s"] for s in runs])
        result.add(f"{short}: stage frames (to_frame)", "s", [s["frames_s"] for s in runs])
        result.add(f"{short}: stage load (COPY + swap)", "s", [s["load_s"] for s in runs])
        result.add(
            f"{short}: CPU of the loading process",
            "s",
            [s["cpu_s"] for s in runs],
            note="row worker processes not included" if table == PODS else "",
        )
        result.add(f"{short}: peak RSS", "MB", [s["peak_rss_mb"] for s in runs])
    result.targets.append(Target(f"custom rows/s >= {GOAL} x pods rows/s", ratio.median, GOAL, "x"))
    return result


if __name__ == "__main__":
    sys.exit(_child_main())
