"""A fleet of simulated clusters on 127.0.0.1: one port and token each, one shared CA, one kubeconfig."""

from __future__ import annotations

import base64
import os
import random
import ssl
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kq_pipeline.gcpause import gc_paused
from kq_pipeline.simulator.certs import CertificateAuthority, KeyPair
from kq_pipeline.simulator.cluster import DEFAULT_MINOR, SimulatedCluster

if TYPE_CHECKING:
    from kq_pipeline.simulator.churn import ChurnLoop, ChurnReport
    from kq_pipeline.simulator.objects import ClusterSpec


def _server_context(ca: CertificateAuthority, client_cert_auth: bool) -> ssl.SSLContext:
    pair = ca.issue_server()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="kq-sim-tls-") as tmp:
        cert, key = Path(tmp, "server.crt"), Path(tmp, "server.key")
        cert.write_text(pair.cert_pem)
        key.touch(mode=0o600)
        key.write_text(pair.key_pem)
        ctx.load_cert_chain(cert, key)
    if client_cert_auth:
        ctx.load_verify_locations(cadata=ca.cert_pem)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class Fleet:
    """Clusters serving in background threads; a context manager that stops them on exit."""

    def __init__(self, tls: bool = True, client_cert_auth: bool = False) -> None:
        self.ca = CertificateAuthority()
        self._tls = _server_context(self.ca, client_cert_auth) if tls else None
        self.clusters: dict[str, SimulatedCluster] = {}
        self.churn_loop: ChurnLoop | None = None

    def __repr__(self) -> str:
        return f"Fleet(clusters={list(self.clusters)!r})"

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ca_pem(self) -> str:
        return self.ca.cert_pem

    def add(
        self,
        name: str,
        generated: dict[str, Any],
        *,
        host: str = "127.0.0.1",
        minor: int = DEFAULT_MINOR,
        rbac_rules: Any = None,
        continue_ttl: float = 300.0,
        port: int = 0,
    ) -> SimulatedCluster:
        """Serve already generated objects as cluster `name` (started). A "version" entry (the /version
        document) sets the Kubernetes version; `minor` applies only without one."""
        cluster = SimulatedCluster(
            name,
            generated,
            host=host,
            port=port,
            tls=self._tls,
            minor=minor,
            rbac_rules=rbac_rules,
            continue_ttl=continue_ttl,
            ca_pem=self.ca_pem,
        )
        self.clusters[name] = cluster.start()
        return cluster

    def issue_client_cert(self, user: str, groups: tuple[str, ...] = ()) -> KeyPair:
        return self.ca.issue_client(user, groups)

    def kubeconfig(self) -> dict[str, Any]:
        ca_data = base64.b64encode(self.ca_pem.encode()).decode()
        clusters, users, contexts = [], [], []
        for name, c in self.clusters.items():
            server: dict[str, Any] = {"server": c.url}
            if c.url.startswith("https"):
                server["certificate-authority-data"] = ca_data
            clusters.append({"name": name, "cluster": server})
            users.append({"name": name, "user": {"token": c.token}})
            contexts.append({"name": name, "context": {"cluster": name, "user": name}})
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": clusters,
            "users": users,
            "contexts": contexts,
            "current-context": next(iter(self.clusters), ""),
        }

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> Path:
        """Write the kubeconfig (mode 0600: it holds tokens); context name == cluster name."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode on open: private before a token is written
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(self.kubeconfig(), fh, sort_keys=False)
        return out

    def start_churn(
        self,
        fraction: float,
        interval: float = 60.0,
        seed: int = 0,
        on_round: Callable[[list[ChurnReport]], None] | None = None,
    ) -> ChurnLoop:
        """Every `interval` seconds, change `fraction` of every cluster's objects (churn.py), until stop()."""
        from kq_pipeline.simulator.churn import ChurnLoop

        if self.churn_loop is not None:
            self.churn_loop.stop()
        self.churn_loop = ChurnLoop(lambda: list(self.clusters.values()), fraction, interval, seed, on_round)
        return self.churn_loop.start()

    def stop(self) -> None:
        if self.churn_loop is not None:
            self.churn_loop.stop()
            self.churn_loop = None
        for c in self.clusters.values():
            c.stop()


OPERATOR_SHARE = 0.6
"""In a default fleet, each operator is installed on about this share of the clusters."""
NO_OPERATORS_SHARE = 1 / 6
"""... and about this share of the clusters has no CRDs at all."""


def fleet_operators(seed: int, index: int) -> tuple[str, ...]:
    """The operators of cluster `index` of a fleet: a different set per cluster, the same for a seed."""
    from kq_pipeline.simulator.objects.custom import OPERATORS

    rng = random.Random(f"kq-sim-operators:{seed}:{index}")
    if rng.random() < NO_OPERATORS_SHARE:
        return ()
    chosen = tuple(op for op in OPERATORS if rng.random() < OPERATOR_SHARE)
    return chosen or (rng.choice(OPERATORS),)


def fleet_specs(
    names: list[str],
    pods: int,
    seed: int = 0,
    *,
    namespaces: int = 5,
    custom_objects: int | None = None,
    operators: tuple[str, ...] | None = None,
    **knobs: Any,
) -> list[ClusterSpec]:
    """Specs of a fleet: cluster i gets seed `seed + i` and, unless `operators` is given (() for none),
    the operators `fleet_operators(seed, i)`. `custom_objects` (per cluster) applies to clusters with
    operators; None means the spec's default."""
    from kq_pipeline.simulator.objects import ClusterSpec

    specs = []
    for i, name in enumerate(names):
        ops = fleet_operators(seed, i) if operators is None else tuple(operators)
        extra = {"custom_objects": custom_objects} if ops and custom_objects is not None else {}
        specs.append(
            ClusterSpec(
                name=name, seed=seed + i, pods=pods, namespaces=namespaces, operators=ops, **extra, **knobs
            )
        )
    return specs


def serve_fleet(
    specs: Iterable[ClusterSpec],
    host: str = "127.0.0.1",
    tls: bool = True,
    rbac_rules: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
    *,
    continue_ttl: float = 300.0,
    client_cert_auth: bool = False,
    churn: float = 0.0,
    churn_interval: float = 60.0,
    churn_seed: int = 0,
) -> Fleet:
    """Generate each spec's objects and serve every cluster on its own port of `host`. With `churn` > 0,
    every `churn_interval` seconds that share of each cluster's objects changes (Fleet.start_churn)."""
    from kq_pipeline.simulator.objects import generate_objects

    fleet = Fleet(tls=tls, client_cert_auth=client_cert_auth)
    try:
        for spec in specs:
            with gc_paused():
                generated = generate_objects(spec)
            minor = getattr(spec, "k8s_minor", DEFAULT_MINOR)
            fleet.add(
                spec.name, generated, host=host, minor=minor, rbac_rules=rbac_rules, continue_ttl=continue_ttl
            )
        if churn > 0:
            fleet.start_churn(churn, churn_interval, churn_seed)
    except BaseException:
        fleet.stop()
        raise
    return fleet
