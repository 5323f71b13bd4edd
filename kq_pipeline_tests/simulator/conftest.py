"""Small simulated fleets and a real kubectl, shared by the simulator tests."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kq_pipeline.simulator import Fleet, SimulatedCluster
from kq_pipeline.simulator.objects import ClusterSpec, generate_objects

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def generated_objects(
    name: str, pods: int = 30, seed: int = 0, **knobs: Any
) -> dict[str, list[dict[str, Any]]]:
    return generate_objects(ClusterSpec(name=name, seed=seed, pods=pods, **knobs))


def ca_context(fleet: Fleet) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=fleet.ca_pem)


def client(fleet: Fleet, cluster: SimulatedCluster, token: str | None = None) -> httpx.Client:
    tok = cluster.token if token is None else token
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return httpx.Client(base_url=cluster.url, verify=ca_context(fleet), headers=headers, timeout=10)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Two small clusters; tests must leave faults cleared (use the `sim` fixture)."""
    with Fleet() as f:
        f.add("sim-0", generated_objects("sim-0", pods=30, seed=1))
        f.add("sim-1", generated_objects("sim-1", pods=12, seed=2))
        yield f


@pytest.fixture
def sim(fleet: Fleet) -> Iterator[SimulatedCluster]:
    cluster = fleet.clusters["sim-0"]
    cluster.faults.clear()
    yield cluster
    cluster.faults.clear()
    cluster.set_rbac_rules(None)


@pytest.fixture
def http(fleet: Fleet, sim: SimulatedCluster) -> Iterator[httpx.Client]:
    with client(fleet, sim) as c:
        yield c


class Kubectl:
    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        self.kubeconfig, self.cache = kubeconfig, cache

    def __call__(
        self, *args: str, context: str = "sim-0", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            KUBECTL,
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache),
            "--context",
            context,
            "--request-timeout=20s",
            *args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def kubectl(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    tmp = tmp_path_factory.mktemp("kubectl")
    return Kubectl(fleet.write_kubeconfig(tmp / "kubeconfig"), tmp / "cache")
