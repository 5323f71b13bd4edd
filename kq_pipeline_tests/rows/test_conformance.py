"""kubequery's own test expectations, reproduced from each case's objects (README "Shortcut").

Every case file in kq_pipeline_tests/data/kubequery/cases is one test. Objects are sorted by (namespace, name)
like kubequery's fake client lists them, the cluster uid/name come from the case, and the rows must
equal `expected_rows` exactly: same order, same keys, same string values. Cases whose expectations
are withheld must still run and obey the fan-out rule and the column list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kq_pipeline import registry
from kq_pipeline.rows import kubequery_rows
from kq_pipeline_tests.conftest import KUBEQUERY_DATA

CASE_FILES = sorted((KUBEQUERY_DATA / "cases").glob("*.json"))
# No case files must not mean no tests: an empty parameter set is only a skip in pytest.
CASE_PARAMS = [pytest.param(p, id=p.stem) for p in CASE_FILES] or [pytest.param(None, id="no-case-files")]


def _listed(case: dict[str, Any]) -> list[dict[str, Any]]:
    def key(obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return (meta.get("namespace") or "", meta.get("name") or "")

    return sorted(case["objects"], key=key)


def _rows(case: dict[str, Any]) -> list[dict[str, str]]:
    return kubequery_rows(
        case["table"], _listed(case), cluster_name=case["cluster"]["name"], cluster_uid=case["cluster"]["uid"]
    )


def _fan_out(table: registry.Table, objects: list[dict[str, Any]]) -> int:
    """Rows the README's row_per rule predicts: one per object, or one per element of each row loop."""
    loops = [loop["json"] for loop in table.spec["row_loops"]]
    if not loops:
        return len(objects)
    total = 0
    for obj in objects:
        for loop in loops:
            node: Any = obj
            for key in loop.removeprefix("ServerResources()[*].").removesuffix("[*]").split("."):
                node = (node or {}).get(key)
            total += len(node or [])
    return total


def test_every_case_file_the_index_lists_is_collected(kubequery_data: Path) -> None:
    index = json.loads((kubequery_data / "cases_index.json").read_text())
    assert index["cases"] == len(index["case_files"]) > 0
    assert [p.name for p in CASE_FILES] == index["case_files"]
    assert {p.parent for p in CASE_FILES} == {kubequery_data / "cases"}


@pytest.mark.parametrize("case_file", CASE_PARAMS)
def test_case_rows(case_file: Path | None) -> None:
    if case_file is None:
        pytest.fail(f"no kubequery case files in {KUBEQUERY_DATA / 'cases'}")
    case = json.loads(case_file.read_text())
    rows = _rows(case)
    if not case.get("expected_rows_withheld"):
        assert rows == case["expected_rows"]
        return
    table = registry.table(case["table"])
    objects = _listed(case)
    assert len(rows) == _fan_out(table, objects) > 0
    columns = set(table.column_names)
    for row in rows:
        assert set(row) <= columns
        assert all(isinstance(value, str) and value != "" for value in row.values())
        assert row["cluster_uid"] == case["cluster"]["uid"]
        assert "cluster_name" not in row  # the withheld cases all run with an empty cluster name
    if "uid" in columns:
        uids = [(o.get("metadata") or {}).get("uid") for o in objects]
        assert {row["uid"] for row in rows} == {u for u in uids if u}


def test_withheld_stateful_set_volumes_match_readme_example_7() -> None:
    """README example 7 spells out the emptyDir row of the stateful set volumes case."""
    case = json.loads((KUBEQUERY_DATA / "cases" / "kubernetes_stateful_set_volumes.json").read_text())
    row = next(r for r in _rows(case) if r["name"] == "alertmanager-main-db")
    assert row["volume_type"] == "empty_dir"
    assert row["empty_dir_size_limit"] == "<nil>"
    assert row["stateful_set_name"] == "alertmanager-main"
    for always_zero in (
        "aws_elastic_block_store_partition",
        "iscsi_lun",
        "iscsi_discovery_chap_auth",
        "scale_iossl_enabled",
    ):
        assert row[always_zero] == "0"
    assert "empty_dir_medium" not in row
    assert "read_only" not in row


def test_withheld_network_policy_fans_out_ingress_then_egress() -> None:
    case = json.loads((KUBEQUERY_DATA / "cases" / "kubernetes_network_policies.json").read_text())
    rows = _rows(case)
    spec = case["objects"][0]["spec"]
    assert [r["type"] for r in rows] == ["ingress"] * len(spec.get("ingress", [])) + ["egress"] * len(
        spec.get("egress", [])
    )
