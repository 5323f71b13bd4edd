"""Access and admission: RBAC, admission webhooks, HPAs, PDBs and (before 1.25) PodSecurityPolicies."""

from __future__ import annotations

import base64
import copy

from kq_pipeline.simulator.objects.ctx import NOW, Ctx, Obj, ts

RBAC = "rbac.authorization.k8s.io"
RBAC_V1 = f"{RBAC}/v1"
ADM_V1 = "admissionregistration.k8s.io/v1"
CA_BUNDLE = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHHIG...\n-----END CERTIFICATE-----\n"
).decode()
BOOTSTRAP = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def _rule(
    verbs: list[str],
    groups: list[str] | None = None,
    resources: list[str] | None = None,
    names: list[str] | None = None,
    urls: list[str] | None = None,
) -> Obj:
    rule: Obj = {"verbs": list(verbs)}
    if groups is not None:
        rule["apiGroups"] = list(groups)
    if resources is not None:
        rule["resources"] = list(resources)
    if names is not None:
        rule["resourceNames"] = list(names)
    if urls is not None:
        rule["nonResourceURLs"] = list(urls)
    return rule


READ = ["get", "list", "watch"]
CLUSTER_ROLES: tuple[tuple[str, list[Obj], Obj | None], ...] = (
    (
        "admin",
        [],
        {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]},
    ),
    ("cluster-admin", [_rule(["*"], ["*"], ["*"]), _rule(["*"], urls=["*"])], None),
    (
        "edit",
        [_rule(["create", "delete", "patch", "update"], [""], ["pods", "services", "configmaps"])],
        None,
    ),
    (
        "kubequery-reader",
        [
            _rule(
                READ,
                [
                    "",
                    "apps",
                    "batch",
                    "networking.k8s.io",
                    "policy",
                    RBAC,
                    "storage.k8s.io",
                    "autoscaling",
                    "admissionregistration.k8s.io",
                    "events.k8s.io",
                ],
                ["*"],
            )
        ],
        None,
    ),
    (
        "system:discovery",
        [
            _rule(
                ["get"],
                urls=[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )
        ],
        None,
    ),
    (
        "system:node-proxier",
        [
            _rule(READ, [""], ["endpoints", "services"]),
            _rule(["create", "patch", "update"], ["", "events.k8s.io"], ["events"]),
        ],
        None,
    ),
    (
        "view",
        [
            _rule(READ, [""], ["configmaps", "endpoints", "persistentvolumeclaims", "pods", "services"]),
            _rule(READ, ["apps"], ["daemonsets", "deployments", "replicasets", "statefulsets"]),
        ],
        None,
    ),
)


def rbac(ctx: Ctx, namespaces: list[str], app_namespaces: list[str]) -> None:
    for name, rules, aggregation in CLUSTER_ROLES:
        system = not name.startswith("kq-")
        obj: Obj = {
            "apiVersion": RBAC_V1,
            "kind": "ClusterRole",
            "metadata": ctx.meta(
                name, labels=BOOTSTRAP if system else None, annotations=AUTOUPDATE if system else None
            ),
            "rules": copy.deepcopy(rules),
        }
        if aggregation is not None:
            obj["aggregationRule"] = copy.deepcopy(aggregation)
        ctx.add(f"{RBAC_V1}/clusterroles", obj)
    bindings = (
        ("cluster-admin", "cluster-admin", [{"kind": "Group", "apiGroup": RBAC, "name": "system:masters"}]),
        (
            "kubequery-reader",
            "kubequery-reader",
            [
                {"kind": "ServiceAccount", "name": "kubequery", "namespace": "kube-system"},
                {"kind": "User", "apiGroup": RBAC, "name": "kq-pipeline"},
            ],
        ),
        (
            "system:discovery",
            "system:discovery",
            [{"kind": "Group", "apiGroup": RBAC, "name": "system:authenticated"}],
        ),
        (
            "system:node-proxier",
            "system:node-proxier",
            [{"kind": "User", "apiGroup": RBAC, "name": "system:kube-proxy"}],
        ),
        ("empty-binding", "view", None),
    )
    for name, role, subjects in bindings:
        obj = {
            "apiVersion": RBAC_V1,
            "kind": "ClusterRoleBinding",
            "metadata": ctx.meta(name),
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
        }
        if subjects is not None:
            obj["subjects"] = subjects
        ctx.add(f"{RBAC_V1}/clusterrolebindings", obj)
    for ns in ["kube-system", *app_namespaces]:
        if ns not in namespaces:
            continue
        ctx.add(
            f"{RBAC_V1}/roles",
            {
                "apiVersion": RBAC_V1,
                "kind": "Role",
                "metadata": ctx.meta("app-config-reader", ns),
                "rules": [
                    _rule(["get", "watch", "list"], [""], ["configmaps"]),
                    _rule(["get"], [""], ["secrets"], names=["app-config-secret"]),
                ],
            },
        )
        ctx.add(
            f"{RBAC_V1}/roles",
            {"apiVersion": RBAC_V1, "kind": "Role", "metadata": ctx.meta("placeholder", ns), "rules": []},
        )
        ctx.add(
            f"{RBAC_V1}/rolebindings",
            {
                "apiVersion": RBAC_V1,
                "kind": "RoleBinding",
                "metadata": ctx.meta("app-config-reader", ns),
                "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "app-config-reader"},
                "subjects": [
                    {"kind": "ServiceAccount", "name": "default", "namespace": ns},
                    {"kind": "Group", "apiGroup": RBAC, "name": f"{ns}-developers"},
                ],
            },
        )
        ctx.add(
            f"{RBAC_V1}/rolebindings",
            {
                "apiVersion": RBAC_V1,
                "kind": "RoleBinding",
                "metadata": ctx.meta("view-binding", ns),
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "apiGroup": RBAC, "name": "alice@example.com"}],
            },
        )


def _webhook(name: str, *, service: bool, mutating: bool, fail: str = "Fail") -> Obj:
    client: Obj = (
        {
            "service": {
                "namespace": "cert-manager",
                "name": "cert-manager-webhook",
                "path": "/mutate" if mutating else "/validate",
                "port": 443,
            },
            "caBundle": CA_BUNDLE,
        }
        if service
        else {"url": "https://webhook.example.com:8443/admit", "caBundle": CA_BUNDLE}
    )
    hook: Obj = {
        "name": name,
        "clientConfig": client,
        "rules": [
            {
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": ["cert-manager.io", "acme.cert-manager.io"],
                "apiVersions": ["v1"],
                "resources": ["*/*"],
                "scope": "*",
            }
        ],
        "failurePolicy": fail,
        "matchPolicy": "Equivalent",
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "cert-manager.io/disable-validation", "operator": "NotIn", "values": ["true"]}
            ]
        },
        "objectSelector": {} if service else {"matchLabels": {"inject": "true"}},
        "sideEffects": "None",
        "timeoutSeconds": 30 if service else 10,
        "admissionReviewVersions": ["v1", "v1beta1"] if service else ["v1"],
    }
    if mutating:
        hook["reinvocationPolicy"] = "Never" if service else "IfNeeded"
    return hook


def webhooks(ctx: Ctx) -> None:
    for kind, key, mutating in (
        ("MutatingWebhookConfiguration", "mutatingwebhookconfigurations", True),
        ("ValidatingWebhookConfiguration", "validatingwebhookconfigurations", False),
    ):
        items: list[tuple[str, list[Obj] | None]] = [
            ("cert-manager-webhook", [_webhook("webhook.cert-manager.io", service=True, mutating=mutating)]),
            (
                "external-admission",
                [
                    _webhook("a.webhook.example.com", service=False, mutating=mutating),
                    _webhook("b.webhook.example.com", service=True, mutating=mutating, fail="Ignore"),
                ],
            ),
            ("no-webhooks", None),
        ]
        for name, hooks in items:
            obj: Obj = {
                "apiVersion": ADM_V1,
                "kind": kind,
                "metadata": ctx.meta(name, labels={"app.kubernetes.io/name": name}, generation=1),
            }
            if hooks is not None:
                obj["webhooks"] = hooks
            ctx.add(f"{ADM_V1}/{key}", obj)


def hpas(ctx: Ctx) -> None:
    rng = ctx.rng
    for n, d in enumerate(ctx.out.get("apps/v1/deployments", [])):
        if n >= 2 and rng.random() > 0.25:
            continue
        md = d["metadata"]
        replicas = d["spec"]["replicas"]
        status: Obj = {"currentReplicas": replicas, "desiredReplicas": replicas}
        if replicas and rng.random() < 0.9:
            status["currentCPUUtilizationPercentage"] = rng.randrange(5, 120)
            status["lastScaleTime"] = ts(NOW - rng.randrange(60, 86400 * 30))
        status["observedGeneration"] = 1
        spec: Obj = {
            "scaleTargetRef": {"kind": "Deployment", "name": md["name"], "apiVersion": "apps/v1"},
            "minReplicas": max(1, replicas // 2),
            "maxReplicas": max(2, replicas * 3),
        }
        if n != 1 and rng.random() < 0.9:
            spec["targetCPUUtilizationPercentage"] = rng.choice((50, 70, 80))
        ctx.add(
            "autoscaling/v1/horizontalpodautoscalers",
            {
                "apiVersion": "autoscaling/v1",
                "kind": "HorizontalPodAutoscaler",
                "metadata": ctx.meta(md["name"], md["namespace"], labels=md.get("labels")),
                "spec": spec,
                "status": status,
            },
        )


def pdbs(ctx: Ctx) -> None:
    rng = ctx.rng
    budgets = ({"minAvailable": 1}, {"minAvailable": "50%"}, {"maxUnavailable": 1}, {"maxUnavailable": "25%"})
    workloads = ctx.out.get("apps/v1/deployments", []) + ctx.out.get("apps/v1/statefulsets", [])
    for n, w in enumerate(workloads):
        if n >= 4 and rng.random() > 0.2:
            continue
        md = w["metadata"]
        replicas = w["spec"]["replicas"]
        healthy = w["status"].get("readyReplicas", 0)
        budget = budgets[n % 4] if n < 4 else rng.choice(budgets)
        desired = max(0, replicas - 1)
        status: Obj = {
            "observedGeneration": 1,
            "disruptionsAllowed": max(0, healthy - desired),
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": replicas,
            "conditions": [
                {
                    "type": "DisruptionAllowed",
                    "status": "True" if healthy > desired else "False",
                    "observedGeneration": 1,
                    "lastTransitionTime": ts(NOW - 3600),
                    "reason": "SufficientPods" if healthy > desired else "InsufficientPods",
                    "message": "",
                }
            ],
        }
        if n == 1:
            status["disruptedPods"] = {f"{md['name']}-0": ts(NOW - 30)}
        ctx.add(
            "policy/v1/poddisruptionbudgets",
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": ctx.meta(f"{md['name']}-pdb", md["namespace"], generation=1),
                "spec": {**budget, "selector": copy.deepcopy(w["spec"]["selector"])},
                "status": status,
            },
        )


def pod_security_policies(ctx: Ctx) -> None:
    rule_any = {"rule": "RunAsAny"}
    items = (
        (
            "eks.privileged",
            {
                "privileged": True,
                "allowedCapabilities": ["*"],
                "volumes": ["*"],
                "hostNetwork": True,
                "hostPorts": [{"min": 0, "max": 65535}],
                "hostPID": True,
                "hostIPC": True,
                "seLinux": rule_any,
                "runAsUser": rule_any,
                "supplementalGroups": rule_any,
                "fsGroup": rule_any,
                "readOnlyRootFilesystem": False,
                "allowedProcMountTypes": ["Default", "Unmasked"],
            },
        ),
        (
            "restricted",
            {
                "privileged": False,
                "requiredDropCapabilities": ["ALL"],
                "defaultAddCapabilities": [],
                "volumes": [
                    "configMap",
                    "emptyDir",
                    "projected",
                    "secret",
                    "downwardAPI",
                    "csi",
                    "persistentVolumeClaim",
                ],
                "hostNetwork": False,
                "hostIPC": False,
                "hostPID": False,
                "runAsUser": {"rule": "MustRunAsNonRoot"},
                "runAsGroup": {"rule": "MustRunAs", "ranges": [{"min": 1, "max": 65535}]},
                "seLinux": rule_any,
                "supplementalGroups": {"rule": "MustRunAs", "ranges": [{"min": 1, "max": 65535}]},
                "fsGroup": {"rule": "MustRunAs", "ranges": [{"min": 1, "max": 65535}]},
                "readOnlyRootFilesystem": True,
                "defaultAllowPrivilegeEscalation": False,
                "allowPrivilegeEscalation": False,
                "allowedHostPaths": [{"pathPrefix": "/var/log", "readOnly": True}],
                "allowedFlexVolumes": [{"driver": "example/lvm"}],
                "allowedCSIDrivers": [{"name": "ebs.csi.aws.com"}],
                "allowedUnsafeSysctls": ["kernel.msg*"],
                "forbiddenSysctls": ["kernel.shm_rmid_forced"],
                "runtimeClass": {"allowedRuntimeClassNames": ["gvisor"], "defaultRuntimeClassName": "gvisor"},
            },
        ),
    )
    for name, spec in items:
        ctx.add(
            "policy/v1beta1/podsecuritypolicies",
            {
                "apiVersion": "policy/v1beta1",
                "kind": "PodSecurityPolicy",
                "metadata": ctx.meta(
                    name, annotations={"seccomp.security.alpha.kubernetes.io/allowedProfileNames": "*"}
                ),
                "spec": copy.deepcopy(spec),
            },
        )
