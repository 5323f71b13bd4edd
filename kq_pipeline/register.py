"""Grant the aggregator read access to a target cluster and add it to the inventory.

With admin rights on the target (an admin kubeconfig context), `register_cluster` creates the
reader identity that `deploy/target-rbac.yaml` describes (namespace, ServiceAccount, read-only
ClusterRole and binding, a long-lived token Secret), waits for the token controller to fill the
Secret, and writes the token to a 0600 file. The inventory then references that file: the token
never enters PostgreSQL, the output or an exception message.

The objects are built here from the schema registry (every table's source group/resource), so the
rules follow the tables; the YAML in `deploy/` is checked against them by the tests.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any, TextIO

import httpx
import yaml

from kq_pipeline.inventory import Cluster, InventoryError, name_from_context, validate_name
from kq_pipeline.kube.access import ClusterAccess
from kq_pipeline.kube.kubeconfig import access_from_kubeconfig
from kq_pipeline.registry import KUBEQUERY_TABLES

READER = "kq-reader"
"""Name of the namespace, ServiceAccount, ClusterRole and ClusterRoleBinding on every target."""
TOKEN_SECRET = "kq-reader-token"
RBAC_GROUP = "rbac.authorization.k8s.io"
DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/version")
TOKEN_WAIT_S = 30.0
_LABELS = {"app.kubernetes.io/name": "kq-pipeline", "app.kubernetes.io/component": "target-reader"}


class RegisterError(InventoryError):
    """Registration could not complete; the message names the cluster and the step, never a credential."""


def reader_rules() -> list[dict[str, Any]]:
    """The read-only rules kubequery's 51 tables need: `list` on each source resource, by API group.

    Plus `get` on the kube-system namespace alone (its uid is the cluster uid) and on discovery.
    The custom-resource tables (CRDs and the selected custom groups) are not granted yet: without
    those rules they fail with a permission error naming them, and the other tables load.
    """
    by_group: dict[str, set[str]] = {}
    for t in KUBEQUERY_TABLES.values():
        src = t.source
        if src.resource:
            group = "" if src.api_group in (None, "core") else src.api_group
            by_group.setdefault(group, set()).add(src.resource)
    rules: list[dict[str, Any]] = []
    for group in sorted(by_group):
        rules.append({"apiGroups": [group], "resources": sorted(by_group[group]), "verbs": ["list"]})
        if group == "":
            rules.append(
                {
                    "apiGroups": [""],
                    "resources": ["namespaces"],
                    "resourceNames": ["kube-system"],
                    "verbs": ["get"],
                }
            )
    rules.append({"nonResourceURLs": list(DISCOVERY_URLS), "verbs": ["get"]})
    return rules


def reader_manifests() -> list[dict[str, Any]]:
    """The target-side objects, in creation order (namespace and account before what refers to them)."""
    labels = dict(_LABELS)
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": READER, "labels": labels}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": READER, "namespace": READER, "labels": labels},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": READER, "labels": labels},
            "rules": reader_rules(),
        },
        {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": READER, "labels": labels},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": READER},
            "subjects": [{"kind": "ServiceAccount", "name": READER, "namespace": READER}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": TOKEN_SECRET,
                "namespace": READER,
                "labels": labels,
                "annotations": {"kubernetes.io/service-account.name": READER},
            },
            "type": "kubernetes.io/service-account-token",
        },
    ]


def _collection_path(obj: dict[str, Any]) -> str:
    api_version, kind = obj["apiVersion"], obj["kind"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    resource = {"ClusterRoleBinding": "clusterrolebindings"}.get(kind, kind.lower() + "s")
    namespace = obj["metadata"].get("namespace")
    return f"{base}/namespaces/{namespace}/{resource}" if namespace else f"{base}/{resource}"


def _describe(obj: dict[str, Any]) -> str:
    ns = obj["metadata"].get("namespace")
    return f"{obj['kind']} {ns + '/' if ns else ''}{obj['metadata']['name']}"


def _status_message(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("message") or resp.reason_phrase)
    except ValueError:
        return resp.reason_phrase


def _client(access: ClusterAccess, token: str | None = None, ca_pem: str | None = None) -> httpx.Client:
    if ca_pem is not None:
        verify: Any = ClusterAccess(name=access.name, server=access.server, ca_data=ca_pem).ssl_context()
    else:
        verify = access.ssl_context() if access.uses_tls else False
    bearer = token if token is not None else access.bearer_token()
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return httpx.Client(base_url=access.server, verify=verify, headers=headers, timeout=30.0)


class _Target:
    """Admin calls against one target; every failure becomes a RegisterError naming cluster and step."""

    def __init__(self, name: str, client: httpx.Client, out: TextIO) -> None:
        self.name, self.client, self.out = name, client, out

    def _fail(self, what: str, detail: str) -> RegisterError:
        return RegisterError(f"cluster {self.name}: {what}: {detail}")

    def _request(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        try:
            return self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise self._fail(what, f"{exc.__class__.__name__}: {exc}") from None

    def ensure(self, obj: dict[str, Any]) -> None:
        what = f"create {_describe(obj)}"
        resp = self._request("POST", _collection_path(obj), what, json=obj)
        if resp.status_code == 201:
            self.out.write(f"created   {_describe(obj)}\n")
        elif resp.status_code == 409:
            self.out.write(f"unchanged {_describe(obj)} (exists)\n")
            if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                self._check_existing(obj)
        else:
            raise self._fail(what, f"HTTP {resp.status_code}: {_status_message(resp)}")

    def _check_existing(self, obj: dict[str, Any]) -> None:
        """An object of the same name may predate us: stale rules warn, a binding elsewhere fails."""
        path = f"{_collection_path(obj)}/{obj['metadata']['name']}"
        what = f"read {_describe(obj)}"
        resp = self._request("GET", path, what)
        if resp.status_code != 200:
            raise self._fail(what, f"HTTP {resp.status_code}: {_status_message(resp)}")
        current = resp.json()
        if obj["kind"] == "ClusterRole" and current.get("rules") != obj["rules"]:
            self.out.write(
                f"warning: {_describe(obj)} exists with other rules than this release needs; "
                "update it with `kubectl apply -f deploy/target-rbac.yaml`\n"
            )
        if obj["kind"] == "ClusterRoleBinding" and (
            current.get("roleRef") != obj["roleRef"]
            or not all(s in (current.get("subjects") or []) for s in obj["subjects"])
        ):
            raise self._fail(
                f"check {_describe(obj)}",
                f"it exists but does not bind ClusterRole {READER} to ServiceAccount {READER}/{READER}; "
                "delete it or fix it with `kubectl apply -f deploy/target-rbac.yaml`",
            )

    def wait_for_token(self, timeout_s: float) -> tuple[str, str]:
        """(token, CA PEM) once the token controller has filled the Secret."""
        path = f"/api/v1/namespaces/{READER}/secrets/{TOKEN_SECRET}"
        what = f"read Secret {READER}/{TOKEN_SECRET}"
        deadline = time.monotonic() + timeout_s
        while True:
            resp = self._request("GET", path, what)
            if resp.status_code != 200:
                raise self._fail(what, f"HTTP {resp.status_code}: {_status_message(resp)}")
            data = resp.json().get("data") or {}
            if data.get("token") and data.get("ca.crt"):
                return base64.b64decode(data["token"]).decode(), base64.b64decode(data["ca.crt"]).decode()
            if time.monotonic() >= deadline:
                raise self._fail(
                    what,
                    f"the token controller did not fill it within {timeout_s:g}s (is the Secret's "
                    f"service account {READER}/{READER} there?)",
                )
            time.sleep(0.1)


def _write_token(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode on open: force it
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)


def _verify(name: str, access: ClusterAccess, token: str, ca_pem: str) -> None:
    """The new identity must read with the CA it was given; catches a CA that does not match the server."""
    try:
        with _client(access, token=token, ca_pem=ca_pem if access.uses_tls else None) as c:
            resp = c.get("/api/v1/namespaces/kube-system")
    except httpx.HTTPError as exc:
        raise RegisterError(
            f"cluster {name}: the reader token does not work with the Secret's ca.crt: "
            f"{exc.__class__.__name__}"
        ) from None
    if resp.status_code != 200:
        raise RegisterError(
            f"cluster {name}: the reader cannot read namespace kube-system: HTTP {resp.status_code}: "
            f"{_status_message(resp)}"
        )


def register_cluster(
    admin_kubeconfig: Path,
    context: str,
    *,
    name: str | None,
    dry_run: bool,
    token_dir: Path,
    out: TextIO,
    token_wait_s: float = TOKEN_WAIT_S,
) -> Cluster | None:
    """Create the read-only reader on the target and return its inventory entry (None on a dry run).

    Idempotent: objects that exist are left as they are, and re-running re-reads the same token.
    """
    cluster_name = validate_name(name) if name else name_from_context(context)
    manifests = reader_manifests()
    if dry_run:
        out.write(f"# dry run: these objects would be created on context {context!r}; nothing changed\n")
        out.write(yaml.safe_dump_all(manifests, sort_keys=False))
        return None
    access = access_from_kubeconfig(admin_kubeconfig, context)
    with _client(access) as client:
        target = _Target(cluster_name, client, out)
        for obj in manifests:
            target.ensure(obj)
        token, ca_pem = target.wait_for_token(token_wait_s)
    _verify(cluster_name, access, token, ca_pem)
    token_file = Path(token_dir).expanduser().resolve() / f"{cluster_name}.token"
    _write_token(token_file, token)
    out.write(f"token of {READER}/{READER} written to {token_file} (mode 0600)\n")
    return Cluster(
        name=cluster_name,
        server=access.server,
        token_file=str(token_file),
        ca_data=ca_pem if access.uses_tls else None,
        source="cli",
    )
