"""The resource catalogue: which kinds the simulated API server serves, at which versions.

Discovery documents, routing and RBAC all read this one table, so `kubectl api-resources`, the
list paths and the 403 messages agree with each other the way they do on a real cluster.

Besides the built-in kinds, a cluster serves the kinds its CustomResourceDefinitions define, as
kube-apiserver's apiextensions part does: every served version of a CRD whose names are accepted is
routable, but only an Established CRD's versions appear in discovery, and a group's versions are
ordered (preferred first) by Kubernetes version priority, GA > beta > alpha.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
    custom: bool = False
    """Defined by a CustomResourceDefinition (served from the CRD objects, not this table)."""
    discoverable: bool = True
    """Listed in discovery. False for the versions of a CRD that is not (yet) Established."""
    singular_name: str = ""
    """The CRD's names.singular; built-ins use the lower-cased kind."""
    storage_version: str = ""
    """A CRD's storage version (all its served versions share one storageVersionHash)."""

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """The object generator's key: "<group_version>/<resource>", core as "v1"."""
        return f"{self.group_version}/{self.resource}"

    @property
    def singular(self) -> str:
        return self.singular_name or self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def base_path(self) -> str:
        return f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"

    def served_in(self, minor: int) -> bool:
        return self.min_minor <= minor <= self.max_minor

    def storage_version_hash(self) -> str:
        version = self.storage_version or self.version
        digest = hashlib.sha256(f"{self.group}/{version}/{self.kind}".encode()).digest()
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


CRD_TYPE = _r(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    False,
    "crd",
    "crds",
    categories=("api-extensions",),
)
"""Served by clusters that are given CRD objects (see `Catalog.for_minor`), so clusters without any
keep exactly the discovery documents they had."""
CRD_KEY = CRD_TYPE.key

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")
_STABILITY = {None: 3, "beta": 2, "alpha": 1}


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering (higher first is preferred): GA > beta > alpha, then higher numbers;
    versions not of the vNbetaM form sort last, as kube-apiserver's CompareKubeAwareVersionStrings does."""
    m = _VERSION_RE.match(version)
    if not m:
        return (0, 0, 0, version)
    major, stability, minor = m.groups()
    return (_STABILITY[stability], int(major), int(minor or 0), version)


def _condition_true(crd: Mapping[str, Any], kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True"
        for c in (crd.get("status") or {}).get("conditions") or ()
    )


def crd_types(crds: Iterable[Mapping[str, Any]]) -> tuple[ResourceType, ...]:
    """The resource types CRD objects define: one per served version of each CRD whose names are
    accepted (discoverable only if Established), by group then version priority (preferred first)."""
    out: list[ResourceType] = []
    for crd in crds:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        if not _condition_true(crd, "NamesAccepted"):
            continue
        established = _condition_true(crd, "Established")
        versions = spec.get("versions") or ()
        storage = next((v["name"] for v in versions if v.get("storage")), "")
        for v in versions:
            if not v.get("served"):
                continue
            subs = (v.get("subresources") or {}).keys()
            out.append(
                ResourceType(
                    spec["group"],
                    v["name"],
                    names["plural"],
                    names["kind"],
                    spec.get("scope") == "Namespaced",
                    tuple(names.get("shortNames") or ()),
                    tuple(names.get("categories") or ()),
                    subresources=tuple(s for s in ("scale", "status") if s in subs),
                    custom=True,
                    discoverable=established,
                    singular_name=names.get("singular") or names["kind"].lower(),
                    storage_version=storage,
                )
            )
    out.sort(key=lambda t: (t.group, _descending(version_priority(t.version)), t.resource))
    return tuple(out)


def _descending(priority: tuple[int, int, int, str]) -> tuple[int, int, int, str]:
    return (-priority[0], -priority[1], -priority[2], priority[3])


@dataclass(frozen=True)
class Catalog:
    """The kinds one cluster serves, given its Kubernetes minor version (and CRDs, if it has any)."""

    minor: int
    types: tuple[ResourceType, ...]

    @classmethod
    def for_minor(cls, minor: int, crds: Iterable[Mapping[str, Any]] | None = None) -> Catalog:
        """The built-in kinds of Kubernetes 1.<minor>; given CRD objects (even none), also the
        customresourcedefinitions kind and the kinds those CRDs define."""
        types = tuple(t for t in CATALOG if t.served_in(minor))
        if crds is not None:
            types += (CRD_TYPE, *crd_types(crds))
        return cls(minor, types)

    @property
    def custom_types(self) -> tuple[ResourceType, ...]:
        return tuple(t for t in self.types if t.custom)

    def lookup(self, group: str, version: str, resource: str) -> ResourceType | None:
        for t in self.types:
            if t.group == group and t.version == version and t.resource == resource:
                return t
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Group name → versions in discovery, preferred first (core under "")."""
        out: dict[str, list[str]] = {}
        for t in self.types:
            if not t.discoverable:
                continue
            versions = out.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
        return out

    def resources_of(self, group: str, version: str) -> list[ResourceType]:
        """The discoverable kinds of one group version."""
        return [t for t in self.types if t.group == group and t.version == version and t.discoverable]


def parse_minor(version: str) -> int:
    """ "v1.30.2" or "1.30" → 30."""
    parts = version.lstrip("v").split(".")
    return int("".join(ch for ch in parts[1] if ch.isdigit()))
