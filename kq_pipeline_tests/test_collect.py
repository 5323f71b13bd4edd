"""What to collect: ordered include/exclude globs for tables and custom kinds, namespace excludes and a
per-kind limit; the default takes everything, and every mistake is one line naming where it is."""

from __future__ import annotations

import pytest

from kq_pipeline.collect import (
    DEFAULT_MAX_OBJECTS_PER_KIND,
    Collect,
    CollectError,
    collect_from_mapping,
    merged,
    not_collected,
    without_excluded_namespaces,
)
from kq_pipeline.registry import TABLES


def test_the_default_collects_every_table_every_kind_and_every_namespace() -> None:
    c = Collect()
    assert all(c.table_collected(t) for t in TABLES)
    assert c.kind_collected("cert-manager.io", "Certificate", "certificates")
    assert not c.namespace_excluded("kube-system")
    assert c.max_objects_per_kind == DEFAULT_MAX_OBJECTS_PER_KIND == 50_000
    assert c.is_default and c.to_json() is None and c.summary() == "all"


def test_an_exclude_pattern_alone_keeps_everything_else() -> None:
    c = Collect(tables=("!kubernetes_secrets",))
    assert not c.table_collected("kubernetes_secrets")
    assert [t for t in TABLES if not c.table_collected(t)] == ["kubernetes_secrets"]


def test_include_patterns_select_and_excludes_win_over_them() -> None:
    c = Collect(tables=("kubernetes_pod*", "!kubernetes_pod_volumes"))
    chosen = {t for t in TABLES if c.table_collected(t)}
    assert "kubernetes_pods" in chosen and "kubernetes_pod_containers" in chosen
    assert "kubernetes_pod_volumes" not in chosen and "kubernetes_nodes" not in chosen


def test_custom_kinds_match_as_group_kind_or_group_plural() -> None:
    c = Collect(custom_kinds=("cert-manager.io/*", "networking.istio.io/virtualservices", "!*/Issuer"))
    assert c.kind_collected("cert-manager.io", "Certificate", "certificates")
    assert not c.kind_collected("cert-manager.io", "Issuer", "issuers")  # excluded by Kind
    assert c.kind_collected("networking.istio.io", "VirtualService", "virtualservices")  # by plural
    assert not c.kind_collected("argoproj.io", "Application", "applications")  # no include matches
    internal = Collect(custom_kinds=("!*.internal.example.com/*",))
    assert not internal.kind_collected("db.internal.example.com", "Backup", "backups")
    assert internal.kind_collected("argoproj.io", "Application", "applications")


def test_namespace_excludes_are_globs_and_never_match_cluster_scoped_rows() -> None:
    c = Collect(exclude_namespaces=("kube-system", "tenant-*"))
    assert c.namespace_excluded("kube-system") and c.namespace_excluded("tenant-a")
    assert not c.namespace_excluded("default")
    assert not c.namespace_excluded("") and not c.namespace_excluded(None)


def test_a_selection_round_trips_through_its_stored_json_keeping_only_what_differs() -> None:
    c = Collect(tables=("!kubernetes_secrets",), custom_kinds=("cert-manager.io/*",), max_objects_per_kind=10)
    stored = c.to_json()
    assert stored == {
        "tables": ["!kubernetes_secrets"],
        "custom_kinds": ["cert-manager.io/*"],
        "max_objects_per_kind": 10,
    }
    assert Collect.from_json(stored) == c and Collect.from_json(None) == Collect()


def test_the_summary_fits_one_short_line() -> None:
    c = Collect(
        tables=("!kubernetes_secrets",),
        custom_kinds=("cert-manager.io/*",),
        exclude_namespaces=("kube-system",),
        max_objects_per_kind=1000,
    )
    assert c.summary() == "-secrets; custom: cert-manager.io/*; -ns: kube-system; max 1000/kind"


def test_a_cluster_override_replaces_the_fleet_default_key_by_key() -> None:
    default = {"tables": ["!kubernetes_secrets"], "exclude_namespaces": ["kube-system"]}
    mine = {"tables": [], "custom_kinds": ["argoproj.io/*"]}
    c = collect_from_mapping(merged(default, mine), "cluster a")
    assert c == Collect(custom_kinds=("argoproj.io/*",), exclude_namespaces=("kube-system",))


def test_comma_separated_strings_are_lists_of_patterns() -> None:
    c = collect_from_mapping({"tables": "!kubernetes_secrets, !kubernetes_config_maps"}, "cli")
    assert c.tables == ("!kubernetes_secrets", "!kubernetes_config_maps")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"tables": ["kubernetes_secret"]},
            "'kubernetes_secret' matches no table (did you mean kubernetes_secrets?)",
        ),
        ({"tables": ["!Kubernetes-Pods"]}, "is not a table name or glob"),
        ({"tables": ["kubernetes_zz*"]}, "matches no table"),
        ({"custom_kinds": ["cert-manager.io"]}, "is not group/Kind or group/plural"),
        ({"custom_kinds": ["/Certificate"]}, "is not group/Kind or group/plural"),
        ({"custom_kinds": ["cert manager/*"]}, "is not group/Kind or group/plural"),
        ({"exclude_namespaces": ["Kube_System"]}, "is not a namespace name or glob"),
        ({"exclude_namespaces": ["!default"]}, "is not a namespace name or glob"),
        ({"max_objects_per_kind": 0}, "must be a positive integer"),
        ({"max_objects_per_kind": "many"}, "must be a positive integer"),
        ({"max_objects_per_kind": True}, "must be a positive integer"),
        ({"tables": {"a": 1}}, "must be a list of patterns"),
        ({"tables": [""]}, "must be a list of non-empty strings"),
        ({"kinds": ["x/y"]}, "unknown keys ['kinds']"),
        (["!kubernetes_secrets"], "collect must be a mapping"),
    ],
)
def test_mistakes_are_one_line_errors_naming_where(doc: object, message: str) -> None:
    with pytest.raises(CollectError) as err:
        collect_from_mapping(doc, "cluster prod-eu-1")
    text = str(err.value)
    assert text.startswith("cluster prod-eu-1: ") and message in text and "\n" not in text


def test_not_collected_names_each_left_out_table_with_why() -> None:
    why = not_collected(Collect(tables=("!kubernetes_secrets",)), "kubequery", list(TABLES))
    no_kubequery = "not available with the kubequery extractor (kubequery has no such table)"
    assert why == {
        "kubernetes_secrets": "excluded by the cluster's selection (collect.tables)",
        "kubernetes_custom_resource_definitions": no_kubequery,
        "kubernetes_custom_resources": no_kubequery,
    }


def test_rows_of_excluded_namespaces_are_dropped_from_namespaced_tables_only() -> None:
    c = Collect(exclude_namespaces=("kube-*",))
    pods = [{"name": "a", "namespace": "kube-system"}, {"name": "b", "namespace": "default"}]
    assert without_excluded_namespaces("kubernetes_pods", pods, c) == (
        [pods[1]],
        "1 row(s) of excluded namespaces not stored (collect.exclude_namespaces)",
    )
    namespaces = [{"name": "kube-system"}]
    assert without_excluded_namespaces("kubernetes_namespaces", namespaces, c) == (namespaces, None)
    assert without_excluded_namespaces("kubernetes_pods", pods[1:], c) == (pods[1:], None)
