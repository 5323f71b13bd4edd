"""The native extractor against the simulated API server: every table, exact counts, isolated failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kq_pipeline.extract.native import extract_cluster
from kq_pipeline.extract.result import ClusterExtract
from kq_pipeline.extract.secrets import LAST_APPLIED
from kq_pipeline.kube.access import ClusterAccess, TokenSource
from kq_pipeline.kube.kubeconfig import access_from_kubeconfig
from kq_pipeline.registry import TABLES
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.catalog import CATALOG
from kq_pipeline.simulator.objects import ClusterSpec

POD_TABLES = ["kubernetes_pods", "kubernetes_pod_containers", "kubernetes_pod_volumes"]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Any]:
    with serve_fleet(
        [ClusterSpec("beta", seed=11, pods=150), ClusterSpec("old", seed=2, pods=20, k8s_minor=21)]
    ) as f:
        yield f


@pytest.fixture
def cluster(fleet: Any) -> Iterator[Any]:
    c = fleet.clusters["beta"]
    c.faults.clear()
    yield c
    c.faults.clear()
    c.set_rbac_rules(None)


def access_of(fleet: Any, tmp_path: Path, name: str = "beta") -> ClusterAccess:
    return access_from_kubeconfig(fleet.write_kubeconfig(tmp_path / "config"), name)


@pytest.fixture(scope="module")
def full(fleet: Any, tmp_path_factory: pytest.TempPathFactory) -> ClusterExtract:
    return extract_cluster(access_of(fleet, tmp_path_factory.mktemp("kc")), "beta", list(TABLES))


def test_every_table_is_present_and_loaded(full: ClusterExtract, fleet: Any) -> None:
    assert list(full.tables) == list(TABLES)
    assert full.failed_tables == []
    kube_system = next(
        n for n in fleet.clusters["beta"].objects["v1/namespaces"] if n["metadata"]["name"] == "kube-system"
    )
    assert full.cluster_uid == kube_system["metadata"]["uid"]
    assert full.server_version["gitVersion"] == fleet.clusters["beta"].git_version
    info = full.tables["kubernetes_info"].rows
    assert info is not None and info[0]["git_version"] == fleet.clusters["beta"].git_version
    assert all(r["cluster_uid"] == full.cluster_uid for r in full.tables["kubernetes_namespaces"].rows or [])


def test_pod_rows_and_container_fan_out_match_the_cluster(full: ClusterExtract, fleet: Any) -> None:
    pods = fleet.clusters["beta"].objects["v1/pods"]
    rows = full.tables["kubernetes_pods"].rows
    assert rows is not None and len(rows) == len(pods) == 150
    assert {r["uid"] for r in rows} == {p["metadata"]["uid"] for p in pods}
    containers = sum(
        len(p["spec"].get(k) or [])
        for p in pods
        for k in ("initContainers", "containers", "ephemeralContainers")
    )
    assert len(full.tables["kubernetes_pod_containers"].rows or []) == containers
    volumes = sum(len(p["spec"].get("volumes") or []) for p in pods)
    assert len(full.tables["kubernetes_pod_volumes"].rows or []) == volumes
    assert full.tables["kubernetes_pod_containers"].objects == 150


def test_secret_values_never_reach_rows(full: ClusterExtract, fleet: Any) -> None:
    secrets = fleet.clusters["beta"].objects["v1/secrets"]
    values = {v for s in secrets for v in (s.get("data") or {}).values()}
    assert values, "the simulator should serve secrets with data"
    text = json.dumps(full.tables["kubernetes_secrets"].rows)
    assert not any(v in text for v in values)
    assert len(full.tables["kubernetes_secrets"].rows or []) == len(secrets)
    applied = [
        json.loads(json.loads(r["annotations"])[LAST_APPLIED])
        for r in full.tables["kubernetes_secrets"].rows or []
        if LAST_APPLIED in r.get("annotations", "")
    ]
    assert applied and all(set(a["data"].values()) == {"REDACTED"} for a in applied if "data" in a)


def test_kinds_not_served_are_empty_with_a_note_and_old_versions_are_mapped(full: ClusterExtract) -> None:
    psp = full.tables["kubernetes_pod_security_policies"]
    assert psp.rows == [] and psp.error is None and "not served" in (psp.note or "")
    cron = full.tables["kubernetes_cron_jobs"]
    assert cron.rows and "batch/v1" in (cron.note or "")
    assert "poll time" in (full.tables["kubernetes_events"].note or "")


def test_an_old_cluster_is_listed_at_kubequerys_versions(fleet: Any, tmp_path: Path) -> None:
    out = extract_cluster(
        access_of(fleet, tmp_path, "old"), "old", ["kubernetes_cron_jobs", "kubernetes_pod_security_policies"]
    )
    assert out.failed_tables == []
    assert out.tables["kubernetes_cron_jobs"].note is None  # batch/v1beta1 is served on 1.21


def test_a_403_fails_only_that_table(cluster: Any, fleet: Any, tmp_path: Path) -> None:
    everything_but_secrets = sorted({t.resource for t in CATALOG} - {"secrets"})
    cluster.set_rbac_rules(
        [{"apiGroups": ["*"], "resources": everything_but_secrets, "verbs": ["get", "list"]}]
    )
    out = extract_cluster(access_of(fleet, tmp_path), "beta", ["kubernetes_secrets", *POD_TABLES])
    secrets = out.tables["kubernetes_secrets"]
    assert secrets.rows is None
    assert (secrets.error or "").startswith("cluster beta: table kubernetes_secrets: permission denied")
    assert all(out.tables[t].rows for t in POD_TABLES)


def test_a_410_mid_list_restarts_without_duplicates(cluster: Any, fleet: Any, tmp_path: Path) -> None:
    cluster.faults.expire_page("pods", 2, times=1)
    out = extract_cluster(access_of(fleet, tmp_path), "beta", POD_TABLES, page_limit=40)
    rows = out.tables["kubernetes_pods"].rows or []
    assert len(rows) == len({r["uid"] for r in rows}) == 150
    assert out.tables["kubernetes_pods"].objects == 150


def test_a_failing_list_fails_its_tables_and_no_partial_rows(
    cluster: Any, fleet: Any, tmp_path: Path
) -> None:
    cluster.faults.fail_page("pods", 2, code=500)
    out = extract_cluster(
        access_of(fleet, tmp_path), "beta", [*POD_TABLES, "kubernetes_namespaces"], page_limit=40
    )
    for t in POD_TABLES:
        assert out.tables[t].rows is None
        assert (out.tables[t].error or "").startswith(f"cluster beta: table {t}: GET /api/v1/pods: HTTP 500")
    assert out.tables["kubernetes_namespaces"].rows


def test_an_unreachable_cluster_fails_every_table_naming_it(fleet: Any) -> None:
    access = ClusterAccess(
        name="gone", server="https://127.0.0.1:1", ca_data=fleet.ca_pem, token=TokenSource(literal="tok")
    )
    out = extract_cluster(access, "gone", ["kubernetes_pods", "kubernetes_info"], deadline_s=2)
    assert out.cluster_uid is None and out.error
    assert [t.rows for t in out.tables.values()] == [None, None]
    assert out.tables["kubernetes_info"].error.startswith("cluster gone: table kubernetes_info: ")
