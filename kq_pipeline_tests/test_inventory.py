"""The inventory: names are safe partition keys, files give clear errors, credentials stay references,
unchanged rows are never rewritten, and a removed cluster stays removed until it is explicitly added."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from kq_pipeline import inventory
from kq_pipeline.cli import main
from kq_pipeline.collect import Collect
from kq_pipeline.inventory import Cluster, InventoryError
from kq_pipeline_tests.conftest import write_inventory_file


@pytest.mark.parametrize("name", ["prod-eu-1", "a", "x" * 63, "0cluster9"])
def test_valid_names_are_accepted(name: str) -> None:
    assert inventory.validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Prod", "a,b", "-a", "a-", "x" * 64, "a_b", "a b", "a'; DROP TABLE kq_meta.clusters; --"]
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


def _cluster(name: str, server: str = "https://127.0.0.1:6443") -> Cluster:
    return Cluster(name=name, server=server, token_env="KQ_TEST_TOKEN", source="yaml")


def _rows(dsn: str) -> dict[str, tuple[str, object, bool]]:
    """name -> (xmin, updated_at, removed): xmin changes whenever the row is rewritten."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT name, xmin::text, updated_at, retired_at IS NOT NULL FROM kq_meta.clusters"
        ).fetchall()
    return {name: (xmin, updated, removed) for name, xmin, updated, removed in rows}


def test_upserting_unchanged_clusters_rewrites_no_row_and_a_change_rewrites_only_its_row(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        assert inventory.upsert_clusters(conn, [_cluster("a"), _cluster("b")]) == 2
    before = _rows(pg_dsn)

    with psycopg.connect(pg_dsn) as conn:
        assert inventory.upsert_clusters(conn, [_cluster("a"), _cluster("b")]) == 0
        assert inventory.sync_clusters(conn, [_cluster("a"), _cluster("b")]) == inventory.FileSync([], [])
    assert _rows(pg_dsn) == before

    with psycopg.connect(pg_dsn) as conn:
        assert inventory.upsert_clusters(conn, [_cluster("a"), _cluster("b", "https://10.0.0.9:6443")]) == 1
    after = _rows(pg_dsn)
    assert after["a"] == before["a"]
    assert after["b"][0] != before["b"][0] and after["b"][1] > before["b"][1]


def test_a_file_sync_never_brings_back_a_removed_cluster_an_explicit_add_does(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(conn, [_cluster("a"), _cluster("b")])
        assert inventory.retire_cluster(conn, "b")

        synced = inventory.sync_clusters(
            conn, [_cluster("a"), _cluster("b", "https://10.0.0.9:6443"), _cluster("c")]
        )

        assert synced == inventory.FileSync(written=["c"], removed=["b"])
        assert [c.name for c in inventory.active_clusters(conn)] == ["a", "c"]
        assert inventory.get_cluster(conn, "b") is None
        assert inventory.removed_clusters(conn, ["a", "b", "c", "zz"]) == ["b"]

        assert inventory.upsert_clusters(conn, [_cluster("b")]) == 1  # `kq clusters add`

        assert [c.name for c in inventory.active_clusters(conn)] == ["a", "b", "c"]
        assert inventory.removed_clusters(conn, ["b"]) == []


@pytest.fixture
def kq_env(pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI against the test database, with KQ_INVENTORY_FILE listing prod-eu and prod-us."""
    monkeypatch.setenv("KQ_DATABASE_URL", pg_dsn)
    monkeypatch.setenv("KQ_HOME", str(tmp_path / "kq"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    return write_inventory_file(tmp_path, monkeypatch)


def test_kq_clusters_remove_and_list_say_why_the_inventory_file_no_longer_adds_a_removed_cluster(
    kq_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["clusters", "add", "--file", str(kq_env)]) == 0
    assert main(["clusters", "add", "solo", "--server", "https://10.0.0.3:6443", "--token-env", "T"]) == 0
    capsys.readouterr()

    assert main(["clusters", "remove", "prod-us", "solo"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "removed prod-us (its rows stay until deleted; see README); it is still listed in "
        f"{kq_env}, which will no longer re-add it; `kq clusters add` re-adds it",
        "removed solo (its rows stay until deleted; see README)",
    ]

    assert main(["clusters", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["prod-eu"]
    assert lines[-1] == (
        f"1 cluster(s) in {kq_env} ignored because removed with `kq clusters remove`: prod-us "
        "(`kq clusters add` re-adds)"
    )

    assert main(["clusters", "add", "--file", str(kq_env)]) == 0
    assert (
        "prod-us  https://10.0.0.2:6443  (yaml; it had been removed, active again)" in capsys.readouterr().out
    )
    assert main(["clusters", "list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["prod-eu", "prod-us"]


# -- what to collect -----------------------------------------------------------------------------------


def test_a_files_collect_block_is_the_fleet_default_and_a_clusters_own_overrides_it_key_by_key(
    tmp_path: Path,
) -> None:
    (tmp_path / "clusters.yaml").write_text(
        """
collect:
  tables: ["!kubernetes_secrets"]
  custom_kinds: ["cert-manager.io/*", "!*.internal.example.com/*"]
  exclude_namespaces: [kube-system, "tenant-*"]
clusters:
  - {name: plain, server: "https://10.0.0.1:6443", token_env: T}
  - name: dev
    server: https://10.0.0.2:6443
    token_env: T
    collect:
      tables: []
      max_objects_per_kind: 1000
"""
    )
    plain, dev = inventory.clusters_from_yaml(tmp_path / "clusters.yaml")
    assert plain.collect == Collect(
        tables=("!kubernetes_secrets",),
        custom_kinds=("cert-manager.io/*", "!*.internal.example.com/*"),
        exclude_namespaces=("kube-system", "tenant-*"),
    )
    assert dev.collect == Collect(
        custom_kinds=("cert-manager.io/*", "!*.internal.example.com/*"),
        exclude_namespaces=("kube-system", "tenant-*"),
        max_objects_per_kind=1000,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "clusters:\n  - {name: a, server: 'https://x', token_env: T,"
            " collect: {tables: [kubernetes_podz]}}",
            "cluster a: collect.tables: 'kubernetes_podz' matches no table (did you mean kubernetes_pods?)",
        ),
        (
            "collect: {custom_kinds: [cert-manager.io]}\n"
            "clusters:\n  - {name: a, server: 'https://x', token_env: T}",
            "fleet default: collect.custom_kinds: 'cert-manager.io' is not group/Kind or group/plural",
        ),
        ("collect: [x]\nclusters: []", "the top-level collect must be a mapping"),
        ("colect: {}\nclusters: []", "unknown top-level keys ['colect']"),
        (
            "clusters:\n  - {name: a, server: 'https://x', token_env: T, collect: 3}",
            "entry 0: collect must be a mapping",
        ),
    ],
)
def test_a_bad_selection_in_a_file_is_one_line_naming_the_file_and_cluster(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "clusters.yaml"
    path.write_text(text)
    with pytest.raises(InventoryError) as info:
        inventory.clusters_from_yaml(path)
    assert str(info.value).startswith(f"inventory file {path}: ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_selection_is_stored_with_the_cluster_and_a_change_of_it_is_a_change(pg_dsn: str) -> None:
    mine = replace(_cluster("a"), collect=Collect(tables=("!kubernetes_secrets",), max_objects_per_kind=7))
    with psycopg.connect(pg_dsn) as conn:
        inventory.upsert_clusters(conn, [mine, _cluster("b")])
        assert inventory.get_cluster(conn, "a") == mine
        assert inventory.get_cluster(conn, "b") == _cluster("b")
        stored = conn.execute("SELECT name, collect FROM kq_meta.clusters ORDER BY name").fetchall()
        assert stored == [("a", {"tables": ["!kubernetes_secrets"], "max_objects_per_kind": 7}), ("b", None)]
        assert inventory.sync_clusters(conn, [mine, _cluster("b")]) == inventory.FileSync([], [])
        changed = replace(mine, collect=Collect())
        assert inventory.sync_clusters(conn, [changed, _cluster("b")]).written == ["a"]
        assert inventory.get_cluster(conn, "a") == changed
