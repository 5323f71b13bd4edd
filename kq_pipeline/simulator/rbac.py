"""Optional RBAC: enforce one Role or ClusterRole's rules for the authenticated user.

Discovery and /version stay open to every authenticated user, as the default `system:discovery`
and `system:public-info-viewer` bindings make them on a real cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DISCOVERY_PREFIXES = ("/api", "/apis", "/version", "/openapi", "/healthz", "/livez", "/readyz")


@dataclass(frozen=True)
class Rule:
    api_groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    resource_names: frozenset[str]
    non_resource_urls: frozenset[str] = frozenset()

    @classmethod
    def of(cls, rule: Mapping[str, Any]) -> Rule:
        return cls(
            frozenset(rule.get("apiGroups") or ()),
            frozenset(rule.get("resources") or ()),
            frozenset(rule.get("verbs") or ()),
            frozenset(rule.get("resourceNames") or ()),
            frozenset(rule.get("nonResourceURLs") or ()),
        )

    def allows(self, verb: str, group: str, resource: str, name: str | None) -> bool:
        """`resource` is "pods", or "serviceaccounts/token" for a subresource."""
        return (
            (("*" in self.verbs) or verb in self.verbs)
            and (("*" in self.api_groups) or group in self.api_groups)
            and self._resource_matches(resource)
            and (not self.resource_names or (name is not None and name in self.resource_names))
        )

    def _resource_matches(self, resource: str) -> bool:
        """As kube-apiserver's RBAC: "*", the exact "<resource>[/<subresource>]", or "*/<subresource>"."""
        if "*" in self.resources or resource in self.resources:
            return True
        _, slash, sub = resource.partition("/")
        return bool(slash) and f"*/{sub}" in self.resources

    def allows_path(self, verb: str, path: str) -> bool:
        """A non-resource URL rule: exact path, or a prefix ending in '*' (as kube-apiserver matches)."""
        return (("*" in self.verbs) or verb in self.verbs) and any(
            url == path or (url.endswith("*") and path.startswith(url[:-1])) for url in self.non_resource_urls
        )


class Authorizer:
    """Rules from a Role/ClusterRole manifest or a bare list of rules; a Role binds in its namespace only."""

    def __init__(self, manifest: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> None:
        if isinstance(manifest, Mapping):
            rules = manifest.get("rules") or []
            self.namespace: str | None = (
                (manifest.get("metadata") or {}).get("namespace") if manifest.get("kind") == "Role" else None
            )
        else:
            rules, self.namespace = list(manifest), None
        self.rules = tuple(Rule.of(r) for r in rules)

    def allows(
        self, verb: str, group: str, resource: str, namespace: str | None, name: str | None = None
    ) -> bool:
        if self.namespace is not None and namespace != self.namespace:
            return False
        return any(r.allows(verb, group, resource, name) for r in self.rules)


def is_discovery_path(path: str) -> bool:
    return (
        path in DISCOVERY_PREFIXES or path.startswith(("/openapi/", "/version/")) or _is_group_discovery(path)
    )


def _is_group_discovery(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        return len(parts) <= 2
    if parts[:1] == ["apis"]:
        return len(parts) <= 3
    return False
