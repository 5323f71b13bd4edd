"""Controllers and their pods: deployments → replica sets → pods, daemon sets (a pod per node),
stateful sets, cron jobs → jobs → pods, bare pods and pod templates.

The pod budget (`spec.pods`) is spent exactly: daemon sets first, then a random mix of workloads
until nothing is left.
"""

from __future__ import annotations

import math

from kq_pipeline.simulator.objects import podspec
from kq_pipeline.simulator.objects import volumes as vol
from kq_pipeline.simulator.objects.ctx import NOW, Ctx, Obj, owner_ref, ts

WORDS = (
    "api",
    "web",
    "worker",
    "frontend",
    "backend",
    "auth",
    "billing",
    "catalog",
    "cart",
    "search",
    "indexer",
    "notifier",
    "gateway",
    "reporter",
    "exporter",
    "cache",
    "ledger",
    "profile",
    "orders",
    "media",
)
WORDS2 = ("svc", "v2", "server", "consumer", "sync", "ui", "grpc", "core", "edge", "jobs")
SYSTEM_DAEMON_SETS = (
    ("kube-system", "kube-proxy"),
    ("kube-system", "aws-node"),
    ("kube-system", "ebs-csi-node"),
    ("monitoring", "node-exporter"),
    ("logging", "fluent-bit"),
    ("monitoring", "datadog-agent"),
)
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
APPS_V1 = "apps/v1"


class Workloads:
    """Spends the pod budget over the namespaces and nodes."""

    def __init__(self, ctx: Ctx, namespaces: list[str], nodes: list[Obj]) -> None:
        self.ctx = ctx
        self.rng = ctx.rng
        self.nodes = nodes
        self.workers = nodes[1:] or nodes
        self.namespaces = namespaces
        apps = [n for n in namespaces if n not in SYSTEM_NAMESPACES and n != "default"] or ["default"]
        self.app_namespaces = apps
        self.ns_weights = [1 / math.sqrt(i + 1) for i in range(len(apps))]
        self.budget = ctx.spec.pods
        self._ds_revision = 0

    def run(self) -> None:
        ctx, rng = self.ctx, self.rng
        if self.budget > 0:
            self.bare_pod("default", "kq-volume-zoo", extra_volumes=vol.zoo("default"), ephemeral=True)
        self.pod_template("default", "volume-zoo", extra_volumes=vol.zoo("default"))
        for ns in self.namespaces[2::3]:
            self.pod_template(ns, self._app_name(ns))
        for i in range(ctx.spec.daemon_sets):  # type: ignore[arg-type]
            ns, name = (
                SYSTEM_DAEMON_SETS[i] if i < len(SYSTEM_DAEMON_SETS) else (self._pick_ns(), f"agent-{i}")
            )
            if ns not in self.namespaces:
                ns = "kube-system"
            self.daemon_set(ns, name, system=ns == "kube-system")
        if self.budget >= 2:
            self.deployment("kube-system", "coredns", 2, system=True)
        # One of each controller kind, so even a small cluster exercises every table.
        first = self.app_namespaces[0]
        if self.budget >= 2:
            self.stateful_set(first, 2)
        if self.budget >= 2:
            self.cron_job(first, 2)
        if self.budget >= 1:
            self.job(first, "db-migrate", None, False)
        while self.budget > 0:
            ns = self._pick_ns()
            r = rng.random()
            if r < 0.035:
                self.stateful_set(ns, min(self.budget, rng.randint(1, 3)))
            elif r < 0.075:
                self.cron_job(ns, min(self.budget, rng.randint(1, 3)))
            elif r < 0.09:
                self.job(ns, self._app_name(ns) + "-migrate", None, rng.random() < 0.3)
            elif r < 0.1:
                self.bare_pod(ns, f"debug-{ctx.suffix()}")
            else:
                mean = ctx.spec.pods_per_deployment
                replicas = min(self.budget, 6 * mean, max(1, round(rng.expovariate(1 / mean))))
                self.deployment(ns, self._app_name(ns), replicas)
            if rng.random() < 0.02:
                self.deployment(ns, self._app_name(ns), 0)

    # -- helpers ----------------------------------------------------------------------------
    def _pick_ns(self) -> str:
        return self.rng.choices(self.app_namespaces, self.ns_weights)[0]

    def _app_name(self, ns: str) -> str:
        rng = self.rng
        return self.ctx.unique("app", ns, lambda: f"{rng.choice(WORDS)}-{rng.choice(WORDS2)}")

    def _node(self) -> Obj:
        return self.rng.choice(self.workers)

    def _pods(
        self,
        tmpl: Obj,
        ns: str,
        names: list[str],
        owner: Obj | None,
        created: int,
        *,
        phase: str | None = None,
        nodes: list[Obj] | None = None,
        per_pod_volumes: list[list[Obj]] | None = None,
        extra_labels: list[dict[str, str]] | None = None,
        key: str,
    ) -> list[Obj]:
        ctx, rng = self.ctx, self.rng
        out = []
        for i, name in enumerate(names):
            node = nodes[i] if nodes is not None else self._node()
            ph = phase
            if ph is None:
                r = rng.random()
                ph = "Pending" if r < 0.012 else "Running"
                if ph == "Pending" and r < 0.004 and nodes is None:
                    node = None
            p = podspec.pod(
                ctx,
                tmpl,
                name,
                ns,
                owner=owner,
                node=node,
                pod_ip=ctx.pod_ip(),
                phase=ph,
                created=ctx.created(created),
                extra_labels=extra_labels[i] if extra_labels else None,
                extra_volumes=per_pod_volumes[i] if per_pod_volumes else None,
                ephemeral=ph == "Running" and rng.random() < 0.004,
            )
            out.append(ctx.add("v1/pods", p))
        self.budget -= len(names)
        ctx.pods_by_app.setdefault((ns, key), []).extend(out)
        return out

    # -- controllers ------------------------------------------------------------------------
    def deployment(self, ns: str, app: str, replicas: int, *, system: bool = False) -> None:
        ctx, rng = self.ctx, self.rng
        labels = {"app": app, "app.kubernetes.io/name": app, "app.kubernetes.io/part-of": ns}
        if system:
            labels = {"k8s-app": "kube-dns", "app": app}
        tmpl = podspec.template(ctx, ns, app, "deployment", {"app": app}, system=system)
        created = ctx.created()
        revision = rng.randint(1, 12)
        strategy: Obj = (
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
            if rng.random() < 0.85
            else {"type": "Recreate"}
        )
        if strategy["type"] == "RollingUpdate" and rng.random() < 0.3:
            strategy["rollingUpdate"] = {"maxUnavailable": 0, "maxSurge": 1}
        dep: Obj = {
            "apiVersion": APPS_V1,
            "kind": "Deployment",
            "metadata": ctx.meta(
                app,
                ns,
                created=created,
                labels=labels,
                generation=revision,
                annotations={"deployment.kubernetes.io/revision": str(revision)},
            ),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": app}},
                "template": tmpl,
                "strategy": strategy,
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
        }
        if rng.random() < 0.1:
            dep["spec"]["minReadySeconds"] = 10
        ctx.add("apps/v1/deployments", dep)
        dep_owner = owner_ref(dep)
        rs_sets: list[tuple[int, int]] = [(revision, replicas)]
        if revision > 1 and rng.random() < 0.5:
            rs_sets.append((revision - 1, 0))
        pods: list[Obj] = []
        current = ""
        for rev, count in rs_sets:
            phash = ctx.suffix(10)
            rs_tmpl = podspec._copy(tmpl)
            rs_tmpl["metadata"]["labels"]["pod-template-hash"] = phash
            rs_name = f"{app}-{phash}"
            current = current or rs_name
            rs_created = ctx.created(created)
            rs: Obj = {
                "apiVersion": APPS_V1,
                "kind": "ReplicaSet",
                "metadata": ctx.meta(
                    rs_name,
                    ns,
                    created=rs_created,
                    generation=rng.randint(1, 3),
                    labels={"app": app, "pod-template-hash": phash},
                    owner=dep_owner,
                    annotations={
                        "deployment.kubernetes.io/desired-replicas": str(replicas),
                        "deployment.kubernetes.io/max-replicas": str(replicas + 1),
                        "deployment.kubernetes.io/revision": str(rev),
                    },
                ),
                "spec": {
                    "replicas": count,
                    "selector": {"matchLabels": {"app": app, "pod-template-hash": phash}},
                    "template": rs_tmpl,
                },
            }
            rs_owner = owner_ref(rs)
            names = [
                ctx.unique("pod", ns, lambda rs_name=rs_name: f"{rs_name}-{ctx.suffix()}")
                for _ in range(count)
            ]
            rs_pods = self._pods(rs_tmpl, ns, names, rs_owner, rs_created, key=app)
            pods += rs_pods
            ready = sum(p["status"]["phase"] == "Running" for p in rs_pods)
            rs["status"] = (
                {"replicas": count}
                | _counts({"fullyLabeledReplicas": count, "readyReplicas": ready, "availableReplicas": ready})
                | {"observedGeneration": rs["metadata"]["generation"]}
            )
            ctx.add("apps/v1/replicasets", rs)
        ready = sum(p["status"]["phase"] == "Running" for p in pods)
        status = {"observedGeneration": revision} | _counts(
            {
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "unavailableReplicas": replicas - ready,
            }
        )
        avail = ready == replicas
        status["conditions"] = [
            {
                "type": "Available",
                "status": "True" if avail else "False",
                "lastUpdateTime": ts(created + 60),
                "lastTransitionTime": ts(created + 60),
                "reason": "MinimumReplicasAvailable" if avail else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if avail
                else "Deployment does not have minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "True",
                "lastUpdateTime": ts(created + 60),
                "lastTransitionTime": ts(created + 5),
                "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{current}" has successfully progressed.',
            },
        ]
        dep["status"] = status

    def daemon_set(self, ns: str, name: str, *, system: bool) -> None:
        ctx, rng = self.ctx, self.rng
        labels = {"k8s-app": name} if system else {"app.kubernetes.io/name": name}
        tmpl = podspec.template(ctx, ns, name, "daemonset", labels, system=system)
        created = ctx.created()
        gen = rng.randint(1, 5)
        ds: Obj = {
            "apiVersion": APPS_V1,
            "kind": "DaemonSet",
            "metadata": ctx.meta(
                name,
                ns,
                created=created,
                labels=dict(labels),
                generation=gen,
                annotations={"deprecated.daemonset.template.generation": str(gen)},
            ),
            "spec": {
                "selector": {"matchLabels": labels},
                "template": tmpl,
                "updateStrategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
                },
                "revisionHistoryLimit": 10,
            },
        }
        ctx.add("apps/v1/daemonsets", ds)
        rev_hash = ctx.suffix(10)
        names = [ctx.unique("pod", ns, lambda: f"{name}-{ctx.suffix()}") for _ in self.nodes]
        extra = [{"controller-revision-hash": rev_hash, "pod-template-generation": str(gen)}] * len(names)
        pods = self._pods(
            tmpl, ns, names, owner_ref(ds), created, nodes=self.nodes, extra_labels=extra, key=name
        )
        ready = sum(p["status"]["phase"] == "Running" for p in pods)
        n = len(pods)
        ds["status"] = daemon_set_status(n, ready, gen)

    def stateful_set(self, ns: str, replicas: int) -> None:
        ctx, rng = self.ctx, self.rng
        name = self.ctx.unique(
            "app",
            ns,
            lambda: rng.choice(
                ("postgres", "redis", "kafka", "zookeeper", "elasticsearch", "rabbitmq", "etcd")
            ),
        )
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
        tmpl = podspec.template(ctx, ns, name, "statefulset", labels)
        created = ctx.created()
        size = rng.choice(("10Gi", "20Gi", "100Gi", "1Ti"))
        sts: Obj = {
            "apiVersion": APPS_V1,
            "kind": "StatefulSet",
            "metadata": ctx.meta(name, ns, created=created, labels=labels, generation=rng.randint(1, 4)),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": tmpl,
                "serviceName": f"{name}-headless",
                "podManagementPolicy": rng.choice(("OrderedReady", "Parallel")),
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "revisionHistoryLimit": 10,
                "volumeClaimTemplates": [
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": {"name": "data", "creationTimestamp": None},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "storageClassName": "gp3",
                            "resources": {"requests": {"storage": size}},
                            "volumeMode": "Filesystem",
                        },
                        "status": {"phase": "Pending"},
                    }
                ],
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            },
        }
        ctx.add("apps/v1/statefulsets", sts)
        names = [f"{name}-{i}" for i in range(replicas)]
        for n in names:
            ctx.unique("pod", ns, lambda n=n: n)
        rev = f"{name}-{ctx.suffix(10)}"
        nodes = [self._node() for _ in names]
        claims = [[vol.pvc(f"data-{n}")] for n in names]
        extra = [
            {
                "controller-revision-hash": rev,
                "statefulset.kubernetes.io/pod-name": n,
                "apps.kubernetes.io/pod-index": str(i),
            }
            for i, n in enumerate(names)
        ]
        pods = self._pods(
            tmpl,
            ns,
            names,
            owner_ref(sts),
            created,
            nodes=nodes,
            per_pod_volumes=claims,
            extra_labels=extra,
            key=name,
        )
        for p in pods:
            ctx.claims.append((ns, f"data-{p['metadata']['name']}", p["spec"].get("nodeName"), size))
        ready = sum(p["status"]["phase"] == "Running" for p in pods)
        sts["status"] = {
            "observedGeneration": sts["metadata"]["generation"],
            "replicas": replicas,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
            "currentRevision": rev,
            "updateRevision": rev,
            "collisionCount": 0,
        } | _counts({"readyReplicas": ready, "availableReplicas": ready})

    def job(
        self,
        ns: str,
        name: str,
        owner: Obj | None,
        running: bool,
        tmpl: Obj | None = None,
        scheduled: int | None = None,
    ) -> Obj:
        ctx, rng = self.ctx, self.rng
        created = scheduled if scheduled is not None else ctx.created()
        failed = not running and rng.random() < 0.1
        md = ctx.meta(
            name,
            ns,
            created=created,
            owner=owner,
            generation=1,
            labels={"job-name": name} if owner is None else {"app": owner["name"]},
        )
        uid = md["uid"]
        sel = {"batch.kubernetes.io/controller-uid": uid}
        if tmpl is None:
            tmpl = podspec.template(ctx, ns, name, "job", {"job-name": name})
        tmpl = podspec._copy(tmpl)
        tmpl["metadata"]["labels"] |= {
            "batch.kubernetes.io/controller-uid": uid,
            "controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "job-name": name,
        }
        job: Obj = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": md,
            "spec": {
                "parallelism": 1,
                "completions": 1,
                "backoffLimit": rng.choice((0, 3, 6)),
                "selector": {"matchLabels": sel},
                "template": tmpl,
                "completionMode": "NonIndexed",
                "suspend": False,
            },
        }
        if rng.random() < 0.3:
            job["spec"]["ttlSecondsAfterFinished"] = 86400
        if rng.random() < 0.1:
            job["spec"]["activeDeadlineSeconds"] = 1800
        ctx.add("batch/v1/jobs", job)
        phase = "Running" if running else ("Failed" if failed else "Succeeded")
        names = [ctx.unique("pod", ns, lambda: f"{name}-{ctx.suffix()}")]
        self._pods(tmpl, ns, names, owner_ref(job), created, phase=phase, key=name)
        status: Obj = {"startTime": ts(created + 1), "uncountedTerminatedPods": {}}
        if running:
            status |= {"active": 1, "ready": 1}
        elif failed:
            status |= {
                "failed": 1,
                "ready": 0,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "lastProbeTime": ts(created + 60),
                        "lastTransitionTime": ts(created + 60),
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ],
            }
        else:
            status |= {
                "completionTime": ts(created + 45),
                "succeeded": 1,
                "ready": 0,
                "conditions": [
                    {
                        "type": "Complete",
                        "status": "True",
                        "lastProbeTime": ts(created + 45),
                        "lastTransitionTime": ts(created + 45),
                    }
                ],
            }
        job["status"] = status
        return job

    def cron_job(self, ns: str, runs: int) -> None:
        ctx, rng = self.ctx, self.rng
        name = self._app_name(ns) + "-cron"
        every = rng.choice((15, 30, 60, 1440))
        schedule = {15: "*/15 * * * *", 30: "*/30 * * * *", 60: "0 * * * *", 1440: "0 3 * * *"}[every]
        tmpl = podspec.template(ctx, ns, name, "job", {"app": name})
        suspend = rng.random() < 0.05
        cj: Obj = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": ctx.meta(name, ns, labels={"app": name}, generation=1),
            "spec": {
                "schedule": schedule,
                "concurrencyPolicy": rng.choice(("Forbid", "Allow", "Replace")),
                "suspend": suspend,
                "jobTemplate": {
                    "metadata": {"creationTimestamp": None},
                    "spec": {"backoffLimit": 3, "template": tmpl},
                },
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 1,
            },
        }
        if rng.random() < 0.3:
            cj["spec"]["startingDeadlineSeconds"] = 200
        if ctx.spec.k8s_minor >= 27 and rng.random() < 0.3:
            cj["spec"]["timeZone"] = "Europe/Berlin"
        ctx.add("batch/v1/cronjobs", cj)
        last = (NOW - 60) // (every * 60) * every * 60
        cj_owner = owner_ref(cj)
        active = []
        for i in range(runs):
            at = last - (runs - 1 - i) * every * 60
            running = i == runs - 1 and rng.random() < 0.3
            job = self.job(ns, f"{name}-{at // 60}", cj_owner, running, tmpl, scheduled=at)
            if running:
                active.append(
                    {
                        "kind": "Job",
                        "namespace": ns,
                        "name": job["metadata"]["name"],
                        "uid": job["metadata"]["uid"],
                        "apiVersion": "batch/v1",
                        "resourceVersion": job["metadata"]["resourceVersion"],
                    }
                )
        status: Obj = {"lastScheduleTime": ts(last)}
        if active:
            status["active"] = active
        if runs > len(active):
            status["lastSuccessfulTime"] = ts(last - (every * 60 if active else 0) + 45)
        cj["status"] = status

    def bare_pod(
        self, ns: str, name: str, *, extra_volumes: list[Obj] | None = None, ephemeral: bool = False
    ) -> None:
        ctx = self.ctx
        ctx.unique("pod", ns, lambda: name)
        # The volume zoo pod also has the most containers (3), so every shape occurs in any cluster.
        tmpl = podspec.template(
            ctx,
            ns,
            name,
            "bare",
            {"run": name},
            extra_volumes=extra_volumes,
            n_containers=3 if ephemeral else None,
            kitchen_sink=ephemeral,
        )
        p = podspec.pod(
            ctx,
            tmpl,
            name,
            ns,
            owner=None,
            node=self._node(),
            pod_ip=ctx.pod_ip(),
            created=ctx.created(),
            ephemeral=ephemeral,
        )
        ctx.add("v1/pods", p)
        ctx.pods_by_app.setdefault((ns, name), []).append(p)
        self.budget -= 1

    def pod_template(self, ns: str, name: str, *, extra_volumes: list[Obj] | None = None) -> None:
        ctx = self.ctx
        tmpl = podspec.template(
            ctx,
            ns,
            name,
            "podtemplate",
            {"template": name},
            extra_volumes=extra_volumes,
            kitchen_sink=extra_volumes is not None,
        )
        ctx.add(
            "v1/podtemplates",
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": ctx.meta(name, ns, labels={"template": name}),
                "template": tmpl,
            },
        )


def _counts(fields: dict[str, int]) -> dict[str, int]:
    """Status counters as the API server writes them: zero counts are omitted (omitempty)."""
    return {k: v for k, v in fields.items() if v}


def generate(ctx: Ctx, namespaces: list[str], nodes: list[Obj]) -> None:
    Workloads(ctx, namespaces, nodes).run()


def daemon_set_status(scheduled: int, ready: int, generation: int) -> dict[str, int]:
    """A DaemonSet's status with `scheduled` pods of which `ready` are ready (the generator's and
    churn's controllers agree on it)."""
    return {
        "currentNumberScheduled": scheduled,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": scheduled,
        "numberReady": ready,
        "observedGeneration": generation,
        "updatedNumberScheduled": scheduled,
        "numberAvailable": ready,
    } | ({"numberUnavailable": scheduled - ready} if scheduled > ready else {})
