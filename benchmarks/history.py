"""Case 10: what history costs a steady-state refresh (issue 16: at most 1.25 x history off, same run).

One simulated cluster of the original's largest size (30,000 pods; simulator in a child process) is in
the inventory three times, so all see exactly the same cluster. Each round churns it (`POST
/_sim/churn`, 5 % of its objects: pods replaced, deployments rolled and scaled, objects deleted and
created, nodes added and removed) and then refreshes each name with the pipeline's own
`refresh_cluster` (all tables, one transaction), in an order that rotates by round: `hist-on` keeps
history (the default skip list: events), `hist-off` does not (KQ_HISTORY_SKIP=`*`), and
`hist-off-seq` neither, with `refresh.FRAME_AHEAD` off (each table's frame built only when its turn
comes): that mechanism's on/off gain. Each sample is one whole refresh: list, rows, frames, COPY, and
for `hist-on` the history statement of every table.

A small cluster (200 pods, its own child-process simulator) is refreshed the same way under two names,
history off and on, after 1 % churn per round: history's fixed cost per table, which dominates there.

Storage: the history schema's size (tables, indexes, TOAST) before and after each `hist-on` refresh,
over the changes that refresh recorded (added + removed + modified rows), after a plain VACUUM of
the history tables (dead versions of closed rows become reusable space, as autovacuum would make them).
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.sizes import Sizes
from benchmarks.stats import CaseResult, Target, ratio_samples

CLUSTER = "large"
ON, OFF, OFF_SEQ = "hist-on", "hist-off", "hist-off-seq"
CHURN = 0.05
SMALL = "small"
SMALL_PODS = 200
SMALL_CHURN = 0.01
SMALL_ROUNDS = 7
GOAL = 1.25
"""history on / off wall time of a steady-state refresh, same run (issue 16)."""
HISTORY_BYTES = """
    SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'history' AND c.relkind = 'r'"""


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _refresh(dsn: str, name: str, skip: str, ahead: bool = True) -> dict[str, Any]:
    from kq_pipeline import refresh
    from kq_pipeline.refresh import RefreshSettings, refresh_cluster
    from kq_pipeline.registry import TABLES

    os.environ["KQ_HISTORY_SKIP"] = skip
    refresh.FRAME_AHEAD = ahead
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    outcome = refresh_cluster(dsn, name, list(TABLES), run_id=None, settings=RefreshSettings())
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    if not outcome.ok:
        raise RuntimeError(f"{name}: {outcome.error or outcome.failed_tables}")
    changes = [t.changes for t in outcome.tables.values() if t.changes is not None]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "rows": sum(t.rows_loaded or 0 for t in outcome.tables.values()),
        "changed": sum(c.total for c in changes),
        "added": sum(c.added for c in changes),
        "removed": sum(c.removed for c in changes),
        "modified": sum(c.modified for c in changes),
    }


def _history_bytes(dsn: str) -> int:
    from kq_pipeline.db import history
    from kq_pipeline.registry import TABLES

    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(psycopg.sql.SQL("VACUUM {}").format(history.ident(table)))
        conn.execute("VACUUM history.change_log")
        return conn.execute(HISTORY_BYTES).fetchone()[0]


def run(dsn: str, sizes: Sizes, work_dir: Path) -> CaseResult:
    from kq_pipeline import inventory
    from kq_pipeline.simulator.objects import ClusterSpec
    from kq_pipeline.simulator.process import serve_fleet_process

    spec = ClusterSpec(CLUSTER, seed=1, pods=sizes.large_pods, namespaces=sizes.large_namespaces)
    result = CaseResult(
        "10-history",
        "steady-state refresh with 5 % of objects changed: history on vs off (same cluster, same run)",
        params={"pods": spec.pods, "namespaces": spec.namespaces, "churn": CHURN, "repeats": sizes.repeats},
    )
    kubeconfig = work_dir / "history-kubeconfig.yaml"
    saved = os.environ.get("KQ_HISTORY_SKIP")
    samples: dict[str, list[dict[str, Any]]] = {ON: [], OFF: [], OFF_SEQ: []}
    growth: list[float] = []
    try:
        with serve_fleet_process([spec], kubeconfig) as fleet:
            with psycopg.connect(dsn) as conn:
                for name in (ON, OFF, OFF_SEQ):
                    inventory.upsert_clusters(
                        conn, inventory.clusters_from_kubeconfig(kubeconfig, [CLUSTER], [name])
                    )
            first = _refresh(dsn, ON, "kubernetes_events")  # first loads: history starts with every row
            _refresh(dsn, OFF, "*")
            _refresh(dsn, OFF_SEQ, "*", ahead=False)
            result.params["rows_per_refresh"] = first["rows"]
            result.params["history_rows_first_load"] = first["added"]
            for i in range(sizes.repeats):
                report = fleet.churn(CLUSTER, CHURN, seed=i)
                result.notes.append(f"round {i}: churn {_summary(report)}")
                before = _history_bytes(dsn)
                order = ((ON, "kubernetes_events", True), (OFF, "*", True), (OFF_SEQ, "*", False))
                for name, skip, ahead in order[i % 3 :] + order[: i % 3]:
                    samples[name].append(_refresh(dsn, name, skip, ahead=ahead))
                if samples[ON][-1]["changed"]:
                    growth.append((_history_bytes(dsn) - before) / samples[ON][-1]["changed"])
        small = _small_cluster(dsn, work_dir)
    finally:
        from kq_pipeline import refresh

        refresh.FRAME_AHEAD = True
        if saved is None:
            os.environ.pop("KQ_HISTORY_SKIP", None)
        else:
            os.environ["KQ_HISTORY_SKIP"] = saved
    on, off, off_seq = samples[ON], samples[OFF], samples[OFF_SEQ]
    on_wall = result.add("refresh wall, history on", "s", [s["wall_s"] for s in on])
    off_wall = result.add("refresh wall, history off", "s", [s["wall_s"] for s in off])
    ratio = result.add(
        "history on / off, wall",
        "x",
        ratio_samples(on_wall.samples, off_wall.samples),
        note="each round's on sample over its off sample (same churned cluster)",
    )
    seq_wall = result.add(
        "refresh wall, history off, frames one after the other", "s", [s["wall_s"] for s in off_seq]
    )
    result.add(
        "frames built ahead: off / on (history off)",
        "x",
        ratio_samples(seq_wall.samples, off_wall.samples),
        note="refresh.FRAME_AHEAD's gain (> 1: it pays)",
    )
    result.add("refresh CPU (this process), history on", "s", [s["cpu_s"] for s in on])
    result.add("refresh CPU (this process), history off", "s", [s["cpu_s"] for s in off])
    result.add("rows changed per refresh (added + removed + modified)", "rows", [s["changed"] for s in on])
    result.add("  of which modified (paired by key)", "rows", [s["modified"] for s in on])
    result.add("history growth per changed row", "bytes", growth, note="history schema size, after VACUUM")
    s_off = result.add("small cluster: refresh wall, history off", "s", small["off"])
    s_on = result.add("small cluster: refresh wall, history on", "s", small["on"])
    result.add("small cluster: history on / off, wall", "x", ratio_samples(s_on.samples, s_off.samples))
    result.targets.append(
        Target(f"history on / off <= {GOAL}", ratio.median, GOAL, "x", higher_is_better=False)
    )
    return result


def _summary(report: dict[str, Any]) -> str:
    counts = {k: len(v) for k, v in report.items() if isinstance(v, list)}
    return ", ".join(f"{k} {n}" for k, n in counts.items())


def _small_cluster(dsn: str, work_dir: Path) -> dict[str, list[float]]:
    """Refresh walls of a 200-pod cluster under two names: history off and on."""
    from kq_pipeline import inventory
    from kq_pipeline.simulator.objects import ClusterSpec
    from kq_pipeline.simulator.process import serve_fleet_process

    spec = ClusterSpec(SMALL, seed=2, pods=SMALL_PODS, namespaces=5)
    kubeconfig = work_dir / "history-small-kubeconfig.yaml"
    variants = {"off": "*", "on": "kubernetes_events"}
    walls: dict[str, list[float]] = {v: [] for v in variants}
    with serve_fleet_process([spec], kubeconfig) as fleet:
        with psycopg.connect(dsn) as conn:
            for v in variants:
                clusters = inventory.clusters_from_kubeconfig(kubeconfig, [SMALL], [f"{SMALL}-{v}"])
                inventory.upsert_clusters(conn, clusters)
        for v, skip in variants.items():  # first loads, not timed
            _refresh(dsn, f"{SMALL}-{v}", skip)
        for i in range(SMALL_ROUNDS):
            fleet.churn(SMALL, SMALL_CHURN, seed=100 + i)
            for v in list(variants)[i % 2 :] + list(variants)[: i % 2]:
                walls[v].append(_refresh(dsn, f"{SMALL}-{v}", variants[v])["wall_s"])
    return walls
