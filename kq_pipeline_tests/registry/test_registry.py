"""The packaged registry is kubequery's schema, exactly (the package's copy, written by
tools/build_registry.py, against the test data's, kq_pipeline_tests/data/kubequery), plus the project's
own two custom-resource tables in the same style."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kq_pipeline import registry
from tools import build_registry


def test_registry_matches_kubequerys_schema_in_names_order_and_types(kubequery_data: Path) -> None:
    schema = json.loads((kubequery_data / "schema.json").read_text())["tables"]
    assert list(registry.KUBEQUERY_TABLES) == list(schema)
    for name, spec in schema.items():
        expected = [(c["name"], c["type"]) for c in spec["columns"]]
        got = [(c.name, c.kq_type) for c in registry.KUBEQUERY_TABLES[name].columns]
        assert got == expected, name


def test_registry_has_51_tables_and_json_columns_follow_kubequery_render() -> None:
    assert len(registry.KUBEQUERY_TABLES) == 51
    assert all(t.kubequery for t in registry.KUBEQUERY_TABLES.values())
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
    assert registry.ASSET_GROUPS["custom"] == tuple(registry.PROJECT_TABLES)
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
        "custom",
    }


def test_unknown_table_is_a_clear_error() -> None:
    fleet = f"not one of the {len(registry.TABLES)} fleet tables"
    with pytest.raises(registry.UnknownTableError, match=fleet):
        registry.table("kubernetes_podz")


def test_every_fleet_table_is_kubequerys_then_the_projects_custom_resource_tables() -> None:
    assert list(registry.TABLES) == [*registry.KUBEQUERY_TABLES, *registry.PROJECT_TABLES]
    assert list(registry.PROJECT_TABLES) == [
        registry.CUSTOM_RESOURCE_DEFINITIONS_TABLE,
        registry.CUSTOM_RESOURCES_TABLE,
    ]


@pytest.mark.parametrize("name", ["kubernetes_custom_resource_definitions", "kubernetes_custom_resources"])
def test_the_custom_resource_tables_follow_kubequerys_conventions(name: str) -> None:
    t = registry.table(name)
    types = {c.name: (c.kq_type, c.render) for c in t.columns}
    assert t.column_names[:2] == ("cluster_name", "cluster_uid") and not t.kubequery
    # the same conventions as the kubequery tables' columns of the same names
    pods = {c.name: (c.kq_type, c.render) for c in registry.table("kubernetes_pods").columns}
    for column in ("uid", "name", "creation_timestamp", "labels", "annotations"):
        assert types[column] == pods[column], column
    assert types["creation_timestamp"] == ("BIGINT", "unix_seconds")
    assert {"labels", "annotations"} <= set(t.json_columns) and t.asset_group == "custom"


def test_the_crd_table_has_flags_as_0_1_and_served_versions_as_json() -> None:
    table = registry.table("kubernetes_custom_resource_definitions")
    crds = {c.name: (c.kq_type, c.render) for c in table.columns}
    assert crds["established"] == crds["names_accepted"] == ("INTEGER", "bool_0_1")
    assert crds["versions"] == ("TEXT", "json") and crds["storage_version"] == ("TEXT", "string")
    assert list(crds)[2:9] == ["uid", "name", "group", "kind", "plural", "singular", "scope"]


def test_custom_resources_keep_spec_status_and_every_other_field_as_json_and_are_kept_by_kind() -> None:
    t = registry.table("kubernetes_custom_resources")
    assert t.column_names == (
        "cluster_name",
        "cluster_uid",
        "api_group",
        "api_version",
        "kind",
        "resource",
        "namespace",
        "name",
        "uid",
        "creation_timestamp",
        "resource_version",
        "labels",
        "annotations",
        "owner_references",
        "spec",
        "status",
        "extra",
    )
    assert set(t.json_columns) == {"labels", "annotations", "owner_references", "spec", "status", "extra"}
    assert t.kept_by == ("api_group", "kind") and t.namespaced
    assert t.indexes == (
        (("cluster_name", "api_group", "kind"), "btree"),
        (("cluster_name", "namespace", "name"), "btree"),
        (("labels",), "gin"),
    )
