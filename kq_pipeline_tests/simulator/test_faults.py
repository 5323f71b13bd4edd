"""Each fault happens when switched on, from Python or over HTTP, and stops on clear()."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import orjson
import pytest

from kq_pipeline.simulator import Fleet, SimulatedCluster
from kq_pipeline_tests.simulator.conftest import client


def _page(http: httpx.Client, cont: str | None = None, path: str = "/api/v1/pods") -> httpx.Response:
    return http.get(path, params={"limit": "4", **({"continue": cont} if cont else {})})


def test_latency_delays_answers(http: httpx.Client, sim: SimulatedCluster):
    sim.faults.latency(150)
    t0 = time.perf_counter()
    assert http.get("/version").status_code == 200
    assert time.perf_counter() - t0 >= 0.15


def test_hang_never_answers_until_cleared(fleet: Fleet, sim: SimulatedCluster):
    sim.faults.hang()
    with client(fleet, sim) as c, pytest.raises(httpx.ReadTimeout):
        c.get("/api/v1/pods", timeout=0.3)
    sim.faults.hang(False)
    with client(fleet, sim) as c:
        assert c.get("/api/v1/pods").status_code == 200


def test_500_on_page_n_of_one_resource(http: httpx.Client, sim: SimulatedCluster):
    sim.faults.fail_page("pods", 2, times=1)
    first = _page(http)
    assert http.get("/api/v1/nodes").status_code == 200
    failed = _page(http, first.json()["metadata"]["continue"])
    assert failed.status_code == 500 and failed.json()["reason"] == "InternalError"
    assert _page(http, first.json()["metadata"]["continue"]).status_code == 200  # times=1: a retry succeeds


def test_410_on_page_n(http: httpx.Client, sim: SimulatedCluster):
    sim.faults.expire_page("v1/pods", 2)
    resp = _page(http, _page(http).json()["metadata"]["continue"])
    assert resp.status_code == 410 and resp.json()["reason"] == "Expired"


def test_429_with_retry_after_for_the_next_k_requests(http: httpx.Client, sim: SimulatedCluster):
    sim.faults.throttle(2, retry_after=3)
    answers = [http.get("/api/v1/pods") for _ in range(3)]
    assert [r.status_code for r in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"
    body = answers[0].json()
    assert (body["kind"], body["reason"], body["code"], body["details"]["retryAfterSeconds"]) == (
        "Status",
        "TooManyRequests",
        429,
        3,
    )


def test_401_for_everything(http: httpx.Client, sim: SimulatedCluster):
    sim.faults.unauthorized()
    assert {http.get(p).status_code for p in ("/version", "/api", "/api/v1/pods")} == {401}


def test_malformed_json_on_one_resource(http: httpx.Client, sim: SimulatedCluster):
    sim.faults.malformed("pods")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(http.get("/api/v1/pods").content)
    orjson.loads(http.get("/api/v1/nodes").content)


def test_objects_change_between_pages(http: httpx.Client, sim: SimulatedCluster):
    sim.faults.mutate_between_pages("pods")
    first = _page(http).json()
    second = _page(http, first["metadata"]["continue"]).json()
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]  # pinned snapshot
    fresh = _page(http).json()
    assert int(fresh["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert fresh["items"][0] != first["items"][0]


def test_refused_connection_then_same_port_again(fleet: Fleet, sim: SimulatedCluster):
    port = sim.port
    sim.faults.refuse()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    sim.faults.clear()
    assert sim.port == port
    with client(fleet, sim) as c:
        assert c.get("/version").status_code == 200


def test_stop_cuts_keepalive_connections_and_hung_requests(fleet: Fleet):
    cluster = fleet.clusters["sim-1"]
    cluster.faults.hang()
    errors: list[BaseException] = []

    def call() -> None:
        with client(fleet, cluster) as c:
            try:
                c.get("/api/v1/pods", timeout=5)
            except httpx.HTTPError as err:
                errors.append(err)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.2)
    cluster.stop()
    t.join(3)
    cluster.faults.clear()
    cluster.start()
    assert not t.is_alive() and errors and not isinstance(errors[0], httpx.ReadTimeout)


def test_faults_over_http_from_loopback(http: httpx.Client, sim: SimulatedCluster):
    state = http.post("/_sim/faults", json={"action": "throttle", "requests": 1, "retry_after": 2}).json()
    assert state["throttle_left"] == 1
    assert http.get("/api/v1/pods").status_code == 429
    assert http.post("/_sim/faults", json={"action": "rm -rf"}).status_code == 400
    http.post("/_sim/faults", json={"action": "refuse", "seconds": 0.3})
    time.sleep(0.15)
    with pytest.raises(httpx.ConnectError):
        http.get("/version")
    time.sleep(0.4)
    assert http.get("/version").status_code == 200
