"""The code location as Dagster loads it: what users find in the UI, and `dagster definitions validate`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

from kq_pipeline.definitions import defs
from kq_pipeline.registry import ASSET_GROUPS, TABLES

REPO = Path(__file__).resolve().parents[2]


def test_the_asset_graph_is_ten_partitioned_api_groups_feeding_the_51_tables() -> None:
    graph = defs.resolve_asset_graph()
    groups = {AssetKey(["kubequery", g]) for g in ASSET_GROUPS}
    tables = {AssetKey(t) for t in TABLES}
    assert graph.get_all_asset_keys() == groups | tables
    for key in groups:
        assert graph.get(key).partitions_def.name == "clusters"
    for name, table in TABLES.items():
        assert graph.get(AssetKey(name)).parent_keys == {AssetKey(["kubequery", table.asset_group])}
    assert {c.name for c in graph.asset_check_keys} == {"row_counts"}
    assert len(graph.asset_check_keys) == len(ASSET_GROUPS)


def test_jobs_schedules_and_sensor_users_see() -> None:
    assert {s.name for s in defs.schedules} == {"fleet_refresh", "dagster_run_retention"}
    assert {s.name for s in defs.sensors} == {"inventory_sensor"}
    assert defs.resolve_job_def("refresh_clusters").executor_def.name == "in_process"


def test_dagster_validates_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr
