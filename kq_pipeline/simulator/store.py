"""The object store: pre-serialized objects in immutable, versioned snapshots.

Each object is serialized once (orjson) when the store is built or mutated; a list page is then a
join of byte strings. A continue token names the cluster revision it was issued at, and the store
keeps superseded snapshots for the token TTL, so paging stays consistent while the store changes,
the way etcd-backed lists do.
"""

from __future__ import annotations

import base64
import bisect
import copy
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from kq_pipeline.simulator.catalog import ResourceType
from kq_pipeline.simulator.selectors import Predicate

Key = tuple[str, str]
_TYPE_META = ("apiVersion", "kind")


class Entry:
    """One object and its list-item bytes (serialized on first use or by the warm-up thread)."""

    __slots__ = ("_item", "name", "namespace", "obj", "typed")

    def __init__(self, namespace: str, name: str, obj: dict[str, Any], typed: bool = False) -> None:
        self.namespace, self.name, self.obj, self.typed = namespace, name, obj, typed
        self._item: bytes | None = None

    @classmethod
    def of(cls, obj: dict[str, Any], typed: bool = False) -> Entry:
        meta = obj.get("metadata") or {}
        return cls(meta.get("namespace") or "", meta["name"], obj, typed)

    @property
    def item(self) -> bytes:
        """The object as a list item: like the real API server, without apiVersion/kind for built-in
        kinds, with them (`typed`) for custom resources, which it serves as unstructured objects."""
        item = self._item
        if item is None:
            obj = self.obj if self.typed else {k: v for k, v in self.obj.items() if k not in _TYPE_META}
            item = self._item = orjson.dumps(obj)
        return item

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class Snapshot:
    rv: int
    entries: tuple[Entry, ...]
    keys: tuple[Key, ...] = field(repr=False)

    @classmethod
    def build(cls, rv: int, entries: list[Entry]) -> Snapshot:
        entries.sort(key=lambda e: e.key)
        return cls(rv, tuple(entries), tuple(e.key for e in entries))

    def namespace_range(self, namespace: str | None) -> tuple[int, int]:
        if namespace is None:
            return 0, len(self.keys)
        return (
            bisect.bisect_left(self.keys, (namespace, "")),
            bisect.bisect_left(self.keys, (namespace + "\x00", "")),
        )

    def get(self, namespace: str, name: str) -> Entry | None:
        i = bisect.bisect_left(self.keys, (namespace, name))
        if i < len(self.keys) and self.keys[i] == (namespace, name):
            return self.entries[i]
        return None


@dataclass(frozen=True)
class Page:
    items: list[bytes]
    next_start: Key | None
    remaining: int | None


def page(
    snap: Snapshot, namespace: str | None, start_after: Key | None, limit: int, predicate: Predicate | None
) -> Page:
    """One page of a list: at most `limit` items (0: all) after `start_after`, in key order."""
    lo, hi = snap.namespace_range(namespace)
    if start_after is not None:
        lo = max(lo, bisect.bisect_right(snap.keys, start_after))
    if predicate is None:
        end = hi if limit <= 0 else min(hi, lo + limit)
        items = [e.item for e in snap.entries[lo:end]]
        more = end < hi
        return Page(items, snap.keys[end - 1] if more else None, hi - end if more else None)
    items = []
    i = lo
    while i < hi and (limit <= 0 or len(items) < limit):
        e = snap.entries[i]
        if predicate(e.obj):
            items.append(e.item)
        i += 1
    more = i < hi
    return Page(items, snap.keys[i - 1] if more else None, None)


class InvalidContinue(ValueError):
    """A continue token this server never issued: 400 BadRequest."""


@dataclass(frozen=True)
class ContinueToken:
    """The real server's format (base64url JSON {"v", "rv", "start"}) plus issue time and page number."""

    rv: int
    start: Key
    issued: float
    page: int

    def encode(self) -> str:
        raw = orjson.dumps(
            {
                "v": "meta.k8s.io/v1",
                "rv": self.rv,
                "start": f"{self.start[0]}/{self.start[1]}\x00",
                "t": self.issued,
                "p": self.page,
            }
        )
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, token: str) -> ContinueToken:
        try:
            data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if data.get("v") != "meta.k8s.io/v1":
                raise ValueError
            ns, _, name = data["start"].rstrip("\x00").rpartition("/")
            return cls(int(data["rv"]), (ns, name), float(data.get("t", 0.0)), int(data.get("p", 2)))
        except Exception:
            raise InvalidContinue(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
            ) from None


class ResourceHistory:
    """The current snapshot of one resource and the superseded ones still reachable by tokens."""

    def __init__(self, rtype: ResourceType, first: Snapshot) -> None:
        self.rtype = rtype
        self._snaps: list[tuple[Snapshot, float]] = [(first, float("inf"))]

    @property
    def current(self) -> Snapshot:
        return self._snaps[-1][0]

    def at(self, rv: int) -> Snapshot | None:
        """The snapshot a list pinned at cluster revision `rv` saw, if not yet compacted."""
        for snap, _ in reversed(self._snaps):
            if snap.rv <= rv:
                return snap
        return None

    def push(self, snap: Snapshot, now: float, keep_for: float) -> None:
        prev, _ = self._snaps[-1]
        self._snaps[-1] = (prev, now)
        self._snaps.append((snap, float("inf")))
        self._snaps = [(s, sup) for s, sup in self._snaps if now - sup <= keep_for]


class ClusterStore:
    """All resources of one cluster, under one etcd-like revision counter."""

    def __init__(
        self, served: dict[ResourceType, list[dict[str, Any]]], continue_ttl: float = 300.0, warm: bool = True
    ) -> None:
        self.continue_ttl = continue_ttl
        self._lock = threading.Lock()
        self.edit_lock = threading.RLock()
        """Held by a writer from reading the objects it changes to storing them (churn, deletes), so two
        writers do not change the same objects from the same old state."""
        rvs = [
            int(o.get("metadata", {}).get("resourceVersion") or 0)
            for objs in served.values()
            for o in objs
            if str(o.get("metadata", {}).get("resourceVersion") or "0").isdigit()
        ]
        self._revision = max(rvs, default=0) + 1
        self._by_key: dict[str, ResourceHistory] = {}
        for rtype, objs in served.items():
            snap = Snapshot.build(self._revision, [Entry.of(o, rtype.custom) for o in objs])
            self._by_key[rtype.key] = ResourceHistory(rtype, snap)
        self.warmed = threading.Event()
        if warm:
            threading.Thread(target=self._warm, name="kq-sim-serialize", daemon=True).start()
        else:
            self.warmed.set()

    def _warm(self) -> None:
        """Serialize every object once in the background, so serving can start before that is done."""
        for hist in list(self._by_key.values()):
            for entry in hist.current.entries:
                entry.item  # noqa: B018 - computes and caches the bytes
        self.warmed.set()

    @property
    def revision(self) -> int:
        return self._revision

    def history(self, rtype: ResourceType) -> ResourceHistory:
        return self._by_key[rtype.key]

    def find(self, rtype: ResourceType) -> ResourceHistory | None:
        """The resource's history, or None once it was dropped (its CRD deleted)."""
        return self._by_key.get(rtype.key)

    def drop(self, rtypes: list[ResourceType]) -> int:
        """Forget resources and their objects, as deleting a CRD does; returns the new revision."""
        with self._lock:
            by_key = dict(self._by_key)
            for rtype in rtypes:
                by_key.pop(rtype.key, None)
            self._by_key = by_key
            self._revision += 1
            return self._revision

    def add(self, served: dict[ResourceType, list[dict[str, Any]]]) -> int:
        """Serve new resources with these objects, as creating a CRD does; returns the new revision."""
        with self._lock:
            by_key = dict(self._by_key)
            self._revision += 1
            for rtype, objs in served.items():
                snap = Snapshot.build(self._revision, [Entry.of(o, rtype.custom) for o in objs])
                by_key[rtype.key] = ResourceHistory(rtype, snap)
            self._by_key = by_key
            return self._revision

    def begin_list(self, rtype: ResourceType) -> tuple[int, Snapshot]:
        with self._lock:
            return self._revision, self._by_key[rtype.key].current

    def objects(self) -> dict[str, list[dict[str, Any]]]:
        return {key: [e.obj for e in h.current.entries] for key, h in self._by_key.items()}

    def mutate(self, rtype: ResourceType) -> int:
        """Change one resource the way a live cluster does: one object modified, one deleted, one created.

        Returns the new revision. Tokens issued before keep paging through the old snapshot.
        """
        with self._lock:
            hist = self._by_key[rtype.key]
            entries = list(hist.current.entries)
            rev = self._revision
            if entries:
                rev += 1
                changed = copy.deepcopy(entries[0].obj)
                meta = changed.setdefault("metadata", {})
                meta.setdefault("labels", {})["kq-sim/mutated"] = str(rev)
                meta["resourceVersion"] = str(rev)
                entries[0] = Entry.of(changed, rtype.custom)
                born = copy.deepcopy(changed)
                rev += 1
                born["metadata"].update(
                    name=f"{changed['metadata']['name']}-sim{rev}",
                    uid=str(uuid.uuid4()),
                    resourceVersion=str(rev),
                )
                if len(entries) > 1:
                    entries.pop()
                entries.append(Entry.of(born, rtype.custom))
            rev += 1
            self._revision = rev
            hist.push(Snapshot.build(rev, entries), time.monotonic(), self.continue_ttl)
            return rev

    def commit(self, changes: Sequence[tuple[Key, Mapping[ResourceType, dict[str, Any] | None]]]) -> int:
        """Store many changes at once, as consecutive etcd writes: each change is one object (`Key`) at
        one or more versions (resource types), put (an object) or deleted (None), under its own revision,
        which is stamped into each put's resourceVersion. Readers see all or none of them (one new
        snapshot per resource, applied to the current one). Returns the new revision."""
        with self._lock:
            ops: dict[str, dict[Key, dict[str, Any] | None]] = {}
            for key, versions in changes:
                self._revision += 1
                for rtype, obj in versions.items():
                    if obj is not None:
                        obj.setdefault("metadata", {})["resourceVersion"] = str(self._revision)
                    ops.setdefault(rtype.key, {})[key] = obj
            now = time.monotonic()
            for rkey, by_key in ops.items():
                hist = self._by_key.get(rkey)
                if hist is None:  # its CRD was deleted meanwhile
                    continue
                entries = [e for e in hist.current.entries if e.key not in by_key]
                entries += [Entry.of(o, hist.rtype.custom) for o in by_key.values() if o is not None]
                hist.push(Snapshot.build(self._revision, entries), now, self.continue_ttl)
            return self._revision

    # --- writes (registration: create, token controller update, delete) -------------------------
    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        entry = self._by_key[rtype.key].current.get(namespace, name)
        return entry.obj if entry is not None else None

    def write(self, rtype: ResourceType, obj: dict[str, Any], *, create: bool) -> dict[str, Any] | None:
        """Store `obj` under a new revision: create (None if the name is taken) or replace (None if absent).

        Stamps resourceVersion (and uid, creationTimestamp on create) like the API server; returns the
        stored object.
        """
        with self._lock:
            hist = self._by_key[rtype.key]
            meta = obj.setdefault("metadata", {})
            key = (meta.get("namespace") or "", meta["name"])
            old = hist.current.get(*key)
            if (old is not None) == create:
                return None
            self._revision += 1
            meta["resourceVersion"] = str(self._revision)
            if create:
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            entries = [e for e in hist.current.entries if e.key != key]
            entries.append(Entry.of(obj, rtype.custom))
            hist.push(Snapshot.build(self._revision, entries), time.monotonic(), self.continue_ttl)
            return obj

    def delete(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            hist = self._by_key[rtype.key]
            old = hist.current.get(namespace, name)
            if old is None:
                return None
            self._revision += 1
            entries = [e for e in hist.current.entries if e.key != (namespace, name)]
            hist.push(Snapshot.build(self._revision, entries), time.monotonic(), self.continue_ttl)
            return old.obj
