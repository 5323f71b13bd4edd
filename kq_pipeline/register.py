"""Grant the aggregator read access to a target cluster and add it to the inventory.

With admin rights on the target (an admin kubeconfig context), `register_cluster` creates the
reader identity that `deploy/target-rbac.yaml` describes (namespace, ServiceAccount, read-only
ClusterRole and binding, a long-lived token Secret), waits for the token controller to fill the
Secret, and writes the token to a 0600 file. The inventory then references that file: the token
never enters PostgreSQL, the output or an exception message.

The ClusterRole is built here from the schema registry and the cluster's selection (`Collect`): `list`
on the source resource of every table the selection collects, so a cluster that does not collect
kubernetes_secrets is not granted `secrets`. For custom resources it grants `list` on the CRDs and,
read from the cluster at registration time, on the plural of every CRD whose kind the selection's
`custom_kinds` takes (`custom_rbac="kinds"`, the default), or on every resource of each selected
group (`"groups"`: apiGroups [g], resources ["*"]). A CRD installed later is not covered in "kinds"
mode until the cluster is registered again (that kind then fails with "permission denied" and keeps
its previous rows; the other kinds load); in "groups" mode it is covered when its group is. Either
way nothing outside the selected custom groups is granted: a wildcard rule over every group would
also grant every built-in resource, Secrets included (see deploy/target-rbac.yaml).

Registering again brings the ClusterRole up to date (an update of our own, labelled role; one of the
same name that is not ours is reported, never changed). The YAML in `deploy/` is the default
selection's role on a cluster without CRDs; the tests check it against `reader_manifests()`.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
import yaml

from kq_pipeline.collect import Collect
from kq_pipeline.inventory import Cluster, InventoryError, name_from_context, validate_name
from kq_pipeline.kube.access import ClusterAccess
from kq_pipeline.kube.kubeconfig import access_from_kubeconfig
from kq_pipeline.registry import CUSTOM_RESOURCE_DEFINITIONS_TABLE, CUSTOM_RESOURCES_TABLE, TABLES
from kq_pipeline.registry import table as registry_table
from kq_pipeline.rows.custom import crd_kind

READER = "kq-reader"
"""Name of the namespace, ServiceAccount, ClusterRole and ClusterRoleBinding on every target."""
TOKEN_SECRET = "kq-reader-token"
RBAC_GROUP = "rbac.authorization.k8s.io"
DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/version")
TOKEN_WAIT_S = 30.0
CUSTOM_RBAC = ("kinds", "groups")
"""How custom resources are granted: each selected kind's plural (default), or each selected group whole."""
_CRD_SOURCE = registry_table(CUSTOM_RESOURCE_DEFINITIONS_TABLE).source
CRD_GROUP, CRD_RESOURCE = _CRD_SOURCE.api_group or "", _CRD_SOURCE.resource or ""
_GLOB_CHARS = frozenset("*?[]")
_LABELS = {"app.kubernetes.io/name": "kq-pipeline", "app.kubernetes.io/component": "target-reader"}


class RegisterError(InventoryError):
    """Registration could not complete; the message names the cluster and the step, never a credential."""


def _rule_group(api_group: str | None) -> str:
    return "" if api_group in (None, "core") else api_group


def custom_groups(
    collect: Collect, crds: Sequence[dict[str, Any]], custom_rbac: str = "kinds"
) -> dict[str, list[str]]:
    """The custom groups to grant, each with its plurals (["*"] in "groups" mode).

    "kinds": the plural of every CRD of `crds` (the cluster's, read at registration) whose kind the
    selection takes. "groups": every group of those, plus each group an include pattern names
    literally ("cert-manager.io/*" grants cert-manager.io before cert-manager is installed)."""
    if custom_rbac not in CUSTOM_RBAC:
        raise ValueError(f"custom_rbac must be one of {CUSTOM_RBAC}, got {custom_rbac!r}")
    if not collect.table_collected(CUSTOM_RESOURCES_TABLE):
        return {}
    plurals: dict[str, set[str]] = {}
    for crd in crds:
        kind = crd_kind(crd)
        if kind.group and kind.plural and collect.kind_collected(kind.group, kind.kind, kind.plural):
            plurals.setdefault(kind.group, set()).add(kind.plural)
    if custom_rbac == "kinds":
        return {g: sorted(p) for g, p in sorted(plurals.items())}
    groups = set(plurals)
    for pattern in collect.custom_kinds:
        group = pattern.partition("/")[0]
        if not pattern.startswith("!") and not _GLOB_CHARS & set(group):
            groups.add(group)
    return {g: ["*"] for g in sorted(groups)}


def reader_rules(
    collect: Collect | None = None,
    crds: Sequence[dict[str, Any]] = (),
    custom_rbac: str = "kinds",
) -> list[dict[str, Any]]:
    """The read-only rules a cluster's selection needs: `list` on each source resource of the tables
    it collects, by API group, and on the selected custom kinds (see `custom_groups`).

    Plus `get` on the kube-system namespace alone (its uid is the cluster uid) and on discovery. The
    custom-resource table needs the CRD list too (it is how the kinds are found).
    """
    collect = collect or Collect()
    by_group: dict[str, set[str]] = {}
    for t in TABLES.values():
        if collect.table_collected(t.name) and t.source.resource:
            by_group.setdefault(_rule_group(t.source.api_group), set()).add(t.source.resource)
    if collect.table_collected(CUSTOM_RESOURCES_TABLE):
        by_group.setdefault(CRD_GROUP, set()).add(CRD_RESOURCE)
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
    if "" not in by_group:  # every table but core's: the cluster uid still comes from kube-system
        rules.insert(
            0,
            {
                "apiGroups": [""],
                "resources": ["namespaces"],
                "resourceNames": ["kube-system"],
                "verbs": ["get"],
            },
        )
    for group, resources in custom_groups(collect, crds, custom_rbac).items():
        rules.append({"apiGroups": [group], "resources": resources, "verbs": ["list"]})
    rules.append({"nonResourceURLs": list(DISCOVERY_URLS), "verbs": ["get"]})
    return rules


def reader_manifests(
    collect: Collect | None = None,
    crds: Sequence[dict[str, Any]] = (),
    custom_rbac: str = "kinds",
) -> list[dict[str, Any]]:
    """The target-side objects, in creation order (namespace and account before what refers to them).

    Without arguments: the default selection on a cluster without CRDs (deploy/target-rbac.yaml)."""
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
            "rules": reader_rules(collect, crds, custom_rbac),
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
        """An object of the same name may predate us: our own role is brought up to date, another's
        rules are reported (never changed), a binding elsewhere fails."""
        path = f"{_collection_path(obj)}/{obj['metadata']['name']}"
        what = f"read {_describe(obj)}"
        resp = self._request("GET", path, what)
        if resp.status_code != 200:
            raise self._fail(what, f"HTTP {resp.status_code}: {_status_message(resp)}")
        current = resp.json()
        if obj["kind"] == "ClusterRole" and current.get("rules") != obj["rules"]:
            if _is_ours(current):
                self._update_rules(path, current, obj)
            else:
                self.out.write(
                    f"warning: {_describe(obj)} exists, is not labelled as kq-pipeline's and has other rules "
                    "than this cluster's selection needs; left as it is (delete it and register again)\n"
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

    def _update_rules(self, path: str, current: dict[str, Any], obj: dict[str, Any]) -> None:
        """Replace our ClusterRole's rules (a PUT pinned to the version just read) and say what changed."""
        what = f"update {_describe(obj)}"
        body = {
            **obj,
            "metadata": {**obj["metadata"], "resourceVersion": current["metadata"].get("resourceVersion")},
        }
        resp = self._request("PUT", path, what, json=body)
        if resp.status_code != 200:
            raise self._fail(what, f"HTTP {resp.status_code}: {_status_message(resp)}")
        before, after = _grants(current.get("rules") or []), _grants(obj["rules"])
        change = [f"+{g}" for g in sorted(after - before)] + [f"-{g}" for g in sorted(before - after)]
        self.out.write(f"updated   {_describe(obj)} (rules: {', '.join(change) or 'reordered'})\n")

    def custom_resource_definitions(self) -> list[dict[str, Any]]:
        """The cluster's CRDs (every page); none when the cluster does not serve them."""
        path = f"/apis/{CRD_GROUP}/v1/{CRD_RESOURCE}"
        what = "list CustomResourceDefinitions"
        crds: list[dict[str, Any]] = []
        token = ""
        while True:
            params = {"limit": "500", **({"continue": token} if token else {})}
            resp = self._request("GET", path, what, params=params)
            if resp.status_code == 404:
                return []
            if resp.status_code != 200:
                raise self._fail(what, f"HTTP {resp.status_code}: {_status_message(resp)}")
            doc = resp.json()
            crds.extend(doc.get("items") or [])
            token = (doc.get("metadata") or {}).get("continue") or ""
            if not token:
                return crds

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


def _is_ours(obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in _LABELS.items())


def _grants(rules: list[dict[str, Any]]) -> set[str]:
    """Rules as flat grants ("list certificates.cert-manager.io", "get /version"), to name a change."""
    out: set[str] = set()
    for rule in rules:
        verbs = ",".join(rule.get("verbs") or ())
        for url in rule.get("nonResourceURLs") or ():
            out.add(f"{verbs} {url}")
        for group in rule.get("apiGroups") or ():
            for resource in rule.get("resources") or ():
                names = rule.get("resourceNames")
                qualified = f"{resource}.{group}" if group else resource
                out.add(f"{verbs} {qualified}" + (f"/{','.join(names)}" if names else ""))
    return out


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


def _needs_crds(collect: Collect) -> bool:
    return collect.table_collected(CUSTOM_RESOURCES_TABLE)


def register_cluster(
    admin_kubeconfig: Path,
    context: str,
    *,
    name: str | None,
    dry_run: bool,
    token_dir: Path,
    out: TextIO,
    token_wait_s: float = TOKEN_WAIT_S,
    collect: Collect | None = None,
    custom_rbac: str = "kinds",
) -> Cluster | None:
    """Create the read-only reader on the target and return its inventory entry (None on a dry run).

    The reader's rules follow `collect` (stored with the entry) and, for custom resources, the CRDs the
    cluster has now (read with the admin credentials, also on a dry run). Idempotent: objects that
    exist are left as they are but for our ClusterRole's rules, brought up to date; re-running re-reads
    the same token.
    """
    collect = collect or Collect()
    if custom_rbac not in CUSTOM_RBAC:
        raise RegisterError(f"custom_rbac must be one of {', '.join(CUSTOM_RBAC)}, got {custom_rbac!r}")
    cluster_name = validate_name(name) if name else name_from_context(context)
    access = access_from_kubeconfig(admin_kubeconfig, context)
    with _client(access) as client:
        target = _Target(cluster_name, client, out)
        crds = target.custom_resource_definitions() if _needs_crds(collect) else []
        manifests = reader_manifests(collect, crds, custom_rbac)
        granted = custom_groups(collect, crds, custom_rbac)
        if dry_run:
            out.write(f"# dry run: these objects would be created on context {context!r}; nothing changed\n")
            out.write(f"# {_custom_summary(collect, crds, granted, custom_rbac)}\n")
            out.write(yaml.safe_dump_all(manifests, sort_keys=False))
            return None
        for obj in manifests:
            target.ensure(obj)
        token, ca_pem = target.wait_for_token(token_wait_s)
    out.write(f"{_custom_summary(collect, crds, granted, custom_rbac)}\n")
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
        collect=collect,
    )


def _custom_summary(
    collect: Collect, crds: Sequence[dict[str, Any]], granted: dict[str, list[str]], custom_rbac: str
) -> str:
    """One line on what the role grants of custom resources, and what that leaves out."""
    if not _needs_crds(collect):
        return f"custom resources: not collected ({CUSTOM_RESOURCES_TABLE} excluded), none granted"
    if custom_rbac == "groups":
        what = f"every resource of {len(granted)} group(s): {', '.join(granted) or '-'}"
        return f"custom resources (--custom-rbac groups): {what}; kinds installed later in them are covered"
    kinds = sum(len(p) for p in granted.values())
    return (
        f"custom resources (--custom-rbac kinds): {kinds} kind(s) of the cluster's {len(crds)} CRD(s) "
        f"in {len(granted)} group(s); a CRD installed later needs `kq clusters register` again"
    )
