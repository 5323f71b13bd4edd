"""Talking to Kubernetes API servers: kubeconfig auth and a fast, read-only list client."""

from kq_pipeline.kube.access import ClusterAccess, ExecPlugin, TokenSource
from kq_pipeline.kube.client import KubeClient
from kq_pipeline.kube.errors import (
    KubeAuthError,
    KubeConfigError,
    KubeError,
    KubeForbidden,
    KubeListExpired,
    KubeNotFound,
    KubeProtocolError,
    KubeTimeout,
    KubeTLSError,
    KubeUnavailable,
)
from kq_pipeline.kube.kubeconfig import KubeconfigError, access_from_kubeconfig, list_contexts

__all__ = [
    "ClusterAccess",
    "ExecPlugin",
    "KubeAuthError",
    "KubeClient",
    "KubeConfigError",
    "KubeError",
    "KubeForbidden",
    "KubeListExpired",
    "KubeNotFound",
    "KubeProtocolError",
    "KubeTLSError",
    "KubeTimeout",
    "KubeUnavailable",
    "KubeconfigError",
    "TokenSource",
    "access_from_kubeconfig",
    "list_contexts",
]
