"""Creates, updates and deletes for the kinds that registering a cluster writes, and the token controller.

`kq clusters register` creates a namespace, a ServiceAccount, a ClusterRole, its binding and a
`kubernetes.io/service-account-token` Secret. As on a real cluster, the token controller fills that
Secret a moment later with a new token and the cluster CA; the token then authenticates as the
service account, whose rights are whatever the stored bindings grant it (see bindings.py).
"""

from __future__ import annotations

import base64
import secrets
import threading
from typing import Any

import orjson

from kq_pipeline.simulator import status
from kq_pipeline.simulator.bindings import RBAC_GROUP, Principal
from kq_pipeline.simulator.catalog import Catalog, ResourceType
from kq_pipeline.simulator.edits import Edit
from kq_pipeline.simulator.status import ApiError
from kq_pipeline.simulator.store import ClusterStore

CREATABLE: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "namespaces"),
        ("", "serviceaccounts"),
        ("", "secrets"),
        (RBAC_GROUP, "clusterroles"),
        (RBAC_GROUP, "clusterrolebindings"),
        (RBAC_GROUP, "roles"),
        (RBAC_GROUP, "rolebindings"),
    }
)
SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class TokenController:
    """Issues service-account tokens into token Secrets and says whom a presented token belongs to."""

    def __init__(self, catalog: Catalog, store: ClusterStore, ca_pem: str, delay_s: float) -> None:
        self.catalog = catalog
        self._store = store
        self._ca_pem = ca_pem
        self.delay_s = delay_s
        self._issued: dict[str, tuple[str, str]] = {}
        """token → (namespace, secret name); valid while that Secret still holds it."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenController(issued={len(self._issued)})"

    def _type(self, resource: str) -> ResourceType:
        rtype = self.catalog.lookup("", "v1", resource)
        assert rtype is not None
        return rtype

    def secret_created(self, secret: dict[str, Any]) -> None:
        if secret.get("type") != SA_TOKEN_TYPE:
            return
        meta = secret["metadata"]
        timer = threading.Timer(self.delay_s, self._fill, args=(meta["namespace"], meta["name"]))
        timer.daemon = True
        timer.start()

    def _fill(self, namespace: str, name: str) -> None:
        secrets_t, sa_t = self._type("secrets"), self._type("serviceaccounts")
        current = self._store.get(secrets_t, namespace, name)
        if current is None:
            return
        sa_name = (current["metadata"].get("annotations") or {}).get(SA_NAME_ANNOTATION)
        sa = self._store.get(sa_t, namespace, sa_name or "")
        if sa is None:
            return  # the real controller waits for (or garbage-collects) a token of a missing account
        token = "kq-sim-sa." + secrets.token_urlsafe(32)
        updated = orjson.loads(orjson.dumps(current))
        updated["metadata"].setdefault("annotations", {})[SA_UID_ANNOTATION] = sa["metadata"].get("uid", "")
        updated["data"] = {
            **(updated.get("data") or {}),
            "token": _b64(token),
            "ca.crt": _b64(self._ca_pem),
            "namespace": _b64(namespace),
        }
        with self._lock:
            if self._store.write(secrets_t, updated, create=False) is not None:
                self._issued[token] = (namespace, name)

    def authenticate(self, token: str) -> Principal | None:
        """The service account a token was issued for, while its Secret and account still exist."""
        with self._lock:
            where = self._issued.get(token)
        if where is None:
            return None
        secret = self._store.get(self._type("secrets"), *where)
        if secret is None or (secret.get("data") or {}).get("token") != _b64(token):
            return None
        sa_name = (secret["metadata"].get("annotations") or {}).get(SA_NAME_ANNOTATION) or ""
        if self._store.get(self._type("serviceaccounts"), where[0], sa_name) is None:
            return None
        return Principal.service_account(where[0], sa_name)


class Writes:
    """POST (create) and PUT (update) on the registration kinds, DELETE on those and any namespaced kind."""

    def __init__(self, catalog: Catalog, store: ClusterStore, tokens: TokenController) -> None:
        self.catalog = catalog
        """What the cluster serves now (set again when a CRD comes or goes)."""
        self._store = store
        self._tokens = tokens

    def __repr__(self) -> str:
        return "Writes()"

    @staticmethod
    def writable(rtype: ResourceType) -> bool:
        return (rtype.group, rtype.resource) in CREATABLE

    @staticmethod
    def _body(rtype: ResourceType, body: bytes) -> dict[str, Any]:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise status.bad_request("the request body is not JSON") from None
        if (
            not isinstance(obj, dict)
            or obj.get("kind") != rtype.kind
            or obj.get("apiVersion") != rtype.group_version
        ):
            raise status.bad_request(f"the body must be a {rtype.group_version} {rtype.kind}")
        return obj

    def update(self, rtype: ResourceType, namespace: str | None, name: str, body: bytes) -> dict[str, Any]:
        """Replace an object (PUT). With metadata.resourceVersion set, only if it is still the stored one
        (409 Conflict otherwise), as kube-apiserver's optimistic concurrency; uid and creation stay."""
        obj = self._body(rtype, body)
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or meta.get("name") != name:
            raise status.bad_request("the name of the object does not match the name on the URL")
        if rtype.namespaced and meta.get("namespace") not in (None, namespace):
            raise status.bad_request(
                "the namespace of the object does not match the namespace of the request"
            )
        with self._store.edit_lock:  # the version check and the write, together
            current = self._store.get(rtype, namespace or "", name)
            if current is None:
                raise status.not_found(rtype.resource, rtype.group, name)
            version = meta.get("resourceVersion")
            if version and version != current["metadata"].get("resourceVersion"):
                raise status.conflict(rtype.resource, rtype.group, name)
            if rtype.namespaced:
                meta["namespace"] = namespace
            for key in ("uid", "creationTimestamp"):
                if key in current["metadata"]:
                    meta[key] = current["metadata"][key]
            stored = self._store.write(rtype, obj, create=False)
        if stored is None:
            raise status.not_found(rtype.resource, rtype.group, name)
        return stored

    def create(self, rtype: ResourceType, namespace: str | None, body: bytes) -> dict[str, Any]:
        obj = self._body(rtype, body)
        meta = obj.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if not name:
            raise status.invalid(rtype.kind, "", "metadata.name: Required value")
        if rtype.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise status.bad_request(
                    "the namespace of the object does not match the namespace of the request"
                )
            meta["namespace"] = namespace
            if self._store.get(self._ns_type(), "", namespace or "") is None:
                raise status.not_found("namespaces", "", namespace or "")
        stored = self._store.write(rtype, obj, create=True)
        if stored is None:
            raise status.already_exists(rtype.resource, rtype.group, name)
        if rtype.resource == "secrets":
            self._tokens.secret_created(stored)
        return stored

    @staticmethod
    def deletable(rtype: ResourceType) -> bool:
        """Any namespaced object can be deleted, and the registration kinds' cluster-scoped ones."""
        return Writes.writable(rtype) or (rtype.namespaced and "delete" in rtype.verbs)

    def delete(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete an object with what the garbage collector deletes with it (a Deployment's ReplicaSets
        and pods, a Service's Endpoints, a Namespace's objects), at every version it is served at;
        answers the object as it was. Controllers do not replace what was deleted (no new pod)."""
        with self._store.edit_lock:
            current = self._store.get(rtype, namespace or "", name)
            edit = Edit(self._store, self.catalog)
            key = edit.canonical(rtype.key)
            if current is None or key is None or not edit.delete(key, namespace or "", name):
                raise status.not_found(rtype.resource, rtype.group, name)
            edit.commit()
        return current

    def _ns_type(self) -> ResourceType:
        rtype = self.catalog.lookup("", "v1", "namespaces")
        if rtype is None:
            raise ApiError(500, "InternalError", "namespaces are not served")
        return rtype
