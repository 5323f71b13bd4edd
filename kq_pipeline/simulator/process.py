"""Serve a fleet from a child process, so a large simulated cluster does not share the client's GIL."""

from __future__ import annotations

import base64
import gc
import multiprocessing as mp
import signal
import ssl
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

if TYPE_CHECKING:
    from kq_pipeline.simulator.objects import ClusterSpec

_START_TIMEOUT = 600.0


def _child(specs: list[Any], kubeconfig: str, options: dict[str, Any], conn: Connection, stop: Event) -> None:
    from kq_pipeline.simulator.fleet import serve_fleet

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        fleet = serve_fleet(specs, **options)
    except BaseException as err:
        conn.send({"error": f"{type(err).__name__}: {err}"})
        return
    gc.freeze()  # this process only serves: keep the collector off the object heap for good
    try:
        fleet.write_kubeconfig(kubeconfig)
        conn.send({"urls": {name: c.url for name, c in fleet.clusters.items()}})
        stop.wait()
    finally:
        fleet.stop()


@dataclass
class FleetProcess:
    """Handle on a fleet served by a child process; the kubeconfig it wrote holds URLs, tokens and CA."""

    process: Any
    kubeconfig: Path
    urls: dict[str, str]
    _stop: Event = field(repr=False)

    def __enter__(self) -> FleetProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _credentials(self, cluster: str) -> tuple[str, ssl.SSLContext | bool]:
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        token = next(u["user"]["token"] for u in cfg["users"] if u["name"] == cluster)
        server = next(c["cluster"] for c in cfg["clusters"] if c["name"] == cluster)
        ca = server.get("certificate-authority-data")
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cadata=base64.b64decode(ca).decode()) if ca else False
        )
        return token, verify

    def fault(self, cluster: str, action: str, **kwargs: Any) -> dict[str, Any]:
        """Switch a fault on the child's cluster over HTTP (`POST /_sim/faults`); returns the fault state."""
        _, verify = self._credentials(cluster)
        resp = httpx.post(
            f"{self.urls[cluster]}/_sim/faults", json={"action": action, **kwargs}, verify=verify
        )
        resp.raise_for_status()
        return resp.json()

    def churn(self, cluster: str, fraction: float = 0.0, seed: Any = None, **action: Any) -> dict[str, Any]:
        """Change the child's cluster over HTTP (`POST /_sim/churn`): `fraction` of its objects, or one
        named change (`action="roll", namespace=..., name=...`); returns the churn report."""
        _, verify = self._credentials(cluster)
        body = action if action else {"fraction": fraction, "seed": seed}
        resp = httpx.post(f"{self.urls[cluster]}/_sim/churn", json=body, verify=verify, timeout=120)
        resp.raise_for_status()
        return resp.json()

    def remove_crd(self, cluster: str, name: str) -> dict[str, Any] | None:
        """Delete CRD `name` (and its kinds and objects) on the child's cluster, as `kubectl delete crd`
        does; returns the deleted CRD, or None if the cluster has no such CRD."""
        token, verify = self._credentials(cluster)
        resp = httpx.delete(
            f"{self.urls[cluster]}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
            headers={"Authorization": f"Bearer {token}"},
            verify=verify,
        )
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)


def serve_fleet_process(
    specs: list[ClusterSpec], kubeconfig_path: str | Path, **options: Any
) -> FleetProcess:
    """Start `serve_fleet(specs, **options)` in a spawned child; returns once every cluster listens."""
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    proc = ctx.Process(
        target=_child,
        args=(list(specs), str(kubeconfig_path), options, child_conn, stop),
        name="kq-simulator",
        daemon=True,
    )
    proc.start()
    child_conn.close()
    if not parent_conn.poll(_START_TIMEOUT):
        proc.terminate()
        raise TimeoutError("simulator child process did not start in time")
    msg = parent_conn.recv()
    if "error" in msg:
        proc.join(5)
        raise RuntimeError(f"simulator child process failed: {msg['error']}")
    return FleetProcess(proc, Path(kubeconfig_path), msg["urls"], stop)
