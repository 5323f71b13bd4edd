"""What Kubernetes' controllers do after a change, done at once inside one `Edit`.

A real cluster never changes one object alone: a replaced pod changes its service's Endpoints, a rolled
Deployment gets a new ReplicaSet whose pods carry the new image, a removed node takes its pods (which
their controllers recreate elsewhere) and its CSINode with it. `Controllers` makes those changes with
the object generators (objects/), so new pods and nodes look like generated ones, then brings the
owners' status counters and the Endpoints up to date (`reconcile`).
"""

from __future__ import annotations

import random
from typing import Any

from kq_pipeline.simulator.edits import Edit, Obj, controller_of, copy_of, owner_uids
from kq_pipeline.simulator.objects import cluster as node_gen
from kq_pipeline.simulator.objects import network, podspec, storage
from kq_pipeline.simulator.objects.ctx import Ctx, owner_ref, ts
from kq_pipeline.simulator.objects.spec import ClusterSpec
from kq_pipeline.simulator.objects.workloads import daemon_set_status

PODS, NODES, ENDPOINTS, SERVICES = "v1/pods", "v1/nodes", "v1/endpoints", "v1/services"
DEPLOYMENTS, REPLICASETS = "apps/v1/deployments", "apps/v1/replicasets"
DAEMONSETS, STATEFULSETS, JOBS = "apps/v1/daemonsets", "apps/v1/statefulsets", "batch/v1/jobs"
CSINODES, ATTACHMENTS = "storage.k8s.io/v1/csinodes", "storage.k8s.io/v1/volumeattachments"
HPAS = "autoscaling/v1/horizontalpodautoscalers"
OWNER_KEYS = {"ReplicaSet": REPLICASETS, "DaemonSet": DAEMONSETS, "StatefulSet": STATEFULSETS, "Job": JOBS}
CONTROLLER_LABELS = (
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
)
"""Labels a controller puts on its pods besides the template's: a replacement carries them over."""
REVISION = "deployment.kubernetes.io/revision"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


def _meta(obj: Obj) -> dict[str, Any]:
    return obj["metadata"]


def _nonzero(fields: dict[str, int]) -> dict[str, int]:
    """Status counters as the API server writes them: zero counts are omitted (omitempty)."""
    return {k: v for k, v in fields.items() if v}


def revision(rs: Obj) -> int:
    value = (_meta(rs).get("annotations") or {}).get(REVISION, "0")
    return int(value) if value.isdigit() else 0


def next_image(image: str) -> str:
    """The next release of `image`: "repo/app:3.14.0" → "repo/app:3.15.0" (other tags get "-2")."""
    base = image.split("@", 1)[0]
    repo, sep, tag = base.rpartition(":")
    if not sep or "/" in tag:
        return f"{base}:2"
    parts = tag.split(".")
    if len(parts) >= 2 and parts[1].isdigit():
        parts[1] = str(int(parts[1]) + 1)
        return f"{repo}:{'.'.join(parts)}"
    return f"{repo}:{tag}-2"


class Controllers:
    """Controller behaviour on top of an Edit; call `reconcile()` after each change to keep the owners'
    status and the Endpoints consistent with the pods."""

    def __init__(self, edit: Edit, cluster: str, rng: random.Random, now: int) -> None:
        self.edit = edit
        self.rng = rng
        self.now = now
        self.ctx = Ctx(ClusterSpec(name=cluster, pods=0))
        self.ctx.rng = rng  # the generators draw from the churn's seeded stream
        for key, index, values in (
            (PODS, "owner", owner_uids),
            (PODS, "node", lambda p: [p["spec"].get("nodeName") or ""]),
            (PODS, "labels", _label_values),
            (PODS, "workload-node", _workload_node),
            (REPLICASETS, "owner", owner_uids),
        ):
            if edit.canonical(key) == key:
                edit.add_index(key, index, values)
        self._ips: set[str] | None = None
        self._workers: list[Obj] | None = None
        self._owners: dict[tuple[str, str, str], None] = {}
        self._pod_labels: dict[str, list[dict[str, str]]] = {}

    def __repr__(self) -> str:
        return f"Controllers(edit={self.edit!r})"

    # --- pods -----------------------------------------------------------------------------------
    def _pod_ip(self) -> str:
        if self._ips is None:
            self._ips = {(p.get("status") or {}).get("podIP", "") for p in self.edit.items(PODS)}
        ip = self.ctx.pod_ip()
        while ip in self._ips:
            ip = self.ctx.pod_ip()
        self._ips.add(ip)
        return ip

    def _touch_pod(self, pod: Obj) -> None:
        ref = controller_of(pod)
        if ref is not None and ref.get("kind") in OWNER_KEYS:
            self._owners[(OWNER_KEYS[ref["kind"]], _meta(pod)["namespace"], ref["name"])] = None
        self._pod_labels.setdefault(_meta(pod)["namespace"], []).append(_meta(pod).get("labels") or {})

    def workers(self, avoid: str | None = None) -> list[Obj]:
        """Nodes the scheduler places workload pods on: not the control plane, not cordoned."""
        if self._workers is None:
            nodes = self.edit.items(NODES)
            ok = [
                n
                for n in nodes
                if CONTROL_PLANE not in (_meta(n).get("labels") or {}) and not n["spec"].get("unschedulable")
            ]
            self._workers = ok or nodes
        return [n for n in self._workers if _meta(n)["name"] != avoid] or self._workers

    def new_pod(
        self,
        owner: Obj,
        template: Obj,
        node: Obj | None,
        *,
        name: str | None = None,
        extra_labels: dict[str, str] | None = None,
        extra_volumes: list[Obj] | None = None,
    ) -> Obj:
        """A Running pod of `owner` from `template` on `node` (None: a random worker), named like its
        controller names them ("<owner>-<5 chars>") unless `name` is given."""
        ns, ctx = _meta(owner)["namespace"], self.ctx
        if name is None:
            name = f"{_meta(owner)['name']}-{ctx.suffix()}"
            while self.edit.get(PODS, ns, name) is not None:
                name = f"{_meta(owner)['name']}-{ctx.suffix()}"
        if node is None:
            node = self.rng.choice(self.workers())
        ctx.frozen_specs.clear()  # keyed by id(template): the templates here are short-lived
        pod = podspec.pod(
            ctx,
            template,
            name,
            ns,
            owner=owner_ref(owner),
            node=node,
            pod_ip=self._pod_ip(),
            created=self.now,
            extra_labels=extra_labels,
            extra_volumes=extra_volumes,
        )
        self.edit.put(PODS, pod)
        self._touch_pod(pod)
        return pod

    def deleted(self, gone: list[tuple[str, Obj]]) -> None:
        """Tell the controllers about objects deleted directly (an Edit.delete): pods among them count."""
        for key, obj in gone:
            if key == PODS:
                self._touch_pod(obj)

    def remove_pod(self, pod: Obj) -> None:
        self.edit.delete(PODS, _meta(pod)["namespace"], _meta(pod)["name"])
        self._touch_pod(pod)

    def replace_pod(self, pod: Obj, avoid_node: str | None = None) -> Obj | None:
        """Delete `pod` and let its controller create the replacement: a new uid, a new name (a stateful
        set's keeps its ordinal name), the same owner and spec. A daemon-set pod stays on its node (none
        if that is `avoid_node`); a replica-set or job pod goes to any worker. Returns the new pod."""
        self.remove_pod(pod)
        ref = controller_of(pod)
        md = _meta(pod)
        if ref is None or ref.get("kind") not in OWNER_KEYS:
            return None  # a bare pod: nobody recreates it
        owner = self.edit.get(OWNER_KEYS[ref["kind"]], md["namespace"], ref["name"])
        if owner is None or _meta(owner).get("uid") != ref.get("uid"):
            return None  # its controller is gone
        kind = owner["kind"]
        node_name = pod["spec"].get("nodeName")
        if kind == "DaemonSet" and node_name == avoid_node:
            return None
        node = None
        if kind in ("DaemonSet", "StatefulSet") and node_name != avoid_node:
            node = self.edit.get(NODES, "", node_name or "")
        if node is None and kind == "DaemonSet":
            return None
        if node is None:
            node = self.rng.choice(self.workers(avoid_node))
        labels = md.get("labels") or {}
        return self.new_pod(
            owner,
            owner["spec"]["template"],
            node,
            name=md["name"] if kind == "StatefulSet" else None,
            extra_labels={k: labels[k] for k in CONTROLLER_LABELS if k in labels},
            extra_volumes=[v for v in pod["spec"].get("volumes") or () if "persistentVolumeClaim" in v]
            if kind == "StatefulSet"
            else None,
        )

    def copy(self, key: str, source: Obj) -> Obj:
        """A new object like `source` (same namespace, data, labels) named "<source>-<5 chars>"."""
        obj = copy_of(source)
        md, ns = _meta(obj), _meta(source).get("namespace") or ""
        name = f"{_meta(source)['name']}-{self.ctx.suffix()}"
        while self.edit.get(key, ns, name) is not None:
            name = f"{_meta(source)['name']}-{self.ctx.suffix()}"
        for stale in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
            md.pop(stale, None)
        fresh = self.ctx.meta(name, ns or None, created=self.now, generation=_meta(source).get("generation"))
        obj["metadata"] = {**fresh, **{k: v for k, v in md.items() if k not in fresh and k != "name"}}
        return self.edit.put(key, obj)

    # --- deployments ----------------------------------------------------------------------------
    def replica_sets(self, dep: Obj) -> list[Obj]:
        return sorted(self.edit.find(REPLICASETS, "owner", _meta(dep)["uid"]), key=revision)

    def roll(self, dep: Obj, image: str | None = None) -> Obj | None:
        """A new image for the deployment's first container, rolled out as the deployment controller does:
        a new ReplicaSet (revision + 1) with all the replicas, the old ones scaled to 0 and their pods
        replaced by the new ReplicaSet's. Returns the new ReplicaSet (None: the deployment has none)."""
        rsets = self.replica_sets(dep)
        if not rsets:
            return None
        current, ctx, ns = rsets[-1], self.ctx, _meta(dep)["namespace"]
        dep = copy_of(dep)
        md, spec = _meta(dep), dep["spec"]
        first = spec["template"]["spec"]["containers"][0]
        first["image"] = image or next_image(first["image"])
        rev = revision(current) + 1
        md["generation"] = md.get("generation", 1) + 1
        md.setdefault("annotations", {})[REVISION] = str(rev)
        self.edit.put(DEPLOYMENTS, dep)
        phash = ctx.suffix(10)
        while self.edit.get(REPLICASETS, ns, f"{md['name']}-{phash}") is not None:
            phash = ctx.suffix(10)
        template = copy_of(spec["template"])
        template["metadata"].setdefault("labels", {})["pod-template-hash"] = phash
        replicas = spec.get("replicas", 1)
        selector = {**current["spec"]["selector"]["matchLabels"], "pod-template-hash": phash}
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": ctx.meta(
                f"{md['name']}-{phash}",
                ns,
                created=self.now,
                generation=1,
                labels={**(_meta(current).get("labels") or {}), "pod-template-hash": phash},
                owner=owner_ref(dep),
                annotations={
                    "deployment.kubernetes.io/desired-replicas": str(replicas),
                    "deployment.kubernetes.io/max-replicas": str(replicas + 1),
                    REVISION: str(rev),
                },
            ),
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template},
            "status": {"replicas": 0},
        }
        self.edit.put(REPLICASETS, rs)
        self._owners[(REPLICASETS, ns, _meta(rs)["name"])] = None
        for old in rsets:
            for pod in self.edit.find(PODS, "owner", _meta(old)["uid"]):
                self.remove_pod(pod)
            if old["spec"].get("replicas"):
                old = copy_of(old)
                old["spec"]["replicas"] = 0
                _meta(old)["generation"] = _meta(old).get("generation", 1) + 1
                self.edit.put(REPLICASETS, old)
        for _ in range(replicas):
            self.new_pod(rs, template, None)
        limit = spec.get("revisionHistoryLimit", 10)
        for old in rsets[: max(0, len(rsets) - limit)]:
            self.edit.delete(REPLICASETS, ns, _meta(old)["name"])
        return rs

    def scale(self, dep: Obj, replicas: int) -> None:
        """Set the deployment's replicas (and its newest ReplicaSet's), adding or removing pods; an HPA
        targeting it records the scale, as when the HPA did it."""
        rsets = self.replica_sets(dep)
        if not rsets:
            return
        dep, rs = copy_of(dep), copy_of(rsets[-1])
        ns = _meta(dep)["namespace"]
        for obj in (dep, rs):
            obj["spec"]["replicas"] = replicas
            _meta(obj)["generation"] = _meta(obj).get("generation", 1) + 1
        _meta(rs).setdefault("annotations", {}).update(
            {
                "deployment.kubernetes.io/desired-replicas": str(replicas),
                "deployment.kubernetes.io/max-replicas": str(replicas + 1),
            }
        )
        self.edit.put(DEPLOYMENTS, dep)
        self.edit.put(REPLICASETS, rs)
        self._owners[(REPLICASETS, ns, _meta(rs)["name"])] = None
        pods = self.edit.find(PODS, "owner", _meta(rs)["uid"])
        for _ in range(replicas - len(pods)):
            self.new_pod(rs, rs["spec"]["template"], None)
        if len(pods) > replicas:  # the ReplicaSet controller deletes pending pods first
            pending = [p for p in pods if p["status"].get("phase") != "Running"]
            running = [p for p in pods if p["status"].get("phase") == "Running"]
            victims = (pending + self.rng.sample(running, len(running)))[: len(pods) - replicas]
            for pod in victims:
                self.remove_pod(pod)
        hpa = self.hpa_of(dep)
        if hpa is not None:
            hpa = copy_of(hpa)
            hpa["status"].update(
                currentReplicas=replicas, desiredReplicas=replicas, lastScaleTime=ts(self.now)
            )
            self.edit.put(HPAS, hpa)

    def hpa_of(self, dep: Obj) -> Obj | None:
        if self.edit.canonical(HPAS) != HPAS:
            return None
        for hpa in self.edit.items(HPAS, _meta(dep)["namespace"]):
            ref = hpa["spec"].get("scaleTargetRef") or {}
            if ref.get("kind") == "Deployment" and ref.get("name") == _meta(dep)["name"]:
                return hpa
        return None

    # --- nodes ----------------------------------------------------------------------------------
    def add_node(self) -> Obj:
        """A new worker node (numbered after the last one), its CSINode, and a pod of every DaemonSet."""
        nodes = self.edit.items(NODES)
        index = max((node_gen.node_index(_meta(n)["name"]) or 0 for n in nodes), default=0) + 1
        kubelet = next(
            (n["status"]["nodeInfo"]["kubeletVersion"] for n in reversed(nodes) if "nodeInfo" in n["status"]),
            "v1.29.3",
        )
        node = node_gen.node(self.ctx, index, kubelet, created=self.now)
        for cond in node["status"]["conditions"]:
            cond["lastHeartbeatTime"] = cond["lastTransitionTime"] = ts(self.now)
        self.edit.put(NODES, node)
        self._workers = None
        if self.edit.canonical(CSINODES) == CSINODES:
            self.edit.put(CSINODES, storage.csi_node(self.ctx, node, control=False, created=self.now))
        for ds in self.edit.items(DAEMONSETS):
            sample = next(iter(self.edit.find(PODS, "owner", _meta(ds)["uid"])), None)
            labels = (_meta(sample).get("labels") or {}) if sample is not None else {}
            extra = {k: labels[k] for k in CONTROLLER_LABELS if k in labels}
            self.new_pod(ds, ds["spec"]["template"], node, extra_labels=extra)
        return node

    def remove_node(self, node: Obj) -> None:
        """Delete `node` as a scale-down does: its daemon-set and finished pods go, the rest are recreated
        on other workers; its CSINode (owned by it) and volume attachments go too."""
        name = _meta(node)["name"]
        for pod in self.edit.find(PODS, "node", name):
            ref = controller_of(pod) or {}
            if ref.get("kind") in ("ReplicaSet", "StatefulSet") or (
                ref.get("kind") == "Job" and pod["status"].get("phase") == "Running"
            ):
                self.replace_pod(pod, avoid_node=name)
            else:
                self.remove_pod(pod)
        self.edit.delete(NODES, "", name)
        self._workers = None
        if self.edit.canonical(ATTACHMENTS) == ATTACHMENTS:
            for att in self.edit.items(ATTACHMENTS):
                if att["spec"].get("nodeName") == name:
                    self.edit.delete(ATTACHMENTS, "", _meta(att)["name"])

    # --- status and endpoints -------------------------------------------------------------------
    def reconcile(self) -> None:
        """Bring the touched controllers' status and the affected Endpoints up to date with the pods."""
        owners, self._owners = self._owners, {}
        deployments: dict[tuple[str, str], None] = {}
        for key, ns, name in owners:
            obj = self.edit.get(key, ns, name)
            if obj is None:
                continue
            pods = self.edit.find(PODS, "owner", _meta(obj)["uid"])
            status = self._status(key, obj, pods)
            if status is not None and status != obj.get("status"):
                obj = copy_of(obj)
                obj["status"] = status
                self.edit.put(key, obj)
            ref = controller_of(obj)
            if key == REPLICASETS and ref is not None and ref.get("kind") == "Deployment":
                deployments[(ns, ref["name"])] = None
        for ns, name in deployments:
            dep = self.edit.get(DEPLOYMENTS, ns, name)
            if dep is not None:
                self._deployment_status(dep)
        labels, self._pod_labels = self._pod_labels, {}
        for ns in sorted(labels):
            self._endpoints(ns, labels[ns])

    def _status(self, key: str, obj: Obj, pods: list[Obj]) -> dict[str, Any] | None:
        n = len(pods)
        ready = sum(p["status"].get("phase") == "Running" for p in pods)
        gen = _meta(obj).get("generation", 1)
        if key == REPLICASETS:
            counts = _nonzero({"fullyLabeledReplicas": n, "readyReplicas": ready, "availableReplicas": ready})
            return {"replicas": n} | counts | {"observedGeneration": gen}
        if key == DAEMONSETS:
            return daemon_set_status(n, ready, gen)
        if key == STATEFULSETS:
            status = {
                k: v
                for k, v in (obj.get("status") or {}).items()
                if k not in ("readyReplicas", "availableReplicas")
            }
            return status | {"replicas": n} | _nonzero({"readyReplicas": ready, "availableReplicas": ready})
        return None

    def _deployment_status(self, dep: Obj) -> None:
        rsets = self.replica_sets(dep)
        pods = [p for rs in rsets for p in self.edit.find(PODS, "owner", _meta(rs)["uid"])]
        updated = self.edit.find(PODS, "owner", _meta(rsets[-1])["uid"]) if rsets else []
        want = dep["spec"].get("replicas", 1)
        ready = sum(p["status"].get("phase") == "Running" for p in pods)
        status: dict[str, Any] = {"observedGeneration": _meta(dep).get("generation", 1)} | _nonzero(
            {
                "replicas": len(pods),
                "updatedReplicas": len(updated),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": max(0, want - ready),
            }
        )
        conditions = copy_of((dep.get("status") or {}).get("conditions") or [])
        avail = ready >= want
        for cond in conditions:
            if cond.get("type") == "Available" and (cond.get("status") == "True") != avail:
                cond.update(
                    status="True" if avail else "False",
                    reason="MinimumReplicasAvailable" if avail else "MinimumReplicasUnavailable",
                    message="Deployment has minimum availability."
                    if avail
                    else "Deployment does not have minimum availability.",
                    lastUpdateTime=ts(self.now),
                    lastTransitionTime=ts(self.now),
                )
            if cond.get("type") == "Progressing" and rsets:
                message = f'ReplicaSet "{_meta(rsets[-1])["name"]}" has successfully progressed.'
                if cond.get("message") != message:
                    cond.update(message=message, lastUpdateTime=ts(self.now))
        status["conditions"] = conditions
        if status != dep.get("status"):
            dep = copy_of(dep)
            dep["status"] = status
            self.edit.put(DEPLOYMENTS, dep)

    def _endpoints(self, ns: str, changed: list[dict[str, str]]) -> None:
        """Recompute the Endpoints of the services in `ns` that select any of the changed pods."""
        self.edit.add_index(SERVICES, "selector", _selector_values)
        candidates = {
            _meta(svc)["name"]: svc
            for labels in changed
            for k, v in labels.items()
            for svc in self.edit.find(SERVICES, "selector", f"{ns}\x00{k}={v}")
        }
        for _, svc in sorted(candidates.items()):
            selector = svc["spec"]["selector"]
            if not any(selector.items() <= labels.items() for labels in changed):
                continue
            ep = self.edit.get(ENDPOINTS, ns, _meta(svc)["name"])
            if ep is None:
                continue
            pods = self.edit.find(PODS, "labels", *(f"{ns}\x00{k}={v}" for k, v in selector.items()))
            ready, not_ready = network.endpoint_addresses(pods)
            subsets = ep.get("subsets") or []
            ports = subsets[0]["ports"] if subsets else _ports(svc, pods)
            want = [network.endpoint_subset(ready, not_ready, ports)] if ready or not_ready else []
            if _addresses(want) == _addresses(subsets):
                continue
            ep = copy_of(ep)
            if want:
                ep["subsets"] = want
            else:
                ep.pop("subsets", None)
            _meta(ep).setdefault("annotations", {})["endpoints.kubernetes.io/last-change-trigger-time"] = ts(
                self.now
            )
            self.edit.put(ENDPOINTS, ep)


def _label_values(pod: Obj) -> list[str]:
    """A pod's labels as "<namespace>\\0<key>=<value>": the pods a selector matches, from the index."""
    md = _meta(pod)
    return [f"{md['namespace']}\x00{k}={v}" for k, v in (md.get("labels") or {}).items()]


def _selector_values(svc: Obj) -> list[str]:
    md = _meta(svc)
    return [
        f"{md.get('namespace')}\x00{k}={v}"
        for k, v in ((svc.get("spec") or {}).get("selector") or {}).items()
    ]


def _workload_node(pod: Obj) -> list[str]:
    """The node of a pod that is not a daemon set's (the cluster autoscaler's measure of a node's load)."""
    if (controller_of(pod) or {}).get("kind") == "DaemonSet":
        return []
    return [pod["spec"].get("nodeName") or ""]


def _addresses(subsets: list[Obj]) -> list[tuple[str, str, bool]]:
    return sorted(
        (a["ip"], (a.get("targetRef") or {}).get("uid", ""), field == "addresses")
        for s in subsets
        for field in ("addresses", "notReadyAddresses")
        for a in s.get(field) or ()
    )


def _ports(svc: Obj, pods: list[Obj]) -> list[Obj]:
    """Endpoint ports for a service that had no endpoints yet: each port's target port as a number."""
    named = {
        p.get("name"): p.get("containerPort")
        for pod in pods[:1]
        for c in pod["spec"]["containers"]
        for p in c.get("ports") or ()
    }
    out = []
    for port in svc["spec"].get("ports") or ():
        target = port.get("targetPort", port.get("port"))
        number = target if isinstance(target, int) else named.get(target, port.get("port"))
        out.append({"name": port.get("name"), "port": number, "protocol": port.get("protocol", "TCP")})
    return out
