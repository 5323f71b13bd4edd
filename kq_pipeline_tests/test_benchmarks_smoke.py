"""`python -m benchmarks` at a tiny size: each case runs against a real PostgreSQL and a simulated fleet
and reports sane numbers. Timing targets are not judged here (see benchmarks/README.md).

Cases 1 (a child process per repeat) and 3 (Dagster runs) take 10-20 s even when tiny, case 7 (the
daemon, waiting for its schedule's tick at a minute boundary) 40-100 s: marked slow."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from benchmarks.run import run_cases
from benchmarks.sizes import Sizes
from benchmarks.stats import Target, format_table
from kq_pipeline.registry import TABLES

TINY = Sizes(
    repeats=1,
    large_pods=60,
    large_namespaces=3,
    row_by_row_rows=40,
    fleet_clusters=2,
    fleet_pods=10,
    fleet_namespaces=2,
    fleet_run_size=2,
    fleet_concurrency=2,
    query_fleet_scale=0.004,
    query_repeats=1,
    mechanism_pods=60,
    mechanism_repeats=1,
    custom_objects=60,
    custom_pods=60,
    custom_namespaces=3,
)


def _run(case: str, server_dsn: str) -> dict[str, Any]:
    report = run_cases([case], TINY, server_dsn=server_dsn, log=lambda _: None)
    json.dumps(report)  # the report is what latest.json holds
    (result,) = report["cases"]
    assert result["metrics"] and result["targets"]
    for metric in result["metrics"]:
        assert math.isfinite(metric["median"]) and metric["median"] >= 0, metric
        assert metric["name"] in report["table"]
    for target in result["targets"]:
        assert isinstance(target["met"], bool) and target["margin"] > 0, target
    return result


@pytest.mark.slow
def test_large_cluster_loads_every_table_and_reports_stages_and_peak_rss(pg_server_dsn: str) -> None:
    result = _run("1", pg_server_dsn)
    assert result["params"]["rows_all_tables"] > TINY.large_pods  # pods, containers, nodes, ... all loaded
    medians = {m["name"]: m["median"] for m in result["metrics"]}
    stages = sum(
        medians[f"stage: {s}"] for s in ("extract (list + rows)", "frames (to_frame)", "load (COPY + swap)")
    )
    assert stages <= medians["wall time"] * 1.01
    assert 20 < medians["peak RSS of the loader process"] < 4096  # MB of a real Python process


def test_load_path_compares_our_loader_with_raw_copy_and_row_by_row(pg_server_dsn: str) -> None:
    result = _run("2", pg_server_dsn)
    assert result["params"]["kubernetes_pods_rows"] == TINY.large_pods
    names = {m["name"] for m in result["metrics"]}
    assert {"pods: (a)/(b) ours vs raw COPY", "pods: (a)/(c) ours vs row-by-row"} <= names


@pytest.mark.slow
def test_fleet_refresh_through_dagster_accounts_for_every_cluster(pg_server_dsn: str) -> None:
    result = _run("3", pg_server_dsn)
    assert result["params"]["clusters"] == TINY.fleet_clusters
    per_cluster = next(m for m in result["metrics"] if m["name"] == "per-cluster extract+load (all clusters)")
    assert len(per_cluster["samples"]) == TINY.fleet_clusters


@pytest.mark.slow
def test_fleet_refresh_as_deployed_runs_the_schedules_batches_through_the_daemon(pg_server_dsn: str) -> None:
    result = _run("7", pg_server_dsn)
    params = result["params"]
    assert params["clusters"] == TINY.fleet_clusters and params["runs"] == 1  # one batch of <= 25
    assert params["run_coordinator"] == "QueuedRunCoordinator" and params["max_concurrent_runs"] == 4
    medians = {m["name"].strip(): m["median"] for m in result["metrics"]}
    assert medians["sum of refresh_clusters spans (kq_meta.loads)"] <= medians["sum of run durations"]
    assert (
        medians["run duration (started -> ended), per run"]
        <= medians["wall time, first run created -> last run ended"]
    )


@pytest.mark.slow
def test_fleet_refresh_on_postgres_storage_shows_the_storage_flat_under_retention(pg_server_dsn: str) -> None:
    result = _run("3p", pg_server_dsn)
    assert result["params"]["retention_runs_deleted"] >= 1
    medians = {m["name"].strip(): m["median"] for m in result["metrics"]}
    assert medians["Dagster storage on disk per cluster refresh"] > 0
    assert medians["retention: storage after prune + refresh / after refresh"] > 0


def test_each_speed_mechanism_is_measured_on_and_off(pg_server_dsn: str) -> None:
    result = _run("8", pg_server_dsn)
    names = {m["name"] for m in result["metrics"]}
    for mechanism in ("list_meta", "gc_pause", "memo"):
        assert f"{mechanism}: on/off gain, CPU" in names
    assert "simulator GC pause: on/off gain" in names


def test_fleet_queries_run_on_our_schema_and_the_original_one(pg_server_dsn: str) -> None:
    result = _run("4", pg_server_dsn)
    names = {m["name"] for m in result["metrics"]}
    assert {"top 10 images (original's): ours", "top 10 images (original's): original"} <= names
    assert result["params"]["label_matches"] >= 1


def test_small_cluster_cost_reports_cpu_and_each_phase_with_the_json_reparse_on_and_off(
    pg_server_dsn: str,
) -> None:
    result = _run("6", pg_server_dsn)
    assert result["params"]["tables"] == len(TABLES) and result["params"]["rows"] > 0
    medians = {m["name"].strip(): m["median"] for m in result["metrics"]}
    assert medians["refresh CPU, polling process"] > 0
    phases = ("extract", "frames", "frames, JSON re-parsed", "load")
    assert all(medians[f"of which {p} CPU"] > 0 for p in phases)


def test_custom_resources_and_pods_are_loaded_in_full_and_compared_in_the_same_run(
    pg_server_dsn: str,
) -> None:
    result = _run("9", pg_server_dsn)
    assert result["params"]["custom_objects"] == TINY.custom_objects and result["params"]["custom_kinds"] == 7
    medians = {m["name"]: m["median"] for m in result["metrics"]}
    assert medians["kubernetes_custom_resources: rows/s"] > 0 and medians["kubernetes_pods: rows/s"] > 0
    (target,) = result["targets"]
    assert target["goal"] == 0.8 and target["measured"] == medians["custom / pods rows/s"]
    for table in ("pods", "custom"):
        stages = sum(
            medians[f"{table}: stage {s}"]
            for s in ("extract (list + rows)", "frames (to_frame)", "load (COPY + swap)")
        )
        assert stages <= medians[f"{table}: wall"] * 1.01 + 0.01


def test_history_on_and_off_refresh_the_same_churned_cluster_and_storage_follows_the_changes(
    pg_server_dsn: str,
) -> None:
    result = _run("10", pg_server_dsn)
    medians = {m["name"].strip(): m["median"] for m in result["metrics"]}
    assert medians["rows changed per refresh (added + removed + modified)"] > 0  # the churn reached it
    assert medians["history growth per changed row"] > 0
    assert medians["refresh wall, history on"] > 0 and medians["refresh wall, history off"] > 0
    (target,) = result["targets"]
    assert target["goal"] == 1.25 and target["measured"] == medians["history on / off, wall"]


def test_row_level_security_on_and_off_and_readers_queries_are_measured(pg_server_dsn: str) -> None:
    result = _run("11", pg_server_dsn)
    medians = {m["name"]: m["median"] for m in result["metrics"]}
    assert medians["load of every table, row-level security on"] > 0
    assert medians["load of every table, row-level security off"] > 0
    for who in ("owner", "reader, every cluster", "reader, team of 1"):
        assert medians[f"top 10 images: {who}"] > 0
    (target,) = result["targets"]
    assert target["goal"] == 1.05 and target["measured"] == medians["on / off"]


def test_a_target_is_judged_in_its_direction_and_shown_as_missed() -> None:
    assert Target("rate", 25_000, 20_000, "rows/s").met
    slow = Target("rss", 2048, 1536, "MB", higher_is_better=False)
    assert not slow.met and slow.margin == 0.75
    from benchmarks.stats import CaseResult

    table = format_table([CaseResult("x", "x", targets=[slow])])
    assert "MISSED (0.75 of goal)" in table
