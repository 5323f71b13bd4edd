"""The list client against a real (simulated) API server over TLS: paging, retries, restarts, deadlines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kq_pipeline.kube.access import ClusterAccess, TokenSource
from kq_pipeline.kube.client import KubeClient
from kq_pipeline.kube.errors import (
    KubeAuthError,
    KubeError,
    KubeForbidden,
    KubeListExpired,
    KubeNotFound,
    KubeProtocolError,
    KubeTimeout,
    KubeTLSError,
    KubeUnavailable,
)
from kq_pipeline.kube.kubeconfig import access_from_kubeconfig
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec

PODS = "/api/v1/pods"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with serve_fleet([ClusterSpec("alpha", seed=3, pods=120)]) as f:
        f.write_kubeconfig(tmp_path_factory.mktemp("kc") / "config")
        yield f


@pytest.fixture
def cluster(fleet: Any) -> Iterator[Any]:
    c = fleet.clusters["alpha"]
    c.faults.clear()
    yield c
    c.faults.clear()
    c.set_rbac_rules(None)


@pytest.fixture
def access(fleet: Any, tmp_path: Path) -> ClusterAccess:
    return access_from_kubeconfig(fleet.write_kubeconfig(tmp_path / "config"), "alpha")


def fast(access: ClusterAccess, **kw: Any) -> KubeClient:
    return KubeClient(access, backoff_base_s=0.01, backoff_max_s=0.05, **kw)


def assert_clean(err: KubeError, cluster: Any, path: str = PODS) -> None:
    text = str(err)
    assert text.startswith("cluster alpha: ")
    assert path in text
    assert cluster.token not in text and cluster.token not in repr(err)


def test_pages_stream_until_the_continue_token_ends(cluster: Any, access: ClusterAccess) -> None:
    with fast(access) as client:
        sizes = [len(page) for page in client.list_pages(PODS, limit=50)]
        assert sizes == [50, 50, 20]
        assert client.requests == 3
    names = [p["metadata"]["name"] for p in cluster.objects["v1/pods"]]
    with fast(access) as client:
        assert sorted(p["metadata"]["name"] for p in client.list_all(PODS, limit=7)) == sorted(names)


def test_get_json(cluster: Any, access: ClusterAccess) -> None:
    with fast(access) as client:
        assert client.get_json("/version")["gitVersion"] == cluster.git_version
        with pytest.raises(KubeNotFound):
            client.get_json("/apis/nope.example.com/v1")


def test_429_waits_for_retry_after(cluster: Any, access: ClusterAccess) -> None:
    cluster.faults.throttle(1, retry_after=1)
    with fast(access) as client:
        t0 = time.monotonic()
        assert len(client.list_all(PODS, limit=500)) == 120
        assert time.monotonic() - t0 >= 0.95  # backoff alone would have waited <= 0.05 s
        assert client.requests == 2


def test_5xx_is_retried_with_backoff(cluster: Any, access: ClusterAccess) -> None:
    cluster.faults.fail_page("pods", 2, code=503, times=2)
    with fast(access) as client:
        assert len(client.list_all(PODS, limit=50)) == 120
        assert client.requests == 3 + 2


def test_5xx_gives_up_after_bounded_attempts(cluster: Any, access: ClusterAccess) -> None:
    cluster.faults.fail_page("pods", 1, code=500)
    with fast(access, max_attempts=3) as client, pytest.raises(KubeUnavailable) as err:
        client.list_all(PODS)
    assert client.requests == 3
    assert_clean(err.value, cluster)


def test_410_restarts_the_list_and_the_caller_drops_partial_pages(
    cluster: Any, access: ClusterAccess
) -> None:
    cluster.faults.expire_page("pods", 2, times=1)
    restarts: list[int] = []
    seen: list[str] = []

    def on_restart() -> None:
        restarts.append(len(seen))
        seen.clear()

    with fast(access) as client:
        for page in client.list_pages(PODS, limit=50, on_restart=on_restart):
            seen.extend(p["metadata"]["uid"] for p in page)
    assert restarts == [50]
    assert len(seen) == len(set(seen)) == 120


def test_410_without_a_restart_callback_is_an_error_not_a_silent_restart(
    cluster: Any, access: ClusterAccess
) -> None:
    cluster.faults.expire_page("pods", 2, times=1)
    with fast(access) as client, pytest.raises(KubeListExpired) as err:
        list(client.list_pages(PODS, limit=50))
    assert_clean(err.value, cluster)


def test_410_restarts_are_bounded(cluster: Any, access: ClusterAccess) -> None:
    cluster.faults.expire_page("pods", 2)
    with fast(access, max_list_restarts=2) as client, pytest.raises(KubeListExpired):
        client.list_all(PODS, limit=50)
    assert client.requests == 2 + 2 + 2  # three attempts, each page 1 then the expired page 2


def test_deadline_stops_a_slow_cluster(cluster: Any, access: ClusterAccess) -> None:
    cluster.faults.latency(200)
    t0 = time.monotonic()
    with fast(access, deadline_s=0.5) as client, pytest.raises(KubeTimeout) as err:
        client.list_all(PODS, limit=10)
    assert time.monotonic() - t0 < 1.5
    assert "deadline" in str(err.value)
    assert_clean(err.value, cluster)


def test_request_timeout_on_a_hanging_server(cluster: Any, access: ClusterAccess) -> None:
    cluster.faults.hang()
    try:
        with fast(access, timeout_s=0.3, max_attempts=2) as client, pytest.raises(KubeTimeout) as err:
            client.get_json(PODS)
    finally:
        cluster.faults.hang(False)
    assert "no answer within 0.3s" in str(err.value)


def test_malformed_json_is_a_protocol_error(cluster: Any, access: ClusterAccess) -> None:
    cluster.faults.malformed("pods")
    with fast(access) as client, pytest.raises(KubeProtocolError) as err:
        client.list_all(PODS)
    assert "malformed JSON" in str(err.value)
    assert_clean(err.value, cluster)


def test_401_is_an_auth_error_without_the_token(cluster: Any, access: ClusterAccess) -> None:
    cluster.faults.unauthorized()
    with fast(access) as client, pytest.raises(KubeAuthError) as err:
        client.get_json(PODS)
    assert "401" in str(err.value)
    assert client.requests == 1  # no exec plugin: nothing to refresh, no retry
    assert_clean(err.value, cluster)


def test_403_names_the_denied_resource(cluster: Any, access: ClusterAccess) -> None:
    cluster.set_rbac_rules([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]}])
    with fast(access) as client:
        assert client.get_json("/api/v1/namespaces/kube-system")["metadata"]["name"] == "kube-system"
        with pytest.raises(KubeForbidden) as err:
            client.get_json(PODS)
    assert "403 Forbidden" in str(err.value) and "pods" in str(err.value)
    assert_clean(err.value, cluster)


def test_unknown_ca_is_a_tls_error(cluster: Any) -> None:
    access = ClusterAccess(name="alpha", server=cluster.url, token=TokenSource(literal=cluster.token))
    with fast(access, max_attempts=1) as client, pytest.raises(KubeTLSError) as err:
        client.get_json("/version")
    assert_clean(err.value, cluster, "/version")


def test_wrong_token_from_env_is_rejected(cluster: Any, fleet: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KQ_T", "not-the-token")
    access = ClusterAccess(
        name="alpha", server=cluster.url, ca_data=fleet.ca_pem, token=TokenSource(env="KQ_T")
    )
    with fast(access) as client, pytest.raises(KubeAuthError) as err:
        client.get_json(PODS)
    assert "not-the-token" not in str(err.value)


def test_connection_refused_is_unavailable_after_retries(fleet: Any) -> None:
    access = ClusterAccess(
        name="alpha", server="https://127.0.0.1:1", ca_data=fleet.ca_pem, token=TokenSource(literal="x")
    )
    with fast(access, max_attempts=2) as client, pytest.raises(KubeUnavailable) as err:
        client.get_json("/version")
    assert client.requests == 2
    assert "connection failed" in str(err.value)
