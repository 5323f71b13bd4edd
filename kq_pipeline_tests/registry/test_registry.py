"""The packaged registry is kubequery's schema, exactly: the package's copy (written by
tools/build_registry.py) against the test data's (kq_pipeline_tests/data/kubequery)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kq_pipeline import registry
from tools import build_registry


def test_registry_matches_kubequerys_schema_in_names_order_and_types(kubequery_data: Path) -> None:
    schema = json.loads((kubequery_data / "schema.json").read_text())["tables"]
    assert list(registry.TABLES) == list(schema)
    for name, spec in schema.items():
        expected = [(c["name"], c["type"]) for c in spec["columns"]]
        got = [(c.name, c.kq_type) for c in registry.TABLES[name].columns]
        assert got == expected, name


def test_registry_has_51_tables_and_json_columns_follow_kubequery_render() -> None:
    assert len(registry.TABLES) == 51
    pods = registry.table("kubernetes_pods")
    assert {"labels", "annotations", "tolerations", "conditions"} <= set(pods.json_columns)
    assert "name" not in pods.json_columns


def test_go_types_match_kubequerys(kubequery_data: Path) -> None:
    go_types = json.loads((kubequery_data / "go_types.json").read_text())["types"]
    assert registry.go_types() == go_types


@pytest.mark.parametrize("name", ["schema.json", "go_types.json"])
def test_package_copy_is_exactly_what_build_registry_writes_from_the_test_data(
    kubequery_data: Path, name: str
) -> None:
    """A stale package copy (data refreshed, tools/build_registry.py not re-run) fails here."""
    packaged = Path(registry.__file__).parent / name
    assert packaged.read_text() == build_registry.minified(kubequery_data / name)


def test_every_table_is_in_exactly_one_asset_group() -> None:
    grouped = [t for names in registry.ASSET_GROUPS.values() for t in names]
    assert sorted(grouped) == sorted(registry.TABLES)
    assert set(registry.ASSET_GROUPS) == {
        "core",
        "apps",
        "batch",
        "autoscaling",
        "networking",
        "policy",
        "rbac",
        "storage",
        "admissionregistration",
        "discovery",
    }


def test_unknown_table_is_a_clear_error() -> None:
    with pytest.raises(registry.UnknownTableError, match="not one of kubequery's 51 tables"):
        registry.table("kubernetes_podz")
