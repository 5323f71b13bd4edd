"""One cluster's API: a request (method, path, credentials) in, a response out; no sockets here.

Order of checks follows kube-apiserver: authentication (401), then priority-and-fairness (429),
then authorization (403), then the handler (404/410/500...).
"""

from __future__ import annotations

import hmac
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from kq_pipeline.simulator import discovery, status
from kq_pipeline.simulator.bindings import Principal, StoredRbac
from kq_pipeline.simulator.catalog import CRD_KEY, Catalog, ResourceType
from kq_pipeline.simulator.faults import FaultController
from kq_pipeline.simulator.rbac import Authorizer
from kq_pipeline.simulator.selectors import SelectorError, combine, field_selector, label_selector
from kq_pipeline.simulator.status import ApiError
from kq_pipeline.simulator.store import ClusterStore, ContinueToken, InvalidContinue, page
from kq_pipeline.simulator.writes import TokenController, Writes

TOKEN_USER = "system:serviceaccount:kube-system:kq-reader"
SUBRESOURCES = frozenset({("", "serviceaccounts", "token")})
"""The subresources served (group, resource, subresource): TokenRequest, create only."""
ANONYMOUS = "system:anonymous"
_PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")


@dataclass
class Response:
    code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    authorization: str | None = field(default=None, repr=False)
    cert_user: str | None = None
    """The CN of a verified client certificate, if one was presented."""
    loopback: bool = True
    body: bytes = b""
    content_type: str | None = None
    """Of the body: JSON, or Kubernetes protobuf (what kubectl sends for built-in kinds)."""


@dataclass(frozen=True)
class _Route:
    rtype: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None = None


class ClusterApi:
    def __init__(
        self,
        name: str,
        catalog: Catalog,
        store: ClusterStore,
        token: str,
        version: dict[str, str],
        faults: FaultController,
        server_address: str,
        authorizer: Authorizer | None = None,
        stopping: threading.Event | None = None,
        *,
        ca_pem: str = "",
        token_delay_s: float = 0.05,
        tokens: TokenController | None = None,
    ) -> None:
        """`tokens`: the cluster's token controller, kept across restarts (its tokens stay valid);
        a new one by default."""
        self.name = name
        self.store = store
        self._token = token
        self.faults = faults
        self.authorizer = authorizer
        self.stopping = stopping or threading.Event()
        self.stored_rbac = StoredRbac(catalog, store)
        self.tokens = tokens or TokenController(catalog, store, ca_pem, token_delay_s)
        self.writes = Writes(catalog, store, self.tokens)
        self.crd_deleter: Callable[[str], dict[str, Any] | None] | None = None
        """Deletes a CRD (and its kinds and objects) by name; set by the cluster. None: CRDs are read-only."""
        self.request_log: deque[str] | None = None
        """"GET /api/v1/pods" per API request (no query, no control endpoint); set by the cluster."""
        self._version_doc = orjson.dumps(version)
        self._server_address = server_address
        self.catalog = catalog
        self._static: dict[str, bytes] = {}
        self.set_catalog(catalog)

    def set_catalog(self, catalog: Catalog) -> None:
        """Serve this catalogue from now on (after a CRD was deleted): routing and discovery documents."""
        static: dict[str, bytes] = {
            "/version": self._version_doc,
            "/api": discovery.api_versions(self._server_address),
            "/apis": discovery.api_group_list(catalog),
        }
        for group, versions in catalog.group_versions().items():
            if group:
                static[f"/apis/{group}"] = discovery.api_group(catalog, group) or b""
            for v in versions:
                doc = discovery.resource_list(catalog, group, v)
                static[f"/apis/{group}/{v}" if group else f"/api/{v}"] = doc or b""
        self.catalog, self._static = catalog, static
        self.writes.catalog = catalog

    def __repr__(self) -> str:
        return f"ClusterApi(name={self.name!r})"

    # --- entry point ----------------------------------------------------------------------------
    def handle(self, req: Request) -> Response | None:
        """None means: drop the connection without an answer (hang fault cut short by shutdown)."""
        split = urlsplit(req.target)
        path = split.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        if path.startswith("/_sim/"):
            return self._control(req, path)
        if self.request_log is not None:
            self.request_log.append(f"{req.method} {path}")
        self.faults.wait_latency()
        if self.faults.hanging and not self.faults.wait_while_hanging(self.stopping):
            return None
        try:
            user = self._authenticate(req)
            retry = self.faults.take_throttle()
            if retry is not None:
                raise status.too_many_requests(retry)
            if req.method in ("POST", "PUT", "DELETE"):
                return self._write(req.method, path, user, req.body, req.content_type)
            if req.method not in ("GET", "HEAD"):
                raise status.ApiError(
                    405,
                    "MethodNotAllowed",
                    "the simulator serves reads, creates, updates and deletes only",
                    {},
                )
            return self._route(path, query, user)
        except ApiError as err:
            return Response(err.code, err.body(), err.headers)

    def _authenticate(self, req: Request) -> Principal:
        if self.faults.unauthorized_all:
            raise status.unauthorized()
        auth = req.authorization
        if auth:
            scheme, _, cred = auth.partition(" ")
            if scheme.lower() == "bearer":
                if hmac.compare_digest(cred.strip().encode(), self._token.encode()):
                    return Principal(TOKEN_USER)
                account = self.tokens.authenticate(cred.strip())
                if account is not None:
                    return account
            raise status.unauthorized()
        if req.cert_user:
            return Principal(req.cert_user)
        return Principal(ANONYMOUS)

    def _authorize(
        self,
        who: Principal,
        verb: str,
        rt: ResourceType,
        namespace: str | None,
        name: str | None,
        subresource: str | None = None,
    ) -> None:
        """RBAC on the resource, or on "<resource>/<subresource>" for a subresource (as RBAC names it)."""
        resource = f"{rt.resource}/{subresource}" if subresource else rt.resource
        if who.bound:
            allowed = self.stored_rbac.allows(who, verb, rt.group, resource, namespace, name)
        else:
            rules = self.authorizer
            allowed = rules is None or rules.allows(verb, rt.group, resource, namespace, name)
        if not allowed:
            raise status.forbidden(
                who.name, verb, rt.resource, rt.group, namespace, name, subresource=subresource
            )

    def _write(
        self, method: str, path: str, who: Principal, body: bytes, content_type: str | None = None
    ) -> Response:
        route = self._resolve(path)
        if route is None:
            raise status.path_not_found()
        rt = route.rtype
        verb = {"POST": "create", "PUT": "update"}.get(method, "delete")
        if who.name == ANONYMOUS:
            where = (rt.resource, rt.group, route.namespace, route.name)
            raise status.forbidden(who.name, verb, *where, subresource=route.subresource)
        if route.subresource is not None:  # serviceaccounts/<name>/token: create only
            if verb != "create":
                raise status.method_not_allowed(verb, f"{rt.resource}/{route.subresource}", rt.group)
            self._authorize(who, verb, rt, route.namespace, route.name, route.subresource)
            issued = self.tokens.request_token(route.namespace or "", route.name or "", body, content_type)
            return Response(201, orjson.dumps(issued))
        crd_delete = verb == "delete" and rt.key == CRD_KEY and self.crd_deleter is not None
        allowed = self.writes.deletable(rt) if verb == "delete" else self.writes.writable(rt)
        if not (allowed or crd_delete) or (verb == "create") == (route.name is not None):
            raise status.method_not_allowed(verb, rt.resource, rt.group)
        self._authorize(who, verb, rt, route.namespace, route.name)
        if verb == "create":
            return Response(201, orjson.dumps(self.writes.create(rt, route.namespace, body)))
        if verb == "update":
            return Response(
                200, orjson.dumps(self.writes.update(rt, route.namespace, route.name or "", body))
            )
        if crd_delete and self.crd_deleter is not None:
            gone = self.crd_deleter(route.name or "")
            if gone is None:
                raise status.not_found(rt.resource, rt.group, route.name or "")
            return Response(200, orjson.dumps(gone))
        return Response(200, orjson.dumps(self.writes.delete(rt, route.namespace, route.name or "")))

    def _control(self, req: Request, path: str) -> Response:
        if not req.loopback:
            return Response(403, status.forbidden_path("remote", req.method.lower(), path).body())
        if path == "/_sim/churn":
            return self._churn(req)
        if path != "/_sim/faults":
            return Response(404, status.path_not_found().body())
        if req.method == "POST":
            try:
                spec: dict[str, Any] = orjson.loads(req.body or b"{}")
                action = spec.pop("action")
                if action == "refuse":  # answer first: refusing cuts this very connection
                    threading.Timer(0.05, self.faults.apply, args=(action,), kwargs=spec).start()
                else:
                    self.faults.apply(action, **spec)
            except (ValueError, KeyError, TypeError) as err:
                return Response(400, status.bad_request(f"bad fault request: {err}").body())
        return Response(200, orjson.dumps(self.faults.describe()))

    def _churn(self, req: Request) -> Response:
        """POST {"fraction": 0.05, "seed": 1} (churn.churn) or {"action": "roll", "namespace": ..., "name":
        ...} (churn.churn_action): answers the ChurnReport as JSON."""
        from kq_pipeline.simulator.churn import churn, churn_action

        if req.method != "POST":
            return Response(405, status.method_not_allowed(req.method.lower(), "churn", "").body())
        try:
            spec: dict[str, Any] = orjson.loads(req.body or b"{}")
            if not isinstance(spec, dict):
                raise ValueError("the body must be a JSON object")
            action = spec.pop("action", None)
            if action is not None:
                report = churn_action(self, str(action), **spec)
            else:
                report = churn(
                    self, float(spec.pop("fraction")), random.Random(spec.pop("seed", None)), **spec
                )
        except (ValueError, KeyError, TypeError) as err:
            return Response(400, status.bad_request(f"bad churn request: {err}").body())
        return Response(200, orjson.dumps(report.to_dict()))

    # --- routing --------------------------------------------------------------------------------
    def _route(self, path: str, query: dict[str, str], who: Principal) -> Response:
        if who.name == ANONYMOUS and path not in _PUBLIC_PATHS:
            raise status.forbidden_path(who.name, "get", path)
        if who.bound and self._resolve(path) is None and not self.stored_rbac.allows_path(who, "get", path):
            raise status.forbidden_path(who.name, "get", path)
        if path in self._static:
            return Response(200, self._static[path])
        if path.startswith(("/openapi/", "/version/")) or path in ("/openapi", "/"):
            raise status.path_not_found()
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", {"Content-Type": "text/plain; charset=utf-8"})
        route = self._resolve(path)
        if route is None:
            raise status.path_not_found()
        verb = "get" if route.name else ("watch" if query.get("watch") in ("1", "true") else "list")
        rt = route.rtype
        if route.subresource is not None:
            raise status.method_not_allowed(verb, f"{rt.resource}/{route.subresource}", rt.group)
        self._authorize(who, verb, rt, route.namespace, route.name)
        if verb == "watch":
            raise status.method_not_allowed("watch", rt.resource, rt.group)
        if route.name:
            return self._get(route)
        return self._list(route, query, who)

    def _resolve(self, path: str) -> _Route | None:
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            return None
        rtype = self.catalog.lookup(group, version, rest[0])
        if rtype is None or (namespace is not None and not rtype.namespaced):
            return None
        name = rest[1] if len(rest) >= 2 else None
        if name is not None and rtype.namespaced and namespace is None:
            return None
        sub = rest[2] if len(rest) == 3 else None
        if sub is not None and (rtype.group, rtype.resource, sub) not in SUBRESOURCES:
            return None  # other subresources are not simulated
        return _Route(rtype, namespace, name, sub)

    # --- handlers -------------------------------------------------------------------------------
    def _get(self, route: _Route) -> Response:
        rt = route.rtype
        hist = self.store.find(rt)
        entry = hist.current.get(route.namespace or "", route.name or "") if hist is not None else None
        if entry is None:
            raise status.not_found(rt.resource, rt.group, route.name or "")
        return Response(200, self._maybe_malformed(rt, orjson.dumps(entry.obj)))

    def _list(self, route: _Route, query: dict[str, str], who: Principal) -> Response:
        rt = route.rtype
        try:
            predicate = combine(
                label_selector(query.get("labelSelector", "")), field_selector(query.get("fieldSelector", ""))
            )
            limit = int(query.get("limit") or 0)
        except (SelectorError, ValueError) as err:
            raise status.bad_request(str(err)) from None
        history = self.store.find(rt)
        if history is None:  # its CRD was deleted since the route was resolved
            raise status.path_not_found()
        token_text = query.get("continue")
        if token_text:
            try:
                token = ContinueToken.decode(token_text)
            except InvalidContinue as err:
                raise status.bad_request(str(err)) from None
            page_no, start, rv = token.page, token.start, token.rv
            snap = history.at(rv)
            if snap is None or time.monotonic() - token.issued > self.store.continue_ttl:
                raise self._expired(start, page_no)
        else:
            page_no, start = 1, None
            try:
                rv, snap = self.store.begin_list(rt)
            except KeyError:
                raise status.path_not_found() from None
        code = self.faults.take_page_fault(rt, page_no)
        if code == 410:
            raise self._expired(start or ("", ""), page_no)
        if code == 403:  # worded as RBAC's denial, so clients take it for one
            raise status.forbidden(who.name, "list", rt.resource, rt.group, route.namespace)
        if code is not None:
            raise (
                status.internal_error()
                if code == 500
                else ApiError(code, "InternalError" if code >= 500 else "BadRequest", f"simulated {code}", {})
            )
        result = page(snap, route.namespace, start, limit, predicate)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if result.next_start is not None:
            meta["continue"] = ContinueToken(rv, result.next_start, time.monotonic(), page_no + 1).encode()
            if result.remaining is not None:
                meta["remainingItemCount"] = result.remaining
        body = b"".join(
            (
                b'{"kind":"',
                rt.list_kind.encode(),
                b'","apiVersion":"',
                rt.group_version.encode(),
                b'","metadata":',
                orjson.dumps(meta),
                b',"items":[',
                b",".join(result.items),
                b"]}",
            )
        )
        if page_no == 1 and self.faults.take_mutation(rt):
            self.store.mutate(rt)
        return Response(200, self._maybe_malformed(rt, body))

    def _expired(self, start: tuple[str, str], page_no: int) -> ApiError:
        fresh = ContinueToken(self.store.revision, start, time.monotonic(), page_no).encode()
        return status.expired(fresh)

    def _maybe_malformed(self, rt: ResourceType, body: bytes) -> bytes:
        if self.faults.is_malformed(rt):
            return body[: max(1, len(body) // 2)] + b'\x00,"oops":'
        return body
