"""Case 6: the fixed cost of one small cluster, the number that decides how many clusters one machine
refreshes.

One 200-pod simulated cluster (child process, so its serving is not counted) is refreshed whole
(every fleet table: kubequery's 51 and the two custom-resource tables, empty here) with
`refresh_cluster`, the code path behind the assets and `kq load`, `repeats` times after a warm-up.
CPU is this process's (every thread: extraction, frames, load); the phases are then timed one by
one on the same cluster: extraction, typed frames (also with the native rows' JSON parsed again, as
before they were trusted, for the on/off gain), and the load of the frames.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from benchmarks.sizes import Sizes
from benchmarks.stats import CaseResult, Metric, Target
from kq_pipeline import inventory
from kq_pipeline.db.snapshot import replace_snapshot
from kq_pipeline.extract import native
from kq_pipeline.frames import to_frame
from kq_pipeline.refresh import RefreshSettings, refresh_cluster
from kq_pipeline.registry import TABLES
from kq_pipeline.simulator.objects import ClusterSpec
from kq_pipeline.simulator.process import serve_fleet_process

CLUSTER = "small"
CPU_TARGET_S = 0.25


def _cpu_and_wall(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def run(dsn: str, sizes: Sizes, work_dir: Path) -> CaseResult:
    spec = ClusterSpec(CLUSTER, seed=7, pods=sizes.fleet_pods, namespaces=sizes.fleet_namespaces)
    result = CaseResult("6-cluster-cost", f"one {spec.pods}-pod cluster, every fleet table: fixed cost")
    tables = list(TABLES)
    settings = RefreshSettings(concurrency=1)
    repeats = max(3, sizes.repeats * 2 + 1)
    with serve_fleet_process([spec], work_dir / "cost-kubeconfig.yaml") as fleet:
        with psycopg.connect(dsn) as conn:
            inventory.upsert_clusters(conn, inventory.clusters_from_kubeconfig(fleet.kubeconfig))
            cluster = inventory.get_cluster(conn, CLUSTER)
        assert cluster is not None

        def refresh() -> None:
            outcome = refresh_cluster(dsn, CLUSTER, tables, run_id="bench", settings=settings)
            if not outcome.ok:
                raise RuntimeError(f"refresh failed: {outcome.error or outcome.failed_tables}")

        refresh()  # warm-up: imports, compiled row builders, connections, caches
        samples = [_cpu_and_wall(refresh) for _ in range(repeats)]
        rows = sum(
            n for (n,) in psycopg.connect(dsn).execute("select rows_loaded from kq_latest_loads").fetchall()
        )

        access = inventory.access_for(cluster)
        phases: dict[str, list[float]] = {
            "extract": [],
            "frames": [],
            "frames, JSON re-parsed": [],
            "load": [],
        }
        for _ in range(repeats):
            box: dict = {}

            def extract(box=box) -> None:
                box["x"] = native.extract_cluster(access, CLUSTER, tables, concurrency=4)

            def frames(box=box, validate: bool = False) -> None:
                box["f"] = {
                    t: to_frame(
                        t, box["x"].tables[t].rows or [], cluster_name=CLUSTER, validate_json=validate
                    )
                    for t in tables
                }

            def frames_validated(box=box) -> None:  # the same, as before the native rows were trusted
                frames(box, validate=True)

            def load(box=box) -> None:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    for t, typed in box["f"].items():
                        replace_snapshot(
                            conn,
                            t,
                            CLUSTER,
                            typed,
                            run_id="bench",
                            started_at=datetime.now(UTC),
                            rows_extracted=len(typed.frame),
                        )

            steps = (
                ("extract", extract),
                ("frames, JSON re-parsed", frames_validated),
                ("frames", frames),
                ("load", load),
            )
            for name, fn in steps:
                phases[name].append(_cpu_and_wall(fn)[0])

    cpu = [c for c, _ in samples]
    result.params.update(pods=spec.pods, tables=len(tables), rows=rows, repeats=repeats)
    result.metrics += [
        Metric("refresh CPU, polling process", "s", cpu),
        Metric("refresh wall", "s", [w for _, w in samples]),
        *(Metric(f"  of which {name} CPU", "s", v) for name, v in phases.items()),
    ]
    result.targets.append(
        Target("CPU of one small cluster refresh", result.metrics[0].median, CPU_TARGET_S, "s", False)
    )
    return result
