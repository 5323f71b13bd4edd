"""RBAC the way kube-apiserver evaluates it: from the (Cluster)Roles and (Cluster)RoleBindings stored in
the cluster itself, for service accounts whose tokens the simulated token controller issued.

This is what makes a registered reader's rights exactly the rules `deploy/target-rbac.yaml` grants it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kq_pipeline.simulator.catalog import Catalog
from kq_pipeline.simulator.rbac import Rule
from kq_pipeline.simulator.store import ClusterStore

RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class Principal:
    """An authenticated user. `bound`: authorized by the stored bindings, not the simulator's rule switch."""

    name: str
    groups: tuple[str, ...] = ()
    bound: bool = False

    @classmethod
    def service_account(cls, namespace: str, name: str) -> Principal:
        return cls(
            f"system:serviceaccount:{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
            bound=True,
        )


class StoredRbac:
    """Reads the current RBAC objects on every decision, so a created binding takes effect at once."""

    def __init__(self, catalog: Catalog, store: ClusterStore) -> None:
        self._catalog = catalog
        self._store = store

    def _objects(self, resource: str) -> list[dict[str, Any]]:
        rtype = self._catalog.lookup(RBAC_GROUP, "v1", resource)
        if rtype is None:
            return []
        return [e.obj for e in self._store.history(rtype).current.entries]

    def _rules(self, who: Principal, namespace: str | None) -> Iterable[Rule]:
        cluster_roles = {o["metadata"]["name"]: o for o in self._objects("clusterroles")}
        for binding in self._objects("clusterrolebindings"):
            if _binds(binding, who) and binding.get("roleRef", {}).get("kind") == "ClusterRole":
                yield from _rules_of(cluster_roles.get(binding["roleRef"]["name"]))
        if namespace is None:
            return
        roles = {
            o["metadata"]["name"]: o
            for o in self._objects("roles")
            if o["metadata"].get("namespace") == namespace
        }
        for binding in self._objects("rolebindings"):
            if binding["metadata"].get("namespace") != namespace or not _binds(binding, who):
                continue
            ref = binding.get("roleRef", {})
            yield from _rules_of(
                (cluster_roles if ref.get("kind") == "ClusterRole" else roles).get(ref.get("name"))
            )

    def allows(
        self, who: Principal, verb: str, group: str, resource: str, namespace: str | None, name: str | None
    ) -> bool:
        return any(r.allows(verb, group, resource, name) for r in self._rules(who, namespace))

    def allows_path(self, who: Principal, verb: str, path: str) -> bool:
        return any(r.allows_path(verb, path) for r in self._rules(who, None))


def _binds(binding: dict[str, Any], who: Principal) -> bool:
    for s in binding.get("subjects") or ():
        kind = s.get("kind")
        if (
            kind == "ServiceAccount"
            and who.name == f"system:serviceaccount:{s.get('namespace')}:{s.get('name')}"
        ):
            return True
        if (kind == "User" and s.get("name") == who.name) or (
            kind == "Group" and s.get("name") in who.groups
        ):
            return True
    return False


def _rules_of(role: dict[str, Any] | None) -> list[Rule]:
    return [Rule.of(r) for r in (role or {}).get("rules") or ()]
