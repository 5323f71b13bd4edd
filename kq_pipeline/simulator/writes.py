"""Creates, updates and deletes for the kinds that registering a cluster writes, and service-account tokens.

`kq clusters register` creates a namespace, a ServiceAccount, a ClusterRole and its binding, then asks
for a token with the TokenRequest API (`POST .../serviceaccounts/<name>/token`): a bound token with an
expiry, valid while it has not expired and its service account (the same uid) exists, as
kube-apiserver checks it. The legacy way works too: a `kubernetes.io/service-account-token` Secret is
filled by the token controller a moment later with a token that never expires and the cluster CA;
that token dies with its Secret. Either token authenticates as the service account, whose rights are
whatever the stored bindings grant it (see bindings.py).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
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
TOKEN_REQUEST_API_VERSION = "authentication.k8s.io/v1"
DEFAULT_AUDIENCES = ("https://kubernetes.default.svc.cluster.local",)
DEFAULT_EXPIRATION_S = 3600
"""What kube-apiserver issues when a TokenRequest names no expirationSeconds."""
MIN_EXPIRATION_S = 600
MAX_EXPIRATION_S = 2**32
"""kube-apiserver's validation bounds of spec.expirationSeconds (10 minutes to 2^32 seconds)."""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


PROTOBUF = "application/vnd.kubernetes.protobuf"
_PROTOBUF_MAGIC = b"k8s\x00"


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _proto_fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: an int for varints, bytes for the other wire types."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            yield number, value
            continue
        if wire == 2:
            size, i = _varint(data, i)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if i + size > len(data):
            raise ValueError("truncated field")
        yield number, data[i : i + size]
        i += size


def token_request_from_protobuf(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded TokenRequest: kube's envelope (magic "k8s\\0", then a
    runtime.Unknown with typeMeta=1 {apiVersion=1, kind=2} and raw=2), raw being the TokenRequest
    (spec=2 {audiences=1, boundObjectRef=3, expirationSeconds=4}). Only what the simulator reads."""
    if not body.startswith(_PROTOBUF_MAGIC):
        raise ValueError("no k8s protobuf envelope")
    type_meta, raw = b"", b""
    for number, value in _proto_fields(body[len(_PROTOBUF_MAGIC) :]):
        if number == 1 and isinstance(value, bytes):
            type_meta = value
        elif number == 2 and isinstance(value, bytes):
            raw = value
    names = {n: v.decode() for n, v in _proto_fields(type_meta) if isinstance(v, bytes)}
    spec: dict[str, Any] = {}
    for number, value in _proto_fields(raw):
        if number != 2 or not isinstance(value, bytes):
            continue
        for field_no, field_value in _proto_fields(value):
            if field_no == 1 and isinstance(field_value, bytes):
                spec.setdefault("audiences", []).append(field_value.decode())
            elif field_no == 4 and isinstance(field_value, int):
                spec["expirationSeconds"] = field_value - (1 << 64) if field_value >= 1 << 63 else field_value
    return {"apiVersion": names.get(1), "kind": names.get(2), "spec": spec}


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class _BoundToken:
    """A TokenRequest token: whose it is (the account's uid too) and until when (clock seconds)."""

    namespace: str
    name: str
    uid: str
    expires_at: float


class TokenController:
    """Issues service-account tokens (TokenRequest, or into token Secrets) and says whom a presented
    token belongs to.

    `clock` (default time.time) decides expiry: tests move it forward instead of waiting out the
    10-minute minimum lifetime. `max_expiration_s`, like kube-apiserver's
    --service-account-max-token-expiration, shortens longer requests to itself."""

    def __init__(
        self,
        catalog: Catalog,
        store: ClusterStore,
        ca_pem: str,
        delay_s: float,
        *,
        max_expiration_s: int | None = None,
    ) -> None:
        self.catalog = catalog
        self._store = store
        self._ca_pem = ca_pem
        self.delay_s = delay_s
        self.max_expiration_s = max_expiration_s
        self.clock: Callable[[], float] = time.time
        self._issued: dict[str, tuple[str, str]] = {}
        """token → (namespace, secret name); valid while that Secret still holds it."""
        self._bound: dict[str, _BoundToken] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenController(issued={len(self._issued)}, bound={len(self._bound)})"

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

    def request_token(
        self, namespace: str, name: str, body: bytes, content_type: str | None = None
    ) -> dict[str, Any]:
        """Answer `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token` (authorization done):
        a TokenRequest whose status holds a new token and its expiry, as kube-apiserver answers it.
        The request may be JSON or Kubernetes protobuf (`kubectl create token` sends protobuf)."""
        try:
            if (content_type or "").split(";")[0].strip() == PROTOBUF:
                req: Any = token_request_from_protobuf(body)
            else:
                req = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise status.bad_request("the request body is not JSON") from None
        except ValueError as err:
            raise status.bad_request(f"the request body is not a protobuf TokenRequest: {err}") from None
        if (
            not isinstance(req, dict)
            or req.get("kind") != "TokenRequest"
            or req.get("apiVersion") != TOKEN_REQUEST_API_VERSION
        ):
            raise status.bad_request(f"the body must be a {TOKEN_REQUEST_API_VERSION} TokenRequest")
        spec = req.get("spec") if isinstance(req.get("spec"), dict) else {}
        seconds = spec.get("expirationSeconds")
        if seconds is None:  # absent, or null as kubectl's JSON says "not set"
            seconds = DEFAULT_EXPIRATION_S
        kind = "TokenRequest.authentication.k8s.io"
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise status.bad_request("spec.expirationSeconds must be an integer")
        bad = f"spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration"
        if seconds < MIN_EXPIRATION_S:
            raise status.invalid(kind, name, f"{bad} less than 10 minutes")
        if seconds > MAX_EXPIRATION_S:
            raise status.invalid(kind, name, f"{bad} larger than 2^32 seconds")
        if self.max_expiration_s is not None:
            seconds = min(seconds, self.max_expiration_s)
        sa = self._store.get(self._type("serviceaccounts"), namespace, name)
        if sa is None:
            raise status.not_found("serviceaccounts", "", name)
        now = self.clock()
        token = "kq-sim-bound." + secrets.token_urlsafe(32)
        bound = _BoundToken(namespace, name, sa["metadata"].get("uid", ""), now + seconds)
        with self._lock:
            self._bound[token] = bound
        return {
            "kind": "TokenRequest",
            "apiVersion": TOKEN_REQUEST_API_VERSION,
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": {
                "audiences": list(spec.get("audiences") or DEFAULT_AUDIENCES),
                "expirationSeconds": seconds,
                "boundObjectRef": spec.get("boundObjectRef"),
            },
            "status": {"token": token, "expirationTimestamp": _rfc3339(bound.expires_at)},
        }

    def authenticate(self, token: str) -> Principal | None:
        """The service account a token was issued for: a bound token until it expires and while its
        account (the same uid: not deleted and re-created) exists; a Secret's token while its Secret
        and account exist."""
        with self._lock:
            where = self._issued.get(token)
            bound = self._bound.get(token)
        if bound is not None:
            return self._authenticate_bound(token, bound)
        if where is None:
            return None
        secret = self._store.get(self._type("secrets"), *where)
        if secret is None or (secret.get("data") or {}).get("token") != _b64(token):
            return None
        sa_name = (secret["metadata"].get("annotations") or {}).get(SA_NAME_ANNOTATION) or ""
        if self._store.get(self._type("serviceaccounts"), where[0], sa_name) is None:
            return None
        return Principal.service_account(where[0], sa_name)

    def _authenticate_bound(self, token: str, bound: _BoundToken) -> Principal | None:
        if self.clock() >= bound.expires_at:
            with self._lock:
                self._bound.pop(token, None)  # expired for good: forget it
            return None
        sa = self._store.get(self._type("serviceaccounts"), bound.namespace, bound.name)
        if sa is None or sa["metadata"].get("uid", "") != bound.uid:
            return None
        return Principal.service_account(bound.namespace, bound.name)


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
