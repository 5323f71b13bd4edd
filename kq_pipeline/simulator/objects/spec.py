"""The size and shape of one simulated cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    operators: tuple[str, ...] = ()
    """Operators whose CRDs are installed: "cert-manager", "prometheus-operator", "argocd", "istio"
    (objects/custom.py). With any, the cluster serves apiextensions.k8s.io and the operators' kinds, and
    generate_objects adds the CRD list and one list per custom kind; the built-in objects stay the same."""
    custom_objects: int | None = None
    """Custom objects in all, spread over the installed kinds (custom.custom_counts). Default: 0 without
    operators, else max(3 per kind, pods // 2)."""
    pending_crds: tuple[str, ...] = ()
    """Names of installed CRDs ("applications.argoproj.io") left not Established: listed as CRDs, but
    their kinds are not in discovery and have no objects."""

    def __post_init__(self) -> None:
        if self.pods < 0 or self.namespaces < 0:
            raise ValueError("pods and namespaces must be >= 0")
        set_ = object.__setattr__
        self._resolve_custom(set_)
        set_(self, "namespaces", max(2, self.namespaces))  # kube-system and default always exist
        if self.nodes is None:
            set_(self, "nodes", max(3, self.pods // 30))
        elif self.nodes < 1:
            raise ValueError("a cluster has at least one node")
        if self.daemon_sets is None:
            wanted = max(1, self.namespaces // 3)
            budget = (self.pods // 3) // self.nodes  # type: ignore[operator]
            set_(self, "daemon_sets", min(wanted, budget))

    def _resolve_custom(self, set_: Any) -> None:
        from kq_pipeline.simulator.objects import custom  # custom imports this module

        def as_tuple(value: Any) -> tuple[str, ...]:
            return (value,) if isinstance(value, str) else tuple(dict.fromkeys(value))

        set_(self, "operators", as_tuple(self.operators))
        set_(self, "pending_crds", as_tuple(self.pending_crds))
        installed = {k.crd_name for k in custom.installed_kinds(self.operators)}  # raises on unknown names
        if self.custom_objects is None:
            set_(self, "custom_objects", custom.default_custom_objects(self.operators, self.pods))
        elif self.custom_objects < 0:
            raise ValueError("custom_objects must be >= 0")
        elif self.custom_objects and not self.operators:
            raise ValueError("custom_objects needs operators to define the custom kinds")
        if set(self.pending_crds) - installed:
            raise ValueError(
                f"pending_crds {sorted(set(self.pending_crds) - installed)} are not CRDs of the installed "
                f"operators: {sorted(installed)}"
            )
