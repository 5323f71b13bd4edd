"""Namespace configuration: config maps, secrets, service accounts, limit ranges, resource quotas.

Every config map, secret and service account a pod refers to exists. Secret values are
recognisable (`kq-secret-<cluster>-<n>`) so leak tests can look for them anywhere downstream.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kq_pipeline.simulator.objects.ctx import Ctx, Obj

SECRET_PREFIX = "kq-secret-"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
FAKE_CA = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIC5zCCAc+gAwIBAgIBADANBgkqhkiG9w0BAQsFADAVMRMwEQYDVQQDEwptaW5p\n"
    "-----END CERTIFICATE-----\n"
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _kubectl_json(obj: Obj) -> str:
    """What `kubectl apply` stores: Go json.Marshal of the manifest (sorted keys, compact) + newline."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def _secret_data(ctx: Ctx, ns: str, stype: str) -> dict[str, str]:
    v = ctx.secret_value
    if stype == "kubernetes.io/tls":
        return {"tls.crt": v(), "tls.key": v()}
    if stype == "kubernetes.io/dockerconfigjson":
        return {
            ".dockerconfigjson": json.dumps(
                {"auths": {"registry.example.com": {"auth": v()}}}, separators=(",", ":")
            )
        }
    if stype == "kubernetes.io/service-account-token":
        return {"ca.crt": FAKE_CA, "namespace": ns, "token": v()}
    if stype == "helm.sh/release.v1":
        return {"release": v()}
    return {"password": v(), "username": v()}


def _secret(ctx: Ctx, ns: str, name: str, stype: str, annotations: dict[str, str] | None = None) -> Obj:
    rng = ctx.rng
    plain = _secret_data(ctx, ns, stype)
    data = {k: b64(val) for k, val in plain.items()}
    annotations = dict(annotations or {})
    if stype == "Opaque":
        r = rng.random()
        manifest_md = {"annotations": {}, "name": name, "namespace": ns}
        if r < 0.3:
            annotations[LAST_APPLIED] = _kubectl_json(
                {"apiVersion": "v1", "data": data, "kind": "Secret", "metadata": manifest_md, "type": stype}
            )
        elif r < 0.45:
            annotations[LAST_APPLIED] = _kubectl_json(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": manifest_md,
                    "stringData": plain,
                    "type": stype,
                }
            )
    labels = (
        {"owner": "helm", "name": name.split(".")[3], "status": "deployed", "version": "1"}
        if stype == "helm.sh/release.v1"
        else None
    )
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": ctx.meta(name, ns, labels=labels, annotations=annotations or None),
        "data": data,
        "type": stype,
    }
    if rng.random() < 0.05:
        obj["immutable"] = True
    return obj


def secrets(ctx: Ctx, namespaces: list[str]) -> None:
    rng = ctx.rng
    wanted = dict(ctx.secrets_wanted)
    for i, ns in enumerate(namespaces):
        if i % 2 == 0:
            wanted.setdefault((ns, f"{ns}-tls"), "kubernetes.io/tls")
        if i % 3 == 2:
            wanted.setdefault((ns, f"sh.helm.release.v1.{ns}-app.v{rng.randint(1, 9)}"), "helm.sh/release.v1")
        wanted.setdefault((ns, "app-config-secret"), "Opaque")
    wanted.setdefault(("default", "zoo-credentials"), "Opaque")
    for ns, sa in ctx.service_accounts:
        if ctx.spec.k8s_minor < 24 or rng.random() < 0.05:
            token = f"{sa}-token-{ctx.suffix()}"
            wanted[(ns, token)] = "kubernetes.io/service-account-token"
    for (ns, name), stype in wanted.items():
        ann = None
        if stype == "kubernetes.io/service-account-token":
            ann = {
                "kubernetes.io/service-account.name": name.rsplit("-token-", 1)[0],
                "kubernetes.io/service-account.uid": ctx.uid(),
            }
        ctx.add("v1/secrets", _secret(ctx, ns, name, stype, ann))


def secret_values(objects: dict[str, Any]) -> set[str]:
    """Every secret value seeded into `objects`, in plain and base64 form, including the `kq-secret-*`
    tokens inside composite values (docker config JSON). Non-secret data (a token secret's namespace
    and CA) is left out, so a leak test can search for each value anywhere."""
    out: set[str] = set()
    for s in objects.get("v1/secrets", ()):
        for encoded in (s.get("data") or {}).values():
            plain = base64.b64decode(encoded).decode()
            if SECRET_PREFIX not in plain:
                continue
            out.add(encoded)
            out.add(plain)
            for token in plain.replace('"', " ").split():
                if token.startswith(SECRET_PREFIX):
                    out.add(token)
                    out.add(b64(token))
    return out


def config_maps(ctx: Ctx, namespaces: list[str]) -> None:
    rng = ctx.rng
    wanted = dict.fromkeys((ns, "kube-root-ca.crt") for ns in namespaces)
    wanted |= ctx.configmaps_wanted
    wanted[("default", "zoo-config")] = None
    if "kube-system" in namespaces:
        for name in ("coredns", "kube-proxy", "aws-auth", "extension-apiserver-authentication"):
            wanted[("kube-system", name)] = None
    for n, (ns, name) in enumerate(wanted):
        if name == "kube-root-ca.crt":
            data: Obj = {"ca.crt": FAKE_CA}
            ann: dict[str, str] | None = {
                "kubernetes.io/description": "Contains a CA bundle that can be used to "
                "verify the kube-apiserver when using internal endpoints such as the "
                "internal service IP or kubernetes.default.svc. No other usage is "
                "guaranteed across distributions of Kubernetes clusters."
            }
        else:
            data = {
                "app.yaml": f"server:\n  port: {rng.choice((8080, 9090))}\n  name: {name}\n",
                "flags": "beta=true,dark-mode=false",
            }
            ann = None
            if n % 17 == 0:
                data["motd"] = "Grüße <b>&</b> \u2028 welcome"
        obj: Obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": ctx.meta(name, ns, annotations=ann),
            "data": data,
        }
        if n % 23 == 5:
            obj["binaryData"] = {
                "logo.png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
                "AAAABJRU5ErkJggg=="
            }
        ctx.add("v1/configmaps", obj)


def service_accounts(ctx: Ctx, namespaces: list[str]) -> None:
    rng = ctx.rng
    wanted = dict.fromkeys((ns, "default") for ns in namespaces) | ctx.service_accounts
    tokens: dict[tuple[str, str], list[str]] = {}
    for s in ctx.out.get("v1/secrets", ()):
        ann = s["metadata"].get("annotations") or {}
        sa = ann.get("kubernetes.io/service-account.name")
        if sa:
            tokens.setdefault((s["metadata"]["namespace"], sa), []).append(s["metadata"]["name"])
    for ns, name in wanted:
        obj: Obj = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": ctx.meta(name, ns)}
        if name != "default" and rng.random() < 0.2:
            obj["metadata"].setdefault("annotations", {})["eks.amazonaws.com/role-arn"] = (
                f"arn:aws:iam::123456789012:role/{ns}-{name}"
            )
        if (ns, name) in tokens:
            obj["secrets"] = [{"name": t} for t in tokens[(ns, name)]]
        if rng.random() < 0.1:
            obj["imagePullSecrets"] = [{"name": "regcred"}]
        if rng.random() < 0.1:
            obj["automountServiceAccountToken"] = False
        ctx.add("v1/serviceaccounts", obj)


def limit_ranges(ctx: Ctx, app_namespaces: list[str]) -> None:
    for ns in app_namespaces[::2]:
        limits: list[Obj] = [
            {
                "type": "Container",
                "default": {"cpu": "500m", "memory": "512Mi"},
                "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                "max": {"cpu": "4", "memory": "8Gi"},
                "min": {"cpu": "10m", "memory": "16Mi"},
                "maxLimitRequestRatio": {"cpu": "10"},
            },
            {"type": "Pod", "max": {"cpu": "8", "memory": "16Gi"}},
        ]
        if ctx.rng.random() < 0.5:
            limits.append(
                {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "500Gi"}}
            )
        ctx.add(
            "v1/limitranges",
            {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": ctx.meta("limits", ns),
                "spec": {"limits": limits},
            },
        )


def resource_quotas(ctx: Ctx, app_namespaces: list[str]) -> None:
    rng = ctx.rng
    for i, ns in enumerate(app_namespaces):
        hard = {
            "limits.cpu": "200",
            "limits.memory": "400Gi",
            "pods": "5k",
            "requests.cpu": "100",
            "requests.memory": "200Gi",
            "services.loadbalancers": "2",
        }
        used = {
            "limits.cpu": f"{rng.randrange(1, 150)}",
            "limits.memory": f"{rng.randrange(1, 300)}Gi",
            "pods": str(rng.randrange(1, 3000)),
            "requests.cpu": f"{rng.randrange(100, 90000)}m",
            "requests.memory": f"{rng.randrange(1, 190)}Gi",
            "services.loadbalancers": "0",
        }
        spec: Obj = {"hard": hard}
        ctx.add(
            "v1/resourcequotas",
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": ctx.meta("compute", ns),
                "spec": spec,
                "status": {"hard": dict(hard), "used": used},
            },
        )
        if i % 3 == 0:
            hard2 = {"pods": "10"}
            spec2: Obj = (
                {"hard": hard2, "scopes": ["BestEffort"]}
                if i % 2
                else {
                    "hard": hard2,
                    "scopeSelector": {
                        "matchExpressions": [
                            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}
                        ]
                    },
                }
            )
            ctx.add(
                "v1/resourcequotas",
                {
                    "apiVersion": "v1",
                    "kind": "ResourceQuota",
                    "metadata": ctx.meta("besteffort", ns),
                    "spec": spec2,
                    "status": {"hard": dict(hard2), "used": {"pods": "0"}},
                },
            )
