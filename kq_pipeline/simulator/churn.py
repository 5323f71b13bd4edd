"""Churn: change a simulated cluster between two loads the way a live cluster changes.

Fleet history diffs each load against the previous one, so tests and the demo need clusters that
change like real ones: pods replaced (new uid, new name), deployments rolled to a new image and scaled,
objects deleted, nodes added and removed, each with what controllers do after it (controllers.py).
`churn()` touches about `fraction` of the objects in one commit and reports exactly which objects were
added, removed and modified, by uid, so a test can hold it against the pipeline's change feed. The same
seed on the same objects gives the same report.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from kq_pipeline.simulator.catalog import Catalog
from kq_pipeline.simulator.controllers import (
    CONTROL_PLANE,
    DEPLOYMENTS,
    NODES,
    PODS,
    Controllers,
)
from kq_pipeline.simulator.edits import Edit, Obj, ObjectRef, controller_of
from kq_pipeline.simulator.faults import resource_matches
from kq_pipeline.simulator.store import ClusterStore, Key

ACTIONS: dict[str, float] = {
    "replace_pod": 0.40,
    "roll": 0.12,
    "scale": 0.12,
    "delete": 0.13,
    "create": 0.13,
    "node": 0.10,
}
"""How often each kind of change is drawn ("node" adds or removes one). Deletes and creates balance,
and so do node additions and removals, so a fleet churned for hours keeps its size."""
NAMED_ACTIONS = ("delete", "replace_pod", "roll", "scale", "add_node", "remove_node")
"""What churn_action (and POST /_sim/churn with an "action") can do."""
REPLACEABLE = frozenset({"ReplicaSet", "DaemonSet", "StatefulSet"})
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
NOT_DELETED = frozenset(
    {
        "v1/pods",  # replaced instead
        "v1/endpoints",  # the endpoints controller's
        "v1/persistentvolumeclaims",  # protected while a pod uses them
        "v1/serviceaccounts",  # a token or binding may name them (the pipeline's own reader)
        "rbac.authorization.k8s.io/v1/roles",
        "rbac.authorization.k8s.io/v1/rolebindings",
        "apps/v1/replicasets",  # their deployment would recreate them
        # Workloads live long; churn rolls and scales them (delete one by name: churn_action, kubectl).
        "apps/v1/deployments",
        "apps/v1/statefulsets",
        "apps/v1/daemonsets",
        "batch/v1/cronjobs",
        "batch/v1/jobs",
    }
)
CREATED = frozenset(
    {
        "v1/configmaps",
        "v1/secrets",
        "events.k8s.io/v1/events",
        "networking.k8s.io/v1/networkpolicies",
        "networking.k8s.io/v1/ingresses",
    }
)
"""Kinds churn creates new objects of: a copy of an app's object under a new name, as a new release or a
new event would add."""
MAX_MISSES = 64
"""Draws in a row that find nothing to change (within the budget) before churn stops short."""


class ChurnTarget(Protocol):
    """A cluster's objects and what it serves: SimulatedCluster and ClusterApi both qualify."""

    name: str
    store: ClusterStore
    catalog: Catalog


@dataclass(frozen=True)
class ChurnReport:
    """What one churn step changed. `objects`: distinct objects before it; `revision`: the store's after."""

    cluster: str
    fraction: float
    objects: int
    revision: int
    actions: dict[str, int]
    added: tuple[ObjectRef, ...]
    removed: tuple[ObjectRef, ...]
    modified: tuple[ObjectRef, ...]

    @property
    def touched(self) -> int:
        return len({r.uid for r in (*self.added, *self.removed, *self.modified)})

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "fraction": self.fraction,
            "objects": self.objects,
            "touched": self.touched,
            "revision": self.revision,
            "actions": dict(self.actions),
            "added": [r.as_dict() for r in self.added],
            "removed": [r.as_dict() for r in self.removed],
            "modified": [r.as_dict() for r in self.modified],
        }


def churn(target: ChurnTarget, fraction: float, rng: random.Random, *, now: int | None = None) -> ChurnReport:
    """Change about `fraction` (0.05 = 5 %) of the cluster's objects at once, as a live cluster would
    between two loads; `now` (epoch seconds) dates new objects (default: the wall clock)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
    with target.store.edit_lock:
        step = _Step(target, rng, now)
        budget = round(fraction * step.objects)
        misses = 0
        while step.edit.changed < budget and misses < MAX_MISSES:
            action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
            if step.run(action, budget - step.edit.changed):
                misses = 0
            else:
                misses += 1
        return step.commit(fraction)


def churn_action(
    target: ChurnTarget, action: str, *, seed: Any = None, now: int | None = None, **params: Any
) -> ChurnReport:
    """One named change, for tests that need a precise one (ValueError if it cannot be made):
    "delete" (resource, namespace, name), "replace_pod" (namespace, name), "roll" (namespace, name,
    optional image), "scale" (namespace, name, replicas), "add_node", "remove_node" (optional name)."""
    with target.store.edit_lock:
        step = _Step(target, random.Random(seed), now)
        step.explicit(action, **params)
        return step.commit(0.0)


class _Step:
    """One churn step: the edit, the controllers acting on it, and the objects it may draw from."""

    def __init__(self, target: ChurnTarget, rng: random.Random, now: int | None) -> None:
        self.name = target.name
        self.rng = rng
        self.edit = Edit(target.store, target.catalog)
        self.ctl = Controllers(self.edit, target.name, rng, int(time.time()) if now is None else now)
        self.actions: dict[str, int] = {}
        self.objects = 0
        self._deletable: list[tuple[str, Key]] = []
        for rtype in self.edit.resources():
            objs = self.edit.items(rtype.key)
            self.objects += sum(1 for o in objs if _uid(o))
            if rtype.namespaced and rtype.key not in NOT_DELETED:
                self._deletable += [(rtype.key, _key(o)) for o in objs if _deletable(rtype.key, o)]
        self._templates = [(k, key) for k, key in self._deletable if k in CREATED]
        pods = [p for p in self.edit.items(PODS) if _replaceable(p)]
        self._pods = [_key(p) for p in pods]
        self._pod_uids = {_uid(p) for p in pods}
        self._deployments = [_key(d) for d in self.edit.items(DEPLOYMENTS)]

    def commit(self, fraction: float) -> ChurnReport:
        changes = self.edit.commit()
        return ChurnReport(
            self.name,
            fraction,
            self.objects,
            changes.revision,
            self.actions,
            changes.added,
            changes.removed,
            changes.modified,
        )

    def run(self, action: str, budget: int) -> bool:
        """Make one change of kind `action` costing at most about `budget` objects; False if none."""
        done = getattr(self, f"_{action}")(budget)
        if done:
            self.ctl.reconcile()
            self.actions[done] = self.actions.get(done, 0) + 1
        return bool(done)

    def _pick(self, key: str, pool: list[Key]) -> Obj | None:
        """A random object of `pool` as it is now (None if it is gone meanwhile)."""
        return self.edit.get(key, *self.rng.choice(pool)) if pool else None

    # --- the kinds of change, drawn with ACTIONS' weights -----------------------------------------
    def _replace_pod(self, budget: int) -> str | None:
        pod = self._pick(PODS, self._pods)
        if pod is None or _uid(pod) not in self._pod_uids:  # gone, or already a replacement
            return None
        self.ctl.replace_pod(pod)
        return "replace_pod"

    def _roll(self, budget: int) -> str | None:
        dep = self._pick(DEPLOYMENTS, self._deployments)
        replicas = (dep or {}).get("spec", {}).get("replicas", 0)
        if dep is None or not replicas or 2 * replicas + 4 > max(budget, 6):
            return None
        return "roll" if self.ctl.roll(dep) is not None else None

    def _scale(self, budget: int) -> str | None:
        dep = self._pick(DEPLOYMENTS, self._deployments)
        if dep is None or not self.ctl.replica_sets(dep):
            return None
        replicas = dep["spec"].get("replicas", 1)
        step = self.rng.choice((1, 1, 2))
        wanted = replicas + step if replicas <= 1 or self.rng.random() < 0.5 else replicas - step
        hpa = self.ctl.hpa_of(dep)
        if hpa is not None:
            wanted = min(max(wanted, hpa["spec"].get("minReplicas", 1)), hpa["spec"]["maxReplicas"])
        if wanted == replicas or abs(wanted - replicas) + 4 > max(budget, 5):
            return None
        self.ctl.scale(dep, wanted)
        return "scale"

    def _delete(self, budget: int) -> str | None:
        if not self._deletable:
            return None
        rkey, k = self.rng.choice(self._deletable)
        obj = self.edit.get(rkey, *k)
        if obj is None or 1 + _cascade_size(self.edit, obj) > max(budget, 1):
            return None
        self.ctl.deleted(self.edit.delete(rkey, *k))
        return "delete"

    def _create(self, budget: int) -> str | None:
        if not self._templates:
            return None
        rkey, (ns, name) = self.rng.choice(self._templates)
        source = self.edit.get(rkey, ns, name)
        if source is None:
            return None
        self.ctl.copy(rkey, source)
        return "create"

    def _node(self, budget: int) -> str | None:
        """As the cluster autoscaler: remove an underutilized worker (fewest workload pods, under half the
        mean) if there is one, else add a node."""
        workers = [
            n for n in self.edit.items(NODES) if CONTROL_PLANE not in (n["metadata"].get("labels") or {})
        ]
        load = {
            n["metadata"]["name"]: self.edit.count(PODS, "workload-node", n["metadata"]["name"])
            for n in workers
        }
        least = min(load.values(), default=0)
        if len(workers) > 2 and least < sum(load.values()) / len(load) / 2:
            node = self.rng.choice([n for n in workers if load[n["metadata"]["name"]] == least])
            if 2 * len(self.edit.find(PODS, "node", node["metadata"]["name"])) + 2 > max(budget, 4):
                return None
            self.ctl.remove_node(node)
            return "remove_node"
        if len(self.edit.items("apps/v1/daemonsets")) + 2 > max(budget, 3):
            return None
        self.ctl.add_node()
        return "add_node"

    # --- named changes ----------------------------------------------------------------------------
    def explicit(self, action: str, **params: Any) -> None:
        ns, name = params.get("namespace", ""), params.get("name", "")
        if action == "delete":
            gone = self.edit.delete(self._resource(str(params.get("resource", ""))), ns, name)
            if not gone:
                raise ValueError(f"no {params.get('resource')} {ns + '/' if ns else ''}{name}")
            self.ctl.deleted(gone)
        elif action == "replace_pod":
            self.ctl.replace_pod(self._need(PODS, ns, name))
        elif action == "roll":
            if self.ctl.roll(self._need(DEPLOYMENTS, ns, name), params.get("image")) is None:
                raise ValueError(f"deployment {ns}/{name} has no ReplicaSet")
        elif action == "scale":
            if int(params["replicas"]) < 0:
                raise ValueError("replicas must be >= 0")
            self.ctl.scale(self._need(DEPLOYMENTS, ns, name), int(params["replicas"]))
        elif action == "add_node":
            self.ctl.add_node()
        elif action == "remove_node":
            nodes = [
                n for n in self.edit.items(NODES) if CONTROL_PLANE not in n["metadata"].get("labels", {})
            ]
            node = self._need(NODES, "", name) if name else (nodes[-1] if nodes else None)
            if node is None:
                raise ValueError("no worker node to remove")
            self.ctl.remove_node(node)
        else:
            raise ValueError(f"unknown churn action {action!r}; one of {', '.join(NAMED_ACTIONS)}")
        self.ctl.reconcile()
        self.actions[action] = 1

    def _need(self, key: str, ns: str, name: str) -> Obj:
        obj = self.edit.get(key, ns, name)
        if obj is None:
            raise ValueError(f"no {key} {ns + '/' if ns else ''}{name}")
        return obj

    def _resource(self, selector: str) -> str:
        for rtype in self.edit.resources():
            if resource_matches(selector, rtype):
                return rtype.key
        for rtype in self.edit.catalog.types:
            if resource_matches(selector, rtype):
                return self.edit.canonical(rtype.key) or rtype.key
        raise ValueError(f"no resource {selector!r}")


def _key(obj: Obj) -> Key:
    md = obj["metadata"]
    return md.get("namespace") or "", md["name"]


def _uid(obj: Obj) -> str:
    return obj["metadata"].get("uid", "")


def _replaceable(pod: Obj) -> bool:
    ref = controller_of(pod)
    return ref is not None and ref.get("kind") in REPLACEABLE and pod["status"].get("phase") != "Succeeded"


def _deletable(key: str, obj: Obj) -> bool:
    """What churn may delete: app namespaces' objects no controller owns, and not the cluster's plumbing."""
    md = obj["metadata"]
    if md.get("namespace") in SYSTEM_NAMESPACES or controller_of(obj) is not None:
        return False
    if key == "v1/configmaps" and md["name"] == "kube-root-ca.crt":
        return False
    if key == "v1/services" and md["name"] == "kubernetes":
        return False
    return not (key == "v1/secrets" and obj.get("type") == "kubernetes.io/service-account-token")


def _cascade_size(edit: Edit, obj: Obj) -> int:
    return sum(1 + _cascade_size(edit, dep) for _, dep in edit.dependents(obj))


class ChurnLoop:
    """Churns clusters every `interval` seconds in a daemon thread, until `stop()`.

    Each cluster draws from its own stream, seeded by (seed, cluster name): a run is reproducible as
    long as nothing else changes the clusters."""

    def __init__(
        self,
        clusters: Callable[[], Iterable[ChurnTarget]],
        fraction: float,
        interval: float = 60.0,
        seed: int = 0,
        on_round: Callable[[list[ChurnReport]], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the churn interval must be positive")
        self.clusters = clusters
        self.fraction = fraction
        self.interval = interval
        self.seed = seed
        self.on_round = on_round
        self.rounds = 0
        self._rngs: dict[str, random.Random] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kq-sim-churn", daemon=True)

    def __repr__(self) -> str:
        return f"ChurnLoop(fraction={self.fraction}, interval={self.interval}, rounds={self.rounds})"

    def start(self) -> ChurnLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def run_once(self) -> list[ChurnReport]:
        reports = []
        for target in self.clusters():
            rng = self._rngs.setdefault(target.name, random.Random(f"kq-sim-churn:{self.seed}:{target.name}"))
            reports.append(churn(target, self.fraction, rng))
        self.rounds += 1
        return reports

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            reports = self.run_once()
            if self.on_round is not None:
                self.on_round(reports)
