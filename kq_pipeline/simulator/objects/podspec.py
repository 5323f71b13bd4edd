"""Pod templates (containers, security contexts, scheduling) and the pods instantiated from them.

A template is built once per workload; each pod is a fast deep copy (orjson round trip) plus what
admission and the kubelet add: node, default tolerations, the token volume and a status whose
container lists match the spec's by position (kubequery indexes statuses by position).
"""

from __future__ import annotations

from typing import Any

import orjson

from kq_pipeline.simulator.objects import volumes as vol
from kq_pipeline.simulator.objects.ctx import NOW, Ctx, Obj, ts

REGISTRY = "registry.example.com"
TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

# (requests, limits) pairs in the Quantity spellings seen in the wild.
RESOURCES: tuple[tuple[dict[str, str] | None, dict[str, str] | None], ...] = (
    ({"cpu": "100m", "memory": "128Mi"}, {"cpu": "500m", "memory": "512Mi"}),
    ({"cpu": "250m", "memory": "256Mi"}, {"memory": "256Mi"}),
    ({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}),
    ({"cpu": "0.5", "memory": "512M"}, {"cpu": "2", "memory": "2G"}),
    (
        {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "1Gi"},
        {"memory": "128Mi", "ephemeral-storage": "2Gi"},
    ),
    ({"cpu": "1500m", "memory": "1e9"}, {"cpu": "1500m", "memory": "1e9"}),
    ({"memory": "268435456"}, None),
    (None, None),
    (
        {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
        {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
    ),
)

CONTAINER_SECURITY: tuple[Obj | None, ...] = (
    None,
    None,
    {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    {"allowPrivilegeEscalation": False, "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
    {"privileged": True, "capabilities": {"add": ["NET_ADMIN", "SYS_TIME"]}, "procMount": "Default"},
    {
        "seLinuxOptions": {"user": "system_u", "role": "system_r", "type": "spc_t", "level": "s0:c123,c456"},
        "runAsGroup": 3000,
    },
    {"seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"}},
    {"windowsOptions": {"gmsaCredentialSpecName": "gmsa-webapp", "runAsUserName": "ContainerUser"}},
)

POD_SECURITY: tuple[Obj, ...] = (
    {},
    {},
    {
        "runAsUser": 1000,
        "runAsGroup": 3000,
        "fsGroup": 2000,
        "runAsNonRoot": True,
        "supplementalGroups": [4000],
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    {"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}], "fsGroup": 65534},
    {
        "seLinuxOptions": {"level": "s0:c123,c456"},
        "seccompProfile": {"type": "Localhost", "localhostProfile": "my-profiles/p.json"},
    },
    {
        "windowsOptions": {
            "gmsaCredentialSpecName": "gmsa",
            "gmsaCredentialSpec": '{"CmsPlugins":["ActiveDirectory"]}',
            "runAsUserName": "NT AUTHORITY\\NETWORK SERVICE",
        }
    },
)

DEFAULT_TOLERATIONS: tuple[Obj, ...] = (
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
)


def _copy(obj: Any) -> Any:
    return orjson.loads(orjson.dumps(obj))


def _frozen_spec(ctx: Ctx, tmpl: Obj) -> bytes:
    """The template's pod spec serialized once per workload, not once per pod. Keyed by id(): every
    template stays referenced by its controller's object until generation ends."""
    cached = ctx.frozen_specs.get(id(tmpl))
    if cached is None:
        cached = ctx.frozen_specs[id(tmpl)] = orjson.dumps(tmpl["spec"])
    return cached


def _probe(ctx: Ctx, port: int) -> Obj:
    r = ctx.rng.random()
    if r < 0.5:
        action: Obj = {
            "httpGet": {"path": "/healthz", "port": ctx.rng.choice((port, "http")), "scheme": "HTTP"}
        }
    elif r < 0.75:
        action = {"tcpSocket": {"port": port}}
    elif r < 0.92:
        action = {"exec": {"command": ["/bin/sh", "-c", "test -f /tmp/healthy"]}}
    else:
        action = {"grpc": {"port": port, "service": ""}}
    return {
        **action,
        "initialDelaySeconds": ctx.rng.choice((0, 5, 10, 30)),
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def _env(ctx: Ctx, ns: str, app: str, cname: str) -> list[Obj]:
    env: list[Obj] = [{"name": "LOG_LEVEL", "value": ctx.rng.choice(("info", "debug", "warn"))}]
    r = ctx.rng.random()
    if r < 0.5:
        env.append(
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            }
        )
    if r < 0.3:
        ctx.secrets_wanted[(ns, f"{app}-credentials")] = "Opaque"
        env.append(
            {
                "name": "DB_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": f"{app}-credentials", "key": "password"}},
            }
        )
    if 0.2 < r < 0.4:
        ctx.configmaps_wanted[(ns, f"{app}-config")] = None
        env.append(
            {
                "name": "FEATURE_FLAGS",
                "valueFrom": {"configMapKeyRef": {"name": f"{app}-config", "key": "flags", "optional": True}},
            }
        )
    if r > 0.9:
        env.append(
            {
                "name": "MEM_LIMIT",
                "valueFrom": {
                    "resourceFieldRef": {
                        "containerName": cname,
                        "resource": "limits.memory",
                        "divisor": "1Mi",
                    }
                },
            }
        )
    return env


def container(ctx: Ctx, ns: str, app: str, cname: str, mounts: list[Obj], *, main: bool) -> Obj:
    rng = ctx.rng
    port = rng.choice((8080, 8443, 9090, 3000, 5432))
    c: Obj = {
        "name": cname,
        "image": f"{REGISTRY}/{app}/{cname}:{rng.randrange(1, 9)}.{rng.randrange(0, 30)}.0",
    }
    if rng.random() < 0.3:
        c["command"] = ["/usr/local/bin/" + cname]
        c["args"] = ["--port", str(port), "--log-format=json"]
    if main:
        c["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        if rng.random() < 0.2:
            c["ports"].append({"name": "metrics", "containerPort": 9102, "protocol": "TCP"})
    c["env"] = _env(ctx, ns, app, cname)
    if rng.random() < 0.15:
        ctx.configmaps_wanted[(ns, f"{app}-env")] = None
        c["envFrom"] = [{"configMapRef": {"name": f"{app}-env"}}]
    requests, limits = rng.choice(RESOURCES)
    res: Obj = {}
    if limits:
        res["limits"] = dict(limits)
    if requests:
        res["requests"] = dict(requests)
    c["resources"] = res
    if mounts:
        c["volumeMounts"] = mounts
    if main and rng.random() < 0.8:
        c["livenessProbe"] = _probe(ctx, port)
        c["readinessProbe"] = _probe(ctx, port)
        if rng.random() < 0.2:
            c["startupProbe"] = _probe(ctx, port)
    if main and rng.random() < 0.1:
        c["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", "5"]}}}
    c["terminationMessagePath"] = "/dev/termination-log"
    c["terminationMessagePolicy"] = "File"
    c["imagePullPolicy"] = rng.choice(("IfNotPresent", "IfNotPresent", "Always"))
    sc = rng.choice(CONTAINER_SECURITY)
    if sc is not None:
        c["securityContext"] = _copy(sc)
    return c


def _workload_volumes(ctx: Ctx, ns: str, app: str, kind: str) -> list[Obj]:
    rng = ctx.rng
    vols: list[Obj] = []
    if kind == "daemonset":
        vols.append(vol.host_path("/var/log", "varlog"))
        vols.append(vol.host_path("/sys", "sys", "Directory"))
        if rng.random() < 0.5:
            vols.append(vol.host_path("/run/xtables.lock", "xtables-lock", "FileOrCreate"))
    if rng.random() < 0.5:
        vols.append(vol.config_map(ctx, ns, f"{app}-config"))
    if rng.random() < 0.3:
        vols.append(vol.secret(ctx, ns, f"{app}-tls"))
    if rng.random() < 0.4:
        vols.append(vol.empty_dir(ctx))
    if rng.random() < 0.08:
        vols.append(vol.downward_api())
    if rng.random() < 0.08:
        vols.append(vol.projected(ctx, ns, app))
    if rng.random() < 0.05:
        vols.append(vol.csi_secrets_store())
    if rng.random() < 0.03:
        vols.append(vol.nfs())
    return vols


def _mounts(vols: list[Obj]) -> list[Obj]:
    out = []
    for v in vols:
        m: Obj = {"name": v["name"], "mountPath": f"/mnt/{v['name']}"}
        if "secret" in v or "configMap" in v or "csi" in v:
            m["readOnly"] = True
        out.append(m)
    return out


def template(
    ctx: Ctx,
    ns: str,
    app: str,
    kind: str,
    labels: dict[str, str],
    *,
    extra_volumes: list[Obj] | None = None,
    system: bool = False,
    n_containers: int | None = None,
    kitchen_sink: bool = False,
) -> Obj:
    """A PodTemplateSpec: metadata with labels, and a pod spec. A kitchen-sink template sets every
    optional field, so that any cluster, however small, exercises every pod-spec column."""
    rng = ctx.rng

    def chance(p: float) -> bool:
        return kitchen_sink or rng.random() < p

    vols = _workload_volumes(ctx, ns, app, kind) + (extra_volumes or [])
    mounts = _mounts(vols)
    r = rng.random()
    n = n_containers or (1 if r < 0.72 else 2 if r < 0.95 else 3)
    names = [app.rsplit("-", 1)[0][:40] or "app", "sidecar", "proxy"]
    containers = [
        container(
            ctx, ns, app, names[i] if i else "app", _copy(mounts if i == 0 else mounts[:1]), main=i == 0
        )
        for i in range(n)
    ]
    spec: Obj = {"volumes": vols} if vols else {}
    if chance(0.2):
        spec["initContainers"] = [container(ctx, ns, app, "init-migrate", [], main=False)]
    spec["containers"] = containers
    spec["restartPolicy"] = "OnFailure" if kind == "job" else "Always"
    spec["terminationGracePeriodSeconds"] = rng.choice((30, 30, 60, 10))
    if kind == "job" and chance(0.3):
        spec["activeDeadlineSeconds"] = 3600
    spec["dnsPolicy"] = "ClusterFirstWithHostNet" if kind == "daemonset" and system else "ClusterFirst"
    if chance(0.3) or kind == "daemonset":
        spec["nodeSelector"] = {"kubernetes.io/os": "linux"}
    sa = "default" if chance(0.4) else app
    ctx.service_accounts[(ns, sa)] = None
    spec["serviceAccountName"] = sa
    spec["serviceAccount"] = sa
    if chance(0.1):
        spec["automountServiceAccountToken"] = False
    if kind == "daemonset" and system:
        spec["hostNetwork"] = True
        if chance(0.5):
            spec["hostPID"] = True
    if chance(0.02):
        spec["hostIPC"] = True
    if chance(0.03):
        spec["shareProcessNamespace"] = True
    spec["securityContext"] = _copy(rng.choice(POD_SECURITY))
    if chance(0.2):
        ctx.secrets_wanted[(ns, "regcred")] = "kubernetes.io/dockerconfigjson"
        spec["imagePullSecrets"] = [{"name": "regcred"}]
    if kind == "statefulset":
        spec["hostname"] = app
        spec["subdomain"] = app
    if chance(0.3):
        spec["affinity"] = _affinity(ctx, app, full=kitchen_sink)
    spec["schedulerName"] = "default-scheduler"
    if kind == "daemonset" or chance(0.1):
        spec["tolerations"] = (
            [{"operator": "Exists"}]
            if kind == "daemonset"
            else [{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}]
        )
    if chance(0.02):
        spec["hostAliases"] = [{"ip": "10.1.2.3", "hostnames": ["legacy.internal", "db.internal"]}]
    if system:
        spec["priorityClassName"] = (
            "system-node-critical" if kind == "daemonset" else "system-cluster-critical"
        )
    if chance(0.1):
        spec["dnsConfig"] = {
            "nameservers": ["1.1.1.1"],
            "searches": ["svc.example.com"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        }
    if chance(0.02):
        spec["readinessGates"] = [{"conditionType": "target-health.elbv2.k8s.aws/app"}]
    if chance(0.02):
        spec["runtimeClassName"] = "gvisor"
        spec["overhead"] = {"cpu": "250m", "memory": "120Mi"}
    if chance(0.1):
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app": app}},
            }
        ]
    tmeta: Obj = {"labels": dict(labels)}
    if chance(0.3):
        tmeta["annotations"] = {"prometheus.io/scrape": "true", "prometheus.io/port": "9102"}
    return {"metadata": tmeta, "spec": spec}


def _affinity(ctx: Ctx, app: str, *, full: bool = False) -> Obj:
    r = 0.95 if full else ctx.rng.random()
    out: Obj = {}
    if r < 0.6:
        out["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}
                        ]
                    }
                ]
            }
        }
    if r > 0.4:
        out["podAntiAffinity"] = {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": app}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    if r > 0.9:
        out["podAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {
                        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["cache"]}]
                    },
                    "topologyKey": "topology.kubernetes.io/zone",
                }
            ]
        }
    return out


# -- pods ------------------------------------------------------------------------------------


def _image_id(ctx: Ctx, image: str) -> str:
    return image.rsplit(":", 1)[0] + "@sha256:" + ctx.hexstr(64)


def _status_of(ctx: Ctx, c: Obj, phase: str, started: int, *, init: bool = False) -> Obj:
    rng = ctx.rng
    cid = "containerd://" + ctx.hexstr(64)
    st: Obj = {"name": c["name"]}
    restarts = 0
    last: Obj = {}
    if init or phase == "Succeeded":
        state: Obj = {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": ts(started + 2),
                "finishedAt": ts(started + 5),
                "containerID": cid,
            }
        }
        ready = init and phase == "Running"
    elif phase == "Failed":
        state = {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "startedAt": ts(started + 2),
                "finishedAt": ts(started + 40),
                "containerID": cid,
            }
        }
        ready = False
    elif phase == "Pending":
        state = {"waiting": {"reason": "ContainerCreating"}}
        ready = False
    elif rng.random() < 0.02:
        restarts = rng.randrange(3, 40)
        state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 5m0s restarting failed container={c['name']}",
            }
        }
        last = {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "startedAt": ts(NOW - 400),
                "finishedAt": ts(NOW - 390),
                "containerID": cid,
            }
        }
        ready = False
    else:
        state = {"running": {"startedAt": ts(started + 6)}}
        ready = True
        if rng.random() < 0.05:
            restarts = rng.randrange(1, 4)
            last = {
                "terminated": {
                    "exitCode": 137,
                    "reason": "OOMKilled",
                    "startedAt": ts(started + 3),
                    "finishedAt": ts(started + 5),
                    "containerID": "containerd://" + ctx.hexstr(64),
                }
            }
    st["state"] = state
    st["lastState"] = last
    st["ready"] = ready
    st["restartCount"] = restarts
    st["image"] = c["image"]
    st["imageID"] = "" if phase == "Pending" else _image_id(ctx, c["image"])
    if phase != "Pending":
        st["containerID"] = cid
    if not init:
        st["started"] = "running" in state
    return st


def _qos(spec: Obj) -> str:
    requests = limits = False
    guaranteed = True
    for c in spec["containers"]:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        requests |= bool(req)
        limits |= bool(lim)
        if not lim or lim.get("cpu") is None or lim.get("memory") is None or (req and req != lim):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def pod(
    ctx: Ctx,
    tmpl: Obj,
    name: str,
    ns: str,
    *,
    owner: Obj | None,
    node: Obj | None,
    pod_ip: str,
    phase: str = "Running",
    created: int,
    extra_labels: dict[str, str] | None = None,
    extra_volumes: list[Obj] | None = None,
    ephemeral: bool = False,
) -> Obj:
    spec: Obj = orjson.loads(_frozen_spec(ctx, tmpl))
    tmeta = tmpl["metadata"]
    labels = {**tmeta["labels"], **(extra_labels or {})}
    md = ctx.meta(name, ns, created=created, labels=labels, annotations=tmeta.get("annotations"), owner=owner)
    vols = spec.setdefault("volumes", [])
    vols.extend(extra_volumes or ())
    if spec.get("automountServiceAccountToken") is not False:
        token = vol.kube_api_access(ctx)
        vols.append(token)
        mount = {"name": token["name"], "readOnly": True, "mountPath": TOKEN_MOUNT}
        for c in spec.get("initContainers", []) + spec["containers"]:
            c.setdefault("volumeMounts", []).append(dict(mount))
    for extra in extra_volumes or ():
        spec["containers"][0].setdefault("volumeMounts", []).append(
            {"name": extra["name"], "mountPath": f"/{extra['name']}"}
        )
    if not vols:
        del spec["volumes"]
    if ephemeral:
        spec["ephemeralContainers"] = [
            {
                "name": f"debugger-{ctx.suffix()}",
                "image": "busybox:1.36",
                "command": ["sh"],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "stdin": True,
                "tty": True,
                "targetContainerName": spec["containers"][0]["name"],
            }
        ]
    if node is not None:
        spec["nodeName"] = node["metadata"]["name"]
    spec["tolerations"] = spec.get("tolerations", []) + [dict(t) for t in DEFAULT_TOLERATIONS]
    spec["priority"] = (
        2000001000
        if spec.get("priorityClassName") == "system-node-critical"
        else (2000000000 if spec.get("priorityClassName") else 0)
    )
    spec["enableServiceLinks"] = True
    spec["preemptionPolicy"] = "PreemptLowerPriority"
    started = created + 1
    status: Obj = {"phase": phase}
    if node is None:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": ts(started),
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu.",
            }
        ]
    else:
        ready = "True" if phase == "Running" else "False"
        cond = {"Initialized": "True", "Ready": ready, "ContainersReady": ready, "PodScheduled": "True"}
        status["conditions"] = [
            {"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": ts(started + 6)}
            for t, s in cond.items()
        ]
        if phase in ("Succeeded", "Failed"):
            for cnd in status["conditions"][1:3]:
                cnd["reason"] = "PodCompleted"
        host_ip = node["status"]["addresses"][0]["address"]
        status["hostIP"] = host_ip
        status["hostIPs"] = [{"ip": host_ip}]
        if phase != "Pending":
            ip = host_ip if spec.get("hostNetwork") else pod_ip
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
    status["startTime"] = ts(started)
    if "initContainers" in spec:
        status["initContainerStatuses"] = [
            _status_of(ctx, c, phase, started, init=True) for c in spec["initContainers"]
        ]
    status["containerStatuses"] = [_status_of(ctx, c, phase, started) for c in spec["containers"]]
    if ephemeral:
        status["ephemeralContainerStatuses"] = [
            {
                "name": c["name"],
                "state": {"running": {"startedAt": ts(NOW - 120)}},
                "lastState": {},
                "ready": False,
                "restartCount": 0,
                "image": c["image"],
                "imageID": _image_id(ctx, c["image"]),
                "containerID": "containerd://" + ctx.hexstr(64),
            }
            for c in spec["ephemeralContainers"]
        ]
    status["qosClass"] = _qos(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec, "status": status}
