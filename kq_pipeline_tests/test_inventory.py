"""The inventory: names are safe partition keys, files give clear errors, credentials stay references."""

from __future__ import annotations

from pathlib import Path

import pytest

from kq_pipeline import inventory
from kq_pipeline.inventory import Cluster, InventoryError


@pytest.mark.parametrize("name", ["prod-eu-1", "a", "x" * 63, "0cluster9"])
def test_valid_names_are_accepted(name: str) -> None:
    assert inventory.validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Prod", "a,b", "-a", "a-", "x" * 64, "a_b", "a b", "a'; DROP TABLE kq_clusters; --"]
)
def test_unsafe_names_are_rejected_with_the_rule(name: str) -> None:
    with pytest.raises(InventoryError, match="lowercase letters, digits and '-'"):
        inventory.validate_name(name)


def test_context_names_become_valid_cluster_names() -> None:
    assert inventory.name_from_context("kind-Dev_1") == "kind-dev-1"
    assert (
        inventory.name_from_context("arn:aws:eks:eu-west-1:123:cluster/prod")
        == "arn-aws-eks-eu-west-1-123-cluster-prod"
    )


def test_yaml_inventory_resolves_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "clusters.yaml").write_text(
        """
clusters:
  - name: prod-eu-1
    server: https://10.0.0.1:6443
    token_env: KQ_TOKEN_PROD_EU_1
    ca_file: ca/prod.crt
  - name: staging
    kubeconfig: kube/config
    context: staging-admin
    extractor: kubequery
"""
    )
    prod, staging = inventory.clusters_from_yaml(tmp_path / "clusters.yaml")
    assert prod == Cluster(
        name="prod-eu-1",
        server="https://10.0.0.1:6443",
        token_env="KQ_TOKEN_PROD_EU_1",
        ca_file=str(tmp_path / "ca" / "prod.crt"),
        source="yaml",
    )
    assert staging.kubeconfig == str(tmp_path / "kube" / "config")
    assert staging.context == "staging-admin"
    assert staging.extractor == "kubequery"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clusters: [", "not valid YAML"),
        ("nodes: []", "expected a top-level 'clusters:' list"),
        ("clusters:\n  - name: Bad_Name\n    server: https://x\n    token_env: T", "invalid cluster name"),
        ("clusters:\n  - name: a\n    server: https://x\n    token_env: T\n    tokn: x", "unknown keys"),
        ("clusters:\n  - name: a\n    server: https://x", "say how to authenticate"),
        ("clusters:\n  - name: a\n    server: x:6443\n    token_env: T", "must be an http"),
        (
            "clusters:\n  - {name: a, server: 'https://x', token_env: T}\n"
            "  - {name: a, server: 'https://y', token_env: T}",
            "duplicate cluster name 'a'",
        ),
    ],
)
def test_bad_inventory_files_name_the_file_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "clusters.yaml"
    path.write_text(text)
    with pytest.raises(InventoryError, match=message) as info:
        inventory.clusters_from_yaml(path)
    if "invalid cluster name" not in message and "authenticate" not in message and "http" not in message:
        assert str(path) in str(info.value)


def test_missing_inventory_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="inventory file not found"):
        inventory.clusters_from_yaml(tmp_path / "nope.yaml")
