"""A fleet is usable by the real tools: kubectl (TLS + token) and the official Python client."""

from __future__ import annotations

import json
import re
import ssl
from collections import Counter
from pathlib import Path

import httpx
import kubernetes
import pytest
import yaml

from kq_pipeline.simulator import Fleet, SimulatedCluster
from kq_pipeline.simulator.catalog import ResourceType
from kq_pipeline_tests.simulator.conftest import Kubectl, generated_objects


def test_kubeconfig_has_one_context_per_cluster_with_ca_and_token(fleet: Fleet, tmp_path: Path):
    path = fleet.write_kubeconfig(tmp_path / "kc")
    assert path.stat().st_mode & 0o777 == 0o600
    cfg = yaml.safe_load(path.read_text())
    assert [c["name"] for c in cfg["contexts"]] == ["sim-0", "sim-1"]
    by_name = {c["name"]: c["cluster"] for c in cfg["clusters"]}
    assert by_name["sim-1"]["server"] == fleet.clusters["sim-1"].url
    assert {u["user"]["token"] for u in cfg["users"]} == {c.token for c in fleet.clusters.values()}
    assert len({c.token for c in fleet.clusters.values()}) == 2
    assert len({c.url for c in fleet.clusters.values()}) == 2


def test_tokens_stay_out_of_reprs(fleet: Fleet):
    for c in fleet.clusters.values():
        assert c.token not in repr(c) and c.token not in repr(fleet)


def test_kubectl_version_and_api_resources(kubectl: Kubectl, sim: SimulatedCluster):
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == sim.git_version
    table = kubectl("api-resources", "--no-headers").stdout
    names = {line.split()[0] for line in table.splitlines()}
    assert {rt.resource for rt in sim.catalog.types} <= names


def test_kubectl_gets_pods_in_chunks(kubectl: Kubectl, sim: SimulatedCluster):
    out = kubectl("get", "pods", "-A", "--chunk-size=7", "--no-headers", "-v=6").stdout
    assert len(out.splitlines()) == len(sim.objects["v1/pods"])
    pages = kubectl("get", "pods", "-A", "--chunk-size=7", "-v=6").stderr.count("/api/v1/pods?")
    assert pages == -(-len(sim.objects["v1/pods"]) // 7)


def test_kubectl_get_nodes_json_and_one_pod_by_name(kubectl: Kubectl, sim: SimulatedCluster):
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)
    assert [n["metadata"]["name"] for n in nodes["items"]] == [
        o["metadata"]["name"] for o in sim.objects["v1/nodes"]
    ]
    pod = sim.objects["v1/pods"][0]["metadata"]
    got = json.loads(kubectl("get", "pod", pod["name"], "-n", pod["namespace"], "-o", "json").stdout)
    assert got["metadata"]["uid"] == pod["uid"]


def test_kubectl_lists_every_kind_the_tables_read(kubectl: Kubectl, sim: SimulatedCluster):
    qualified = ",".join(
        f"{rt.resource}.{rt.version}.{rt.group}" if rt.group else rt.resource for rt in sim.catalog.types
    )
    items = json.loads(kubectl("get", qualified, "-A", "-o", "json").stdout)["items"]
    got = Counter((i["apiVersion"], i["kind"]) for i in items)
    expected = Counter({(rt.group_version, rt.kind): len(sim.objects[rt.key]) for rt in sim.catalog.types})
    assert got == +expected


def test_kubectl_per_cluster_contexts(kubectl: Kubectl, fleet: Fleet):
    out = kubectl("get", "pods", "-A", "--no-headers", context="sim-1").stdout
    assert len(out.splitlines()) == len(fleet.clusters["sim-1"].objects["v1/pods"])


# Real servers send JSON null where the official client's models insist on a value; those kinds are read
# raw. events.k8s.io Event: eventTime is null for events recorded via core/v1
# (kubernetes-client/python#669). CSINode: spec.drivers has no omitempty, so a node without CSI
# drivers serves "drivers": null.
RAW_ONLY = {"events.k8s.io/v1/events", "storage.k8s.io/v1/csinodes"}


def _snake(kind: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", kind).lower()


def _list_method(api_client: kubernetes.client.ApiClient, rt: ResourceType):
    group = (
        "Core"
        if not rt.group
        else "".join(p.capitalize() for p in rt.group.split(".") if p not in ("k8s", "io"))
    )
    api_cls = getattr(kubernetes.client, f"{group}{rt.version.capitalize()}Api")
    suffix = "_for_all_namespaces" if rt.namespaced else ""
    return getattr(api_cls(api_client), f"list_{_snake(rt.kind)}{suffix}")


def test_official_client_pages_and_parses_every_kind(fleet: Fleet, sim: SimulatedCluster, tmp_path: Path):
    ca = tmp_path / "ca.crt"
    ca.write_text(fleet.ca_pem)
    conf = kubernetes.client.Configuration(host=sim.url, api_key={"authorization": f"Bearer {sim.token}"})
    conf.ssl_ca_cert = str(ca)
    with kubernetes.client.ApiClient(conf) as api_client:
        for rt in sim.catalog.types:
            list_fn = _list_method(api_client, rt)
            names, cont = [], None
            raw = rt.key in RAW_ONLY
            while True:
                kw = {
                    "limit": 5,
                    **({"_continue": cont} if cont else {}),
                    **({"_preload_content": False} if raw else {}),
                }
                result = list_fn(**kw)
                if raw:
                    body = json.loads(result.data)
                    names += [item["metadata"]["name"] for item in body["items"]]
                    cont = body["metadata"].get("continue")
                else:
                    names += [item.metadata.name for item in result.items]
                    cont = result.metadata._continue
                if not cont:
                    break
            assert names == [o["metadata"]["name"] for o in sim.objects[rt.key]], rt.key


def test_client_certificate_auth(tmp_path: Path):
    with Fleet(client_cert_auth=True) as f:
        cluster = f.add("sim-cc", generated_objects("sim-cc", pods=3))
        pair = f.issue_client_cert("alice", ("devs",))
        (tmp_path / "c.crt").write_text(pair.cert_pem)
        (tmp_path / "c.key").write_text(pair.key_pem)
        ctx = ssl.create_default_context(cadata=f.ca_pem)
        ctx.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")
        cluster.set_rbac_rules([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}])
        with httpx.Client(base_url=cluster.url, verify=ctx) as c:
            assert c.get("/api/v1/nodes").status_code == 200
            denied = c.get("/api/v1/pods").json()
            assert 'User "alice" cannot list resource "pods"' in denied["message"]
        with httpx.Client(base_url=cluster.url, verify=ssl.create_default_context(cadata=f.ca_pem)) as anon:
            assert anon.get("/api/v1/nodes").status_code == 403


def test_plain_http_fleet_and_rbac_from_a_role_manifest():
    role = {
        "kind": "Role",
        "metadata": {"namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
    }
    with Fleet(tls=False) as f:
        cluster = f.add("plain", generated_objects("plain", pods=6), rbac_rules=role)
        assert cluster.url.startswith("http://")
        with httpx.Client(base_url=cluster.url, headers={"Authorization": f"Bearer {cluster.token}"}) as c:
            assert c.get("/api/v1/namespaces/default/pods").status_code == 200
            assert c.get("/api/v1/pods").status_code == 403


@pytest.mark.parametrize("minor", [24, 29])
def test_old_clusters_serve_psp_and_beta_versions(minor: int):
    with Fleet(tls=False) as f:
        cluster = f.add("old", generated_objects("old", pods=3, k8s_minor=minor), minor=minor)
        with httpx.Client(base_url=cluster.url, headers={"Authorization": f"Bearer {cluster.token}"}) as c:
            psp = c.get("/apis/policy/v1beta1/podsecuritypolicies")
            cron = c.get("/apis/batch/v1beta1/cronjobs")
            assert (psp.status_code, cron.status_code) == ((200, 200) if minor < 25 else (404, 404))
            if minor < 25:
                assert cron.json()["items"] == [
                    {k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                    for o in cluster.objects["batch/v1beta1/cronjobs"]
                ]
