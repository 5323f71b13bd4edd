"""The TokenRequest API (`POST .../serviceaccounts/<name>/token`), as kube-apiserver serves it: bounded
tokens, RBAC on `serviceaccounts/token`, expiry and revocation with the account; kubectl accepts it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from kq_pipeline.simulator import Fleet, SimulatedCluster
from kq_pipeline.simulator.rbac import Rule
from kq_pipeline.simulator.writes import token_request_from_protobuf
from kq_pipeline_tests.simulator.conftest import Kubectl, client, generated_objects

TOKEN_REQUEST = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"}
RBAC = "rbac.authorization.k8s.io/v1"


def _account(http: httpx.Client, ns: str, name: str) -> None:
    if http.get(f"/api/v1/namespaces/{ns}").status_code == 404:
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        http.post("/api/v1/namespaces", json=namespace).raise_for_status()
    made = http.post(
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        json={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
    )
    assert made.status_code == 201, made.text


def _request(http: httpx.Client, ns: str, name: str, **spec: object) -> httpx.Response:
    path = f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"
    return http.post(path, json={**TOKEN_REQUEST, "spec": spec})


@pytest.fixture
def cluster(fleet: Fleet, sim: SimulatedCluster) -> Iterator[SimulatedCluster]:
    yield sim
    sim.tokens.clock = time.time


def test_a_token_request_is_answered_like_kube_apiserver(fleet: Fleet, cluster: SimulatedCluster) -> None:
    with client(fleet, cluster) as http:
        _account(http, "tr-a", "bot")
        resp = _request(http, "tr-a", "bot")
        assert resp.status_code == 201
        doc = resp.json()
        assert (doc["kind"], doc["apiVersion"]) == ("TokenRequest", "authentication.k8s.io/v1")
        assert doc["metadata"] == {"name": "bot", "namespace": "tr-a", "creationTimestamp": None}
        assert doc["spec"]["expirationSeconds"] == 3600  # the default when none is asked
        assert doc["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
        expiry = datetime.fromisoformat(doc["status"]["expirationTimestamp"].replace("Z", "+00:00"))
        assert abs(expiry.timestamp() - (time.time() + 3600)) < 5
        token = doc["status"]["token"]
        with client(fleet, cluster, token=token) as bot:  # authenticated, with the account's (no) rights
            denied = bot.get("/api/v1/pods")
            assert denied.status_code == 403
            assert 'User "system:serviceaccount:tr-a:bot"' in denied.json()["message"]


def test_invalid_token_requests_are_refused_with_kube_apiservers_answers(
    fleet: Fleet, cluster: SimulatedCluster
) -> None:
    with client(fleet, cluster) as http:
        _account(http, "tr-b", "bot")
        short = _request(http, "tr-b", "bot", expirationSeconds=599)
        assert (short.status_code, short.json()["reason"]) == (422, "Invalid")
        assert "may not specify a duration less than 10 minutes" in short.json()["message"]
        missing = _request(http, "tr-b", "nobody")
        assert (missing.status_code, missing.json()["message"]) == (404, 'serviceaccounts "nobody" not found')
        wrong = http.post("/api/v1/namespaces/tr-b/serviceaccounts/bot/token", json={"kind": "Secret"})
        assert wrong.status_code == 400
        assert http.get("/api/v1/namespaces/tr-b/serviceaccounts/bot/token").status_code == 405
    with client(fleet, cluster, token="") as anonymous:
        assert _request(anonymous, "tr-b", "bot").status_code == 403


def test_creating_a_token_is_authorized_as_create_on_serviceaccounts_token(
    fleet: Fleet, cluster: SimulatedCluster
) -> None:
    with client(fleet, cluster) as http:
        _account(http, "tr-c", "bot")
        token = _request(http, "tr-c", "bot").json()["status"]["token"]
        with client(fleet, cluster, token=token) as bot:
            denied = _request(bot, "tr-c", "bot")
            assert denied.status_code == 403
            assert 'cannot create resource "serviceaccounts/token"' in denied.json()["message"]
            role = {
                "apiVersion": RBAC,
                "kind": "Role",
                "metadata": {"name": "renew", "namespace": "tr-c"},
                "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}],
            }
            binding = {
                "apiVersion": RBAC,
                "kind": "RoleBinding",
                "metadata": {"name": "renew", "namespace": "tr-c"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "renew"},
                "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "tr-c"}],
            }
            http.post(f"/apis/{RBAC}/namespaces/tr-c/roles", json=role).raise_for_status()
            http.post(f"/apis/{RBAC}/namespaces/tr-c/rolebindings", json=binding).raise_for_status()
            assert _request(bot, "tr-c", "bot").status_code == 201
            assert _request(bot, "default", "default").status_code == 403  # the Role binds in tr-c only


def test_rbac_matches_subresources_as_kube_apiserver_does() -> None:
    def allows(resources: list[str]) -> bool:
        rule = Rule.of({"apiGroups": [""], "resources": resources, "verbs": ["create"]})
        return rule.allows("create", "", "serviceaccounts/token", "bot")

    assert allows(["serviceaccounts/token"]) and allows(["*/token"]) and allows(["*"])
    assert not allows(["serviceaccounts"]) and not allows(["serviceaccounts/*"]) and not allows(["*/status"])


def test_a_bound_token_dies_at_expiry_and_with_its_account_even_one_recreated_under_its_name(
    fleet: Fleet, cluster: SimulatedCluster
) -> None:
    with client(fleet, cluster) as http:
        _account(http, "tr-d", "bot")
        first = _request(http, "tr-d", "bot", expirationSeconds=600).json()["status"]["token"]
        second = _request(http, "tr-d", "bot", expirationSeconds=1200).json()["status"]["token"]
        assert cluster.tokens.authenticate(first) is not None
        cluster.tokens.clock = lambda: time.time() + 601
        assert cluster.tokens.authenticate(first) is None and cluster.tokens.authenticate(second) is not None
        with client(fleet, cluster, token=first) as expired:
            assert expired.get("/version").status_code == 401
        cluster.tokens.clock = time.time
        assert http.delete("/api/v1/namespaces/tr-d/serviceaccounts/bot").status_code == 200
        assert cluster.tokens.authenticate(second) is None
        _account(http, "tr-d", "bot")  # same name, new uid: the old tokens stay dead
        assert cluster.tokens.authenticate(second) is None
        assert _request(http, "tr-d", "bot").status_code == 201


def test_a_server_cap_shortens_a_longer_request(fleet: Fleet, cluster: SimulatedCluster) -> None:
    cluster.tokens.max_expiration_s = 3600
    try:
        with client(fleet, cluster) as http:
            _account(http, "tr-e", "bot")
            issued = _request(http, "tr-e", "bot", expirationSeconds=86400).json()
            assert issued["spec"]["expirationSeconds"] == 3600
    finally:
        cluster.tokens.max_expiration_s = None


# What kubectl v1.32 sends for `create token reader --duration=2h` (Content-Type protobuf); older
# kubectl versions send JSON with "expirationSeconds": null when no duration is given.
KUBECTL_PROTOBUF_2H = (
    b'k8s\x00\n(\n\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x12\x1d\n\x10\n\x00\x12\x00\x1a\x00"'
    b'\x00*\x002\x008\x00B\x00\x12\x03 \xa08\x1a\x04\n\x00\x12\x00\x1a\x00"\x00'
)


def test_a_protobuf_token_request_is_read_as_kubectl_sends_it(
    fleet: Fleet, cluster: SimulatedCluster
) -> None:
    assert token_request_from_protobuf(KUBECTL_PROTOBUF_2H) == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 7200},
    }
    with client(fleet, cluster) as http:
        _account(http, "tr-p", "bot")
        resp = http.post(
            "/api/v1/namespaces/tr-p/serviceaccounts/bot/token",
            content=KUBECTL_PROTOBUF_2H,
            headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
        )
        assert resp.status_code == 201 and resp.json()["spec"]["expirationSeconds"] == 7200


@pytest.mark.parametrize("minor", [29, 24], ids=["kubectl-json", "kubectl-protobuf"])
def test_kubectl_create_token_works_against_the_simulator(minor: int, tmp_path: Path) -> None:
    """The machine's kubectl picks its version by the server's (gcloud's dispatcher): 1.29 sends JSON,
    the newest (for 1.24) protobuf; both must work."""
    with Fleet() as f:
        sim = f.add("k", generated_objects("k", pods=3, k8s_minor=minor))
        kubectl = Kubectl(f.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "cache")
        with client(f, sim) as http:  # kubectl's own creates of these kinds are not simulated
            _account(http, "tr-k", "reader")
        out = kubectl("-n", "tr-k", "create", "token", "reader", "--duration=2h", "-o", "json", context="k")
        issued = json.loads(out.stdout)
        assert issued["spec"]["expirationSeconds"] == 7200
        who = sim.tokens.authenticate(issued["status"]["token"])
        assert who is not None and who.name == "system:serviceaccount:tr-k:reader"
        plain = kubectl("-n", "tr-k", "create", "token", "reader", context="k").stdout.strip()
        assert sim.tokens.authenticate(plain) is not None
        short = kubectl("-n", "tr-k", "create", "token", "reader", "--duration=1m", context="k", check=False)
        assert short.returncode != 0 and "may not specify a duration less than 10 minutes" in short.stderr
