"""`kq simulate`: serve N simulated clusters until SIGINT/SIGTERM and write their kubeconfig."""

from __future__ import annotations

import gc
import signal
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import yaml


def cluster_names(count: int) -> list[str]:
    return [f"sim-{i}" for i in range(count)]


def run_simulate(
    clusters: int,
    pods: int,
    kubeconfig: Path,
    seed: int = 0,
    *,
    namespaces: int = 5,
    k8s_minor: int | None = None,
    tls: bool = True,
    host: str = "127.0.0.1",
    continue_ttl: float = 300.0,
    rbac_file: Path | None = None,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM (or `stop` is set); one line "<name> <url>" per cluster on `out`.

    Cluster i gets seed `seed + i`, so clusters differ but a run is reproducible. Returns the exit code.
    """
    from kq_pipeline.simulator.fleet import serve_fleet
    from kq_pipeline.simulator.objects import ClusterSpec

    out = out or sys.stdout
    if clusters < 1:
        print("simulate: need at least one cluster", file=sys.stderr)
        return 2
    extra: dict[str, Any] = {} if k8s_minor is None else {"k8s_minor": k8s_minor}
    specs = [
        ClusterSpec(name=n, seed=seed + i, pods=pods, namespaces=namespaces, **extra)
        for i, n in enumerate(cluster_names(clusters))
    ]
    rules = yaml.safe_load(rbac_file.read_text()) if rbac_file else None
    stop = stop or threading.Event()
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if threading.current_thread() is threading.main_thread():
        for s in previous:
            signal.signal(s, lambda *_: stop.set())
    try:
        with serve_fleet(specs, host=host, tls=tls, rbac_rules=rules, continue_ttl=continue_ttl) as fleet:
            gc.freeze()  # the CLI process only serves: keep the collector off the object heap
            path = fleet.write_kubeconfig(kubeconfig)
            for name, c in fleet.clusters.items():
                print(f"{name} {c.url}", file=out, flush=True)
            print(f"kubeconfig {path}", file=out, flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        if threading.current_thread() is threading.main_thread():
            for s, handler in previous.items():
                signal.signal(s, handler)
    return 0
