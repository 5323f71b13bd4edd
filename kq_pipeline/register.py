"""Grant the aggregator read access to a target cluster and add it to the inventory.

With admin rights on the target (an admin kubeconfig context), `register_cluster` creates the
reader identity that `deploy/target-rbac.yaml` describes (namespace, ServiceAccount, read-only
ClusterRole and binding), asks the TokenRequest API for a token of that ServiceAccount that expires
(`--token-ttl`, default 30 days), checks it can read, and writes it to a 0600 file. The inventory then
references that file: the token never enters PostgreSQL, the output or an exception message.
`rotate_token` (`kq clusters rotate`) requests a fresh one and atomically replaces the file; the
previous token stays valid until its own expiry (deleting the ServiceAccount revokes every token at
once; docs/DEPLOY.md). Registering again deletes the never-expiring token Secret `kq-reader-token`
that registrations before bounded tokens created (when it is ours).

Rotation runs with the admin context (or any identity allowed to `create` `serviceaccounts/token` for
kq-reader/kq-reader), never with the reader's own token: a reader able to mint its own tokens would
turn one leaked token into access without end, which is what the lifetime is there to prevent.

What the reader is granted: `list` on each resource the collected tables read, `get` on the
kube-system namespace and on discovery. With kubernetes_secrets collected (the default) that includes
`list` on every Secret of the cluster: the list responses carry the values (over TLS), though the
extractor drops them while parsing; a token of this role is therefore as sensitive as read access to
every Secret. `--tables '!kubernetes_secrets'` leaves `secrets` out of the role.

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

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
LEGACY_TOKEN_SECRET = "kq-reader-token"
"""The token Secret (a token that never expires) registrations made before bounded tokens."""
RBAC_GROUP = "rbac.authorization.k8s.io"
DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/version")
TOKEN_REQUEST_API_VERSION = "authentication.k8s.io/v1"
DEFAULT_TOKEN_TTL = "30d"
MIN_TOKEN_TTL_S = 600
"""kube-apiserver refuses a TokenRequest for less than 10 minutes."""
_DURATION = re.compile(r"(\d+)([dhms])")
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
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


def _client(access: ClusterAccess) -> httpx.Client:
    """A client with the admin context's credentials (token, exec plugin or client certificate)."""
    verify: Any = access.ssl_context() if access.uses_tls else False
    bearer = access.bearer_token()
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

    def request_token(self, ttl_s: int) -> IssuedToken:
        """A new token of kq-reader/kq-reader from the TokenRequest API, valid for `ttl_s` seconds
        (or less, when the server caps token lifetimes: the expiry returned is the one that counts)."""
        path = f"/api/v1/namespaces/{READER}/serviceaccounts/{READER}/token"
        what = f"request a token for ServiceAccount {READER}/{READER}"
        body = {
            "apiVersion": TOKEN_REQUEST_API_VERSION,
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": ttl_s},
        }
        resp = self._request("POST", path, what, json=body)
        if resp.status_code == 404:
            raise self._fail(
                what,
                f"the ServiceAccount is missing (deleted to revoke its tokens?); `kq clusters register` "
                f"creates it again (HTTP 404: {_status_message(resp)})",
            )
        if resp.status_code not in (200, 201):
            hint = (
                f" (the context's identity needs `create` on serviceaccounts/token for {READER}/{READER})"
                if resp.status_code == 403
                else ""
            )
            raise self._fail(what, f"HTTP {resp.status_code}: {_status_message(resp)}{hint}")
        status = (resp.json() or {}).get("status") or {}
        token, expiry = status.get("token"), status.get("expirationTimestamp")
        if not token or not expiry:
            raise self._fail(what, "the answer has no status.token or status.expirationTimestamp")
        try:
            expires_at = datetime.fromisoformat(str(expiry).replace("Z", "+00:00"))
        except ValueError:
            raise self._fail(what, f"status.expirationTimestamp {expiry!r} is not RFC 3339") from None
        return IssuedToken(token=token, expires_at=expires_at, requested_s=ttl_s)

    def remove_legacy_token_secret(self) -> None:
        """Delete the never-expiring token Secret an earlier registration made, which revokes its
        token; one that is not ours is reported and left alone. Runs after the new token file is in
        place, so the pipeline never goes without a working token."""
        path = f"/api/v1/namespaces/{READER}/secrets/{LEGACY_TOKEN_SECRET}"
        name = f"Secret {READER}/{LEGACY_TOKEN_SECRET}"
        resp = self._request("GET", path, f"read {name}")
        if resp.status_code == 404:
            return
        if resp.status_code != 200:
            self.out.write(
                f"warning: cannot check for the legacy token {name}: HTTP {resp.status_code}: "
                f"{_status_message(resp)}\n"
            )
            return
        secret = resp.json()
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        if not _is_ours(secret) or annotations.get("kubernetes.io/service-account.name") != READER:
            self.out.write(
                f"warning: {name} exists and is not labelled as kq-pipeline's; left as it is (if it is "
                f"a token of {READER}, it never expires: delete it when nothing uses it)\n"
            )
            return
        gone = self._request("DELETE", path, f"delete {name}")
        if gone.status_code not in (200, 202, 404):
            self.out.write(
                f"warning: could not delete the legacy token {name} (its token never expires): "
                f"HTTP {gone.status_code}: {_status_message(gone)}\n"
            )
            return
        self.out.write(f"deleted   {name} (its token never expired; the new one replaces it)\n")


@dataclass(frozen=True)
class IssuedToken:
    """A token from the TokenRequest API and its expiry; the token is excluded from repr."""

    token: str = field(repr=False)
    expires_at: datetime
    requested_s: int

    def describe(self, now: datetime | None = None) -> str:
        """ "expires at 2025-07-01T12:00:00Z (in 30d)", and a note when the server shortened it."""
        now = now or datetime.now(UTC)
        left = int((self.expires_at - now).total_seconds())
        text = f"expires at {self.expires_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} (in {format_duration(left)})"
        if left < self.requested_s - 60:
            text += f"; {format_duration(self.requested_s)} was asked: the server caps token lifetimes"
        return text


def parse_duration(text: str) -> int:
    """Seconds of "30d", "720h", "1h30m", "900s" or "900" (seconds); ValueError otherwise."""
    raw = text.strip().lower()
    if raw.isdigit():
        return int(raw)
    parts = _DURATION.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        raise ValueError(f"not a duration: {text!r} (examples: 30d, 720h, 90m, 3600s)")
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


def format_duration(seconds: int) -> str:
    """In the largest unit it fills, rounded: 30d, 12h, 45m, 30s; "expired" below zero."""
    if seconds < 0:
        return "expired"
    if seconds >= 60:
        seconds = (seconds + 30) // 60 * 60  # a 1h token read a second later is still "1h"
    for unit, size in _UNIT_S.items():
        if seconds >= size:
            return f"{(seconds + size // 2) // size}{unit}"
    return "0s"


def token_ttl_seconds(text: str | int) -> int:
    """A --token-ttl value in seconds, at least the 10 minutes kube-apiserver accepts."""
    try:
        seconds = text if isinstance(text, int) else parse_duration(text)
    except ValueError as exc:
        raise RegisterError(f"--token-ttl: {exc}") from None
    if seconds < MIN_TOKEN_TTL_S:
        raise RegisterError(f"--token-ttl: at least 10m (kube-apiserver's minimum), got {text}")
    return seconds


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


def token_path(token_dir: Path, cluster_name: str) -> Path:
    """Where the token of `cluster_name` is written: `<token_dir>/<name>.token`, from the command line
    only (never a path read from the database, which a database writer could point anywhere)."""
    return Path(token_dir).expanduser().resolve() / f"{cluster_name}.token"


def write_token_file(path: Path, token: str) -> None:
    """Replace `path` atomically by a file that is mode 0600 from its creation.

    The pipeline re-reads the file on every request: it sees the old token or the new one, never a
    partial file, and no one else ever sees either. The temporary file is created with O_EXCL (a
    planted file or symlink is never written through) and renamed over `path` (a symlink there is
    replaced, not followed)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask, before a byte is written
        os.write(fd, token.encode() + b"\n")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _target_ca(name: str, context: str, access: ClusterAccess) -> str | None:
    """The CA the inventory entry verifies the server with: the admin context's own (data or file), the
    one that already verified this very URL; None means the system's trust store.

    A context that skips TLS verification gives nothing to verify with, and the reader's token must
    never go to an unverified server: that is refused."""
    if not access.uses_tls:
        return None
    if access.insecure_skip_tls_verify:
        raise RegisterError(
            f"cluster {name}: context {context!r} skips TLS verification (insecure-skip-tls-verify), so "
            "there is no CA to verify the reader's connection with; give the context the cluster's CA "
            "(certificate-authority-data or certificate-authority)"
        )
    if access.ca_data:
        return access.ca_data.decode() if isinstance(access.ca_data, bytes) else access.ca_data
    if access.ca_file:
        try:
            return Path(access.ca_file).read_text()
        except OSError as exc:
            raise RegisterError(
                f"cluster {name}: cannot read CA file {access.ca_file}: {exc.strerror}"
            ) from None
    return None


def _verify(name: str, access: ClusterAccess, token: str, ca_pem: str | None) -> None:
    """The new token must read kube-system with the CA the entry will store: proves the identity works
    and the CA matches the server. Only the token authenticates (no client certificate of the admin
    context is presented, which would make any token pass)."""
    reader = ClusterAccess(
        name=name, server=access.server, ca_data=ca_pem, tls_server_name=access.tls_server_name
    )
    verify: Any = reader.ssl_context() if reader.uses_tls else False
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=access.server, verify=verify, headers=headers, timeout=30.0) as c:
            resp = c.get("/api/v1/namespaces/kube-system")
    except httpx.HTTPError as exc:
        raise RegisterError(
            f"cluster {name}: the reader token does not work with the cluster's CA: {exc.__class__.__name__}"
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
    collect: Collect | None = None,
    custom_rbac: str = "kinds",
    token_ttl: str | int = DEFAULT_TOKEN_TTL,
) -> Cluster | None:
    """Create the read-only reader on the target and return its inventory entry (None on a dry run).

    The reader's rules follow `collect` (stored with the entry) and, for custom resources, the CRDs the
    cluster has now (read with the admin credentials, also on a dry run). Idempotent: objects that
    exist are left as they are but for our ClusterRole's rules, brought up to date; every run requests
    a new token (`token_ttl`: "30d", "720h" or seconds) and replaces the token file.
    """
    collect = collect or Collect()
    if custom_rbac not in CUSTOM_RBAC:
        raise RegisterError(f"custom_rbac must be one of {', '.join(CUSTOM_RBAC)}, got {custom_rbac!r}")
    ttl_s = token_ttl_seconds(token_ttl)
    cluster_name = validate_name(name) if name else name_from_context(context)
    access = access_from_kubeconfig(admin_kubeconfig, context)
    ca_pem = _target_ca(cluster_name, context, access)
    with _client(access) as client:
        target = _Target(cluster_name, client, out)
        crds = target.custom_resource_definitions() if _needs_crds(collect) else []
        manifests = reader_manifests(collect, crds, custom_rbac)
        granted = custom_groups(collect, crds, custom_rbac)
        if dry_run:
            out.write(f"# dry run: these objects would be created on context {context!r}; nothing changed\n")
            out.write(f"# {_custom_summary(collect, crds, granted, custom_rbac)}\n")
            lifetime = format_duration(ttl_s)
            out.write(f"# then a token of {READER}/{READER} valid for {lifetime} (TokenRequest)\n")
            out.write(yaml.safe_dump_all(manifests, sort_keys=False))
            return None
        for obj in manifests:
            target.ensure(obj)
        issued = target.request_token(ttl_s)
        out.write(f"{_custom_summary(collect, crds, granted, custom_rbac)}\n")
        _verify(cluster_name, access, issued.token, ca_pem)
        token_file = token_path(token_dir, cluster_name)
        write_token_file(token_file, issued.token)
        out.write(f"token of {READER}/{READER} written to {token_file} (mode 0600), {issued.describe()}\n")
        target.remove_legacy_token_secret()
    return Cluster(
        name=cluster_name,
        server=access.server,
        token_file=str(token_file),
        ca_data=ca_pem,
        source="cli",
        collect=collect,
    )


def rotate_token(
    admin_kubeconfig: Path,
    context: str,
    *,
    cluster: Cluster,
    token_dir: Path,
    out: TextIO,
    token_ttl: str | int = DEFAULT_TOKEN_TTL,
) -> IssuedToken:
    """Request a fresh token for a registered cluster's reader, verify it, and atomically replace
    `<token_dir>/<name>.token`. The previous token keeps working until its own expiry.

    `context` must reach the same server as the inventory entry (a token of another cluster is never
    written under this one's name); its identity needs only `create` on serviceaccounts/token for
    kq-reader/kq-reader. Nothing in the target or the inventory changes."""
    ttl_s = token_ttl_seconds(token_ttl)
    if not cluster.token_file:
        raise RegisterError(
            f"cluster {cluster.name}: it does not read a token file (added with a kubeconfig or a token "
            "environment variable); rotate renews the token `kq clusters register` wrote"
        )
    access = access_from_kubeconfig(admin_kubeconfig, context)
    if access.server.rstrip("/") != cluster.server.rstrip("/"):
        raise RegisterError(
            f"cluster {cluster.name}: context {context!r} points at {access.server}, but the inventory "
            f"reaches the cluster at {cluster.server}; give the context of that cluster"
        )
    ca_pem = _target_ca(cluster.name, context, access)
    with _client(access) as client:
        issued = _Target(cluster.name, client, out).request_token(ttl_s)
    _verify(cluster.name, access, issued.token, ca_pem)
    path = token_path(token_dir, cluster.name)
    write_token_file(path, issued.token)
    out.write(
        f"token of {READER}/{READER} for {cluster.name} renewed in {path} (mode 0600), {issued.describe()}; "
        "the previous token stays valid until its own expiry\n"
    )
    if Path(cluster.token_file) != path:
        out.write(
            f"note: the inventory reads this cluster's token from {cluster.token_file}: copy the new file "
            'there (docs/DEPLOY.md, "Rotating a target\'s token")\n'
        )
    return issued


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
