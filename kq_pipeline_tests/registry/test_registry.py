"""The packaged registry is kubequery's schema, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kq_pipeline import registry


def test_registry_matches_shared_schema_in_names_order_and_types(shared_kubequery: Path) -> None:
    shared = json.loads((shared_kubequery / "schema.json").read_text())["tables"]
    assert list(registry.TABLES) == list(shared)
    for name, spec in shared.items():
        expected = [(c["name"], c["type"]) for c in spec["columns"]]
        got = [(c.name, c.kq_type) for c in registry.TABLES[name].columns]
        assert got == expected, name


def test_registry_has_51_tables_and_json_columns_follow_kubequery_render() -> None:
    assert len(registry.TABLES) == 51
    pods = registry.table("kubernetes_pods")
    assert {"labels", "annotations", "tolerations", "conditions"} <= set(pods.json_columns)
    assert "name" not in pods.json_columns


def test_go_types_match_shared(shared_kubequery: Path) -> None:
    shared = json.loads((shared_kubequery / "go_types.json").read_text())["types"]
    assert registry.go_types() == shared


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
