"""Shared by the target-RBAC tests: rewrite the stored kq-reader ClusterRole's rules in a simulated
cluster, and put the original back afterwards."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kq_pipeline.simulator.cluster import SimulatedCluster


@contextmanager
def reader_role_rules(sim: SimulatedCluster, reader: str) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    rtype = sim.catalog.lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
    assert rtype is not None
    original = copy.deepcopy(sim.store.get(rtype, "", reader))

    def set_rules(rules: list[dict[str, Any]]) -> None:
        obj = copy.deepcopy(original)
        obj["rules"] = rules
        sim.store.write(rtype, obj, create=False)

    try:
        yield set_rules
    finally:
        sim.store.write(rtype, copy.deepcopy(original), create=False)
