"""The simulated API answers like kube-apiserver: lists, paging, selectors, discovery and Status errors."""

from __future__ import annotations

import time

import httpx

from kq_pipeline.simulator import Fleet, SimulatedCluster
from kq_pipeline_tests.simulator.conftest import client


def _all_pages(http: httpx.Client, path: str, limit: int, **params: str) -> tuple[list[dict], list[dict]]:
    items, metas, cont = [], [], None
    while True:
        q = {"limit": str(limit), **params, **({"continue": cont} if cont else {})}
        body = http.get(path, params=q).raise_for_status().json()
        items += body["items"]
        metas.append(body["metadata"])
        cont = body["metadata"].get("continue")
        if not cont:
            return items, metas


def _status(resp: httpx.Response, code: int, reason: str) -> dict:
    assert resp.status_code == code, resp.text
    body = resp.json()
    assert (body["kind"], body["apiVersion"], body["status"], body["code"], body["reason"]) == (
        "Status",
        "v1",
        "Failure",
        code,
        reason,
    )
    return body


def test_pod_list_is_a_podlist_with_items_in_namespace_name_order(http: httpx.Client, sim: SimulatedCluster):
    body = http.get("/api/v1/pods").json()
    assert (body["kind"], body["apiVersion"]) == ("PodList", "v1")
    assert int(body["metadata"]["resourceVersion"]) > 0
    keys = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in body["items"]]
    assert keys == sorted(keys) and len(keys) == len(sim.objects["v1/pods"])
    assert "kind" not in body["items"][0]  # list items carry no TypeMeta, as from the real server


def test_paging_returns_every_item_once_with_remaining_counts(http: httpx.Client, sim: SimulatedCluster):
    items, metas = _all_pages(http, "/api/v1/pods", 7)
    total = len(sim.objects["v1/pods"])
    assert [i["metadata"]["uid"] for i in items] == [o["metadata"]["uid"] for o in sim.objects["v1/pods"]]
    assert [m.get("remainingItemCount") for m in metas[:-1]] == [
        total - 7 * (i + 1) for i in range(len(metas) - 1)
    ]
    assert "remainingItemCount" not in metas[-1]
    assert len({m["resourceVersion"] for m in metas}) == 1


def test_namespaced_list_and_single_get(http: httpx.Client, sim: SimulatedCluster):
    ns = "kube-system"
    items, _ = _all_pages(http, f"/api/v1/namespaces/{ns}/pods", 2)
    expected = [o["metadata"]["name"] for o in sim.objects["v1/pods"] if o["metadata"]["namespace"] == ns]
    assert [i["metadata"]["name"] for i in items] == expected and expected
    one = http.get(f"/api/v1/namespaces/{ns}/pods/{expected[0]}").json()
    assert (one["kind"], one["metadata"]["name"]) == ("Pod", expected[0])
    node = sim.objects["v1/nodes"][0]["metadata"]["name"]
    assert http.get(f"/api/v1/nodes/{node}").json()["kind"] == "Node"


def test_missing_object_is_404_notfound_naming_it(http: httpx.Client):
    body = _status(http.get("/apis/apps/v1/namespaces/default/deployments/nope"), 404, "NotFound")
    assert body["message"] == 'deployments.apps "nope" not found'
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    _status(http.get("/apis/apps/v1/nothings"), 404, "NotFound")


def test_label_and_field_selectors(http: httpx.Client, sim: SimulatedCluster):
    pod = sim.objects["v1/pods"][3]
    name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
    got = http.get(
        "/api/v1/pods", params={"fieldSelector": f"metadata.name={name},metadata.namespace={ns}"}
    ).json()
    assert [i["metadata"]["name"] for i in got["items"]] == [name]
    key, value = next(iter(pod["metadata"]["labels"].items()))
    items, _ = _all_pages(http, "/api/v1/pods", 4, labelSelector=f"{key}={value}")
    expected = [
        o["metadata"]["uid"]
        for o in sim.objects["v1/pods"]
        if (o["metadata"].get("labels") or {}).get(key) == value
    ]
    assert [i["metadata"]["uid"] for i in items] == expected
    _status(http.get("/api/v1/pods", params={"fieldSelector": "nonsense"}), 400, "BadRequest")


def test_continue_token_pins_the_snapshot_across_changes(http: httpx.Client, sim: SimulatedCluster):
    first = http.get("/api/v1/pods", params={"limit": "5"}).json()
    sim.store.mutate(sim.catalog.lookup("", "v1", "pods"))
    rest, _ = _all_pages(http, "/api/v1/pods", 5000, **{"continue": first["metadata"]["continue"]})
    old = [i["metadata"]["uid"] for i in first["items"] + rest]
    fresh = http.get("/api/v1/pods").json()
    assert int(fresh["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert [i["metadata"]["uid"] for i in fresh["items"]] != old
    assert len(set(old)) == len(old)


def test_expired_continue_token_is_410_expired_with_a_fresh_token(
    fleet: Fleet, http: httpx.Client, sim: SimulatedCluster
):
    ttl, sim.store.continue_ttl = sim.store.continue_ttl, 0.2
    try:
        first = http.get("/api/v1/pods", params={"limit": "5"}).json()
        time.sleep(0.3)
        resp = http.get("/api/v1/pods", params={"limit": "5", "continue": first["metadata"]["continue"]})
    finally:
        sim.store.continue_ttl = ttl
    body = _status(resp, 410, "Expired")
    assert body["message"].startswith("The provided continue parameter is too old")
    inconsistent = http.get("/api/v1/pods", params={"limit": "5", "continue": body["metadata"]["continue"]})
    assert inconsistent.json()["items"][0]["metadata"]["name"] != first["items"][0]["metadata"]["name"]


def test_garbage_continue_token_is_400(http: httpx.Client):
    _status(http.get("/api/v1/pods", params={"continue": "not-a-token"}), 400, "BadRequest")


def test_bad_token_is_401_and_no_token_is_anonymous(fleet: Fleet, sim: SimulatedCluster):
    with client(fleet, sim, token="wrong") as bad:
        body = _status(bad.get("/api/v1/pods"), 401, "Unauthorized")
        assert "wrong" not in str(body)
    with client(fleet, sim, token="") as anon:
        assert anon.get("/version").status_code == 200
        body = _status(anon.get("/api/v1/pods"), 403, "Forbidden")
        assert 'User "system:anonymous" cannot get path "/api/v1/pods"' in body["message"]


def test_rbac_mode_forbids_unlisted_resources_like_the_real_api(http: httpx.Client, sim: SimulatedCluster):
    sim.set_rbac_rules(
        {
            "kind": "ClusterRole",
            "rules": [{"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list"]}],
        }
    )
    assert http.get("/api/v1/pods").status_code == 200
    assert http.get("/apis").status_code == 200  # discovery stays open
    body = _status(http.get("/api/v1/secrets"), 403, "Forbidden")
    assert body["message"] == (
        'secrets is forbidden: User "system:serviceaccount:kube-system:kq-reader" '
        'cannot list resource "secrets" in API group "" at the cluster scope'
    )
    assert body["details"] == {"kind": "secrets"}
    body = _status(http.get("/apis/apps/v1/namespaces/default/deployments"), 403, "Forbidden")
    assert body["message"].endswith(
        'cannot list resource "deployments" in API group "apps" in the namespace "default"'
    )


def test_discovery_documents(http: httpx.Client):
    assert http.get("/api").json()["versions"] == ["v1"]
    groups = {g["name"]: g for g in http.get("/apis").json()["groups"]}
    assert groups["autoscaling"]["preferredVersion"]["version"] == "v2"
    assert "policy/v1beta1" not in [v["groupVersion"] for v in groups["policy"]["versions"]]
    core = http.get("/api/v1").json()
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods == {**pods, "namespaced": True, "kind": "Pod", "shortNames": ["po"], "singularName": "pod"}
    assert "list" in pods["verbs"]
    version = http.get("/version").json()
    assert version["major"] == "1" and version["gitVersion"].startswith(f"v1.{version['minor']}.")
    assert http.get("/openapi/v2").status_code == 404
