"""deploy/target-rbac.yaml: valid Kubernetes objects, read-only, and exactly what the 51 tables need.

Sufficient: through the service-account token that registration obtains, a full native load of all
51 tables succeeds on a simulated cluster whose RBAC is the stored ClusterRole (discovery included:
the cluster has no default `system:discovery` binding). Minimal: dropping any one resource, the
kube-system GET or the discovery rule makes the tables that need it fail with a permission error.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient

from kq_pipeline.extract.native import extract_cluster
from kq_pipeline.inventory import Cluster, access_for
from kq_pipeline.register import READER, reader_manifests, register_cluster
from kq_pipeline.registry import KUBEQUERY_TABLES
from kq_pipeline.simulator import Fleet, SimulatedCluster
from kq_pipeline_tests.deploy.reader_role import reader_role_rules
from kq_pipeline_tests.deploy.targets import fresh_target

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "target-rbac.yaml"
V1_MODELS = {
    "Namespace": "V1Namespace",
    "ServiceAccount": "V1ServiceAccount",
    "ClusterRole": "V1ClusterRole",
    "ClusterRoleBinding": "V1ClusterRoleBinding",
}


def _documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def _cluster_role() -> dict[str, Any]:
    return next(d for d in _documents() if d["kind"] == "ClusterRole")


def _deserialize(api: ApiClient, doc: dict[str, Any], model: str) -> Any:
    text = json.dumps(doc)
    try:
        return api.deserialize(text, model, "application/json")  # kubernetes >= 37
    except TypeError:
        return api.deserialize(SimpleNamespace(data=text), model)  # older clients read response.data


def test_every_object_deserializes_into_its_kubernetes_v1_model() -> None:
    api = ApiClient()
    docs = _documents()
    assert [d["kind"] for d in docs] == list(V1_MODELS)
    for doc in docs:
        # the model constructors raise ValueError when a required field is missing
        model = _deserialize(api, doc, V1_MODELS[doc["kind"]])
        assert model.metadata.name
        assert api.sanitize_for_serialization(model) == doc  # no field was unknown to the model


def test_manifest_is_the_objects_registration_creates() -> None:
    assert _documents() == reader_manifests()


def test_role_is_read_only_and_never_gets_a_secret() -> None:
    for rule in _cluster_role()["rules"]:
        assert set(rule["verbs"]) <= {"list", "get"}, rule
        if "get" in rule["verbs"]:
            assert rule.get("nonResourceURLs") or rule.get("resourceNames") == ["kube-system"], rule
            assert "secrets" not in rule.get("resources", [])
        assert "*" not in json.dumps(rule).replace("/api/*", "").replace("/apis/*", ""), rule


def test_role_lists_exactly_the_resources_the_tables_read() -> None:
    granted = {
        (g, r)
        for rule in _cluster_role()["rules"]
        if rule["verbs"] == ["list"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    needed = {
        ("" if t.source.api_group == "core" else t.source.api_group, t.source.resource)
        for t in KUBEQUERY_TABLES.values()
        if t.source.resource
    }
    assert granted == needed | {("apiextensions.k8s.io", "customresourcedefinitions")}
    assert len(needed) == 37


# --- live proof on the simulator ----------------------------------------------------------------
@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimulatedCluster, Cluster]]:
    tmp = tmp_path_factory.mktemp("rbac")
    with Fleet() as fleet:
        sim = fleet.add("target", fresh_target("target"))
        kubeconfig = fleet.write_kubeconfig(tmp / "admin.yaml")
        cluster = register_cluster(
            kubeconfig, "target", name=None, dry_run=False, token_dir=tmp / "tokens", out=io.StringIO()
        )
        assert cluster is not None
        yield sim, cluster


@pytest.fixture
def role(target: tuple[SimulatedCluster, Cluster]) -> Iterator[Any]:
    """Set the stored kq-reader ClusterRole's rules for one test; restored afterwards."""
    with reader_role_rules(target[0], READER) as set_rules:
        yield set_rules


def _extract(cluster: Cluster, tables: list[str]) -> Any:
    return extract_cluster(access_for(cluster), cluster.name, tables, concurrency=4, deadline_s=60)


def test_full_load_of_all_51_tables_succeeds_with_the_registered_reader(
    target: tuple[SimulatedCluster, Cluster],
) -> None:
    result = _extract(target[1], list(KUBEQUERY_TABLES))
    assert result.error is None
    assert result.failed_tables == [], {t: result.tables[t].error for t in result.failed_tables}
    assert len(result.tables) == 51
    assert result.tables["kubernetes_pod_security_policies"].rows  # served at 1.24, so really listed
    assert result.tables["kubernetes_pods"].rows


def _without(rules: list[dict[str, Any]], group: str, resource: str) -> list[dict[str, Any]]:
    out = []
    for rule in copy.deepcopy(rules):
        if rule.get("apiGroups") == [group] and rule["verbs"] == ["list"]:
            rule["resources"] = [r for r in rule["resources"] if r != resource]
            if not rule["resources"]:
                continue
        out.append(rule)
    return out


LISTED = sorted(
    {
        ("" if t.source.api_group == "core" else t.source.api_group, t.source.resource or "")
        for t in KUBEQUERY_TABLES.values()
        if t.source.resource
    }
)


@pytest.mark.parametrize(("group", "resource"), LISTED, ids=[f"{g or 'core'}/{r}" for g, r in LISTED])
def test_dropping_one_listed_resource_fails_exactly_its_tables(
    target: tuple[SimulatedCluster, Cluster], role: Any, group: str, resource: str
) -> None:
    role(_without(_cluster_role()["rules"], group, resource))
    needing = [
        t.name
        for t in KUBEQUERY_TABLES.values()
        if t.source.resource == resource
        and (t.source.api_group == group or (group == "" and t.source.api_group == "core"))
    ]
    bystander = "kubernetes_storage_classes" if resource != "storageclasses" else "kubernetes_nodes"
    result = _extract(target[1], [*needing, bystander, "kubernetes_info"])
    for name in needing:
        error = result.tables[name].error or ""
        assert "permission denied" in error and f'"{resource}"' in error, (name, error)
        assert name in error
    assert result.tables[bystander].ok and result.tables["kubernetes_info"].ok


def test_dropping_the_kube_system_get_fails_every_table_naming_it(
    target: tuple[SimulatedCluster, Cluster], role: Any
) -> None:
    role([r for r in _cluster_role()["rules"] if not r.get("resourceNames")])
    result = _extract(target[1], ["kubernetes_pods", "kubernetes_info"])
    assert result.failed_tables == ["kubernetes_pods", "kubernetes_info"]
    assert 'namespaces "kube-system" is forbidden' in (result.error or "")


def test_dropping_the_discovery_rule_fails_where_no_default_discovery_binding_exists(
    target: tuple[SimulatedCluster, Cluster], role: Any
) -> None:
    role([r for r in _cluster_role()["rules"] if not r.get("nonResourceURLs")])
    result = _extract(target[1], ["kubernetes_pods", "kubernetes_info"])
    assert result.failed_tables == ["kubernetes_pods", "kubernetes_info"]
    assert 'cannot get path "/version"' in (result.error or "")
