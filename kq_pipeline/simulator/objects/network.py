"""Networking: services and their endpoints, ingress classes, ingresses and network policies."""

from __future__ import annotations

from kq_pipeline.simulator.objects.ctx import NOW, Ctx, Obj, ts

NET_V1 = "networking.k8s.io/v1"


def endpoint_addresses(pods: list[Obj]) -> tuple[list[Obj], list[Obj]]:
    """The (ready, not ready) addresses the endpoints controller lists for a service's pods."""
    ready, not_ready = [], []
    for p in pods:
        ip = p["status"].get("podIP")
        if not ip or p["status"]["phase"] == "Succeeded":
            continue
        md = p["metadata"]
        addr = {
            "ip": ip,
            "nodeName": p["spec"]["nodeName"],
            "targetRef": {"kind": "Pod", "namespace": md["namespace"], "name": md["name"], "uid": md["uid"]},
        }
        (ready if p["status"]["phase"] == "Running" else not_ready).append(addr)
    return ready, not_ready


def endpoint_subset(ready: list[Obj], not_ready: list[Obj], ports: list[Obj]) -> Obj:
    subset: Obj = {}
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    subset["ports"] = ports
    return subset


class Services:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self._ips = 10
        self._node_ports = 30000

    def _cluster_ip(self) -> str:
        self._ips += 1
        return f"172.20.{self._ips // 250}.{self._ips % 250 + 1}"

    def _service(
        self, ns: str, name: str, spec: Obj, *, labels: dict[str, str] | None = None, lb: Obj | None = None
    ) -> Obj:
        return self.ctx.add(
            "v1/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": self.ctx.meta(name, ns, labels=labels),
                "spec": spec,
                "status": {"loadBalancer": lb or {}},
            },
        )

    def _endpoints(self, svc: Obj, pods: list[Obj], ports: list[Obj]) -> None:
        ctx = self.ctx
        md = svc["metadata"]
        ready, not_ready = endpoint_addresses(pods)
        ep: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": ctx.meta(
                md["name"],
                md["namespace"],
                labels=md.get("labels"),
                annotations={
                    "endpoints.kubernetes.io/last-change-trigger-time": ts(NOW - ctx.rng.randrange(60, 86400))
                },
            ),
        }
        if ready or not_ready:
            ep["subsets"] = [endpoint_subset(ready, not_ready, ports)]
        ctx.add("v1/endpoints", ep)

    def generate(self, app_namespaces: list[str]) -> None:
        ctx, rng = self.ctx, self.ctx.rng
        api = self._service(
            "default",
            "kubernetes",
            {
                "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 443}],
                "clusterIP": "172.20.0.1",
                "clusterIPs": ["172.20.0.1"],
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
            },
            labels={"component": "apiserver", "provider": "kubernetes"},
        )
        ctx.add(
            "v1/endpoints",
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": ctx.meta("kubernetes", "default", labels=api["metadata"]["labels"]),
                "subsets": [
                    {
                        "addresses": [{"ip": "10.0.0.4"}, {"ip": "10.0.1.4"}],
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP"}],
                    }
                ],
            },
        )
        for n, w in enumerate(
            ctx.out.get("apps/v1/deployments", []) + ctx.out.get("apps/v1/statefulsets", [])
        ):
            md = w["metadata"]
            ns, name = md["namespace"], md["name"]
            headless = w["kind"] == "StatefulSet"
            if not headless and n >= 3 and rng.random() < 0.15:
                continue
            c0 = w["spec"]["template"]["spec"]["containers"][0]
            cport = c0.get("ports", [{"containerPort": 8080}])[0]["containerPort"]
            sel = dict(w["spec"]["selector"]["matchLabels"])
            port = {
                "name": "http",
                "protocol": "TCP",
                "port": 80 if not headless else cport,
                "targetPort": rng.choice(("http", cport)),
            }
            if name == "coredns":
                name, port = "kube-dns", {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53}
            spec: Obj = {"ports": [port], "selector": sel}
            r = rng.random()
            stype = "ClusterIP" if headless or r < 0.85 else ("NodePort" if r < 0.94 else "LoadBalancer")
            lb: Obj | None = None
            if headless:
                spec["clusterIP"] = "None"
                spec["clusterIPs"] = ["None"]
                spec["publishNotReadyAddresses"] = True
                name = f"{name}-headless"
            else:
                ip = self._cluster_ip()
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
            spec["type"] = stype
            if stype != "ClusterIP":
                self._node_ports += 1
                port["nodePort"] = self._node_ports
                spec["externalTrafficPolicy"] = rng.choice(("Cluster", "Local"))
                if spec["externalTrafficPolicy"] == "Local" and stype == "LoadBalancer":
                    self._node_ports += 1
                    spec["healthCheckNodePort"] = self._node_ports
            if stype == "LoadBalancer":
                spec["allocateLoadBalancerNodePorts"] = True
                if rng.random() < 0.5:
                    spec["loadBalancerClass"] = "service.k8s.aws/nlb"
                    spec["loadBalancerSourceRanges"] = ["10.0.0.0/8", "192.168.0.0/16"]
                lb = {
                    "ingress": [
                        {"hostname": f"k8s-{ns[:8]}-{name[:8]}-{ctx.hexstr(10)}.elb.eu-west-1.amazonaws.com"}
                    ]
                    if rng.random() < 0.7
                    else [{"ip": f"34.{rng.randrange(256)}.{rng.randrange(256)}.7", "ipMode": "VIP"}]
                }
            if rng.random() < 0.05:
                spec["sessionAffinity"] = "ClientIP"
                spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
            else:
                spec["sessionAffinity"] = "None"
            if rng.random() < 0.01:
                spec["externalIPs"] = ["198.51.100.7"]
            spec["ipFamilies"] = ["IPv4"]
            spec["ipFamilyPolicy"] = "SingleStack"
            spec["internalTrafficPolicy"] = "Cluster"
            svc = self._service(ns, name, spec, labels=dict(md.get("labels") or {}) or None, lb=lb)
            key = md["name"]
            self._endpoints(
                svc,
                ctx.pods_by_app.get((ns, key), []),
                [
                    {
                        "name": port["name"],
                        "port": cport if port["name"] == "http" else 53,
                        "protocol": port["protocol"],
                    }
                ],
            )
        self._service(
            app_namespaces[0],
            "external-db",
            {"type": "ExternalName", "externalName": "db.prod.example.com", "sessionAffinity": "None"},
        )


def _backend(service: str) -> Obj:
    return {"service": {"name": service, "port": {"number": 80}}}


def ingress_classes(ctx: Ctx) -> None:
    items = [
        (
            "alb",
            {
                "controller": "ingress.k8s.aws/alb",
                "parameters": {"apiGroup": "elbv2.k8s.aws", "kind": "IngressClassParams", "name": "alb"},
            },
            None,
        ),
        (
            "internal-nginx",
            {
                "controller": "k8s.io/ingress-nginx",
                "parameters": {
                    "kind": "ConfigMap",
                    "name": "internal-nginx",
                    "namespace": "ingress-nginx",
                    "scope": "Namespace",
                },
            },
            None,
        ),
        (
            "nginx",
            {"controller": "k8s.io/ingress-nginx"},
            {"ingressclass.kubernetes.io/is-default-class": "true"},
        ),
    ]
    for name, spec, ann in items:
        ctx.add(
            "networking.k8s.io/v1/ingressclasses",
            {
                "apiVersion": NET_V1,
                "kind": "IngressClass",
                "metadata": ctx.meta(
                    name, labels={"app.kubernetes.io/component": "controller"}, annotations=ann
                ),
                "spec": spec,
            },
        )


def ingresses(ctx: Ctx) -> None:
    rng = ctx.rng
    candidates = [
        s
        for s in ctx.out.get("v1/services", [])
        if s["spec"].get("clusterIP") not in (None, "None")
        and s["metadata"]["name"] not in ("kubernetes", "kube-dns")
    ]
    for n, svc in enumerate(candidates):
        if n > 1 and rng.random() > 0.25:
            continue
        md = svc["metadata"]
        ns, name = md["namespace"], md["name"]
        host = f"{name}.{ns}.example.com"

        spec: Obj = {"ingressClassName": rng.choice(("nginx", "alb"))}
        if n == 0:
            spec["defaultBackend"] = _backend(name)
        paths: list[Obj] = [{"path": "/", "pathType": "Prefix", "backend": _backend(name)}]
        if n == 1:
            paths.append(
                {
                    "path": "/static",
                    "pathType": "ImplementationSpecific",
                    "backend": {
                        "resource": {
                            "apiGroup": "k8s.example.com",
                            "kind": "StorageBucket",
                            "name": "static-assets",
                        }
                    },
                }
            )
        spec["rules"] = [{"host": host, "http": {"paths": paths}}]
        if rng.random() < 0.5:
            spec["tls"] = [{"hosts": [host], "secretName": f"{ns}-tls"}]
        lb = (
            {"ingress": [{"hostname": f"k8s-{ctx.hexstr(12)}.eu-west-1.elb.amazonaws.com"}]}
            if rng.random() < 0.8
            else {}
        )
        ann = (
            {"nginx.ingress.kubernetes.io/rewrite-target": "/"}
            if spec["ingressClassName"] == "nginx"
            else {"alb.ingress.kubernetes.io/scheme": "internet-facing"}
        )
        ctx.add(
            "networking.k8s.io/v1/ingresses",
            {
                "apiVersion": NET_V1,
                "kind": "Ingress",
                "metadata": ctx.meta(name, ns, annotations=ann, generation=1),
                "spec": spec,
                "status": {"loadBalancer": lb},
            },
        )


def network_policies(ctx: Ctx, app_namespaces: list[str]) -> None:
    rng = ctx.rng
    apps_by_ns: dict[str, list[str]] = {}
    for d in ctx.out.get("apps/v1/deployments", []):
        apps_by_ns.setdefault(d["metadata"]["namespace"], []).append(d["metadata"]["name"])
    for ns in app_namespaces:
        ctx.add(
            "networking.k8s.io/v1/networkpolicies",
            {
                "apiVersion": NET_V1,
                "kind": "NetworkPolicy",
                "metadata": ctx.meta("default-deny-ingress", ns, generation=1),
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
            },
        )
        for app in apps_by_ns.get(ns, [])[:3]:
            ingress: list[Obj] = [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                            }
                        },
                        {"podSelector": {"matchLabels": {"role": "frontend"}}},
                    ],
                    "ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": "http"}],
                },
            ]
            if rng.random() < 0.3:
                ingress.append({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.5.0/24"]}}]})
            egress: list[Obj] = [
                {
                    "to": [
                        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}],
                }
            ]
            if rng.random() < 0.5:
                egress.append(
                    {
                        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                        "ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}],
                    }
                )
            types = ["Ingress", "Egress"]
            ctx.add(
                "networking.k8s.io/v1/networkpolicies",
                {
                    "apiVersion": NET_V1,
                    "kind": "NetworkPolicy",
                    "metadata": ctx.meta(f"allow-{app}", ns, generation=1),
                    "spec": {
                        "podSelector": {"matchLabels": {"app": app}},
                        "ingress": ingress,
                        "egress": egress,
                        "policyTypes": types,
                    },
                },
            )
