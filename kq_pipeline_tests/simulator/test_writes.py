"""Creates, deletes, the token controller and RBAC from stored bindings (what registration needs)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest

from kq_pipeline.simulator import Fleet, SimulatedCluster
from kq_pipeline_tests.simulator.conftest import client, generated_objects

RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture
def target() -> Iterator[tuple[Fleet, SimulatedCluster]]:
    with Fleet() as f:
        yield f, f.add("w", generated_objects("w", pods=5))


def _ns(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _issue_token(http: httpx.Client, ns: str, sa: str) -> str:
    http.post("/api/v1/namespaces", json=_ns(ns)).raise_for_status()
    http.post(
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        json={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}},
    ).raise_for_status()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {"name": f"{sa}-token", "annotations": {"kubernetes.io/service-account.name": sa}},
    }
    created = http.post(f"/api/v1/namespaces/{ns}/secrets", json=secret)
    assert created.status_code == 201 and "token" not in (created.json().get("data") or {})
    for _ in range(100):
        data = http.get(f"/api/v1/namespaces/{ns}/secrets/{sa}-token").json().get("data") or {}
        if "token" in data:
            return base64.b64decode(data["token"]).decode()
        time.sleep(0.02)
    raise AssertionError("token controller did not fill the secret")


def test_create_conflict_and_missing_namespace_answer_like_the_api(target):
    fleet, sim = target
    with client(fleet, sim) as http:
        made = http.post("/api/v1/namespaces", json=_ns("team-a"))
        assert made.status_code == 201 and made.json()["metadata"]["uid"]
        again = http.post("/api/v1/namespaces", json=_ns("team-a"))
        assert (again.status_code, again.json()["reason"]) == (409, "AlreadyExists")
        orphan = http.post(
            "/api/v1/namespaces/nope/serviceaccounts",
            json={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}},
        )
        assert (orphan.status_code, orphan.json()["message"]) == (404, 'namespaces "nope" not found')
        assert (
            http.post("/api/v1/namespaces/default/pods", json={}).status_code == 405
        )  # not a registration kind
        assert any(n["metadata"]["name"] == "team-a" for n in http.get("/api/v1/namespaces").json()["items"])


def test_a_service_account_token_has_exactly_its_bound_rights_and_dies_with_its_secret(target):
    fleet, sim = target
    with client(fleet, sim) as http:
        token = _issue_token(http, "ops", "bot")
        with client(fleet, sim, token=token) as bot:
            denied = bot.get("/api/v1/pods")
            assert denied.status_code == 403
            assert (
                'User "system:serviceaccount:ops:bot" cannot list resource "pods"' in denied.json()["message"]
            )
            http.post(
                f"/apis/{RBAC}/clusterroles",
                json={
                    "apiVersion": RBAC,
                    "kind": "ClusterRole",
                    "metadata": {"name": "pod-lister"},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
                },
            ).raise_for_status()
            http.post(
                f"/apis/{RBAC}/clusterrolebindings",
                json={
                    "apiVersion": RBAC,
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "bot-pods"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "pod-lister",
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "ops"}],
                },
            ).raise_for_status()
            assert bot.get("/api/v1/pods").status_code == 200
            assert bot.get("/api/v1/secrets").status_code == 403
            assert bot.get("/apis").status_code == 200  # the generated system:discovery binding
            assert http.delete("/api/v1/namespaces/ops/secrets/bot-token").status_code == 200
            assert bot.get("/api/v1/pods").status_code == 401  # a deleted token Secret revokes the token
        assert http.get("/api/v1/secrets").status_code == 200  # the admin token keeps full rights


def test_an_update_replaces_the_object_if_its_version_is_current_and_keeps_its_identity(target):
    fleet, sim = target
    role = {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "r"}, "rules": []}
    path = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
    with client(fleet, sim) as http:
        made = http.post(path, json=role).json()
        rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}
        newer = {**role, "metadata": {"name": "r", "resourceVersion": made["metadata"]["resourceVersion"]}}
        updated = http.put(f"{path}/r", json={**newer, "rules": [rule]})
        assert updated.status_code == 200
        meta = updated.json()["metadata"]
        assert (
            meta["uid"] == made["metadata"]["uid"]
            and meta["resourceVersion"] != newer["metadata"]["resourceVersion"]
        )
        assert http.get(f"{path}/r").json()["rules"] == [rule]
        stale = http.put(f"{path}/r", json={**newer, "rules": []})  # the version read before the update
        assert (stale.status_code, stale.json()["reason"]) == (409, "Conflict")
        unconditional = http.put(
            f"{path}/r", json={**role, "rules": []}
        )  # no resourceVersion: last write wins
        assert unconditional.status_code == 200 and http.get(f"{path}/r").json()["rules"] == []
        assert http.put(f"{path}/other", json=role).status_code == 400  # the name must match the URL
        missing = {**role, "metadata": {"name": "gone"}}
        assert http.put(f"{path}/gone", json=missing).status_code == 404
        assert http.put("/api/v1/namespaces/default/pods/p", json={}).status_code == 405
