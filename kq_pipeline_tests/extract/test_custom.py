"""Custom resources through the native extractor, against the simulated API server over HTTPS.

Every CRD becomes a row; every established, selected kind is listed once, at its preferred served
version, paged; one kind failing (403, over the object limit) leaves the other kinds' rows and names
the failed kind for the load to keep its previous rows; a CRD not yet established is skipped and noted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kq_pipeline.collect import Collect
from kq_pipeline.extract.custom import list_version
from kq_pipeline.extract.discovery import Discovery
from kq_pipeline.extract.native import extract_cluster
from kq_pipeline.extract.result import ClusterExtract
from kq_pipeline.kube.kubeconfig import access_from_kubeconfig
from kq_pipeline.registry import CUSTOM_RESOURCE_DEFINITIONS_TABLE as CRDS
from kq_pipeline.registry import CUSTOM_RESOURCES_TABLE as CRS
from kq_pipeline.rows.custom import CustomKind
from kq_pipeline.simulator import Fleet, SimulatedCluster, serve_fleet
from kq_pipeline.simulator.objects import CUSTOM_KINDS, OPERATORS, ClusterSpec, custom_counts
from kq_pipeline.simulator.objects.custom import KINDS

OPS = ClusterSpec(
    "ops",
    seed=9,
    pods=20,
    namespaces=3,
    operators=OPERATORS,
    custom_objects=150,
    pending_crds=("applications.argoproj.io",),
)
PLAIN = ClusterSpec("plain", seed=1, pods=10)
CERTIFICATE = ("cert-manager.io", "Certificate")


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with serve_fleet([OPS, PLAIN]) as f:
        yield f


@pytest.fixture
def ops(fleet: Fleet) -> Iterator[SimulatedCluster]:
    cluster = fleet.clusters["ops"]
    cluster.faults.clear()
    cluster.request_log.clear()
    yield cluster
    cluster.faults.clear()
    cluster.set_rbac_rules(None)


def extract(fleet: Fleet, tmp_path: Path, name: str = "ops", **kw: Any) -> ClusterExtract:
    access = access_from_kubeconfig(fleet.write_kubeconfig(tmp_path / "kc"), name)
    return extract_cluster(access, name, [CRDS, CRS], **kw)


def per_kind(rows: list[dict[str, str]]) -> Counter[tuple[str, str]]:
    return Counter((r["api_group"], r["kind"]) for r in rows)


def expected_per_kind(spec: ClusterSpec) -> Counter[tuple[str, str]]:
    return Counter({(key.split("/")[0], CUSTOM_KINDS[key][0]): n for key, n in custom_counts(spec).items()})


def lists_of(cluster: SimulatedCluster, group: str) -> list[str]:
    """The list requests (not discovery) the cluster served for a group's kinds."""
    prefix = f"GET /apis/{group}/"
    return [r for r in cluster.request_log if r.startswith(prefix) and r.count("/") >= 4]


def test_every_crd_is_a_row_and_every_established_kind_is_listed_whole(
    fleet: Fleet, ops: SimulatedCluster, tmp_path: Path
) -> None:
    out = extract(fleet, tmp_path, page_limit=7)
    assert out.failed_tables == []
    crds = out.tables[CRDS].rows or []
    assert sorted(r["name"] for r in crds) == sorted(k.crd_name for k in KINDS)
    assert {r["name"]: r["established"] for r in crds}["applications.argoproj.io"] == "0"
    custom = out.tables[CRS]
    assert per_kind(custom.rows or []) == expected_per_kind(OPS) and custom.kept_kinds == {}
    assert len({r["uid"] for r in custom.rows or []}) == sum(custom_counts(OPS).values())


def test_a_kind_is_listed_once_at_its_preferred_version_not_its_storage_version(
    fleet: Fleet, ops: SimulatedCluster, tmp_path: Path
) -> None:
    out = extract(fleet, tmp_path, page_limit=500)
    istio = [r for r in out.tables[CRS].rows or [] if r["api_group"] == "networking.istio.io"]
    assert {r["api_version"] for r in istio} == {"networking.istio.io/v1"}  # stored as v1alpha3
    assert lists_of(ops, "networking.istio.io") == ["GET /apis/networking.istio.io/v1/virtualservices"]
    crd_lists = [r for r in ops.request_log if r.endswith("/customresourcedefinitions")]
    assert crd_lists == ["GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions"]


def test_a_crd_not_yet_established_is_skipped_and_noted(
    fleet: Fleet, ops: SimulatedCluster, tmp_path: Path
) -> None:
    out = extract(fleet, tmp_path)
    assert "argoproj.io/Application: CRD applications.argoproj.io not established (Installing): skipped" in (
        out.tables[CRS].note or ""
    )
    assert lists_of(ops, "argoproj.io") == []


def test_a_403_on_one_kind_names_it_for_the_load_and_keeps_the_other_kinds(
    fleet: Fleet, ops: SimulatedCluster, tmp_path: Path
) -> None:
    ops.faults.fail_page("certificates.cert-manager.io", 1, code=403)
    out = extract(fleet, tmp_path)
    custom = out.tables[CRS]
    assert custom.ok and set(custom.kept_kinds) == {CERTIFICATE}
    assert custom.kept_kinds[CERTIFICATE].startswith(
        "permission denied: GET /apis/cert-manager.io/v1/certificates"
    )
    expected = expected_per_kind(OPS)
    del expected[CERTIFICATE]
    assert per_kind(custom.rows or []) == expected


def test_a_kind_over_the_object_limit_is_not_loaded_and_its_listing_stops(
    fleet: Fleet, ops: SimulatedCluster, tmp_path: Path
) -> None:
    counts = expected_per_kind(OPS)
    limit = 10
    assert counts[CERTIFICATE] > 4 * limit
    out = extract(fleet, tmp_path, page_limit=5, collect=Collect(max_objects_per_kind=limit))
    custom = out.tables[CRS]
    over = {k for k, n in counts.items() if n > limit}
    assert set(custom.kept_kinds) == over
    assert custom.kept_kinds[CERTIFICATE] == f"more than {limit} objects (limit), not loaded"
    assert per_kind(custom.rows or []) == Counter({k: n for k, n in counts.items() if n <= limit})
    pages = [r for r in lists_of(ops, "cert-manager.io") if r.endswith("/certificates")]
    assert len(pages) == limit // 5 + 1  # the page that crossed the limit was the last one asked for


def test_a_410_mid_list_restarts_the_kind_without_duplicates(
    fleet: Fleet, ops: SimulatedCluster, tmp_path: Path
) -> None:
    ops.faults.expire_page("certificates", 2, times=1)
    out = extract(fleet, tmp_path, page_limit=10)
    certs = [r for r in out.tables[CRS].rows or [] if r["kind"] == "Certificate"]
    assert len(certs) == len({r["uid"] for r in certs}) == expected_per_kind(OPS)[CERTIFICATE]


def test_only_selected_kinds_are_listed(fleet: Fleet, ops: SimulatedCluster, tmp_path: Path) -> None:
    collect = Collect(custom_kinds=("cert-manager.io/*", "networking.istio.io/virtualservices", "!*/Issuer"))
    out = extract(fleet, tmp_path, collect=collect)
    got = per_kind(out.tables[CRS].rows or [])
    assert set(got) == {
        CERTIFICATE,
        ("cert-manager.io", "ClusterIssuer"),
        ("networking.istio.io", "VirtualService"),
    }
    assert lists_of(ops, "monitoring.coreos.com") == []
    assert not [r for r in lists_of(ops, "cert-manager.io") if r.endswith("/issuers")]
    # Issuer, ServiceMonitor, PrometheusRule and (not established either) Application
    assert "4 custom kind(s) not selected (collect.custom_kinds)" in (out.tables[CRS].note or "")
    assert len(out.tables[CRDS].rows or []) == len(KINDS)  # every CRD, whatever the selection


def test_the_crd_list_failing_fails_both_tables(fleet: Fleet, ops: SimulatedCluster, tmp_path: Path) -> None:
    everything_but_crds = sorted({t.resource for t in ops.catalog.types} - {"customresourcedefinitions"})
    ops.set_rbac_rules([{"apiGroups": ["*"], "resources": everything_but_crds, "verbs": ["get", "list"]}])
    out = extract(fleet, tmp_path)
    assert out.failed_tables == [CRDS, CRS]
    for table in (CRDS, CRS):
        assert (out.tables[table].error or "").startswith(f"cluster ops: table {table}: permission denied: ")


def test_a_cluster_without_crds_served_has_empty_tables_with_a_note_and_no_crd_request(
    fleet: Fleet, tmp_path: Path
) -> None:
    plain = fleet.clusters["plain"]
    plain.request_log.clear()
    out = extract(fleet, tmp_path, "plain")
    for table in (CRDS, CRS):
        assert out.tables[table].rows == [] and "is not served" in (out.tables[table].note or "")
    assert not [r for r in plain.request_log if "customresourcedefinitions" in r]


def _crd(versions: list[tuple[str, bool]]) -> dict[str, Any]:
    return {"spec": {"versions": [{"name": v, "served": served} for v, served in versions]}}


VS = CustomKind(
    "networking.istio.io", "VirtualService", "virtualservices", True, "virtualservices.networking.istio.io"
)


def _discovery(preferred: str, served: list[str]) -> Discovery:
    lists = [
        {
            "groupVersion": f"networking.istio.io/{v}",
            "resources": [{"name": "virtualservices", "kind": "VirtualService"}],
        }
        for v in served
    ]
    return Discovery(resource_lists=lists, preferred={"networking.istio.io": preferred})


def test_the_listed_version_is_discoverys_preferred_else_its_highest_else_the_crds_highest() -> None:
    crd = _crd([("v1alpha3", True), ("v1beta1", True), ("v1", True)])
    assert list_version(_discovery("v1", ["v1", "v1beta1", "v1alpha3"]), crd, VS) == ("v1", None)
    # the group's preferred version does not serve this kind: the highest that does
    assert list_version(_discovery("v2", ["v1beta1", "v1alpha3"]), crd, VS) == ("v1beta1", None)
    # discovery does not show the kind (its group's discovery failed, say): the CRD's highest served
    version, note = list_version(
        Discovery(), _crd([("v1alpha3", True), ("v1beta1", True), ("v2", False)]), VS
    )
    assert version == "v1beta1" and note == "not in discovery: listed at the CRD's highest served version"
    assert list_version(Discovery(), _crd([("v1", False)]), VS) == (None, None)
