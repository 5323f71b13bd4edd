"""Cluster-level objects: namespaces, nodes, component statuses and the /version document."""

from __future__ import annotations

from kq_pipeline.simulator.objects.ctx import NOW, Ctx, Obj, ts

NAMESPACE_NAMES = (
    "default",
    "kube-system",
    "monitoring",
    "ingress-nginx",
    "payments",
    "kube-public",
    "kube-node-lease",
    "cert-manager",
    "logging",
    "checkout",
    "search",
    "platform",
)
ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
INSTANCE_TYPES = (
    ("m5.2xlarge", "8", "32386524Ki"),
    ("m5.4xlarge", "16", "64682108Ki"),
    ("c5.xlarge", "4", "7934456Ki"),
    ("r5.2xlarge", "8", "65013176Ki"),
)
NODE_IMAGES = (
    "registry.k8s.io/kube-proxy",
    "docker.io/calico/node",
    "registry.k8s.io/pause",
    "registry.example.com/payments/app",
    "quay.io/prometheus/node-exporter",
    "registry.k8s.io/coredns/coredns",
    "public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver",
    "docker.io/fluent/fluent-bit",
    "registry.example.com/search/app",
    "ghcr.io/example/worker",
)


def namespace_names(count: int) -> list[str]:
    names = list(NAMESPACE_NAMES[:count])
    names += [f"team-{i:03d}" for i in range(count - len(names))]
    return names


def namespaces(ctx: Ctx) -> list[Obj]:
    out = []
    for name in namespace_names(ctx.spec.namespaces):  # type: ignore[arg-type]
        labels = {"kubernetes.io/metadata.name": name}
        if not name.startswith("kube-") and name != "default" and ctx.rng.random() < 0.5:
            labels["pod-security.kubernetes.io/enforce"] = ctx.rng.choice(("baseline", "restricted"))
        created = ctx.born if name in ("default", "kube-system", "kube-public", "kube-node-lease") else None
        obj = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": ctx.meta(name, created=created, labels=labels),
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        out.append(ctx.add("v1/namespaces", obj))
    return out


def _node_ip(i: int) -> str:
    return f"10.0.{i // 250}.{i % 250 + 4}"


def node_name(i: int) -> str:
    return f"ip-10-0-{i // 250}-{i % 250 + 4}.eu-west-1.compute.internal"


def node_index(name: str) -> int | None:
    """The inverse of node_name (None for a name it did not make): churn numbers new nodes after it."""
    parts = name.split(".", 1)[0].split("-")
    if len(parts) != 5 or not (parts[3].isdigit() and parts[4].isdigit()):
        return None
    return int(parts[3]) * 250 + int(parts[4]) - 4


def nodes(ctx: Ctx) -> list[Obj]:
    minor = ctx.spec.k8s_minor
    kubelet = f"v1.{minor}.{ctx.rng.randrange(1, 12)}"
    return [ctx.add("v1/nodes", node(ctx, i, kubelet)) for i in range(ctx.spec.nodes)]  # type: ignore[arg-type]


def node(ctx: Ctx, i: int, kubelet: str, created: int | None = None) -> Obj:
    """Node number `i` (0 is the control plane) running `kubelet` ("v1.29.3"); `created`: its creation
    time (default: some time in the cluster's life)."""
    rng = ctx.rng
    control = i == 0
    itype, cpu, mem = INSTANCE_TYPES[0] if control else rng.choice(INSTANCE_TYPES)
    zone = ZONES[i % len(ZONES)]
    name = node_name(i)
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": itype,
        "topology.kubernetes.io/region": "eu-west-1",
        "topology.kubernetes.io/zone": zone,
    }
    if control:
        labels["node-role.kubernetes.io/control-plane"] = ""
    spec: Obj = {
        "podCIDR": f"10.244.{i % 256}.0/24",
        "podCIDRs": [f"10.244.{i % 256}.0/24"],
        "providerID": f"aws:///{zone}/i-{ctx.hexstr(17)}",
    }
    if control:
        spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    elif rng.random() < 0.1:
        spec["taints"] = [{"key": "dedicated", "value": "batch", "effect": "NoSchedule"}]
    elif rng.random() < 0.02:
        spec["unschedulable"] = True
        spec["taints"] = [
            {
                "key": "node.kubernetes.io/unschedulable",
                "effect": "NoSchedule",
                "timeAdded": ts(NOW - 3600),
            }
        ]
    capacity = {
        "cpu": cpu,
        "ephemeral-storage": "104845292Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": mem,
        "pods": "110",
    }
    alloc_mem = f"{int(mem[:-2]) - 1000000}Ki"
    allocatable = {
        **capacity,
        "cpu": f"{int(cpu) * 1000 - 90}m",
        "ephemeral-storage": "95551679124",
        "memory": alloc_mem,
    }
    beat = ts(NOW - rng.randrange(5, 60))
    since = ts(ctx.created())
    ready_ok = rng.random() > 0.01
    conditions = [
        {
            "type": t,
            "status": "False",
            "lastHeartbeatTime": beat,
            "lastTransitionTime": since,
            "reason": f"KubeletHas{r}",
            "message": m,
        }
        for t, r, m in (
            ("MemoryPressure", "SufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "NoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "SufficientPID", "kubelet has sufficient PID available"),
        )
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True" if ready_ok else "Unknown",
            "lastHeartbeatTime": beat,
            "lastTransitionTime": since,
            "reason": "KubeletReady" if ready_ok else "NodeStatusUnknown",
            "message": "kubelet is posting ready status"
            if ready_ok
            else "Kubelet stopped posting node status.",
        }
    )
    addresses = [{"type": "InternalIP", "address": _node_ip(i)}]
    if rng.random() < 0.3:
        addresses.append(
            {"type": "ExternalIP", "address": f"34.{i % 250}.{rng.randrange(256)}.{i % 200 + 1}"}
        )
    addresses += [{"type": "Hostname", "address": name}, {"type": "InternalDNS", "address": name}]
    images = [
        {
            "names": [
                f"{img}@sha256:{ctx.hexstr(64)}",
                f"{img}:v{rng.randrange(1, 4)}.{rng.randrange(20)}",
            ],
            "sizeBytes": rng.randrange(300_000, 900_000_000),
        }
        for img in rng.sample(NODE_IMAGES, rng.randrange(3, 8))
    ]
    status: Obj = {
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": conditions,
        "addresses": addresses,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": ctx.hexstr(32),
            "systemUUID": ctx.uid().upper(),
            "bootID": ctx.uid(),
            "kernelVersion": "5.10.215-203.850.amzn2.x86_64",
            "osImage": "Amazon Linux 2",
            "containerRuntimeVersion": "containerd://1.7.11",
            "kubeletVersion": kubelet,
            "kubeProxyVersion": kubelet,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "images": images,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": ctx.meta(
            name,
            created=created,
            labels=labels,
            annotations={
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        ),
        "spec": spec,
        "status": status,
    }


def component_statuses(ctx: Ctx) -> None:
    items = (
        ("controller-manager", "True", "ok", None),
        ("etcd-0", "True", '{"health":"true","reason":""}', None),
        ("etcd-1", "False", None, 'Get "https://10.0.0.5:2379/health": context deadline exceeded'),
        ("scheduler", "True", "ok", None),
    )
    for name, ok, message, error in items:
        cond: Obj = {"type": "Healthy", "status": ok}
        if message is not None:
            cond["message"] = message
        if error is not None:
            cond["error"] = error
        ctx.add(
            "v1/componentstatuses",
            {
                "apiVersion": "v1",
                "kind": "ComponentStatus",
                "metadata": {"name": name, "creationTimestamp": None},
                "conditions": [cond],
            },
        )


def version(ctx: Ctx) -> Obj:
    minor = ctx.spec.k8s_minor
    patch = ctx.rng.randrange(1, 12)
    return {
        "major": "1",
        "minor": str(minor),
        "gitVersion": f"v1.{minor}.{patch}",
        "gitCommit": ctx.hexstr(40),
        "gitTreeState": "clean",
        "buildDate": ts(NOW - 90 * 86400),
        "goVersion": f"go1.{min(23, 13 + minor // 3)}.{patch}",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
