"""Shared state of one generation run: the seeded random stream, uids, clocks and metadata.

Everything random is drawn from one `random.Random` seeded by (cluster name, seed), in a fixed
order, which is what makes two runs with the same spec byte-identical.
"""

from __future__ import annotations

import random
import time
from typing import Any

from kq_pipeline.simulator.objects.spec import ClusterSpec

Obj = dict[str, Any]

NOW = 1748779200  # 2025-06-01T12:00:00Z: the simulated "now"; all timestamps are before it.
CLUSTER_AGE = 400 * 86400
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of Kubernetes' generated name suffixes

# Legal but awkward values for Go-JSON escaping tests: HTML-escaped characters, U+2028, non-ASCII.
HOSTILE_ANNOTATIONS: dict[str, str] = {
    "kq.example.com/html": "<b>a & b</b> > c",
    "kq.example.com/line-separator": "before\u2028after\u2029end",
    "kq.example.com/unicode": "Zürich — 東京 — emoji 🚀",
}
HOSTILE_LABELS: dict[str, str] = {"kq.example.com/city": "Zürich"}
HOSTILE_EVERY = 29
"""One object in this many carries the hostile annotations (and some the hostile label)."""


_DAYS: dict[int, str] = {}


def ts(seconds: int) -> str:
    """RFC 3339 UTC with whole seconds, as metav1.Time marshals (day prefix cached: called ~300k times)."""
    day, rest = divmod(seconds, 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{prefix}{h:02d}:{m:02d}:{s:02d}Z"


def micro_ts(seconds: int, micros: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


class Ctx:
    """The generator's state; builders draw from it in a fixed order."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.cluster = spec.name
        self.rng = random.Random(f"kq-sim:{spec.name}:{spec.seed}")
        self.born = NOW - CLUSTER_AGE
        self._rv = 1000
        self._objects = 0
        self._secret_n = 0
        self._used_names: set[tuple[str, str, str]] = set()
        self.out: dict[str, list[Obj]] = {}
        # Cross-references recorded by workloads, resolved by the config/storage builders.
        self.configmaps_wanted: dict[tuple[str, str], None] = {}
        self.secrets_wanted: dict[tuple[str, str], str] = {}
        self.service_accounts: dict[tuple[str, str], None] = {}
        self.pods_by_app: dict[tuple[str, str], list[Obj]] = {}
        self.claims: list[tuple[str, str, str | None, str]] = []
        """(namespace, claim name, node name, size) of every stateful-set volume claim."""
        self._pod_ips = 0
        self.frozen_specs: dict[int, bytes] = {}

    def pod_ip(self) -> str:
        self._pod_ips += 1
        k = self._pod_ips
        return f"100.{64 + k // 62500}.{(k // 250) % 250}.{k % 250 + 2}"

    # -- randomness -------------------------------------------------------------------------
    def uid(self) -> str:
        """A random (version 4) UUID from the seeded stream."""
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def suffix(self, n: int = 5) -> str:
        bits = self.rng.getrandbits(8 * n)
        return "".join([NAME_CHARS[(bits >> (8 * i) & 255) % 27] for i in range(n)])

    def hexstr(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def unique(self, kind: str, namespace: str, make: Any) -> str:
        """A name from make() not yet used for this kind in this namespace (numbered if make() runs dry)."""
        name = make()
        attempt = 0
        while (kind, namespace, name) in self._used_names:
            attempt += 1
            name = make() if attempt < 4 else f"{name.rsplit('-', 1)[0]}-{attempt}"
        self._used_names.add((kind, namespace, name))
        return name

    def created(self, after: int | None = None) -> int:
        lo = self.born if after is None else after
        return self.rng.randrange(lo, max(lo + 1, NOW - 60))

    def secret_value(self) -> str:
        self._secret_n += 1
        return f"kq-secret-{self.cluster}-{self._secret_n}"  # config.SECRET_PREFIX

    # -- objects ----------------------------------------------------------------------------
    def meta(
        self,
        name: str,
        namespace: str | None = None,
        *,
        created: int | None = None,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        owner: Obj | None = None,
        generation: int | None = None,
        finalizers: list[str] | None = None,
    ) -> Obj:
        self._rv += self.rng.randrange(1, 40)
        self._objects += 1
        md: Obj = {"name": name}
        if namespace is not None:
            md["namespace"] = namespace
        md["uid"] = self.uid()
        md["resourceVersion"] = str(self._rv)
        if generation is not None:
            md["generation"] = generation
        md["creationTimestamp"] = ts(self.created() if created is None else created)
        if self._objects % HOSTILE_EVERY == 0:
            labels = {
                **(labels or {}),
                **(HOSTILE_LABELS if self._objects % (HOSTILE_EVERY * 3) == 0 else {}),
            }
            annotations = {**(annotations or {}), **HOSTILE_ANNOTATIONS}
        if labels:
            md["labels"] = dict(labels)
        if annotations:
            md["annotations"] = dict(annotations)
        if owner is not None:
            md["ownerReferences"] = [dict(owner)]
        if finalizers:
            md["finalizers"] = finalizers
        return md

    def add(self, key: str, obj: Obj) -> Obj:
        self.out.setdefault(key, []).append(obj)
        return obj


def owner_ref(obj: Obj, *, controller: bool = True) -> Obj:
    md = obj["metadata"]
    ref: Obj = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": md["name"], "uid": md["uid"]}
    if controller:
        ref["controller"] = True
        ref["blockOwnerDeletion"] = True
    return ref
