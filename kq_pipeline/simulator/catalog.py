"""The resource catalogue: which kinds the simulated API server serves, at which versions.

Discovery documents, routing and RBAC all read this one table, so `kubectl api-resources`, the
list paths and the 403 messages agree with each other the way they do on a real cluster.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

STANDARD_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)
READ_ONLY_VERBS: tuple[str, ...] = ("get", "list")


@dataclass(frozen=True)
class ResourceType:
    group: str
    """"" for the core group."""
    version: str
    resource: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    subresources: tuple[str, ...] = ("status",)
    min_minor: int = 0
    """First Kubernetes 1.x minor version that serves this group/version of the kind."""
    max_minor: int = 99
    """Last Kubernetes 1.x minor version that serves it (removed APIs stop here)."""

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """The object generator's key: "<group_version>/<resource>", core as "v1"."""
        return f"{self.group_version}/{self.resource}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def base_path(self) -> str:
        return f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"

    def served_in(self, minor: int) -> bool:
        return self.min_minor <= minor <= self.max_minor

    def storage_version_hash(self) -> str:
        digest = hashlib.sha256(f"{self.group}/{self.version}/{self.kind}".encode()).digest()
        return base64.b64encode(digest[:8]).decode()


def _r(
    group: str, version: str, resource: str, kind: str, namespaced: bool, *short: str, **kw: object
) -> ResourceType:
    return ResourceType(group, version, resource, kind, namespaced, tuple(short), **kw)  # type: ignore[arg-type]


_ALL = ("all",)
CATALOG: tuple[ResourceType, ...] = (
    # core/v1
    _r("", "v1", "componentstatuses", "ComponentStatus", False, "cs", verbs=READ_ONLY_VERBS, subresources=()),
    _r("", "v1", "configmaps", "ConfigMap", True, "cm", subresources=()),
    _r("", "v1", "endpoints", "Endpoints", True, "ep", subresources=()),
    _r("", "v1", "events", "Event", True, "ev", subresources=()),
    _r("", "v1", "limitranges", "LimitRange", True, "limits", subresources=()),
    _r("", "v1", "namespaces", "Namespace", False, "ns", subresources=("finalize", "status")),
    _r("", "v1", "nodes", "Node", False, "no", subresources=("proxy", "status")),
    _r("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, "pvc"),
    _r("", "v1", "persistentvolumes", "PersistentVolume", False, "pv"),
    _r(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        "po",
        categories=_ALL,
        subresources=(
            "attach",
            "binding",
            "ephemeralcontainers",
            "eviction",
            "exec",
            "log",
            "portforward",
            "proxy",
            "status",
        ),
    ),
    _r("", "v1", "podtemplates", "PodTemplate", True, subresources=()),
    _r("", "v1", "resourcequotas", "ResourceQuota", True, "quota"),
    _r("", "v1", "secrets", "Secret", True, subresources=()),
    _r("", "v1", "serviceaccounts", "ServiceAccount", True, "sa", subresources=("token",)),
    _r("", "v1", "services", "Service", True, "svc", categories=_ALL, subresources=("proxy", "status")),
    # admissionregistration.k8s.io
    _r(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
        categories=("api-extensions",),
        subresources=(),
    ),
    _r(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
        categories=("api-extensions",),
        subresources=(),
    ),
    # apps/v1
    _r("apps", "v1", "daemonsets", "DaemonSet", True, "ds", categories=_ALL),
    _r(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        "deploy",
        categories=_ALL,
        subresources=("scale", "status"),
    ),
    _r(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        True,
        "rs",
        categories=_ALL,
        subresources=("scale", "status"),
    ),
    _r(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        True,
        "sts",
        categories=_ALL,
        subresources=("scale", "status"),
    ),
    # autoscaling
    _r(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        "hpa",
        categories=_ALL,
        min_minor=23,
    ),
    _r(
        "autoscaling",
        "v1",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        "hpa",
        categories=_ALL,
    ),
    # batch
    _r("batch", "v1", "cronjobs", "CronJob", True, "cj", categories=_ALL, min_minor=21),
    _r("batch", "v1", "jobs", "Job", True, categories=_ALL),
    _r("batch", "v1beta1", "cronjobs", "CronJob", True, "cj", categories=_ALL, max_minor=24),
    # events.k8s.io
    _r("events.k8s.io", "v1", "events", "Event", True, "ev", subresources=(), min_minor=19),
    _r("events.k8s.io", "v1beta1", "events", "Event", True, "ev", subresources=(), max_minor=24),
    # networking.k8s.io/v1
    _r("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False, subresources=()),
    _r("networking.k8s.io", "v1", "ingresses", "Ingress", True, "ing"),
    _r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, "netpol", subresources=()),
    # policy
    _r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, "pdb", min_minor=21),
    _r("policy", "v1beta1", "poddisruptionbudgets", "PodDisruptionBudget", True, "pdb", max_minor=24),
    _r(
        "policy",
        "v1beta1",
        "podsecuritypolicies",
        "PodSecurityPolicy",
        False,
        "psp",
        subresources=(),
        max_minor=24,
    ),
    # rbac.authorization.k8s.io/v1
    _r(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, subresources=()
    ),
    _r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, subresources=()),
    _r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, subresources=()),
    _r("rbac.authorization.k8s.io", "v1", "roles", "Role", True, subresources=()),
    # storage.k8s.io/v1
    _r("storage.k8s.io", "v1", "csidrivers", "CSIDriver", False, subresources=()),
    _r("storage.k8s.io", "v1", "csinodes", "CSINode", False, subresources=()),
    _r("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, "sc", subresources=()),
    _r("storage.k8s.io", "v1", "volumeattachments", "VolumeAttachment", False),
)


@dataclass(frozen=True)
class Catalog:
    """The kinds one cluster serves, given its Kubernetes minor version."""

    minor: int
    types: tuple[ResourceType, ...]

    @classmethod
    def for_minor(cls, minor: int) -> Catalog:
        return cls(minor, tuple(t for t in CATALOG if t.served_in(minor)))

    def lookup(self, group: str, version: str, resource: str) -> ResourceType | None:
        for t in self.types:
            if t.group == group and t.version == version and t.resource == resource:
                return t
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Group name → served versions, preferred first (core under "")."""
        out: dict[str, list[str]] = {}
        for t in self.types:
            versions = out.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
        return out

    def resources_of(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.types if t.group == group and t.version == version]


def parse_minor(version: str) -> int:
    """ "v1.30.2" or "1.30" → 30."""
    parts = version.lstrip("v").split(".")
    return int("".join(ch for ch in parts[1] if ch.isdigit()))
