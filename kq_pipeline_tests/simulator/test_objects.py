"""The object generator: what a simulated API server serves must be real Kubernetes, deterministic,
internally consistent, sized as asked, and rich enough to exercise every kubequery row rule."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import orjson
import pytest
from kubernetes.client import ApiClient

from kq_pipeline.registry import KUBEQUERY_TABLES
from kq_pipeline.simulator.objects import (
    RESOURCE_KINDS,
    ClusterSpec,
    generate_objects,
    resource_keys,
    secret_values,
)

Obj = dict[str, Any]
PSP = "policy/v1beta1/podsecuritypolicies"
# The official client's model per kind, where it is not simply "V1" + kind.
MODELS = {"Event": "EventsV1Event"}
VOLUME_SOURCES = {
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "csi",
    "cephfs",
    "cinder",
    "configMap",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
}


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    return generate_objects(ClusterSpec("small"))


@pytest.fixture(scope="module")
def medium() -> dict[str, Any]:
    return generate_objects(ClusterSpec("medium", seed=3, pods=600, namespaces=9))


def _lists(objects: dict[str, Any]) -> dict[str, list[Obj]]:
    return {k: v for k, v in objects.items() if k != "version"}


def _pod_specs(objects: dict[str, Any]) -> list[Obj]:
    """Every pod spec kubequery flattens: pods, workload templates, pod templates, cron job templates."""
    specs = [p["spec"] for p in objects["v1/pods"]]
    specs += [pt["template"]["spec"] for pt in objects["v1/podtemplates"]]
    for key in (
        "apps/v1/deployments",
        "apps/v1/replicasets",
        "apps/v1/daemonsets",
        "apps/v1/statefulsets",
        "batch/v1/jobs",
    ):
        specs += [o["spec"]["template"]["spec"] for o in objects[key]]
    specs += [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in objects["batch/v1/cronjobs"]]
    return specs


# -- shape ------------------------------------------------------------------------------------


def test_every_kubequery_source_kind_has_a_list(small: dict[str, Any]) -> None:
    served = {(key.rsplit("/", 1)[1], kind) for key, (kind, _) in RESOURCE_KINDS.items() if key in small}
    for t in KUBEQUERY_TABLES.values():
        if t.source.resource is None or t.source.kind == "PodSecurityPolicy":
            continue
        assert (t.source.resource, t.source.kind) in served, t.name


def test_keys_follow_the_served_versions() -> None:
    old, new = generate_objects(ClusterSpec("old", k8s_minor=24)), generate_objects(ClusterSpec("new"))
    assert set(old) - {"version"} == set(resource_keys(24)) and len(old[PSP]) == 2
    assert PSP not in new and set(new) - {"version"} == set(resource_keys(29))
    assert "batch/v1/cronjobs" in new and "policy/v1/poddisruptionbudgets" in new
    assert new["version"]["minor"] == "29" and new["version"]["gitVersion"].startswith("v1.29.")
    assert old["version"]["minor"] == "24"


def test_psp_fields_are_those_kubequery_reads() -> None:
    read = {
        c_from["json"].split(".")[1]
        for c in KUBEQUERY_TABLES["kubernetes_pod_security_policies"].columns
        for c_from in c.sources
        if c_from.get("json", "").startswith("spec.")
    }
    for psp in generate_objects(ClusterSpec("old", k8s_minor=24))[PSP]:
        assert psp["apiVersion"] == "policy/v1beta1" and psp["kind"] == "PodSecurityPolicy"
        assert set(psp["spec"]) <= read


def test_version_document(small: dict[str, Any]) -> None:
    v = small["version"]
    assert set(v) == {
        "major",
        "minor",
        "gitVersion",
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    }
    ApiClient().deserialize(json.dumps(v), "VersionInfo", "application/json")


def test_lists_are_sorted_by_namespace_and_name_without_duplicates(medium: dict[str, Any]) -> None:
    for key, items in _lists(medium).items():
        order = [(o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in items]
        assert order == sorted(order), key
        assert len(set(order)) == len(order), key
        namespaced = RESOURCE_KINDS[key][1]
        assert all(("namespace" in o["metadata"]) == namespaced for o in items), key
        assert all(o["kind"] == RESOURCE_KINDS[key][0] for o in items), key
        assert all(o["apiVersion"] == key.rsplit("/", 1)[0] for o in items), key


# -- the official client's models -------------------------------------------------------------


def _normalise(x: Any) -> Any:
    """Drop nulls and give datetimes the API server's spelling, for comparing a model round trip."""
    if isinstance(x, dict):
        return {k: _normalise(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_normalise(v) for v in x]
    if isinstance(x, str) and x.endswith("+00:00"):
        return x[:-6] + "Z"
    if isinstance(x, str) and x.endswith(".000000Z"):
        return x[:-8] + "Z"
    return x


@pytest.mark.parametrize("key", [k for k in resource_keys(29)])
def test_objects_round_trip_through_the_official_client_models(small: dict[str, Any], key: str) -> None:
    """Deserializing checks types and required fields; the round trip checks every field name (the
    models drop names they do not know)."""
    api = ApiClient()
    items = small[key]
    assert items, f"{key} is empty in a default-size cluster"
    for obj in items:
        original = obj
        if obj["kind"] == "Event" and obj["eventTime"] is None:
            # Real servers return null for events recorded through core/v1; the model insists on it.
            original = {**obj, "eventTime": "2025-01-01T00:00:00.000000Z"}
        if obj["kind"] == "CSINode" and obj["spec"]["drivers"] is None:
            original = {
                **obj,
                "spec": {"drivers": []},
            }  # likewise: drivers: null is served, the model wants a list
        model = api.deserialize(
            json.dumps(original), MODELS.get(obj["kind"], "V1" + obj["kind"]), "application/json"
        )
        back = json.loads(json.dumps(api.sanitize_for_serialization(model)))
        assert _normalise(back) == _normalise(original), (key, obj["metadata"]["name"])


# -- determinism ------------------------------------------------------------------------------


def test_same_spec_gives_byte_identical_objects() -> None:
    spec = ClusterSpec("det", seed=7, pods=120, namespaces=6)
    assert orjson.dumps(generate_objects(spec)) == orjson.dumps(generate_objects(spec))


def _uids(objects: dict[str, Any]) -> set[str]:
    return {
        o["metadata"]["uid"] for items in _lists(objects).values() for o in items if "uid" in o["metadata"]
    }


def test_uids_are_unique_and_differ_between_seeds_and_clusters() -> None:
    a = generate_objects(ClusterSpec("det", seed=1))
    b = generate_objects(ClusterSpec("det", seed=2))
    c = generate_objects(ClusterSpec("other", seed=1))
    count = sum(1 for items in _lists(a).values() for o in items if "uid" in o["metadata"])
    assert len(_uids(a)) == count
    assert not _uids(a) & _uids(b) and not _uids(a) & _uids(c)


def test_objects_share_no_mutable_parts(medium: dict[str, Any]) -> None:
    """Callers (fault injection, conversions) may edit one object without touching another."""
    seen: set[int] = set()
    shared = []

    def walk(x: Any, path: str) -> None:
        if isinstance(x, dict | list):
            if id(x) in seen:
                shared.append(path)
            seen.add(id(x))
            for k, v in x.items() if isinstance(x, dict) else enumerate(x):
                walk(v, f"{path}.{k}")

    for key, items in _lists(medium).items():
        for o in items:
            walk(o, f"{key}/{o['metadata']['name']}")
    assert shared == []
    first = generate_objects(ClusterSpec("mut"))
    first["rbac.authorization.k8s.io/v1/clusterroles"][0]["rules"].append({"verbs": ["x"]})
    assert generate_objects(ClusterSpec("mut")) != first


# -- referential integrity ---------------------------------------------------------------------


def _index(objects: dict[str, Any]) -> dict[tuple[str, str, str], Obj]:
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
        for items in _lists(objects).values()
        for o in items
    }


def test_owner_references_point_at_existing_objects(medium: dict[str, Any]) -> None:
    index = _index(medium)
    owned = Counter()
    for items in _lists(medium).values():
        for o in items:
            for ref in o["metadata"].get("ownerReferences", ()):
                ns = o["metadata"].get("namespace", "") if ref["kind"] != "Node" else ""
                owner = index.get((ref["kind"], ns, ref["name"]))
                assert owner is not None, (o["kind"], o["metadata"]["name"], ref)
                assert owner["metadata"]["uid"] == ref["uid"] and owner["apiVersion"] == ref["apiVersion"]
                owned[(o["kind"], ref["kind"])] += 1
    for pair in [
        ("Pod", "ReplicaSet"),
        ("Pod", "DaemonSet"),
        ("Pod", "StatefulSet"),
        ("Pod", "Job"),
        ("ReplicaSet", "Deployment"),
        ("Job", "CronJob"),
        ("CSINode", "Node"),
    ]:
        assert owned[pair], pair
    assert any("ownerReferences" not in p["metadata"] for p in medium["v1/pods"])  # bare pods


def test_container_statuses_match_containers_by_position(medium: dict[str, Any]) -> None:
    for p in medium["v1/pods"]:
        for spec_key, status_key in (
            ("initContainers", "initContainerStatuses"),
            ("containers", "containerStatuses"),
            ("ephemeralContainers", "ephemeralContainerStatuses"),
        ):
            names = [c["name"] for c in p["spec"].get(spec_key, [])]
            assert [s["name"] for s in p["status"].get(status_key, [])] == names, p["metadata"]["name"]


def test_pods_run_on_existing_nodes_in_existing_namespaces(medium: dict[str, Any]) -> None:
    nodes = {n["metadata"]["name"] for n in medium["v1/nodes"]}
    namespaces = {n["metadata"]["name"] for n in medium["v1/namespaces"]}
    for key, items in _lists(medium).items():
        if RESOURCE_KINDS[key][1]:
            assert {o["metadata"]["namespace"] for o in items} <= namespaces, key
    for p in medium["v1/pods"]:
        assert p["spec"].get("nodeName", next(iter(nodes))) in nodes
    for ds in medium["apps/v1/daemonsets"]:
        ds_pods = [
            p
            for p in medium["v1/pods"]
            if p["metadata"].get("ownerReferences", [{}])[0].get("uid") == ds["metadata"]["uid"]
        ]
        assert sorted(p["spec"]["nodeName"] for p in ds_pods) == sorted(nodes)


def test_pods_refer_to_existing_config(medium: dict[str, Any]) -> None:
    index = _index(medium)
    for p in medium["v1/pods"]:
        ns = p["metadata"]["namespace"]
        assert ("ServiceAccount", ns, p["spec"]["serviceAccountName"]) in index
        for v in p["spec"].get("volumes", []):
            if "configMap" in v:
                assert ("ConfigMap", ns, v["configMap"]["name"]) in index
            if "secret" in v:
                assert ("Secret", ns, v["secret"]["secretName"]) in index
            if "persistentVolumeClaim" in v and p["metadata"].get("ownerReferences"):
                assert ("PersistentVolumeClaim", ns, v["persistentVolumeClaim"]["claimName"]) in index
        for c in p["spec"]["containers"]:
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ("Secret", ns, ref["name"]) in index


def test_endpoints_address_ready_pods_of_their_service(medium: dict[str, Any]) -> None:
    pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in medium["v1/pods"]}
    addressed = 0
    for ep in medium["v1/endpoints"]:
        for subset in ep.get("subsets", []):
            for a in subset.get("addresses", []):
                if "targetRef" in a:
                    pod = pods[(a["targetRef"]["namespace"], a["targetRef"]["name"])]
                    assert (
                        pod["status"]["podIP"] == a["ip"] and pod["metadata"]["uid"] == a["targetRef"]["uid"]
                    )
                    addressed += 1
    assert addressed > 100


# -- sizing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pods", "namespaces"), [(0, 2), (1, 3), (7, 5), (50, 5), (200, 12), (999, 20)])
def test_pod_and_namespace_counts_are_honoured(pods: int, namespaces: int) -> None:
    objects = generate_objects(ClusterSpec("size", pods=pods, namespaces=namespaces))
    assert len(objects["v1/pods"]) == pods
    names = [n["metadata"]["name"] for n in objects["v1/namespaces"]]
    assert len(names) == namespaces and {"kube-system", "default"} <= set(names)
    assert len(objects["v1/nodes"]) == max(3, pods // 30)


def test_sizing_knobs_resolve_from_pods() -> None:
    assert ClusterSpec("a").nodes == 3 and ClusterSpec("a", pods=30000).nodes == 1000
    assert ClusterSpec("a", pods=300, nodes=4).nodes == 4
    assert ClusterSpec("a", namespaces=1).namespaces == 2  # kube-system and default always exist
    spec = ClusterSpec("a", pods=600, namespaces=9, daemon_sets=2)
    assert len(generate_objects(spec)["apps/v1/daemonsets"]) == 2
    with pytest.raises(ValueError):
        ClusterSpec("a", pods=-1)


def test_workloads_scale_with_pods(medium: dict[str, Any]) -> None:
    deployments = len(medium["apps/v1/deployments"])
    assert 600 / 12 <= deployments <= 600 / 4
    assert deployments <= len(medium["apps/v1/replicasets"]) <= 2 * deployments


@pytest.mark.slow
def test_the_largest_original_cluster() -> None:
    objects = generate_objects(ClusterSpec("largest", pods=30000, namespaces=43))
    assert len(objects["v1/pods"]) == 30000 and len(objects["v1/namespaces"]) == 43
    containers = sum(len(p["spec"]["containers"]) for p in objects["v1/pods"])
    assert 35_000 <= containers <= 48_000
    assert len(objects["v1/nodes"]) == 1000


# -- realism: every branch the row builders and loaders have ----------------------------------


def test_pod_specs_cover_every_volume_source_and_container_kind(small: dict[str, Any]) -> None:
    pod_sources = {
        k for p in small["v1/pods"] for v in p["spec"].get("volumes", []) for k in v if k != "name"
    }
    template_sources = {
        k
        for t in small["v1/podtemplates"]
        for v in t["template"]["spec"].get("volumes", [])
        for k in v
        if k != "name"
    }
    assert pod_sources == VOLUME_SOURCES and template_sources == VOLUME_SOURCES
    pods = small["v1/pods"]
    assert any(p["spec"].get("initContainers") for p in pods)
    assert any(p["spec"].get("ephemeralContainers") for p in pods)
    assert {len(s["containers"]) for s in _pod_specs(generate_objects(ClusterSpec("c", pods=300)))} == {
        1,
        2,
        3,
    }
    empty_dirs = [v["emptyDir"] for p in _pod_specs(small) for v in p.get("volumes", []) if "emptyDir" in v]
    assert any("sizeLimit" in e for e in empty_dirs) and any("sizeLimit" not in e for e in empty_dirs)


def test_pods_carry_every_kind_of_field_kubequery_flattens(medium: dict[str, Any]) -> None:
    specs = _pod_specs(medium)
    containers = [c for s in specs for c in s["containers"] + s.get("initContainers", [])]
    for field in (
        "affinity",
        "tolerations",
        "dnsConfig",
        "nodeSelector",
        "hostAliases",
        "imagePullSecrets",
        "topologySpreadConstraints",
        "readinessGates",
        "runtimeClassName",
        "overhead",
        "priorityClassName",
        "shareProcessNamespace",
        "automountServiceAccountToken",
    ):
        assert any(field in s for s in specs), field
    assert any(s.get("hostNetwork") for s in specs) and any(s.get("hostPID") for s in specs)
    pod_sc = [s["securityContext"] for s in specs]
    for field in (
        "runAsUser",
        "fsGroup",
        "supplementalGroups",
        "sysctls",
        "seccompProfile",
        "seLinuxOptions",
        "windowsOptions",
        "fsGroupChangePolicy",
    ):
        assert any(field in sc for sc in pod_sc), field
    c_sc = [c["securityContext"] for c in containers if "securityContext" in c]
    for field in (
        "capabilities",
        "privileged",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "procMount",
        "seLinuxOptions",
        "seccompProfile",
        "windowsOptions",
        "runAsNonRoot",
    ):
        assert any(field in sc for sc in c_sc), field
    env_kinds = {
        k for c in containers for e in c.get("env", []) for k in (e.get("valueFrom") or {"value": 0})
    }
    assert env_kinds == {"value", "fieldRef", "secretKeyRef", "configMapKeyRef", "resourceFieldRef"}
    probes = {k for c in containers for p in ("livenessProbe", "readinessProbe") for k in c.get(p, {})}
    assert {"httpGet", "tcpSocket", "exec", "grpc"} <= probes
    quantities = {q for c in containers for part in c["resources"].values() for q in part.values()}
    assert {"100m", "0.5", "1", "1Gi", "512M", "1e9", "268435456"} <= quantities
    assert any(c["resources"] == {} for c in containers)


def test_pod_status_variety(medium: dict[str, Any]) -> None:
    pods = medium["v1/pods"]
    phases = Counter(p["status"]["phase"] for p in pods)
    assert phases["Running"] > 0.8 * len(pods) and phases["Pending"] and phases["Succeeded"]
    qos = {p["status"]["qosClass"] for p in pods}
    assert qos == {"BestEffort", "Burstable", "Guaranteed"}
    states = {k for p in pods for s in p["status"]["containerStatuses"] for k in s["state"]}
    assert states == {"running", "waiting", "terminated"}
    running = [p for p in pods if p["status"]["phase"] == "Running"]
    assert all(
        p["status"]["podIP"] == p["status"]["podIPs"][0]["ip"] and p["status"]["hostIP"] for p in running
    )
    owners = {
        p["metadata"]["ownerReferences"][0]["kind"] for p in pods if p["metadata"].get("ownerReferences")
    }
    assert owners == {"ReplicaSet", "DaemonSet", "StatefulSet", "Job"}


def test_cluster_objects_cover_their_branches(medium: dict[str, Any]) -> None:
    nodes = medium["v1/nodes"]
    assert any("taints" in n["spec"] for n in nodes) and any("taints" not in n["spec"] for n in nodes)
    assert all(n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250 for n in nodes)
    assert {s["spec"]["type"] for s in medium["v1/services"]} == {
        "ClusterIP",
        "NodePort",
        "LoadBalancer",
        "ExternalName",
    }
    assert any(s["status"]["loadBalancer"].get("ingress") for s in medium["v1/services"])
    policies = medium["networking.k8s.io/v1/networkpolicies"]
    assert any("ingress" not in p["spec"] and "egress" not in p["spec"] for p in policies)
    assert any(p["spec"].get("ingress") and p["spec"].get("egress") for p in policies)
    budgets = [p["spec"] for p in medium["policy/v1/poddisruptionbudgets"]]
    forms = {(k, type(b[k]).__name__) for b in budgets for k in ("minAvailable", "maxUnavailable") if k in b}
    assert forms == {
        ("minAvailable", "int"),
        ("minAvailable", "str"),
        ("maxUnavailable", "int"),
        ("maxUnavailable", "str"),
    }
    events = medium["events.k8s.io/v1/events"]
    assert any(e["eventTime"] is None for e in events) and any(e["eventTime"] for e in events)
    assert any(n["spec"]["drivers"] is None for n in medium["storage.k8s.io/v1/csinodes"])
    pv_sources = {
        k
        for pv in medium["v1/persistentvolumes"]
        for k in ("csi", "local", "nfs", "hostPath")
        if k in pv["spec"]
    }
    assert pv_sources == {"csi", "local", "nfs", "hostPath"}
    assert any(c["conditions"][0]["status"] == "False" for c in medium["v1/componentstatuses"])
    assert any(not r["rules"] for r in medium["rbac.authorization.k8s.io/v1/roles"])
    assert any("subjects" not in b for b in medium["rbac.authorization.k8s.io/v1/clusterrolebindings"])
    assert any(
        "webhooks" not in w for w in medium["admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"]
    )


def test_kube_system_and_default_exist_and_kube_system_is_the_oldest(small: dict[str, Any]) -> None:
    by_name = {n["metadata"]["name"]: n for n in small["v1/namespaces"]}
    stamps = sorted(n["metadata"]["creationTimestamp"] for n in small["v1/namespaces"])
    assert by_name["kube-system"]["metadata"]["creationTimestamp"] == stamps[0]
    assert "default" in by_name


# -- secrets and hostile values ----------------------------------------------------------------


def test_secret_values_are_recognisable_in_both_forms(medium: dict[str, Any]) -> None:
    values = secret_values(medium)
    first = "kq-secret-medium-1"
    assert first in values and base64.b64encode(first.encode()).decode() in values
    for s in medium["v1/secrets"]:
        plain = [base64.b64decode(v).decode() for v in s["data"].values()]
        assert any("kq-secret-medium-" in p for p in plain), s["metadata"]["name"]
        assert {p for p in plain if "kq-secret-" in p} <= values
    # Only secret material: a leak test must not trip over a namespace name or a CA bundle.
    for v in values:
        assert v.startswith(("kq-secret-", "{")) or base64.b64decode(v).decode().startswith(
            ("kq-secret-", "{")
        )
    assert not secret_values({"v1/pods": medium["v1/pods"]})


def test_some_secrets_repeat_their_data_in_the_last_applied_annotation(medium: dict[str, Any]) -> None:
    values = secret_values(medium)
    applied = [
        json.loads(s["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
        for s in medium["v1/secrets"]
        if "kubectl.kubernetes.io/last-applied-configuration" in s["metadata"].get("annotations", {})
    ]
    with_data = [a for a in applied if "data" in a]
    with_string_data = [a for a in applied if "stringData" in a]
    assert with_data and with_string_data
    assert all(set(a["data"].values()) <= values for a in with_data)
    assert all(set(a["stringData"].values()) <= values for a in with_string_data)


def test_a_few_objects_carry_hostile_but_legal_values(medium: dict[str, Any]) -> None:
    text = json.dumps(_lists(medium), ensure_ascii=False)
    for needle in ("<", ">", "&", "\u2028", "Zürich"):
        assert needle in text, repr(needle)
    hostile = [
        o
        for items in _lists(medium).values()
        for o in items
        if "kq.example.com/html" in o["metadata"].get("annotations", {})
    ]
    total = sum(len(v) for v in _lists(medium).values())
    assert 0 < len(hostile) < total / 10
    assert any("kq.example.com/city" in o["metadata"].get("labels", {}) for o in hostile)
