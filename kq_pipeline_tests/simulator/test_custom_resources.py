"""Custom resources: the simulator serves CRDs and the objects of popular operators as kube-apiserver does.

Discovery lists an Established CRD's group at every served version, preferred (by version priority, not
storage) first; lists page with continue tokens like built-in kinds; a CRD can be deleted at runtime;
RBAC rules and faults address custom kinds by group and resource like any other.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import orjson
import pytest

from kq_pipeline.simulator import Fleet, SimulatedCluster, serve_fleet_process
from kq_pipeline.simulator.catalog import CRD_KEY, Catalog
from kq_pipeline.simulator.cli import run_simulate, simulate_options
from kq_pipeline.simulator.fleet import fleet_operators, fleet_specs
from kq_pipeline.simulator.objects import (
    CUSTOM_KINDS,
    OPERATORS,
    ClusterSpec,
    custom_counts,
    custom_keys,
    generate_objects,
    resource_keys,
)
from kq_pipeline.simulator.objects.custom import KINDS, KINDS_BY_CRD
from kq_pipeline_tests.simulator.conftest import Kubectl, client

ALL = ClusterSpec("sim-0", seed=4, pods=12, namespaces=3, operators=OPERATORS, custom_objects=70)
PENDING = ClusterSpec(
    "sim-1",
    seed=5,
    pods=6,
    namespaces=2,
    operators=("argocd", "istio"),
    custom_objects=9,
    pending_crds=("applications.argoproj.io",),
)
ISTIO = "networking.istio.io"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Overrides conftest's fleet (so `sim`, `http` and `kubectl` use it): sim-0 has every operator,
    sim-1 argocd (its CRD not yet Established) and istio."""
    with Fleet() as f:
        f.add("sim-0", generate_objects(ALL))
        f.add("sim-1", generate_objects(PENDING))
        yield f


def _small(name: str = "crd", **knobs: Any) -> dict[str, Any]:
    return generate_objects(
        ClusterSpec(
            name, seed=2, pods=6, namespaces=2, **{"operators": OPERATORS, "custom_objects": 21, **knobs}
        )
    )


def _names(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(i["metadata"].get("namespace", ""), i["metadata"]["name"]) for i in items]


def _list_all(http: httpx.Client, path: str, limit: int) -> tuple[list[dict[str, Any]], int, set[str]]:
    """Every item of a list, following continue tokens: (items, pages, resourceVersions seen)."""
    items: list[dict[str, Any]] = []
    pages, rvs, cont = 0, set(), None
    while True:
        resp = http.get(path, params={"limit": limit, **({"continue": cont} if cont else {})})
        assert resp.status_code == 200, (path, resp.text)
        body = resp.json()
        pages += 1
        items += body["items"]
        rvs.add(body["metadata"]["resourceVersion"])
        if not (cont := body["metadata"].get("continue")):
            return items, pages, rvs


# -- the generator -----------------------------------------------------------------------------


def test_default_specs_have_no_custom_resources():
    spec = ClusterSpec("plain")
    assert (spec.operators, spec.custom_objects, spec.pending_crds) == ((), 0, ())
    objects = generate_objects(spec)
    assert set(objects) - {"version"} == set(resource_keys(29)) and custom_keys(spec) == []
    assert Catalog.for_minor(29).lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions") is None


def test_operators_leave_the_built_in_objects_byte_identical():
    plain = generate_objects(ClusterSpec("same", seed=3, pods=20, namespaces=3))
    with_crs = generate_objects(ClusterSpec("same", seed=3, pods=20, namespaces=3, operators=OPERATORS))
    assert all(orjson.dumps(with_crs[k]) == orjson.dumps(plain[k]) for k in plain)


def test_generated_keys_kinds_and_counts_follow_the_spec():
    objects = generate_objects(ALL)
    counts = custom_counts(ALL)
    assert set(objects) - {"version"} == set(resource_keys(29)) | set(custom_keys(ALL))
    assert custom_keys(ALL) == [CRD_KEY, *counts] and len(counts) == len(KINDS) == 7
    assert {key: len(objects[key]) for key in counts} == counts
    assert sum(counts.values()) == ALL.custom_objects == 70 and min(counts.values()) >= 1
    assert "networking.istio.io/v1/virtualservices" in counts  # the preferred version, not storage
    for key in counts:
        kind, namespaced = CUSTOM_KINDS[key]
        items = objects[key]
        assert all(o["kind"] == kind and o["apiVersion"] == key.rsplit("/", 1)[0] for o in items), key
        assert all(("namespace" in o["metadata"]) == namespaced for o in items), key
        assert _names(items) == sorted(set(_names(items))), key
        for o in items:
            md = o["metadata"]
            assert {"uid", "resourceVersion", "creationTimestamp", "generation"} <= set(md), key
            assert "managedFields" not in md
    crds = objects[CRD_KEY]
    assert [c["metadata"]["name"] for c in crds] == sorted(k.crd_name for k in KINDS)
    assert orjson.dumps(generate_objects(ALL)) == orjson.dumps(objects)  # deterministic


def test_object_shapes_follow_the_operators_crds():
    objects = generate_objects(
        ClusterSpec("shapes", seed=2, pods=30, operators=OPERATORS, custom_objects=400)
    )
    certs = objects["cert-manager.io/v1/certificates"]
    assert {"secretName", "dnsNames", "issuerRef", "duration", "renewBefore", "privateKey"} <= set(
        certs[0]["spec"]
    )
    ready = [c["status"]["conditions"][-1] for c in certs]
    assert {c["type"] for c in ready} == {"Ready"} and {c["status"] for c in ready} == {"True", "False"}
    issued = [c["status"] for c in certs if "notAfter" in c["status"]]
    assert issued and all({"notBefore", "renewalTime", "revision"} <= set(s) for s in issued)
    assert any(c["metadata"].get("ownerReferences", [{}])[0].get("kind") == "Ingress" for c in certs)
    kinds = {c["spec"]["issuerRef"]["kind"] for c in certs}
    assert kinds == {"Issuer", "ClusterIssuer"}
    apps = objects["argoproj.io/v1alpha1/applications"]
    assert {a["status"]["sync"]["status"] for a in apps} >= {"Synced", "OutOfSync"}
    assert {a["status"]["health"]["status"] for a in apps} >= {"Healthy", "Degraded", "Progressing"}
    assert all({"project", "source", "destination"} <= set(a["spec"]) for a in apps)
    running = [a for a in apps if "operation" in a]  # the top-level field beside spec and status
    assert running and all(a["status"]["operationState"]["phase"] == "Running" for a in running)
    assert all(set(a) <= {"apiVersion", "kind", "metadata", "spec", "status", "operation"} for a in apps)
    rules = objects["monitoring.coreos.com/v1/prometheusrules"]
    alerts = [r for o in rules for g in o["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all({"alert", "expr", "for", "labels", "annotations"} <= set(a) for a in alerts)
    monitors = objects["monitoring.coreos.com/v1/servicemonitors"]
    assert all({"selector", "endpoints", "namespaceSelector"} <= set(m["spec"]) for m in monitors)
    services = objects["networking.istio.io/v1/virtualservices"]
    assert all(s["spec"]["hosts"] and s["spec"]["http"][0]["route"] for s in services)
    assert any("gateways" in s["spec"] for s in services)


def test_crds_are_shaped_like_the_api_servers():
    by_name = {c["metadata"]["name"]: c for c in generate_objects(PENDING)[CRD_KEY]}
    assert set(by_name) == {"applications.argoproj.io", "virtualservices.networking.istio.io"}
    for name, crd in by_name.items():
        kind, spec = KINDS_BY_CRD[name], crd["spec"]
        assert (spec["group"], spec["names"]["plural"], spec["names"]["kind"]) == (
            kind.group,
            kind.plural,
            kind.kind,
        )
        assert spec["names"]["listKind"] == f"{kind.kind}List" and spec["names"]["singular"] == kind.singular
        assert spec["scope"] == "Namespaced"
        assert [v["storage"] for v in spec["versions"]].count(True) == 1
        for v in spec["versions"]:
            schema = v["schema"]["openAPIV3Schema"]
            assert schema["type"] == "object" and {"apiVersion", "kind", "metadata", "spec"} <= set(
                schema["properties"]
            )
        status = crd["status"]
        assert status["acceptedNames"] == spec["names"] and status["storedVersions"] == [kind.storage]
        assert [c["type"] for c in status["conditions"]] == ["NamesAccepted", "Established"]
    established = {
        n: next(c for c in crd["status"]["conditions"] if c["type"] == "Established")
        for n, crd in by_name.items()
    }
    assert established["virtualservices.networking.istio.io"]["status"] == "True"
    assert established["applications.argoproj.io"]["status"] == "False"
    assert established["applications.argoproj.io"]["reason"] == "Installing"
    istio = by_name["virtualservices.networking.istio.io"]["spec"]
    # As istio's own CRD since 1.22: served at v1, v1beta1 and v1alpha3, stored as v1alpha3.
    assert {v["name"]: v["storage"] for v in istio["versions"]} == {
        "v1": False,
        "v1alpha3": True,
        "v1beta1": False,
    }
    columns = {c["name"]: c["jsonPath"] for c in istio["versions"][0]["additionalPrinterColumns"]}
    assert columns == {
        "Gateways": ".spec.gateways",
        "Hosts": ".spec.hosts",
        "Age": ".metadata.creationTimestamp",
    }
    assert istio["versions"][0]["subresources"] == {"status": {}}
    argocd = by_name["applications.argoproj.io"]["spec"]
    assert "subresources" not in argocd["versions"][0]  # Argo CD writes status with the object
    assert argocd["names"]["shortNames"] == ["app", "apps"]


def test_counts_spread_with_caps_and_the_spec_validates_its_knobs():
    big = ClusterSpec("big", operators=OPERATORS, custom_objects=30000)
    counts = custom_counts(big)
    assert sum(counts.values()) == 30000 and counts["cert-manager.io/v1/clusterissuers"] == 12
    assert max(counts, key=counts.__getitem__) == "cert-manager.io/v1/certificates"
    assert custom_counts(ClusterSpec("few", operators=("istio",), custom_objects=3)) == {
        "networking.istio.io/v1/virtualservices": 3
    }
    assert ClusterSpec("d", pods=400, operators=("argocd",)).custom_objects == 200  # default: pods // 2
    assert ClusterSpec("s", operators="istio").operators == ("istio",)
    with pytest.raises(ValueError, match="unknown operators"):
        ClusterSpec("x", operators=("linkerd",))
    with pytest.raises(ValueError, match="needs operators"):
        ClusterSpec("x", custom_objects=5)
    with pytest.raises(ValueError, match="pending_crds"):
        ClusterSpec("x", operators=("istio",), pending_crds=("applications.argoproj.io",))


# -- discovery and lists -----------------------------------------------------------------------


def test_discovery_lists_the_groups_with_the_preferred_version(http: httpx.Client, sim: SimulatedCluster):
    groups = {g["name"]: g for g in http.get("/apis").json()["groups"]}
    for group in ("apiextensions.k8s.io", "cert-manager.io", "monitoring.coreos.com", "argoproj.io", ISTIO):
        assert group in groups
    istio = groups[ISTIO]
    assert [v["version"] for v in istio["versions"]] == ["v1", "v1beta1", "v1alpha3"]
    assert istio["preferredVersion"] == {"groupVersion": f"{ISTIO}/v1", "version": "v1"}  # storage: v1alpha3
    assert groups["argoproj.io"]["preferredVersion"]["version"] == "v1alpha1"
    assert http.get(f"/apis/{ISTIO}").json()["preferredVersion"]["version"] == "v1"
    hashes = set()
    for version in ("v1", "v1beta1", "v1alpha3"):
        doc = http.get(f"/apis/{ISTIO}/{version}").json()
        main, status = doc["resources"]
        assert (main["name"], main["kind"], main["shortNames"], status["name"]) == (
            "virtualservices",
            "VirtualService",
            ["vs"],
            "virtualservices/status",
        )
        hashes.add(main["storageVersionHash"])
    assert len(hashes) == 1  # one storage version behind every served version
    certs = http.get("/apis/cert-manager.io/v1").json()["resources"]
    assert {r["name"] for r in certs} == {
        "certificates",
        "certificates/status",
        "clusterissuers",
        "clusterissuers/status",
        "issuers",
        "issuers/status",
    }
    crd = next(
        r for r in http.get("/apis/apiextensions.k8s.io/v1").json()["resources"] if "/" not in r["name"]
    )
    assert (crd["name"], crd["namespaced"], crd["shortNames"]) == (
        "customresourcedefinitions",
        False,
        ["crd", "crds"],
    )


def test_every_served_version_lists_and_pages_like_a_built_in_kind(http: httpx.Client, sim: SimulatedCluster):
    stored = sim.objects
    for rt in sim.catalog.custom_types:
        items, pages, rvs = _list_all(http, f"{rt.base_path}/{rt.resource}", limit=3)
        expected = stored[rt.key]
        assert _names(items) == _names(expected) and pages == -(-len(expected) // 3) and len(rvs) == 1, rt.key
        # Custom resources come as unstructured objects: every item carries apiVersion and kind.
        assert {(i["apiVersion"], i["kind"]) for i in items} == {(rt.group_version, rt.kind)}, rt.key
    generated = generate_objects(ALL)
    v1 = [o["metadata"]["uid"] for o in generated["networking.istio.io/v1/virtualservices"]]
    for version in ("v1beta1", "v1alpha3"):  # converted by rewriting apiVersion only
        converted = stored[f"{ISTIO}/{version}/virtualservices"]
        assert [o["metadata"]["uid"] for o in converted] == v1
        assert {o["apiVersion"] for o in converted} == {f"{ISTIO}/{version}"}
    crds, _, _ = _list_all(http, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", limit=2)
    assert [c["metadata"]["name"] for c in crds] == sorted(k.crd_name for k in KINDS)
    assert "kind" not in crds[0]  # the CRD kind itself is built in: items without type meta


def test_lists_per_namespace_and_get_by_name(http: httpx.Client, sim: SimulatedCluster):
    certs = sim.objects["cert-manager.io/v1/certificates"]
    ns = certs[0]["metadata"]["namespace"]
    in_ns = http.get(f"/apis/cert-manager.io/v1/namespaces/{ns}/certificates").json()["items"]
    assert _names(in_ns) == [n for n in _names(certs) if n[0] == ns]
    one = http.get(f"/apis/cert-manager.io/v1/namespaces/{ns}/certificates/{certs[0]['metadata']['name']}")
    assert one.json() == certs[0]
    issuer = sim.objects["cert-manager.io/v1/clusterissuers"][0]["metadata"]["name"]
    assert http.get(f"/apis/cert-manager.io/v1/clusterissuers/{issuer}").json()["kind"] == "ClusterIssuer"
    assert http.get("/apis/cert-manager.io/v1/namespaces/default/clusterissuers").status_code == 404
    selected = http.get(
        "/apis/monitoring.coreos.com/v1/servicemonitors",
        params={"labelSelector": "release=kube-prometheus-stack"},
    ).json()["items"]
    assert len(selected) == len(sim.objects["monitoring.coreos.com/v1/servicemonitors"])


def test_a_continued_list_keeps_its_snapshot_when_custom_objects_change(
    http: httpx.Client, sim: SimulatedCluster
):
    path = "/apis/argoproj.io/v1alpha1/applications"
    before = _names(sim.objects["argoproj.io/v1alpha1/applications"])
    first = http.get(path, params={"limit": 2}).json()
    sim.faults.mutate_between_pages("applications.argoproj.io")
    assert http.get(path, params={"limit": 1}).status_code == 200  # page 1 of a fresh list: mutates
    names, cont = _names(first["items"]), first["metadata"]["continue"]
    while cont:  # the rest of the first list: still the snapshot it began with
        body = http.get(path, params={"limit": 2, "continue": cont}).json()
        names += _names(body["items"])
        cont = body["metadata"].get("continue")
    assert names == before
    assert _names(sim.objects["argoproj.io/v1alpha1/applications"]) != before


def test_official_client_pages_custom_objects(fleet: Fleet, sim: SimulatedCluster, tmp_path: Path):
    ca = tmp_path / "ca.crt"
    ca.write_text(fleet.ca_pem)
    conf = kubernetes.client.Configuration(host=sim.url, api_key={"authorization": f"Bearer {sim.token}"})
    conf.ssl_ca_cert = str(ca)
    with kubernetes.client.ApiClient(conf) as api_client:
        api = kubernetes.client.CustomObjectsApi(api_client)
        names, cont = [], None
        while True:
            page = api.list_cluster_custom_object(
                ISTIO, "v1beta1", "virtualservices", limit=2, **({"_continue": cont} if cont else {})
            )
            names += [i["metadata"]["name"] for i in page["items"]]
            if not (cont := page["metadata"].get("continue")):
                break
        assert names == [o["metadata"]["name"] for o in sim.objects[f"{ISTIO}/v1beta1/virtualservices"]]
        crds = kubernetes.client.ApiextensionsV1Api(api_client).list_custom_resource_definition()
        assert [c.metadata.name for c in crds.items] == sorted(k.crd_name for k in KINDS)
        assert all(c.status.conditions[-1].type == "Established" for c in crds.items)


# -- kubectl ----------------------------------------------------------------------------------------


def test_kubectl_gets_crds_and_custom_objects(kubectl: Kubectl, sim: SimulatedCluster):
    crds = json.loads(kubectl("get", "crd", "-o", "json").stdout)["items"]
    assert [c["metadata"]["name"] for c in crds] == sorted(k.crd_name for k in KINDS)
    certs = sim.objects["cert-manager.io/v1/certificates"]
    listed = json.loads(kubectl("get", "certificates.cert-manager.io", "-A", "-o", "json").stdout)["items"]
    assert [c["metadata"]["uid"] for c in listed] == [c["metadata"]["uid"] for c in certs]
    table = kubectl("get", "certificates.cert-manager.io", "-A", "--no-headers", "--chunk-size=4").stdout
    assert len(table.splitlines()) == len(certs)
    short = kubectl("get", "vs", "-A", "-o", "json").stdout  # short name, preferred version
    assert {i["apiVersion"] for i in json.loads(short)["items"]} == {f"{ISTIO}/v1"}
    beta = json.loads(kubectl("get", f"virtualservices.v1beta1.{ISTIO}", "-A", "-o", "json").stdout)
    assert {i["apiVersion"] for i in beta["items"]} == {f"{ISTIO}/v1beta1"}
    resources = {line.split()[0] for line in kubectl("api-resources", "--no-headers").stdout.splitlines()}
    assert {
        "certificates",
        "clusterissuers",
        "servicemonitors",
        "applications",
        "virtualservices",
    } <= resources


def test_an_unestablished_crd_is_listed_but_its_kind_is_not_discovered(
    fleet: Fleet, kubectl: Kubectl, tmp_path: Path
):
    cluster = fleet.clusters["sim-1"]
    generated = generate_objects(PENDING)
    assert "argoproj.io/v1alpha1/applications" not in generated and custom_counts(PENDING) == {
        "networking.istio.io/v1/virtualservices": 9
    }
    with client(fleet, cluster) as http:
        crds = http.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions").json()["items"]
        names = [c["metadata"]["name"] for c in crds]
        assert names == ["applications.argoproj.io", "virtualservices.networking.istio.io"]
        assert "argoproj.io" not in {g["name"] for g in http.get("/apis").json()["groups"]}
        assert http.get("/apis/argoproj.io").status_code == 404
        assert http.get("/apis/argoproj.io/v1alpha1").status_code == 404
        # Its names are accepted, so kube-apiserver already answers requests to the kind (with nothing).
        assert http.get("/apis/argoproj.io/v1alpha1/applications").json()["items"] == []
    resources = kubectl("api-resources", "--no-headers", context="sim-1").stdout
    assert "virtualservices" in resources and "applications" not in resources


# -- changes at runtime: CRD removal, 403, RBAC ---------------------------------------------------


def test_removing_a_crd_removes_its_kind_and_objects():
    with Fleet(tls=False) as f:
        cluster = f.add("rm", _small("rm"))
        with httpx.Client(base_url=cluster.url, headers={"Authorization": f"Bearer {cluster.token}"}) as http:
            path = "/apis/cert-manager.io/v1/certificates"
            first = http.get(path, params={"limit": 1}).json()
            assert first["metadata"]["continue"]
            gone = cluster.remove_crd("certificates.cert-manager.io")
            assert gone is not None and gone["kind"] == "CustomResourceDefinition"
            assert cluster.remove_crd("certificates.cert-manager.io") is None
            assert http.get(path).status_code == 404
            assert (
                http.get(path, params={"limit": 1, "continue": first["metadata"]["continue"]}).status_code
                == 404
            )
            assert {r["name"] for r in http.get("/apis/cert-manager.io/v1").json()["resources"]} == {
                "clusterissuers",
                "clusterissuers/status",
                "issuers",
                "issuers/status",
            }
            assert "cert-manager.io/v1/certificates" not in cluster.objects
            # Over HTTP, as `kubectl delete crd` does: the last kind of a group takes the group along.
            crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/applications.argoproj.io"
            resp = http.delete(crd_path)
            assert resp.status_code == 200 and resp.json()["metadata"]["name"] == "applications.argoproj.io"
            again = http.delete(crd_path)
            assert again.status_code == 404 and again.json()["reason"] == "NotFound"
            assert "argoproj.io" not in {g["name"] for g in http.get("/apis").json()["groups"]}
            crds = http.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions").json()["items"]
            assert len(crds) == len(KINDS) - 2
            assert http.get("/apis/networking.istio.io/v1beta1/virtualservices").status_code == 200
            assert len(http.get("/api/v1/pods").json()["items"]) == len(cluster.objects["v1/pods"])
            assert (
                http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json={}).status_code
                == 405
            )


def test_fail_page_403_makes_one_custom_kind_forbidden(
    fleet: Fleet, http: httpx.Client, sim: SimulatedCluster
):
    sim.faults.fail_page("certificates.cert-manager.io", 1, code=403)  # every time, until cleared
    for _ in range(2):
        denied = http.get("/apis/cert-manager.io/v1/certificates")
        assert denied.status_code == 403
        body = denied.json()
        assert (body["reason"], body["details"]) == (
            "Forbidden",
            {"group": "cert-manager.io", "kind": "certificates"},
        )
        assert 'cannot list resource "certificates" in API group "cert-manager.io"' in body["message"]
    assert http.get("/apis/cert-manager.io/v1/issuers").status_code == 200
    assert http.get("/api/v1/pods").status_code == 200
    sim.faults.clear()
    # The same over the control endpoint, by generator key; page 2 only.
    fault = {"action": "fail_page", "resource": f"{ISTIO}/v1/virtualservices", "page": 2, "code": 403}
    assert http.post("/_sim/faults", json=fault).status_code == 200
    first = http.get(f"/apis/{ISTIO}/v1/virtualservices", params={"limit": 2}).json()
    cont = first["metadata"]["continue"]
    assert (
        http.get(f"/apis/{ISTIO}/v1/virtualservices", params={"limit": 2, "continue": cont}).status_code
        == 403
    )
    assert (
        http.get(f"/apis/{ISTIO}/v1beta1/virtualservices").status_code == 200
    )  # another version: unaffected


def test_rbac_allows_custom_kinds_by_group_and_resource(http: httpx.Client, sim: SimulatedCluster):
    sim.set_rbac_rules(
        {
            "kind": "ClusterRole",
            "rules": [
                {"apiGroups": ["cert-manager.io"], "resources": ["certificates"], "verbs": ["get", "list"]},
                {"apiGroups": [ISTIO], "resources": ["*"], "verbs": ["list"]},
                {"apiGroups": [""], "resources": ["servicemonitors"], "verbs": ["list"]},  # wrong group
            ],
        }
    )
    assert http.get("/apis/cert-manager.io/v1/certificates").status_code == 200
    for version in ("v1", "v1beta1", "v1alpha3"):
        assert http.get(f"/apis/{ISTIO}/{version}/virtualservices").status_code == 200
    denied = http.get("/apis/cert-manager.io/v1/issuers")
    assert denied.status_code == 403
    assert (
        'cannot list resource "issuers" in API group "cert-manager.io" at the cluster scope'
        in denied.json()["message"]
    )
    assert http.get("/apis/monitoring.coreos.com/v1/servicemonitors").status_code == 403
    assert http.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions").status_code == 403
    assert http.get("/apis/cert-manager.io/v1").status_code == 200  # discovery stays open
    sim.set_rbac_rules(
        [
            {
                "apiGroups": ["apiextensions.k8s.io"],
                "resources": ["customresourcedefinitions"],
                "verbs": ["list"],
            }
        ]
    )
    assert http.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions").status_code == 200
    assert http.get("/apis/cert-manager.io/v1/certificates").status_code == 403


# -- fleets ---------------------------------------------------------------------------------------


def test_fleets_spread_operator_sets_by_seed(tmp_path: Path):
    sets = [fleet_operators(0, i) for i in range(24)]
    assert sets == [fleet_operators(0, i) for i in range(24)]  # deterministic
    assert sets != [fleet_operators(1, i) for i in range(24)]  # another seed, another spread
    assert () in sets and len(set(sets)) >= 8 and all(set(s) <= set(OPERATORS) for s in sets)
    specs = fleet_specs(["a", "b", "c", "d"], pods=6, seed=0, custom_objects=50)
    assert [s.operators for s in specs] == sets[:4] and [s.seed for s in specs] == [0, 1, 2, 3]
    assert all(s.custom_objects == (50 if s.operators else 0) for s in specs)
    none = fleet_specs(["a"], pods=6, operators=())
    assert none[0].operators == () and none[0].custom_objects == 0
    args = type("Args", (), {"custom_objects": 40, "operators": "istio,argocd"})()
    assert simulate_options(args) == {"custom_objects": 40, "operators": ("istio", "argocd")}
    none_args = type("Args", (), {"custom_objects": None, "operators": "none"})()
    assert simulate_options(none_args)["operators"] == ()
    assert run_simulate(1, 2, tmp_path / "kc", operators=("linkerd",), out=io.StringIO()) == 2
    assert run_simulate(1, 2, tmp_path / "kc", custom_objects=-1, out=io.StringIO()) == 2


def test_child_process_fleet_removes_a_crd_and_switches_faults(tmp_path: Path):
    spec = ClusterSpec(
        "sim-p", pods=4, namespaces=2, operators=("istio", "prometheus-operator"), custom_objects=6
    )
    with serve_fleet_process([spec], tmp_path / "kc", tls=False) as handle:
        url = handle.urls["sim-p"]
        assert handle.fault("sim-p", "fail_page", resource="servicemonitors", page=1, code=403)["pages"]
        assert (
            handle.remove_crd("sim-p", f"virtualservices.{ISTIO}")["metadata"]["name"]
            == f"virtualservices.{ISTIO}"
        )
        assert handle.remove_crd("sim-p", f"virtualservices.{ISTIO}") is None
        token, _ = handle._credentials("sim-p")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            assert http.get(f"/apis/{ISTIO}/v1/virtualservices").status_code == 404
            assert http.get("/apis/monitoring.coreos.com/v1/servicemonitors").status_code == 403
            assert http.get("/apis/monitoring.coreos.com/v1/prometheusrules").status_code == 200


@pytest.mark.slow
def test_tens_of_thousands_of_custom_objects_page_through_in_one_snapshot():
    spec = ClusterSpec("many", pods=60, operators=OPERATORS, custom_objects=40000)
    with Fleet(tls=False) as f:
        cluster = f.add("many", generate_objects(spec))
        with httpx.Client(
            base_url=cluster.url, headers={"Authorization": f"Bearer {cluster.token}"}, timeout=60
        ) as c:
            total = Counter()
            for rt in cluster.catalog.custom_types:
                if rt.version == rt.storage_version or rt.group != ISTIO:
                    items, _, rvs = _list_all(c, f"{rt.base_path}/{rt.resource}", limit=500)
                    total[rt.kind] += len(items)
                    assert len(rvs) == 1
    assert sum(total.values()) == 40000
