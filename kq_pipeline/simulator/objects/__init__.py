"""Deterministic Kubernetes objects for the API simulator: every kind the 51 kubequery tables read.

`generate_objects(spec)` returns complete objects, as an API server would serve them, keyed by
"<group_version>/<resource>" (core as "v1"), each list sorted by (namespace, name), plus "version"
(the /version document, a dict). The same spec gives byte-identical output. The objects share no
mutable sub-structures, so callers may modify them.

With `spec.operators`, also the CRDs under CRD_KEY ("apiextensions.k8s.io/v1/customresourcedefinitions")
and each Established custom kind's objects at its preferred version ("cert-manager.io/v1/certificates",
"networking.istio.io/v1/virtualservices", ...: `custom_keys(spec)`, counts `custom_counts(spec)`).
"""

from __future__ import annotations

from typing import Any

from kq_pipeline.gcpause import gc_paused
from kq_pipeline.simulator.catalog import CRD_KEY
from kq_pipeline.simulator.objects import cluster, config, custom, events, network, policy, storage, workloads
from kq_pipeline.simulator.objects.config import secret_values
from kq_pipeline.simulator.objects.ctx import Ctx
from kq_pipeline.simulator.objects.custom import CUSTOM_KINDS, OPERATORS, custom_counts, custom_keys
from kq_pipeline.simulator.objects.spec import ClusterSpec

__all__ = [
    "CRD_KEY",
    "CUSTOM_KINDS",
    "OPERATORS",
    "RESOURCE_KINDS",
    "ClusterSpec",
    "custom_counts",
    "custom_keys",
    "generate_objects",
    "resource_keys",
    "secret_values",
]

RESOURCE_KINDS: dict[str, tuple[str, bool]] = {
    "v1/componentstatuses": ("ComponentStatus", False),
    "v1/configmaps": ("ConfigMap", True),
    "v1/endpoints": ("Endpoints", True),
    "v1/limitranges": ("LimitRange", True),
    "v1/namespaces": ("Namespace", False),
    "v1/nodes": ("Node", False),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "v1/persistentvolumes": ("PersistentVolume", False),
    "v1/pods": ("Pod", True),
    "v1/podtemplates": ("PodTemplate", True),
    "v1/resourcequotas": ("ResourceQuota", True),
    "v1/secrets": ("Secret", True),
    "v1/serviceaccounts": ("ServiceAccount", True),
    "v1/services": ("Service", True),
    "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations": ("MutatingWebhookConfiguration", False),
    "admissionregistration.k8s.io/v1/validatingwebhookconfigurations": (
        "ValidatingWebhookConfiguration",
        False,
    ),
    "apps/v1/daemonsets": ("DaemonSet", True),
    "apps/v1/deployments": ("Deployment", True),
    "apps/v1/replicasets": ("ReplicaSet", True),
    "apps/v1/statefulsets": ("StatefulSet", True),
    "autoscaling/v1/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True),
    "batch/v1/cronjobs": ("CronJob", True),
    "batch/v1/jobs": ("Job", True),
    "events.k8s.io/v1/events": ("Event", True),
    "networking.k8s.io/v1/ingressclasses": ("IngressClass", False),
    "networking.k8s.io/v1/ingresses": ("Ingress", True),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True),
    "policy/v1beta1/podsecuritypolicies": ("PodSecurityPolicy", False),
    "rbac.authorization.k8s.io/v1/clusterrolebindings": ("ClusterRoleBinding", False),
    "rbac.authorization.k8s.io/v1/clusterroles": ("ClusterRole", False),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True),
    "storage.k8s.io/v1/csidrivers": ("CSIDriver", False),
    "storage.k8s.io/v1/csinodes": ("CSINode", False),
    "storage.k8s.io/v1/storageclasses": ("StorageClass", False),
    "storage.k8s.io/v1/volumeattachments": ("VolumeAttachment", False),
}
"""Generator key → (kind, namespaced) for every list generate_objects may return."""

PSP_KEY = "policy/v1beta1/podsecuritypolicies"
PSP_REMOVED_IN = 25


def resource_keys(k8s_minor: int) -> list[str]:
    """The list keys generate_objects returns for a cluster of this minor version (all, even if empty)."""
    return [k for k in RESOURCE_KINDS if k != PSP_KEY or k8s_minor < PSP_REMOVED_IN]


def generate_objects(spec: ClusterSpec) -> dict[str, Any]:
    with gc_paused():  # millions of fresh containers, none in a cycle
        return _generate(spec)


def _generate(spec: ClusterSpec) -> dict[str, Any]:
    ctx = Ctx(spec)
    ns_objs = cluster.namespaces(ctx)
    namespaces = [n["metadata"]["name"] for n in ns_objs]
    app_namespaces = [n for n in namespaces if n not in workloads.SYSTEM_NAMESPACES and n != "default"] or [
        "default"
    ]
    nodes = cluster.nodes(ctx)
    cluster.component_statuses(ctx)
    workloads.generate(ctx, namespaces, nodes)
    storage.storage_classes(ctx)
    storage.csi_drivers(ctx)
    storage.csi_nodes(ctx, nodes)
    storage.volumes(ctx, nodes, app_namespaces)
    network.Services(ctx).generate(app_namespaces)
    network.ingress_classes(ctx)
    network.ingresses(ctx)
    network.network_policies(ctx, app_namespaces)
    policy.rbac(ctx, namespaces, app_namespaces)
    policy.webhooks(ctx)
    policy.hpas(ctx)
    policy.pdbs(ctx)
    if spec.k8s_minor < PSP_REMOVED_IN:
        policy.pod_security_policies(ctx)
    config.secrets(ctx, namespaces)
    config.config_maps(ctx, namespaces)
    config.service_accounts(ctx, namespaces)
    config.limit_ranges(ctx, app_namespaces)
    config.resource_quotas(ctx, app_namespaces)
    events.events(ctx)
    version = cluster.version(ctx)
    custom.generate(ctx, app_namespaces)  # last: the built-in objects do not depend on the operators
    out: dict[str, Any] = {}
    for key in [*resource_keys(spec.k8s_minor), *custom_keys(spec)]:
        items = ctx.out.get(key, [])
        items.sort(key=_order)
        out[key] = items
    out["version"] = version
    return out


def _order(obj: dict[str, Any]) -> tuple[str, str]:
    md = obj["metadata"]
    return md.get("namespace", ""), md["name"]
