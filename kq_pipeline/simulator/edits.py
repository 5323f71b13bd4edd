"""A batch of object changes made the way controllers make them: read, change copies, store at once.

Churn and deletes over the API change several objects together (a pod and its endpoints; a deployment,
its replica sets and pods). An `Edit` reads the objects as they are now, keeps its changes aside (the
stored objects are never mutated: older snapshots still serve them to paging clients), deletes
dependents as the garbage collector does, and commits everything under consecutive revisions, writing
each object at every version the cluster serves it at (an HPA at autoscaling/v1 and /v2). `commit()`
says what changed, object by object, by uid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from kq_pipeline.simulator.catalog import Catalog, ResourceType
from kq_pipeline.simulator.conversions import CONVERSIONS, _retag
from kq_pipeline.simulator.store import ClusterStore, Key

Obj = dict[str, Any]
NAMESPACES = "v1/namespaces"
COMPANIONS = {"v1/services": "v1/endpoints"}
"""Objects that go with another of the same name: the endpoints controller deletes a Service's Endpoints."""


def copy_of(obj: Obj) -> Obj:
    """A deep copy an edit may change (orjson round trip: the objects are plain JSON)."""
    return orjson.loads(orjson.dumps(obj))


def owner_uids(obj: Obj) -> list[str]:
    return [ref.get("uid", "") for ref in (obj.get("metadata") or {}).get("ownerReferences") or ()]


def controller_of(obj: Obj) -> dict[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def _same_kind(a: ResourceType, b: ResourceType) -> bool:
    if a.resource != b.resource:
        return False
    return a.group == b.group or (a.resource == "events" and {a.group, b.group} <= {"", "events.k8s.io"})


@dataclass(frozen=True, order=True)
class ObjectRef:
    """One changed object, named by the resource it was changed through ("v1/pods")."""

    resource: str
    kind: str
    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, resource: str, obj: Obj) -> ObjectRef:
        md = obj.get("metadata") or {}
        return cls(resource, obj.get("kind", ""), md.get("namespace") or "", md["name"], md.get("uid", ""))

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Changes:
    """What one commit did. A pod replaced under the same name (a stateful-set pod) is removed + added."""

    added: tuple[ObjectRef, ...]
    removed: tuple[ObjectRef, ...]
    modified: tuple[ObjectRef, ...]
    revision: int


class Edit:
    """Changes to one cluster's objects, by canonical resource key ("v1/pods"), committed together."""

    def __init__(self, store: ClusterStore, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog
        self._canonical: dict[str, ResourceType] = {}
        for rtype in catalog.types:
            self._canonical[rtype.key] = self._pick_canonical(rtype)
        self._live: dict[str, dict[Key, Obj]] = {}
        self._orig: dict[tuple[str, Key], Obj | None] = {}
        self._indexes: dict[str, dict[str, tuple[Callable[[Obj], Iterable[str]], dict[str, set[Key]]]]] = {}

    def __repr__(self) -> str:
        return f"Edit(changed={len(self._orig)})"

    @property
    def changed(self) -> int:
        """How many objects the edit has changed so far (each counted once)."""
        return len(self._orig)

    # --- resource types -------------------------------------------------------------------------
    def _pick_canonical(self, rtype: ResourceType) -> ResourceType:
        """The one version an object is edited at: the generator's own list if served, else the first."""
        from kq_pipeline.simulator.objects import RESOURCE_KINDS

        siblings = [t for t in self.catalog.types if _same_kind(t, rtype)]
        return min(siblings, key=lambda t: (t.key not in RESOURCE_KINDS, siblings.index(t)))

    def canonical(self, key: str) -> str | None:
        """The key edits use for resource `key` (any served version of it), None if it is not served."""
        rtype = self._canonical.get(key)
        return rtype.key if rtype is not None else None

    def resources(self) -> list[ResourceType]:
        """One type per kind (its canonical version), in catalogue order."""
        return [t for t in self.catalog.types if self._canonical[t.key] is t]

    def _siblings(self, canonical: ResourceType) -> list[ResourceType]:
        return [t for t in self.catalog.types if self._canonical[t.key] is canonical]

    # --- reading --------------------------------------------------------------------------------
    def _objects(self, key: str) -> dict[Key, Obj]:
        live = self._live.get(key)
        if live is None:
            if self.canonical(key) != key:
                raise KeyError(f"{key} is not served or is edited as {self.canonical(key)}")
            hist = self.store.find(self._canonical[key])
            entries = hist.current.entries if hist is not None else ()
            live = self._live[key] = {e.key: e.obj for e in entries}
        return live

    def get(self, key: str, namespace: str, name: str) -> Obj | None:
        """The object as the edit sees it. Read-only: change a `copy_of` it and `put` that."""
        return self._objects(key).get((namespace, name))

    def items(self, key: str, namespace: str | None = None) -> list[Obj]:
        """All objects of resource `key` (in one namespace), in key order."""
        objs = self._objects(key)
        if namespace is None:
            return [objs[k] for k in sorted(objs)]
        self.add_index(key, "namespace", lambda o: [(o.get("metadata") or {}).get("namespace") or ""])
        return self.find(key, "namespace", namespace)

    def find(self, key: str, index: str, *values: str) -> list[Obj]:
        """Objects whose `index` (see add_index) includes every one of `values`, in key order."""
        _, table = self._indexes[key][index]
        sets = sorted((table.get(v, set()) for v in values), key=len)
        found = set(sets[0]).intersection(*sets[1:]) if sets else set()
        objs = self._objects(key)
        return [objs[k] for k in sorted(found)]

    def count(self, key: str, index: str, value: str) -> int:
        """How many objects `find(key, index, value)` would return."""
        return len(self._indexes[key][index][1].get(value, ()))

    def add_index(self, key: str, index: str, values: Callable[[Obj], Iterable[str]]) -> None:
        """Keep an index of `key`'s objects by `values(obj)` (owner uid, node name...) through the edit."""
        if index in self._indexes.get(key, {}):
            return
        table: dict[str, set[Key]] = {}
        for k, obj in self._objects(key).items():
            for v in values(obj):
                table.setdefault(v, set()).add(k)
        self._indexes.setdefault(key, {})[index] = (values, table)

    # --- writing --------------------------------------------------------------------------------
    def _set(self, key: str, k: Key, obj: Obj | None) -> None:
        objs = self._objects(key)
        old = objs.get(k)
        self._orig.setdefault((key, k), old)
        for values, table in self._indexes.get(key, {}).values():
            for v in values(old) if old is not None else ():
                table.get(v, set()).discard(k)
            for v in values(obj) if obj is not None else ():
                table.setdefault(v, set()).add(k)
        if obj is None:
            objs.pop(k, None)
        else:
            objs[k] = obj

    def put(self, key: str, obj: Obj) -> Obj:
        """Create or replace `obj` (a copy the edit now owns; it gets its resourceVersion on commit)."""
        md = obj["metadata"]
        self._set(key, (md.get("namespace") or "", md["name"]), obj)
        return obj

    def delete(self, key: str, namespace: str, name: str) -> list[tuple[str, Obj]]:
        """Delete an object and, as the garbage collector does, what it owns (and what that owns), a
        Service's Endpoints, a Namespace's objects. Returns every deleted (key, object), the named first."""
        obj = self.get(key, namespace, name)
        if obj is None:
            return []
        self._set(key, (namespace, name), None)
        gone = [(key, obj)]
        companion = COMPANIONS.get(key)
        if companion is not None and self.canonical(companion) is not None:
            gone += self.delete(companion, namespace, name)
        if key == NAMESPACES:
            for rtype in self.resources():
                if rtype.namespaced:
                    for dep in self.items(rtype.key, name):
                        gone += self.delete(rtype.key, name, dep["metadata"]["name"])
        for dep_key, dep in self.dependents(obj):
            md = dep["metadata"]
            gone += self.delete(dep_key, md.get("namespace") or "", md["name"])
        return gone

    def dependents(self, owner: Obj) -> list[tuple[str, Obj]]:
        """Objects `owner` controls or solely owns: what the garbage collector deletes with it."""
        uid = (owner.get("metadata") or {}).get("uid")
        if not uid:
            return []
        out = []
        for rtype in self.resources():
            self.add_index(rtype.key, "owner", owner_uids)
            for dep in self.find(rtype.key, "owner", uid):
                ref = controller_of(dep)
                if (ref is not None and ref.get("uid") == uid) or owner_uids(dep) == [uid]:
                    out.append((rtype.key, dep))
        return out

    def commit(self) -> Changes:
        """Store every change (one revision per object, in the order first changed)."""
        added: list[ObjectRef] = []
        removed: list[ObjectRef] = []
        modified: list[ObjectRef] = []
        writes: list[tuple[Key, dict[ResourceType, Obj | None]]] = []
        for (key, k), old in self._orig.items():
            new = self._objects(key).get(k)
            if old is None and new is None:
                continue  # made and deleted within the edit
            canonical = self._canonical[key]
            writes.append((k, {t: self._convert(canonical, t, new) for t in self._siblings(canonical)}))
            if old is not None and (new is None or _uid(new) != _uid(old)):
                removed.append(ObjectRef.of(key, old))
            if new is not None and (old is None or _uid(new) != _uid(old)):
                added.append(ObjectRef.of(key, new))
            elif new is not None:
                modified.append(ObjectRef.of(key, new))
        revision = self.store.commit(writes) if writes else self.store.revision
        self._orig.clear()
        return Changes(tuple(added), tuple(removed), tuple(modified), revision)

    @staticmethod
    def _convert(canonical: ResourceType, target: ResourceType, obj: Obj | None) -> Obj | None:
        if obj is None or target is canonical:
            return obj
        for source, convert in CONVERSIONS.get(target.key, ()):
            if source == canonical.key:
                return copy_of(convert(obj))
        return copy_of(_retag(target.group_version)(obj))


def _uid(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("uid", "")
