"""`kq simulate`: serve N simulated clusters until SIGINT/SIGTERM and write their kubeconfig."""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

if TYPE_CHECKING:
    from kq_pipeline.simulator.churn import ChurnReport


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
    custom_objects: int | None = None,
    operators: tuple[str, ...] | None = None,
    churn: float = 0.0,
    churn_interval: float = 60.0,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM (or `stop` is set); one line "<name> <url>" per cluster on `out`.

    Cluster i gets seed `seed + i`, so clusters differ but a run is reproducible. Clusters get the
    operators' CRDs `fleet_operators(seed, i)` spreads over the fleet (or `operators` on every cluster;
    () for none), with `custom_objects` custom objects each (default: the spec's). With `churn` > 0,
    that share of every cluster's objects changes every `churn_interval` seconds (one line per round on
    `out`). Returns the exit code.
    """
    from kq_pipeline.simulator.fleet import fleet_specs, serve_fleet

    out = out or sys.stdout
    if clusters < 1:
        print("simulate: need at least one cluster", file=sys.stderr)
        return 2
    if not 0.0 <= churn <= 1.0 or churn_interval <= 0:
        print("simulate: --churn must be between 0 and 1 and --churn-interval positive", file=sys.stderr)
        return 2
    extra: dict[str, Any] = {} if k8s_minor is None else {"k8s_minor": k8s_minor}
    try:
        specs = fleet_specs(
            cluster_names(clusters),
            pods,
            seed,
            namespaces=namespaces,
            custom_objects=custom_objects,
            operators=operators,
            **extra,
        )
    except ValueError as err:
        print(f"simulate: {err}", file=sys.stderr)
        return 2
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
            if churn > 0:
                fleet.start_churn(
                    churn,
                    churn_interval,
                    seed,
                    on_round=lambda rs: print(churn_line(rs), file=out, flush=True),
                )
            while not stop.wait(0.5):
                pass
    finally:
        if threading.current_thread() is threading.main_thread():
            for s, handler in previous.items():
                signal.signal(s, handler)
    return 0


def churn_line(reports: list[ChurnReport]) -> str:
    """One churn round in one line: "churn: 3 clusters, +12 -12 ~30 objects"."""
    added = sum(len(r.added) for r in reports)
    removed = sum(len(r.removed) for r in reports)
    modified = sum(len(r.modified) for r in reports)
    return f"churn: {len(reports)} clusters, +{added} -{removed} ~{modified} objects"


def simulate_options(args: argparse.Namespace) -> dict[str, Any]:
    """run_simulate keywords from `kq simulate`'s --custom-objects, --operators and --churn flags."""
    ops = getattr(args, "operators", None)
    operators = None if ops is None else tuple(o for o in ops.split(",") if o and o != "none")
    options: dict[str, Any] = {
        "custom_objects": getattr(args, "custom_objects", None),
        "operators": operators,
    }
    if getattr(args, "churn", None):
        options |= {"churn": args.churn, "churn_interval": getattr(args, "churn_interval", None) or 60.0}
    return options
