"""Custom resources of popular operators: their CustomResourceDefinitions and objects.

`ClusterSpec.operators` picks what is installed:

* "cert-manager": Certificate, Issuer (namespaced), ClusterIssuer (cluster-scoped), cert-manager.io/v1;
* "prometheus-operator": ServiceMonitor, PrometheusRule, monitoring.coreos.com/v1;
* "argocd": Application, argoproj.io/v1alpha1 (no status subresource, and the top-level `operation`
  field beside spec and status while a sync runs, as Argo CD writes it);
* "istio": VirtualService, networking.istio.io, served at v1, v1beta1 and v1alpha3 and stored as
  v1alpha3, as istio's own CRD does since 1.22: the preferred version (v1) is not the storage version.

The CRDs and objects follow the projects' own CRD definitions (trimmed schemas, the real names,
short names, categories, printer columns and status conditions). `ClusterSpec.custom_objects` objects
are spread over the installed kinds by `custom_counts`, deterministically. Generation runs after every
built-in kind, so a cluster's built-in objects are the same with or without operators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from kq_pipeline.simulator.catalog import CRD_KEY, version_priority
from kq_pipeline.simulator.objects.ctx import NOW, Ctx, Obj, owner_ref, ts
from kq_pipeline.simulator.objects.spec import ClusterSpec

CERT_MANAGER, PROMETHEUS, ARGOCD, ISTIO = "cert-manager", "prometheus-operator", "argocd", "istio"
OPERATORS: tuple[str, ...] = (CERT_MANAGER, PROMETHEUS, ARGOCD, ISTIO)

_READY = '.status.conditions[?(@.type=="Ready")]'
_AGE = ("Age", "date", ".metadata.creationTimestamp", 0)


@dataclass(frozen=True)
class CustomKind:
    operator: str
    group: str
    kind: str
    plural: str
    namespaced: bool
    versions: tuple[str, ...]
    """Served versions, in the order of the CRD's spec.versions."""
    storage: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    columns: tuple[tuple[str, str, str, int], ...] = ()
    """additionalPrinterColumns: (name, type, jsonPath, priority)."""
    status_subresource: bool = True
    weight: int = 10
    """Share of ClusterSpec.custom_objects."""
    cap: int | None = None
    """At most this many objects (a cluster has a handful of ClusterIssuers, whatever its size)."""

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def preferred(self) -> str:
        return max(self.versions, key=version_priority)

    @property
    def key(self) -> str:
        """The generator's key: "<group>/<preferred version>/<plural>"."""
        return f"{self.group}/{self.preferred}/{self.plural}"

    def keys(self) -> list[str]:
        """One key per served version, preferred first (what `SimulatedCluster.objects` holds)."""
        ordered = sorted(self.versions, key=version_priority, reverse=True)
        return [f"{self.group}/{v}/{self.plural}" for v in ordered]


_ISSUER_COLUMNS = (
    ("Ready", "string", f"{_READY}.status", 0),
    ("Status", "string", f"{_READY}.message", 1),
    _AGE,
)

# In generation order: issuers before the certificates that name them.
KINDS: tuple[CustomKind, ...] = (
    CustomKind(
        CERT_MANAGER,
        "cert-manager.io",
        "ClusterIssuer",
        "clusterissuers",
        False,
        ("v1",),
        "v1",
        categories=("cert-manager",),
        columns=_ISSUER_COLUMNS,
        weight=1,
        cap=12,
    ),
    CustomKind(
        CERT_MANAGER,
        "cert-manager.io",
        "Issuer",
        "issuers",
        True,
        ("v1",),
        "v1",
        categories=("cert-manager",),
        columns=_ISSUER_COLUMNS,
        weight=4,
    ),
    CustomKind(
        CERT_MANAGER,
        "cert-manager.io",
        "Certificate",
        "certificates",
        True,
        ("v1",),
        "v1",
        ("cert", "certs"),
        ("cert-manager",),
        columns=(
            ("Ready", "string", f"{_READY}.status", 0),
            ("Secret", "string", ".spec.secretName", 0),
            ("Issuer", "string", ".spec.issuerRef.name", 1),
            ("Status", "string", f"{_READY}.message", 1),
            _AGE,
        ),
        weight=24,
    ),
    CustomKind(
        PROMETHEUS,
        "monitoring.coreos.com",
        "ServiceMonitor",
        "servicemonitors",
        True,
        ("v1",),
        "v1",
        ("smon",),
        ("prometheus-operator",),
        status_subresource=False,
        weight=16,
    ),
    CustomKind(
        PROMETHEUS,
        "monitoring.coreos.com",
        "PrometheusRule",
        "prometheusrules",
        True,
        ("v1",),
        "v1",
        ("promrule",),
        ("prometheus-operator",),
        status_subresource=False,
        weight=8,
    ),
    CustomKind(
        ARGOCD,
        "argoproj.io",
        "Application",
        "applications",
        True,
        ("v1alpha1",),
        "v1alpha1",
        ("app", "apps"),
        columns=(
            ("Sync Status", "string", ".status.sync.status", 0),
            ("Health Status", "string", ".status.health.status", 0),
            ("Revision", "string", ".status.sync.revision", 10),
            ("Project", "string", ".spec.project", 10),
        ),
        status_subresource=False,
        weight=16,
    ),
    CustomKind(
        ISTIO,
        "networking.istio.io",
        "VirtualService",
        "virtualservices",
        True,
        ("v1", "v1alpha3", "v1beta1"),
        "v1alpha3",
        ("vs",),
        ("istio-io", "networking-istio-io"),
        columns=(
            ("Gateways", "string", ".spec.gateways", 0),
            ("Hosts", "string", ".spec.hosts", 0),
            _AGE,
        ),
        weight=20,
    ),
)
KINDS_BY_CRD: dict[str, CustomKind] = {k.crd_name: k for k in KINDS}
CUSTOM_KINDS: dict[str, tuple[str, bool]] = {k.key: (k.kind, k.namespaced) for k in KINDS}
"""Generator key (preferred version) → (kind, namespaced) of every custom kind generate_objects may return."""

_CRD_META: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    CERT_MANAGER: (
        {
            "app": "cert-manager",
            "app.kubernetes.io/component": "crds",
            "app.kubernetes.io/instance": "cert-manager",
            "app.kubernetes.io/name": "cert-manager",
            "app.kubernetes.io/version": "v1.15.3",
        },
        {"helm.sh/resource-policy": "keep"},
    ),
    PROMETHEUS: (
        {},
        {"controller-gen.kubebuilder.io/version": "v0.16.1", "operator.prometheus.io/version": "0.76.1"},
    ),
    ARGOCD: (
        {"app.kubernetes.io/name": "applications.argoproj.io", "app.kubernetes.io/part-of": "argocd"},
        {},
    ),
    ISTIO: (
        {"app": "istio-pilot", "chart": "istio", "heritage": "Tiller", "release": "istio"},
        {"helm.sh/resource-policy": "keep"},
    ),
}


# -- which kinds, how many ------------------------------------------------------------------------


def installed_kinds(operators: tuple[str, ...] | list[str]) -> list[CustomKind]:
    unknown = set(operators) - set(OPERATORS)
    if unknown:
        raise ValueError(f"unknown operators {sorted(unknown)}; known: {', '.join(OPERATORS)}")
    return [k for k in KINDS if k.operator in operators]


def default_custom_objects(operators: tuple[str, ...], pods: int) -> int:
    """ClusterSpec.custom_objects when not given: none without operators, else about one per two pods."""
    kinds = installed_kinds(operators)
    return max(3 * len(kinds), pods // 2) if kinds else 0


def custom_counts(spec: ClusterSpec) -> dict[str, int]:
    """Objects per generator key for the spec's Established kinds, summing to spec.custom_objects
    (unless every kind hit its cap): one of each first, the rest by weight (largest remainder)."""
    kinds = [k for k in installed_kinds(spec.operators) if k.crd_name not in spec.pending_crds]
    counts = {k.key: 0 for k in kinds}
    left = spec.custom_objects or 0
    if not kinds or left <= 0:
        return counts
    if left >= len(kinds):
        for k in kinds:
            counts[k.key] = 1
        left -= len(kinds)
    free = [k for k in kinds if k.cap is None or counts[k.key] < k.cap]
    while free and left > 0:
        total_weight = sum(k.weight for k in free)
        shares = {k.key: left * k.weight / total_weight for k in free}
        over = [k for k in free if k.cap is not None and counts[k.key] + shares[k.key] > k.cap]
        if over:
            for k in over:
                left -= k.cap - counts[k.key]  # type: ignore[operator]
                counts[k.key] = k.cap  # type: ignore[assignment]
                free.remove(k)
            continue
        whole = {key: int(share) for key, share in shares.items()}
        rest = left - sum(whole.values())
        by_remainder = sorted(free, key=lambda k: -(shares[k.key] - whole[k.key]))
        for i, k in enumerate(by_remainder):
            counts[k.key] += whole[k.key] + (1 if i < rest else 0)
        left = 0
    return counts


def custom_keys(spec: ClusterSpec) -> list[str]:
    """The custom keys generate_objects returns for this spec: the CRD list and one per Established kind."""
    if not spec.operators:
        return []
    return [CRD_KEY, *custom_counts(spec)]


# -- CRDs -----------------------------------------------------------------------------------------


def _s(description: str | None = None, **kw: Any) -> Obj:
    out: Obj = {}
    if description:
        out["description"] = description
    return {**out, "type": "string", **kw}


def _strings() -> Obj:
    return {"type": "array", "items": {"type": "string"}}


def _map() -> Obj:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def _obj(properties: Obj, required: tuple[str, ...] = (), description: str | None = None) -> Obj:
    out: Obj = {}
    if description:
        out["description"] = description
    out["type"] = "object"
    if required:
        out["required"] = list(required)
    out["properties"] = properties
    return out


def _preserve(description: str | None = None) -> Obj:
    out: Obj = {"description": description} if description else {}
    return {**out, "type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _conditions() -> Obj:
    return {
        "type": "array",
        "items": _obj(
            {
                "lastTransitionTime": _s(format="date-time"),
                "message": _s(),
                "observedGeneration": {"type": "integer", "format": "int64"},
                "reason": _s(),
                "status": _s(enum=["True", "False", "Unknown"]),
                "type": _s(),
            },
            ("status", "type"),
        ),
        "x-kubernetes-list-map-keys": ["type"],
        "x-kubernetes-list-type": "map",
    }


def _issuer_schema() -> tuple[Obj, Obj]:
    spec = _obj(
        {
            "acme": _obj(
                {
                    "email": _s(),
                    "privateKeySecretRef": _obj({"key": _s(), "name": _s()}, ("name",)),
                    "server": _s("The URL used to access the ACME server's 'directory' endpoint."),
                    "solvers": {"type": "array", "items": _preserve()},
                },
                ("privateKeySecretRef", "server"),
            ),
            "ca": _obj({"secretName": _s()}, ("secretName",)),
            "selfSigned": _obj({"crlDistributionPoints": _strings()}),
            "vault": _preserve(),
        },
        description="Desired state of the Issuer resource.",
    )
    status = _obj(
        {"acme": _obj({"lastRegisteredEmail": _s(), "uri": _s()}), "conditions": _conditions()},
        description="Status of the Issuer. This is set and managed automatically.",
    )
    return spec, status


def _schemas(kind: CustomKind) -> tuple[str, Obj, Obj | None, Obj]:
    """(description, spec, status or None, other top-level properties) of the kind's openAPIV3Schema."""
    if kind.kind in ("Issuer", "ClusterIssuer"):
        spec, status = _issuer_schema()
        scope = "a namespace" if kind.namespaced else "the cluster"
        return f"A {kind.kind} represents a certificate issuing authority in {scope}.", spec, status, {}
    if kind.kind == "Certificate":
        spec = _obj(
            {
                "commonName": _s(),
                "dnsNames": _strings(),
                "duration": _s("Requested 'duration' (i.e. lifetime) of the Certificate."),
                "issuerRef": _obj({"group": _s(), "kind": _s(), "name": _s()}, ("name",)),
                "privateKey": _obj(
                    {
                        "algorithm": _s(enum=["RSA", "ECDSA", "Ed25519"]),
                        "encoding": _s(enum=["PKCS1", "PKCS8"]),
                        "rotationPolicy": _s(enum=["Never", "Always"]),
                        "size": {"type": "integer"},
                    }
                ),
                "renewBefore": _s(),
                "secretName": _s(
                    "Name of the Secret resource that will be automatically created and managed."
                ),
                "usages": _strings(),
            },
            ("issuerRef", "secretName"),
        )
        status = _obj(
            {
                "conditions": _conditions(),
                "nextPrivateKeySecretName": _s(),
                "notAfter": _s(format="date-time"),
                "notBefore": _s(format="date-time"),
                "renewalTime": _s(format="date-time"),
                "revision": {"type": "integer"},
            }
        )
        return (
            "A Certificate resource should be created to ensure an up to date and signed X.509 certificate "
            "is stored in the Kubernetes Secret resource named in `spec.secretName`.",
            spec,
            status,
            {},
        )
    if kind.kind == "ServiceMonitor":
        endpoint = _obj(
            {
                "honorLabels": {"type": "boolean"},
                "interval": _s(
                    pattern="^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
                ),
                "path": _s(),
                "port": _s(),
                "relabelings": {"type": "array", "items": _preserve()},
                "scheme": _s(enum=["http", "https"]),
                "scrapeTimeout": _s(),
            }
        )
        spec = _obj(
            {
                "endpoints": {"type": "array", "items": endpoint},
                "jobLabel": _s(),
                "namespaceSelector": _obj({"any": {"type": "boolean"}, "matchNames": _strings()}),
                "sampleLimit": {"type": "integer", "format": "int64"},
                "selector": _obj(
                    {"matchExpressions": {"type": "array", "items": _preserve()}, "matchLabels": _map()},
                    description="Label selector to select the Kubernetes `Endpoints` objects to scrape "
                    "metrics from.",
                ),
            },
            ("selector",),
        )
        return (
            "The `ServiceMonitor` custom resource definition (CRD) defines how `Prometheus` and "
            "`PrometheusAgent` can scrape metrics from a group of services.",
            spec,
            None,
            {},
        )
    if kind.kind == "PrometheusRule":
        rule = _obj(
            {
                "alert": _s(),
                "annotations": _map(),
                "expr": {
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                    "x-kubernetes-int-or-string": True,
                },
                "for": _s(),
                "keep_firing_for": _s(),
                "labels": _map(),
                "record": _s(),
            },
            ("expr",),
        )
        group = _obj(
            {"interval": _s(), "name": _s(), "rules": {"type": "array", "items": rule}},
            ("name",),
        )
        spec = _obj(
            {
                "groups": {
                    "type": "array",
                    "items": group,
                    "x-kubernetes-list-map-keys": ["name"],
                    "x-kubernetes-list-type": "map",
                }
            }
        )
        return (
            "The `PrometheusRule` custom resource definition (CRD) defines alerting and recording rules to "
            "be evaluated by `Prometheus` or `ThanosRuler` objects.",
            spec,
            None,
            {},
        )
    if kind.kind == "Application":
        source = _obj(
            {
                "chart": _s(),
                "helm": _preserve(),
                "path": _s(),
                "repoURL": _s(
                    "RepoURL is the URL to the repository (Git or Helm) that contains the application "
                    "manifests"
                ),
                "targetRevision": _s(),
            },
            ("repoURL",),
        )
        spec = _obj(
            {
                "destination": _obj({"name": _s(), "namespace": _s(), "server": _s()}),
                "project": _s(),
                "revisionHistoryLimit": {"type": "integer", "format": "int64"},
                "source": source,
                "syncPolicy": _obj(
                    {
                        "automated": _obj(
                            {
                                "allowEmpty": {"type": "boolean"},
                                "prune": {"type": "boolean"},
                                "selfHeal": {"type": "boolean"},
                            }
                        ),
                        "retry": _preserve(),
                        "syncOptions": _strings(),
                    }
                ),
            },
            ("destination", "project"),
            "ApplicationSpec represents desired application state. Contains link to repository with "
            "application definition and additional parameters link definition revision.",
        )
        status = _obj(
            {
                "controllerNamespace": _s(),
                "health": _obj(
                    {"lastTransitionTime": _s(format="date-time"), "message": _s(), "status": _s()}
                ),
                "history": {"type": "array", "items": _preserve()},
                "operationState": _preserve(),
                "reconciledAt": _s(format="date-time"),
                "sourceType": _s(),
                "summary": _obj({"externalURLs": _strings(), "images": _strings()}),
                "sync": _obj({"comparedTo": _preserve(), "revision": _s(), "status": _s()}, ("status",)),
            }
        )
        operation = _obj(
            {
                "info": {"type": "array", "items": _preserve()},
                "initiatedBy": _obj({"automated": {"type": "boolean"}, "username": _s()}),
                "retry": _preserve(),
                "sync": _obj({"prune": {"type": "boolean"}, "revision": _s(), "syncStrategy": _preserve()}),
            },
            description="Operation contains information about a requested or running operation",
        )
        return "Application is a definition of Application resource.", spec, status, {"operation": operation}
    route = _obj(
        {
            "destination": _obj(
                {
                    "host": _s(),
                    "port": _obj({"number": {"type": "integer", "maximum": 4294967295, "minimum": 0}}),
                    "subset": _s(),
                },
                ("host",),
            ),
            "headers": _preserve(),
            "weight": {"type": "integer", "format": "int32"},
        },
        ("destination",),
    )
    http = _obj(
        {
            "match": {"type": "array", "items": _preserve()},
            "name": _s(),
            "retries": _obj(
                {"attempts": {"type": "integer", "format": "int32"}, "perTryTimeout": _s(), "retryOn": _s()}
            ),
            "rewrite": _obj({"uri": _s()}),
            "route": {"type": "array", "items": route},
            "timeout": _s(),
        }
    )
    spec = _obj(
        {
            "exportTo": _strings(),
            "gateways": _strings(),
            "hosts": _strings(),
            "http": {"type": "array", "items": http},
            "tcp": {"type": "array", "items": _preserve()},
            "tls": {"type": "array", "items": _preserve()},
        },
        description="Configuration affecting label/content routing, sni routing, etc. See more details at: "
        "https://istio.io/docs/reference/config/networking/virtual-service.html",
    )
    return "", spec, _preserve(), {}


def _openapi(kind: CustomKind) -> Obj:
    description, spec, status, extra = _schemas(kind)
    props: Obj = {
        "apiVersion": _s(
            "APIVersion defines the versioned schema of this representation of an object. Servers should "
            "convert recognized schemas to the latest internal value, and may reject unrecognized values."
        ),
        "kind": _s("Kind is a string value representing the REST resource this object represents."),
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if status is not None:
        props["status"] = status
    props.update(extra)
    schema: Obj = {"description": description} if description else {}
    schema.update(type="object", required=["metadata", "spec"] if kind.kind == "Application" else ["spec"])
    schema["properties"] = props
    return schema


def _names(kind: CustomKind) -> Obj:
    names: Obj = {"plural": kind.plural, "singular": kind.singular}
    if kind.short_names:
        names["shortNames"] = list(kind.short_names)
    names["kind"] = kind.kind
    names["listKind"] = f"{kind.kind}List"
    if kind.categories:
        names["categories"] = list(kind.categories)
    return names


def crd(ctx: Ctx, kind: CustomKind, *, established: bool = True, created: int | None = None) -> Obj:
    """The CustomResourceDefinition of `kind` as the API server serves it (status filled by its
    naming and establishing controllers); a not Established one is still "Installing"."""
    labels, annotations = _CRD_META[kind.operator]
    when = ctx.created() if created is None else created
    versions = []
    for v in kind.versions:
        version: Obj = {
            "name": v,
            "served": True,
            "storage": v == kind.storage,
            "schema": {"openAPIV3Schema": _openapi(kind)},
        }
        if kind.status_subresource:
            version["subresources"] = {"status": {}}
        if kind.columns:
            version["additionalPrinterColumns"] = [
                {"name": n, "type": t, **({"priority": p} if p else {}), "jsonPath": path}
                for n, t, path, p in kind.columns
            ]
        versions.append(version)
    accepted = ts(when + 1)
    conditions: list[Obj] = [
        {
            "type": "NamesAccepted",
            "status": "True",
            "lastTransitionTime": accepted,
            "reason": "NoConflicts",
            "message": "no conflicts found",
        },
        {
            "type": "Established",
            "status": "True" if established else "False",
            "lastTransitionTime": accepted,
            "reason": "InitialNamesAccepted" if established else "Installing",
            "message": "the initial names have been accepted",
        },
    ]
    obj: Obj = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": ctx.meta(
            kind.crd_name, created=when, labels=labels or None, annotations=annotations or None, generation=1
        ),
        "spec": {
            "group": kind.group,
            "names": _names(kind),
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "versions": versions,
            "conversion": {"strategy": "None"},
        },
        "status": {"conditions": conditions, "acceptedNames": _names(kind), "storedVersions": [kind.storage]},
    }
    return orjson.loads(
        orjson.dumps(obj)
    )  # no shared sub-structures (the schema helpers reuse none, but be sure)


# -- objects --------------------------------------------------------------------------------------

_WORDS = (
    "api",
    "auth",
    "billing",
    "cart",
    "catalog",
    "checkout",
    "frontend",
    "gateway",
    "inventory",
    "notifications",
    "orders",
    "payments",
    "reports",
    "search",
    "web",
)
_TEAMS = ("platform", "payments", "storefront", "data", "identity")
_HOUR = 3600
_DURATIONS = (("2160h0m0s", 90 * 24), ("8760h0m0s", 365 * 24), ("720h0m0s", 30 * 24))


class _Custom:
    """Generates the objects of the installed kinds; reads the built-in services and ingresses for names."""

    def __init__(self, ctx: Ctx, app_namespaces: list[str], crd_created: dict[str, int]) -> None:
        self.ctx, self.rng = ctx, ctx.rng
        self.namespaces = app_namespaces
        self.crd_created = crd_created
        self.services: dict[str, list[str]] = {}
        for s in ctx.out.get("v1/services", []):
            md = s["metadata"]
            if md["name"] not in ("kubernetes", "kube-dns"):
                self.services.setdefault(md["namespace"], []).append(md["name"])
        self.ingresses: dict[str, list[Obj]] = {}
        for ing in ctx.out.get("networking.k8s.io/v1/ingresses", []):
            if ing["spec"].get("tls"):
                self.ingresses.setdefault(ing["metadata"]["namespace"], []).append(ing)
        self.cluster_issuers: list[str] = []
        self.issuers: dict[str, list[str]] = {}

    def _name(self, kind: str, namespace: str, base: str) -> str:
        first = [True]

        def make() -> str:
            if first[0]:
                first[0] = False
                return base
            return f"{base}-{self.ctx.suffix(5)}"

        return self.ctx.unique(kind, namespace, make)

    def _app(self, ns: str) -> str:
        return self.rng.choice(self.services.get(ns) or _WORDS)

    def _created(self, kind: CustomKind) -> int:
        return self.ctx.created(after=self.crd_created[kind.crd_name])

    def _head(self, kind: CustomKind, version: str | None = None) -> Obj:
        return {"apiVersion": f"{kind.group}/{version or kind.preferred}", "kind": kind.kind}

    # cert-manager ---------------------------------------------------------------------------------
    def issuer(self, kind: CustomKind) -> Obj:
        ctx, rng = self.ctx, self.rng
        ns = rng.choice(self.namespaces) if kind.namespaced else None
        flavour = rng.choices(("acme", "ca", "selfSigned"), (5, 3, 2))[0]
        if kind.namespaced:
            base = {"acme": "letsencrypt", "ca": f"{ns}-ca", "selfSigned": "selfsigned"}[flavour]
        else:
            base = {
                "acme": "letsencrypt-prod",
                "ca": "internal-ca",
                "selfSigned": "selfsigned-cluster-issuer",
            }[flavour]
        name = self._name(kind.kind, ns or "", base)
        created = self._created(kind)
        gen = rng.choice((1, 1, 1, 2))
        status: Obj = {}
        if flavour == "acme":
            staging = rng.random() < 0.3
            email = f"{rng.choice(_TEAMS)}-certs@example.com"
            server = (
                "https://acme-staging-v02.api.letsencrypt.org/directory"
                if staging
                else "https://acme-v02.api.letsencrypt.org/directory"
            )
            spec: Obj = {
                "acme": {
                    "email": email,
                    "privateKeySecretRef": {"name": f"{name}-account-key"},
                    "server": server,
                    "solvers": [{"http01": {"ingress": {"ingressClassName": rng.choice(("nginx", "alb"))}}}],
                }
            }
            host = "acme-staging-v02" if staging else "acme-v02"
            status["acme"] = {
                "lastRegisteredEmail": email,
                "uri": f"https://{host}.api.letsencrypt.org/acme/acct/{rng.randrange(10**8, 10**9)}",
            }
            reason, message = "ACMEAccountRegistered", "The ACME account was registered with the ACME server"
        elif flavour == "ca":
            spec = {"ca": {"secretName": f"{name}-key-pair"}}
            reason, message = "KeyPairVerified", "Signing CA verified"
        else:
            spec = {"selfSigned": {}}
            reason, message = "IsReady", ""
        ready = rng.random() < 0.93
        if not ready:
            reason, message = "ErrGetKeyPair", "Error getting keypair for CA issuer: secrets not found"
        cond: Obj = {
            "type": "Ready",
            "status": "True" if ready else "False",
            "lastTransitionTime": ts(ctx.created(after=created)),
            "reason": reason,
        }
        if message:
            cond["message"] = message
        cond["observedGeneration"] = gen
        status["conditions"] = [cond]
        if kind.namespaced:
            self.issuers.setdefault(ns or "", []).append(name)
        else:
            self.cluster_issuers.append(name)
        return {
            **self._head(kind),
            "metadata": ctx.meta(name, ns, created=created, generation=gen),
            "spec": spec,
            "status": status,
        }

    def certificate(self, kind: CustomKind) -> Obj:
        ctx, rng = self.ctx, self.rng
        ns = rng.choice(self.namespaces)
        created = self._created(kind)
        owner: Obj | None = None
        labels: dict[str, str] | None = None
        ingresses = self.ingresses.get(ns)
        if ingresses and rng.random() < 0.3:  # made by cert-manager's ingress-shim for a TLS ingress
            ing = rng.choice(ingresses)
            tls = ing["spec"]["tls"][0]
            name = self._name(kind.kind, ns, tls["secretName"])
            dns = list(tls["hosts"])
            owner = owner_ref(ing)
        else:
            app = self._app(ns)
            name = self._name(kind.kind, ns, f"{app}-tls")
            dns = [f"{app}.{ns}.svc", f"{app}.{ns}.svc.cluster.local"]
            if rng.random() < 0.5:
                dns.append(f"{app}.example.com")
            labels = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/name": app}
        if self.issuers.get(ns) and rng.random() < 0.4:
            issuer = {"name": rng.choice(self.issuers[ns]), "kind": "Issuer", "group": "cert-manager.io"}
        else:
            pool = self.cluster_issuers or ["letsencrypt-prod"]
            issuer = {"name": rng.choice(pool), "kind": "ClusterIssuer", "group": "cert-manager.io"}
        duration, hours = rng.choice(_DURATIONS)
        renew_hours = hours // 6
        gen = rng.choice((1, 1, 2, 3))
        spec: Obj = {"dnsNames": dns, "duration": duration, "issuerRef": issuer}
        if rng.random() < 0.7:
            spec["privateKey"] = {"algorithm": "ECDSA", "rotationPolicy": "Always", "size": 256}
        else:
            spec["privateKey"] = {"algorithm": "RSA", "encoding": "PKCS1", "size": 2048}
        spec["renewBefore"] = f"{renew_hours}h0m0s"
        spec["secretName"] = name
        roll = rng.random()
        if roll < 0.86:
            life, renew = hours * _HOUR, renew_hours * _HOUR
            issued = max(created + 60, NOW - rng.randrange(_HOUR, life - renew))
            status: Obj = {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "lastTransitionTime": ts(issued),
                        "reason": "Ready",
                        "message": "Certificate is up to date and has not expired",
                        "observedGeneration": gen,
                    }
                ],
                "notAfter": ts(issued + life),
                "notBefore": ts(issued),
                "renewalTime": ts(issued + life - renew),
                "revision": rng.randrange(1, 12),
            }
        else:
            since = ts(ctx.created(after=created))
            failed = roll < 0.93
            reason = "Failed" if failed else "DoesNotExist"
            message = (
                "The certificate request has failed to complete and will be retried: Failed to wait for "
                "order "
                'resource to become ready: order is in "errored" state'
                if failed
                else "Issuing certificate as Secret does not exist"
            )
            status = {
                "conditions": [
                    {
                        "type": "Issuing",
                        "status": "False" if failed else "True",
                        "lastTransitionTime": since,
                        "reason": reason,
                        "message": message,
                        "observedGeneration": gen,
                    },
                    {
                        "type": "Ready",
                        "status": "False",
                        "lastTransitionTime": since,
                        "reason": reason,
                        "message": message,
                        "observedGeneration": gen,
                    },
                ],
            }
            if failed:
                status["failedIssuanceAttempts"] = rng.randrange(1, 6)
                status["lastFailureTime"] = since
            else:
                status["nextPrivateKeySecretName"] = f"{name}-{ctx.suffix(5)}"
        return {
            **self._head(kind),
            "metadata": ctx.meta(name, ns, created=created, labels=labels, owner=owner, generation=gen),
            "spec": spec,
            "status": status,
        }

    # prometheus-operator --------------------------------------------------------------------------
    def service_monitor(self, kind: CustomKind) -> Obj:
        ctx, rng = self.ctx, self.rng
        ns = rng.choice(self.namespaces)
        app = self._app(ns)
        name = self._name(kind.kind, ns, app)
        endpoint: Obj = {
            "interval": rng.choice(("15s", "30s", "30s", "1m")),
            "path": "/metrics",
            "port": rng.choice(("metrics", "http-metrics", "web")),
            "scheme": "http",
        }
        endpoints = [endpoint]
        if rng.random() < 0.25:
            endpoint["relabelings"] = [
                {
                    "action": "replace",
                    "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                    "targetLabel": "node",
                }
            ]
            endpoints.append(
                {"honorLabels": True, "path": "/federate", "port": "admin", "scrapeTimeout": "10s"}
            )
        spec: Obj = {"endpoints": endpoints}
        if rng.random() < 0.4:
            spec["jobLabel"] = "app.kubernetes.io/name"
        spec["namespaceSelector"] = {"matchNames": [ns]}
        spec["selector"] = {"matchLabels": {"app.kubernetes.io/name": app}}
        labels = {"app.kubernetes.io/name": app, "release": "kube-prometheus-stack"}
        return {
            **self._head(kind),
            "metadata": ctx.meta(
                name, ns, created=self._created(kind), labels=labels, generation=rng.choice((1, 1, 2))
            ),
            "spec": spec,
        }

    def prometheus_rule(self, kind: CustomKind) -> Obj:
        ctx, rng = self.ctx, self.rng
        ns = rng.choice(self.namespaces)
        app = self._app(ns)
        name = self._name(kind.kind, ns, f"{app}-rules")
        job = f'job="{app}"'
        rules: list[Obj] = [
            {
                "alert": "HighErrorRate",
                "annotations": {
                    "description": f"More than 5% of {app} requests fail with 5xx "
                    "({{ $value | humanizePercentage }}).",
                    "summary": f"{app}: high error rate",
                },
                "expr": f'sum(rate(http_requests_total{{{job},code=~"5.."}}[5m])) '
                f"/ sum(rate(http_requests_total{{{job}}}[5m])) > 0.05",
                "for": "10m",
                "labels": {"severity": "warning", "team": rng.choice(_TEAMS)},
            }
        ]
        if rng.random() < 0.6:
            rules.append(
                {
                    "alert": "PodCrashLooping",
                    "annotations": {"summary": "Pod {{ $labels.pod }} is restarting often"},
                    "expr": "increase(kube_pod_container_status_restarts_total"
                    f'{{namespace="{ns}"}}[15m]) > 3',
                    "for": "5m",
                    "labels": {"severity": "critical"},
                }
            )
        if rng.random() < 0.5:
            rules.append(
                {
                    "expr": f"sum by (code) (rate(http_requests_total{{{job}}}[5m]))",
                    "record": "code:http_requests:rate5m",
                }
            )
        labels = {"release": "kube-prometheus-stack", "role": "alert-rules"}
        return {
            **self._head(kind),
            "metadata": ctx.meta(
                name, ns, created=self._created(kind), labels=labels, generation=rng.choice((1, 2))
            ),
            "spec": {"groups": [{"name": f"{app}.rules", "rules": rules}]},
        }

    # argocd ---------------------------------------------------------------------------------------
    def application(self, kind: CustomKind) -> Obj:
        ctx, rng = self.ctx, self.rng
        ns = rng.choice(self.namespaces)
        app = self._app(ns)
        team = rng.choice(_TEAMS)
        name = self._name(kind.kind, ns, app)
        created = self._created(kind)
        helm = rng.random() < 0.35

        def source() -> Obj:
            if helm:
                return {
                    "chart": app,
                    "helm": {"releaseName": app, "valueFiles": ["values-prod.yaml"]},
                    "repoURL": "https://charts.example.com",
                    "targetRevision": "1.4.2",
                }
            return {
                "path": f"apps/{app}/overlays/prod",
                "repoURL": f"https://github.com/example-org/{team}-deploy.git",
                "targetRevision": rng.choice(("HEAD", "main")),
            }

        def destination() -> Obj:
            return {"namespace": ns, "server": "https://kubernetes.default.svc"}

        spec: Obj = {
            "destination": destination(),
            "project": rng.choice(("default", team)),
            "source": source(),
        }
        if rng.random() < 0.7:
            spec["syncPolicy"] = {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true"],
            }
        sync = rng.choices(("Synced", "OutOfSync", "Unknown"), (80, 17, 3))[0]
        health = rng.choices(
            ("Healthy", "Progressing", "Degraded", "Missing", "Suspended"), (75, 10, 8, 4, 3)
        )[0]
        revision = ctx.hexstr(40)
        started = ctx.created(after=created)
        running = rng.random() < 0.08
        op_state: Obj = {
            "operation": {
                "initiatedBy": {"automated": True} if not running else {"username": "admin"},
                "retry": {"limit": 5},
                "sync": {"revision": revision},
            },
            "phase": "Running" if running else "Succeeded",
            "message": "waiting for completion of hook batch/Job/db-migrate"
            if running
            else "successfully synced (all tasks run)",
            "startedAt": ts(started),
        }
        if not running:
            op_state["finishedAt"] = ts(started + rng.randrange(2, 90))
            op_state["syncResult"] = {"revision": revision, "source": source()}
        image = f"registry.example.com/{team}/{app}:v1.{rng.randrange(0, 30)}.{rng.randrange(0, 10)}"
        status: Obj = {
            "controllerNamespace": "argocd",
            "health": {"status": health},
            "history": [
                {
                    "deployStartedAt": ts(started),
                    "deployedAt": ts(started + 1),
                    "id": rng.randrange(0, 40),
                    "revision": revision,
                    "source": source(),
                }
            ],
            "operationState": op_state,
            "reconciledAt": ts(NOW - rng.randrange(0, 180)),
            "sourceType": "Helm" if helm else "Kustomize",
            "summary": {"images": [image]},
            "sync": {
                "comparedTo": {"destination": destination(), "source": source()},
                "revision": revision,
                "status": sync,
            },
        }
        obj: Obj = {
            **self._head(kind),
            "metadata": ctx.meta(
                name,
                ns,
                created=created,
                labels={"argocd.argoproj.io/instance": f"{team}-apps"} if rng.random() < 0.5 else None,
                generation=rng.randrange(2, 40),
                finalizers=["resources-finalizer.argocd.argoproj.io"] if rng.random() < 0.5 else None,
            ),
            "spec": spec,
            "status": status,
        }
        if running:  # a requested sync: Argo CD's top-level `operation`, cleared when it completes
            obj["operation"] = {
                "initiatedBy": {"username": "admin"},
                "retry": {"limit": 5},
                "sync": {"revision": revision, "syncStrategy": {"hook": {}}},
            }
        return obj

    # istio ----------------------------------------------------------------------------------------
    def virtual_service(self, kind: CustomKind) -> Obj:
        ctx, rng = self.ctx, self.rng
        ns = rng.choice(self.namespaces)
        app = self._app(ns)
        name = self._name(kind.kind, ns, app)
        fqdn = f"{app}.{ns}.svc.cluster.local"
        route: list[Obj] = [{"destination": {"host": fqdn, "port": {"number": 8080}, "subset": "v1"}}]
        if rng.random() < 0.3:
            route[0]["weight"] = 90
            route.append(
                {"destination": {"host": fqdn, "port": {"number": 8080}, "subset": "v2"}, "weight": 10}
            )
        http: Obj = {"name": "primary", "match": [{"uri": {"prefix": "/"}}], "route": route}
        if rng.random() < 0.5:
            http["retries"] = {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset,connect-failure"}
            http["timeout"] = "10s"
        spec: Obj = {}
        if rng.random() < 0.5:
            spec["gateways"] = ["istio-system/public-gateway"]
            spec["hosts"] = [f"{app}.example.com"]
        else:
            spec["hosts"] = [app]
        spec["http"] = [http]
        gen = rng.choice((1, 1, 2, 4))
        obj: Obj = {
            **self._head(kind),
            "metadata": ctx.meta(name, ns, created=self._created(kind), labels={"app": app}, generation=gen),
            "spec": spec,
        }
        if rng.random() < 0.2:  # with istiod's status reporting (an analyzer message, observedGeneration)
            obj["status"] = {
                "observedGeneration": gen,
                "validationMessages": [
                    {
                        "documentationUrl": "https://istio.io/v1.22/docs/reference/config/analysis/ist0101/?ref=status-controller",
                        "level": "ERROR",
                        "type": {"code": "IST0101", "name": "ReferencedResourceNotFound"},
                    }
                ],
            }
        return obj


def generate(ctx: Ctx, app_namespaces: list[str]) -> None:
    """The CRDs of the spec's operators and `custom_counts(spec)` objects; no-op without operators."""
    spec = ctx.spec
    if not spec.operators:
        return
    kinds = installed_kinds(spec.operators)
    crd_created: dict[str, int] = {}
    for kind in kinds:
        when = ctx.created(after=ctx.born + 3600)
        crd_created[kind.crd_name] = when
        ctx.add(CRD_KEY, crd(ctx, kind, established=kind.crd_name not in spec.pending_crds, created=when))
    gen = _Custom(ctx, app_namespaces, crd_created)
    factories = {
        "ClusterIssuer": gen.issuer,
        "Issuer": gen.issuer,
        "Certificate": gen.certificate,
        "ServiceMonitor": gen.service_monitor,
        "PrometheusRule": gen.prometheus_rule,
        "Application": gen.application,
        "VirtualService": gen.virtual_service,
    }
    counts = custom_counts(spec)
    for kind in kinds:
        make = factories[kind.kind]
        items = ctx.out.setdefault(kind.key, []) if kind.key in counts else None
        for _ in range(counts.get(kind.key, 0)):
            items.append(make(kind))  # type: ignore[union-attr]
