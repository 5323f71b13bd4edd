"""Churn: a simulated cluster changes between loads the way a live one does, and says exactly how.

The report is what a test holds against the pipeline's change feed, so the first tests prove it equals
the difference between two full lists (by uid); the others pin down each kind of change, the
consistency a real cluster keeps between objects, reproducibility, and the ways to trigger churn
(Python, the loopback-only control endpoint, `kq simulate --churn`, a fleet) and kubectl deletes.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from kq_pipeline.cli import build_parser
from kq_pipeline.simulator import Fleet, SimulatedCluster, serve_fleet
from kq_pipeline.simulator.api import Request
from kq_pipeline.simulator.cli import run_simulate, simulate_options
from kq_pipeline.simulator.objects import ClusterSpec
from kq_pipeline_tests.simulator.conftest import Kubectl, client, generated_objects

NOW = 1_800_000_000  # new objects' creation time, fixed so two runs can be compared byte for byte
Obj = dict[str, Any]


def cluster(pods: int = 300, seed: int = 1, **knobs: Any) -> SimulatedCluster:
    """A cluster that is not listening: churn and its checks work on the objects in-process."""
    return SimulatedCluster("sim-0", generated_objects("sim-0", pods=pods, seed=seed, **knobs))


def versions(objects: dict[str, list[Obj]]) -> dict[str, str]:
    """uid → resourceVersion of every object (an object served at two versions counts once)."""
    return {
        o["metadata"]["uid"]: o["metadata"]["resourceVersion"]
        for objs in objects.values()
        for o in objs
        if o["metadata"].get("uid")
    }


def diff(before: dict[str, str], after: dict[str, str]) -> tuple[set[str], set[str], set[str]]:
    """(added, removed, modified) uids between two listings."""
    modified = {u for u in before.keys() & after.keys() if before[u] != after[u]}
    return after.keys() - before.keys(), before.keys() - after.keys(), modified


def uids(refs: Any) -> set[str]:
    return {r.uid for r in refs}


def by_name(objs: list[Obj]) -> dict[tuple[str, str], Obj]:
    return {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objs}


def owned(objs: list[Obj], owner: Obj) -> list[Obj]:
    uid = owner["metadata"]["uid"]
    return [o for o in objs if any(r["uid"] == uid for r in o["metadata"].get("ownerReferences") or ())]


def inconsistencies(objects: dict[str, list[Obj]]) -> list[str]:
    """What a real cluster's controllers never leave behind for long, as sentences (empty: consistent)."""
    pods, nodes = objects["v1/pods"], {o["metadata"]["name"] for o in objects["v1/nodes"]}
    live = set(versions(objects))
    found = []
    for p in pods:
        md = p["metadata"]
        if p["spec"].get("nodeName") and p["spec"]["nodeName"] not in nodes:
            found.append(f"pod {md['name']} is bound to missing node {p['spec']['nodeName']}")
        found += [
            f"pod {md['name']} has no {r['kind']}"
            for r in md.get("ownerReferences") or ()
            if r["uid"] not in live
        ]
    for rs in objects["apps/v1/replicasets"]:
        n = len(owned(pods, rs))
        if (rs["spec"]["replicas"], rs["status"]["replicas"]) != (n, n):
            found.append(f"replica set {rs['metadata']['name']} wants {rs['spec']['replicas']}, has {n} pods")
    for dep in objects["apps/v1/deployments"]:
        rsets = owned(objects["apps/v1/replicasets"], dep)
        dep_pods = [p for rs in rsets for p in owned(pods, rs)]
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        if len(dep_pods) != dep["spec"]["replicas"] or dep["status"].get("replicas", 0) != len(dep_pods):
            found.append(f"deployment {dep['metadata']['name']} wants {dep['spec']['replicas']} pods")
        found += [
            f"pod {p['metadata']['name']} runs an old image"
            for p in dep_pods
            if p["spec"]["containers"][0]["image"] != image
        ]
    for ds in objects["apps/v1/daemonsets"]:
        if {p["spec"]["nodeName"] for p in owned(pods, ds)} != nodes:
            found.append(f"daemon set {ds['metadata']['name']} is not on every node")
    for ep in objects["v1/endpoints"]:
        for subset in ep.get("subsets") or ():
            for a in (subset.get("addresses") or []) + (subset.get("notReadyAddresses") or []):
                if "targetRef" in a and a["targetRef"]["uid"] not in live:
                    found.append(f"endpoints {ep['metadata']['name']} list gone pod {a['targetRef']['name']}")
    if {o["metadata"]["name"] for o in objects["storage.k8s.io/v1/csinodes"]} != nodes:
        found.append("the CSINodes are not the nodes")
    return found


# --- the report --------------------------------------------------------------------------------------


def test_churn_touches_about_the_requested_share_of_the_objects():
    sim = cluster()
    before = versions(sim.objects)
    report = sim.churn(0.05, seed=1)
    touched = set().union(*diff(before, versions(sim.objects)))
    assert report.objects == len(before)
    assert report.touched == len(touched)
    assert 0.04 <= len(touched) / len(before) <= 0.07
    assert sim.churn(0.0, seed=1).touched == 0


@pytest.mark.parametrize("fraction", [0.02, 0.2])
def test_the_report_is_exactly_the_difference_between_two_full_lists(fraction: float):
    with Fleet() as fleet:
        sim = fleet.add(
            "sim-0", generated_objects("sim-0", pods=200, seed=3, operators=("cert-manager", "istio"))
        )
        with client(fleet, sim) as http:

            def listing() -> dict[str, str]:
                out = {}
                for key in sim.objects:  # every served version (HPA v1 and v2, istio's three...)
                    path = f"/api/{key}" if key.startswith("v1/") else f"/apis/{key}"
                    for o in http.get(path).json()["items"]:
                        if o["metadata"].get("uid"):
                            out[o["metadata"]["uid"]] = o["metadata"]["resourceVersion"]
                return out

            before, revision = listing(), sim.store.revision
            report = sim.churn(fraction, seed=7)
            after = listing()
    added, removed, modified = diff(before, after)
    assert (uids(report.added), uids(report.removed), uids(report.modified)) == (added, removed, modified)
    assert all(int(after[u]) > revision for u in added | modified)  # every write bumps resourceVersion
    assert report.revision == max(int(v) for v in after.values())
    kinds = Counter(r.kind for r in report.added)
    assert kinds["Pod"] > 0 and report.actions["replace_pod"] > 0


def test_a_list_paged_across_a_churn_stays_in_one_snapshot(fleet: Fleet, sim: SimulatedCluster):
    with client(fleet, sim) as http:
        first = http.get("/api/v1/pods", params={"limit": 5}).json()
        expected = [p["metadata"]["uid"] for p in http.get("/api/v1/pods").json()["items"]]
        sim.churn(0.2, seed=2)
        rest = http.get("/api/v1/pods", params={"continue": first["metadata"]["continue"]}).json()
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert [p["metadata"]["uid"] for p in first["items"] + rest["items"]] == expected


def test_seeded_churn_is_reproducible():
    one, two = cluster(seed=4), cluster(seed=4)
    reports = [c.churn(0.1, seed=11, now=NOW) for c in (one, two)]
    assert reports[0] == reports[1]
    assert orjson.dumps(one.objects) == orjson.dumps(two.objects)
    assert cluster(seed=4).churn(0.1, seed=12, now=NOW).added != reports[0].added


def test_many_rounds_of_churn_keep_the_objects_consistent_and_the_cluster_its_size():
    sim = cluster(pods=300, seed=5)
    pods, nodes = len(sim.objects["v1/pods"]), len(sim.objects["v1/nodes"])
    done: Counter[str] = Counter()
    for i in range(15):
        done.update(sim.churn(0.1, seed=i).actions)
        assert inconsistencies(sim.objects) == []
    assert set(done) == {"replace_pod", "roll", "scale", "delete", "create", "add_node", "remove_node"}
    assert 0.8 < len(sim.objects["v1/pods"]) / pods < 1.25
    assert abs(len(sim.objects["v1/nodes"]) - nodes) <= 3


# --- each kind of change -----------------------------------------------------------------------------


def test_a_replaced_pod_has_a_new_uid_and_name_and_the_same_owner_and_spec():
    sim = cluster()
    old = next(
        p
        for p in sim.objects["v1/pods"]
        if p["metadata"].get("ownerReferences", [{}])[0].get("kind") == "ReplicaSet"
    )
    report = sim.churn_action(
        "replace_pod", namespace=old["metadata"]["namespace"], name=old["metadata"]["name"]
    )
    (new_ref,) = [r for r in report.added if r.kind == "Pod"]
    new = by_name(sim.objects["v1/pods"])[(new_ref.namespace, new_ref.name)]
    assert [r.uid for r in report.removed] == [old["metadata"]["uid"]]
    assert (
        new["metadata"]["uid"] != old["metadata"]["uid"]
        and new["metadata"]["name"] != old["metadata"]["name"]
    )
    assert new["metadata"]["ownerReferences"] == old["metadata"]["ownerReferences"]
    assert new["metadata"]["name"].startswith(old["metadata"]["ownerReferences"][0]["name"] + "-")
    assert [c["image"] for c in new["spec"]["containers"]] == [c["image"] for c in old["spec"]["containers"]]
    assert new["status"]["phase"] == "Running" and new["status"]["podIP"] != old["status"].get("podIP")


def test_random_replacements_give_every_replaced_pod_a_new_uid_and_all_but_stateful_ones_a_new_name():
    sim = cluster()
    report = sim.churn(0.05, seed=3)
    replaced = {r.name for r in report.removed if r.kind == "Pod"}
    new = {r.name for r in report.added if r.kind == "Pod"}
    stateful = {  # a stateful-set pod keeps its ordinal name ("postgres-0")
        p["metadata"]["name"]
        for p in sim.objects["v1/pods"]
        if p["metadata"].get("ownerReferences", [{}])[0].get("kind") == "StatefulSet"
    }
    assert replaced and (replaced & new) <= stateful
    assert not uids(report.removed) & uids(report.added)


def test_a_rolled_deployment_runs_the_new_image_in_new_pods_of_a_new_replica_set():
    sim = cluster()
    dep = next(d for d in sim.objects["apps/v1/deployments"] if d["spec"]["replicas"] >= 2)
    ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
    old_pods = {
        p["metadata"]["uid"]
        for rs in owned(sim.objects["apps/v1/replicasets"], dep)
        for p in owned(sim.objects["v1/pods"], rs)
    }
    report = sim.churn_action("roll", namespace=ns, name=name, image="registry.example.com/new:9.9.9")
    dep = by_name(sim.objects["apps/v1/deployments"])[(ns, name)]
    rsets = sorted(
        owned(sim.objects["apps/v1/replicasets"], dep), key=lambda rs: rs["metadata"]["creationTimestamp"]
    )
    new_rs = next(rs for rs in rsets if rs["spec"]["replicas"])
    pods = owned(sim.objects["v1/pods"], new_rs)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/new:9.9.9"
    assert [p["spec"]["containers"][0]["image"] for p in pods] == ["registry.example.com/new:9.9.9"] * dep[
        "spec"
    ]["replicas"]
    assert new_rs["metadata"]["uid"] in uids(report.added)
    assert {p["metadata"]["uid"] for p in pods}.isdisjoint(old_pods) and old_pods <= uids(report.removed)
    assert all(rs["spec"]["replicas"] == 0 for rs in rsets if rs is not new_rs)
    assert dep["metadata"]["uid"] in uids(report.modified)
    assert (
        dep["status"]["conditions"][1]["message"]
        == f'ReplicaSet "{new_rs["metadata"]["name"]}" has successfully progressed.'
    )
    assert inconsistencies(sim.objects) == []


def test_a_scaled_deployment_has_that_many_pods_and_its_endpoints_follow():
    sim = cluster()
    svc = next(
        s
        for s in sim.objects["v1/services"]
        if s["spec"].get("selector", {}).get("app") and not s["metadata"]["name"].endswith("headless")
    )
    ns = svc["metadata"]["namespace"]
    dep = by_name(sim.objects["apps/v1/deployments"])[(ns, svc["spec"]["selector"]["app"])]
    wanted = dep["spec"]["replicas"] + 3
    sim.churn_action("scale", namespace=ns, name=dep["metadata"]["name"], replicas=wanted)
    pods = [
        p
        for p in sim.objects["v1/pods"]
        if p["metadata"]["namespace"] == ns
        and p["metadata"].get("labels", {}).get("app") == dep["metadata"]["name"]
    ]
    assert (
        len(pods)
        == wanted
        == by_name(sim.objects["apps/v1/deployments"])[(ns, dep["metadata"]["name"])]["spec"]["replicas"]
    )
    ep = by_name(sim.objects["v1/endpoints"])[(ns, svc["metadata"]["name"])]
    listed = {
        a["targetRef"]["uid"]
        for s in ep["subsets"]
        for a in s.get("addresses", []) + s.get("notReadyAddresses", [])
    }
    assert listed == {p["metadata"]["uid"] for p in pods}


def test_a_removed_node_has_no_pods_left_and_its_workload_pods_run_elsewhere():
    sim = cluster()
    node = sim.objects["v1/nodes"][-1]["metadata"]["name"]
    on_node = [p for p in sim.objects["v1/pods"] if p["spec"].get("nodeName") == node]
    kinds = [p["metadata"].get("ownerReferences", [{}])[0].get("kind") for p in on_node]
    workload = [  # recreated elsewhere by their controller
        p
        for p, kind in zip(on_node, kinds, strict=True)
        if kind in ("ReplicaSet", "StatefulSet") or (kind == "Job" and p["status"]["phase"] == "Running")
    ]
    assert "ReplicaSet" in kinds and "DaemonSet" in kinds
    report = sim.churn_action("remove_node", name=node)
    assert not [p for p in sim.objects["v1/pods"] if p["spec"].get("nodeName") == node]
    assert node not in {n["metadata"]["name"] for n in sim.objects["v1/nodes"]}
    assert {p["metadata"]["uid"] for p in on_node} <= uids(report.removed)
    assert Counter(r.kind for r in report.added)["Pod"] == len(workload)  # daemon-set pods are not recreated
    assert inconsistencies(sim.objects) == []


def test_an_added_node_gets_a_csinode_and_a_pod_of_every_daemon_set():
    sim = cluster()
    report = sim.churn_action("add_node")
    (node,) = [r for r in report.added if r.kind == "Node"]
    assert Counter(r.kind for r in report.added) == {
        "Node": 1,
        "CSINode": 1,
        "Pod": len(sim.objects["apps/v1/daemonsets"]),
    }
    assert {r.kind for r in report.modified} == {"DaemonSet"}
    assert node.name in {p["spec"].get("nodeName") for p in sim.objects["v1/pods"]}
    assert inconsistencies(sim.objects) == []


def test_deleting_a_deployment_deletes_its_replica_sets_and_pods_and_a_service_its_endpoints():
    sim = cluster()
    dep = sim.objects["apps/v1/deployments"][-1]
    ns = dep["metadata"]["namespace"]
    rsets = owned(sim.objects["apps/v1/replicasets"], dep)
    pods = [p for rs in rsets for p in owned(sim.objects["v1/pods"], rs)]
    report = sim.churn_action(
        "delete", resource="deployments.apps", namespace=ns, name=dep["metadata"]["name"]
    )
    assert uids(report.removed) == {o["metadata"]["uid"] for o in [dep, *rsets, *pods]}
    svc = next(s for s in sim.objects["v1/services"] if (ns := s["metadata"]["namespace"]) != "default")
    report = sim.churn_action("delete", resource="services", namespace=ns, name=svc["metadata"]["name"])
    assert Counter(r.kind for r in report.removed) == {"Service": 1, "Endpoints": 1}


def test_a_named_change_that_cannot_be_made_says_why():
    sim = cluster(pods=30)
    with pytest.raises(ValueError, match="no v1/pods default/nope"):
        sim.churn_action("replace_pod", namespace="default", name="nope")
    with pytest.raises(ValueError, match="unknown churn action"):
        sim.churn_action("explode")


# --- triggering churn: HTTP, kubectl, kq simulate, a fleet ------------------------------------------


def test_the_churn_endpoint_answers_the_report_on_loopback_only(fleet: Fleet, sim: SimulatedCluster):
    with client(fleet, sim) as http:
        body = http.post("/_sim/churn", json={"fraction": 0.05, "seed": 1}).json()
        assert body["touched"] > 0 and body["cluster"] == "sim-0"
        assert set(body["added"][0]) == {"resource", "kind", "namespace", "name", "uid"}
        cm = next(
            c
            for c in http.get("/api/v1/configmaps").json()["items"]
            if c["metadata"]["name"] != "kube-root-ca.crt"
        )
        named = {
            "action": "delete",
            "resource": "configmaps",
            "namespace": cm["metadata"]["namespace"],
            "name": cm["metadata"]["name"],
        }
        assert [r["uid"] for r in http.post("/_sim/churn", json=named).json()["removed"]] == [
            cm["metadata"]["uid"]
        ]
        assert http.post("/_sim/churn", json={"seed": 1}).status_code == 400
        assert http.get("/_sim/churn").status_code == 405
    assert sim.api is not None
    remote = Request("POST", "/_sim/churn", loopback=False, body=b'{"fraction": 0.5}')
    assert sim.api.handle(remote).code == 403  # type: ignore[union-attr]


def test_the_churn_endpoint_refuses_a_client_that_is_not_on_loopback():
    ip = _routable_ipv4()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address to serve on")
    with Fleet(tls=False) as fleet:
        sim = fleet.add("sim-0", generated_objects("sim-0", pods=10), host=ip)
        revision = sim.store.revision
        for path in ("/_sim/churn", "/_sim/faults"):
            assert httpx.post(f"{sim.url}{path}", json={"fraction": 0.5}).status_code == 403
        assert sim.store.revision == revision


@pytest.fixture
def own_fleet(tmp_path: Path) -> Iterator[tuple[SimulatedCluster, Kubectl]]:
    with Fleet() as fleet:
        sim = fleet.add("sim-0", generated_objects("sim-0", pods=30, seed=1))
        yield sim, Kubectl(fleet.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "cache")


def test_kubectl_deletes_a_pod_and_a_configmap(own_fleet: tuple[SimulatedCluster, Kubectl]):
    sim, kubectl = own_fleet
    pod = next(p for p in sim.objects["v1/pods"] if p["metadata"]["namespace"] != "kube-system")
    cm = next(c for c in sim.objects["v1/configmaps"] if c["metadata"]["name"] != "kube-root-ca.crt")
    for kind, obj in (("pod", pod), ("configmap", cm)):
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        assert kubectl("delete", kind, name, "-n", ns).stdout.strip() == f'{kind} "{name}" deleted'
        listed = orjson.loads(kubectl("get", kind, "-n", ns, "-o", "json").stdout)["items"]
        assert name not in {o["metadata"]["name"] for o in listed}
        assert kubectl("get", kind, name, "-n", ns, check=False).returncode != 0


def test_kubectl_deletes_an_object_at_every_version_it_is_served_at(
    own_fleet: tuple[SimulatedCluster, Kubectl],
):
    sim, kubectl = own_fleet
    hpa = sim.objects["autoscaling/v1/horizontalpodautoscalers"][0]["metadata"]
    kubectl("delete", "hpa", hpa["name"], "-n", hpa["namespace"])  # kubectl uses autoscaling/v2
    for version in ("v1", "v2"):
        assert hpa["uid"] not in {
            o["metadata"]["uid"] for o in sim.objects[f"autoscaling/{version}/horizontalpodautoscalers"]
        }


def test_kq_simulate_churn_changes_the_objects_between_two_lists(tmp_path: Path):
    args = build_parser().parse_args(
        [
            "simulate",
            "--clusters",
            "1",
            "--pods",
            "40",
            "--kubeconfig",
            str(tmp_path / "kc"),
            "--churn",
            "0.05",
            "--churn-interval",
            "0.3",
        ]
    )
    out, stop, result = io.StringIO(), threading.Event(), []
    run = threading.Thread(
        target=lambda: result.append(
            run_simulate(
                args.clusters,
                args.pods,
                Path(args.kubeconfig),
                tls=False,
                out=out,
                stop=stop,
                **simulate_options(args),
            )
        )
    )
    run.start()
    try:
        _wait_for(lambda: "kubeconfig" in out.getvalue())
        url = out.getvalue().split()[1]
        token = yaml.safe_load((tmp_path / "kc").read_text())["users"][0]["user"]["token"]

        def pods() -> set[str]:
            items = httpx.get(f"{url}/api/v1/pods", headers={"Authorization": f"Bearer {token}"}).json()[
                "items"
            ]
            return {p["metadata"]["uid"] for p in items}

        first = pods()
        _wait_for(lambda: "churn: 1 clusters" in out.getvalue())
        assert pods() != first
    finally:
        stop.set()
        run.join(10)
    assert result == [0]


def test_a_fleet_served_with_churn_changes_every_cluster():
    specs = [ClusterSpec(name="a", pods=20), ClusterSpec(name="b", pods=20, seed=1)]
    with serve_fleet(specs, tls=False, churn=0.05, churn_interval=0.2) as fleet:
        before = {name: versions(c.objects) for name, c in fleet.clusters.items()}
        assert fleet.churn_loop is not None
        _wait_for(lambda: fleet.churn_loop.rounds >= 1)  # type: ignore[union-attr]
        assert all(versions(c.objects) != before[name] for name, c in fleet.clusters.items())
    assert fleet.churn_loop is None  # stopped with the fleet


def _wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _routable_ipv4() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip
