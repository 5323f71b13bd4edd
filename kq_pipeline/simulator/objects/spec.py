"""The size and shape of one simulated cluster."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterSpec:
    """What to generate. Knobs left as None are derived from `pods` in `__post_init__`, so a spec
    always reads back resolved integers (``ClusterSpec("a", pods=30000).nodes == 1000``)."""

    name: str
    seed: int = 0
    pods: int = 50
    namespaces: int = 5
    nodes: int | None = None
    """Default max(3, pods // 30): about 30 pods per node, as in a busy production cluster."""
    k8s_minor: int = 29
    """Server version 1.<minor>; PodSecurityPolicy objects only if minor < 25."""
    daemon_sets: int | None = None
    """Default: one per few namespaces, capped so daemon-set pods stay under a third of all pods."""
    pods_per_deployment: int = 7
    """Mean replicas of a deployment: about one deployment per 5-10 pods."""
    events_per_100_pods: int = 10

    def __post_init__(self) -> None:
        if self.pods < 0 or self.namespaces < 0:
            raise ValueError("pods and namespaces must be >= 0")
        set_ = object.__setattr__
        set_(self, "namespaces", max(2, self.namespaces))  # kube-system and default always exist
        if self.nodes is None:
            set_(self, "nodes", max(3, self.pods // 30))
        elif self.nodes < 1:
            raise ValueError("a cluster has at least one node")
        if self.daemon_sets is None:
            wanted = max(1, self.namespaces // 3)
            budget = (self.pods // 3) // self.nodes  # type: ignore[operator]
            set_(self, "daemon_sets", min(wanted, budget))
