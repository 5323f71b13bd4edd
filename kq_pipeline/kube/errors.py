"""Typed failures of talking to a cluster.

Every message names the cluster and, where there is one, the API path, so a fleet-wide log line
says which cluster broke and where. No message ever carries a credential: the client builds them
from the cluster name, the path and the HTTP status only.
"""

from __future__ import annotations


class KubeError(Exception):
    """Base class: something went wrong reaching or reading a cluster."""

    def __init__(
        self, message: str, *, cluster: str | None = None, path: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.cluster = cluster
        self.path = path
        self.status = status


class KubeConfigError(KubeError):
    """The connection settings themselves are unusable (bad kubeconfig, missing token, exec plugin failed)."""


class KubeAuthError(KubeError):
    """401/403: the credential is wrong, expired or lacks permission."""


class KubeForbidden(KubeAuthError):
    """403 on one resource: RBAC denies it; other resources may still be readable."""


class KubeNotFound(KubeError):
    """404: the path (or the kind at this version) is not served."""


class KubeTLSError(KubeError):
    """The TLS handshake failed (unknown CA, wrong host name, bad client certificate)."""


class KubeUnavailable(KubeError):
    """The server kept failing (5xx, 429, connection errors) after the bounded retries."""


class KubeTimeout(KubeError):
    """A request or the per-cluster deadline ran out."""


class KubeProtocolError(KubeError):
    """The server answered with something that is not the JSON the API promises."""


class KubeListExpired(KubeError):
    """410 Gone mid-list (the continue token expired) and the list could not be restarted."""
