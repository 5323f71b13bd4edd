"""Read kubeconfig files the way kubectl does, into `ClusterAccess` values.

Covered: `current-context` as default, several files in `KUBECONFIG` (first definition wins),
relative file paths resolved against the folder of the file that names them, `*-data` fields as
base64, `token` / `tokenFile`, client certificates, exec plugins, `insecure-skip-tls-verify` and
`tls-server-name`. Errors are `KubeconfigError`s naming the file and context, meant to be printed
as one line.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
from pathlib import Path
from typing import Any

import yaml

from kq_pipeline.kube.access import ClusterAccess, ExecPlugin, TokenSource
from kq_pipeline.kube.errors import KubeConfigError

log = logging.getLogger(__name__)

_PATH_FIELDS = {
    "cluster": ("certificate-authority",),
    "user": ("client-certificate", "client-key", "tokenFile"),
}


class KubeconfigError(KubeConfigError):
    """A kubeconfig that cannot be used; the message names the file (and context)."""


def default_kubeconfig_paths() -> list[Path]:
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


# A fleet kubeconfig names every cluster, and every cluster's poll reads it: parsing it each time made a
# refresh O(clusters²) (a 200-context file: 0.32 s per parse with the pure-Python loader). Parsed
# documents are kept per file and re-read when the file changes (inode, size or times differ).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PARSED: dict[Path, tuple[tuple[int, ...], dict[str, Any]]] = {}
_PARSED_LOCK = threading.Lock()


def _unreadable(path: Path, exc: OSError) -> KubeconfigError:
    if isinstance(exc, FileNotFoundError):
        return KubeconfigError(f"kubeconfig {path} not found")
    return KubeconfigError(f"kubeconfig {path} cannot be read: {exc.strerror}")


def _load_one(path: Path) -> dict[str, Any]:
    """The parsed kubeconfig file (shared: callers must not modify it)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _PARSED_LOCK:
        cached = _PARSED.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    doc = _parse(path)
    with _PARSED_LOCK:
        _PARSED[path] = (key, doc)
    return doc


def _parse(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    try:
        doc = yaml.load(text, Loader=_LOADER) or {}  # noqa: S506 - a safe loader (C or Python)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise KubeconfigError(f"kubeconfig {path} is not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {path} is not a mapping")
    base = path.resolve().parent
    # Resolve relative paths now, against the file that names them (kubectl's rule for merged files).
    for section, key in (("clusters", "cluster"), ("users", "user")):
        for entry in doc.get(section) or []:
            body = entry.get(key) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                continue
            for f in _PATH_FIELDS[key]:
                if body.get(f):
                    body[f] = str(base / Path(body[f]).expanduser())
            exec_cfg = body.get("exec")
            if isinstance(exec_cfg, dict) and os.sep in str(exec_cfg.get("command", "")):
                exec_cfg["command"] = str(base / Path(exec_cfg["command"]).expanduser())
    return doc


class _Merged:
    """Several kubeconfig files merged: first file that defines a name wins, as in kubectl."""

    def __init__(self, paths: list[Path]) -> None:
        self.label = os.pathsep.join(str(p) for p in paths)
        self.current_context: str | None = None
        self.contexts: dict[str, dict[str, Any]] = {}
        self.clusters: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        for p in paths:
            doc = _load_one(p)
            if self.current_context is None and doc.get("current-context"):
                self.current_context = str(doc["current-context"])
            for section, key, target in (
                ("contexts", "context", self.contexts),
                ("clusters", "cluster", self.clusters),
                ("users", "user", self.users),
            ):
                for entry in doc.get(section) or []:
                    if isinstance(entry, dict) and entry.get("name") is not None:
                        target.setdefault(str(entry["name"]), entry.get(key) or {})


def _paths(path: str | os.PathLike[str] | None) -> list[Path]:
    if path is None:
        return default_kubeconfig_paths()
    return [Path(p).expanduser() for p in str(path).split(os.pathsep) if p]


def list_contexts(path: str | os.PathLike[str] | None = None) -> list[tuple[str, str]]:
    """(context name, server URL) for every context, in file order; server is "" when unknown."""
    m = _Merged(_paths(path))
    out = []
    for name, ctx in m.contexts.items():
        cluster = m.clusters.get(str((ctx or {}).get("cluster")), {})
        out.append((name, str(cluster.get("server") or "")))
    return out


def _b64(value: Any, what: str, where: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=False)
    except (binascii.Error, ValueError):
        raise KubeconfigError(f"{where}: {what} is not valid base64") from None


def access_from_kubeconfig(
    path: str | os.PathLike[str] | None = None, context: str | None = None, *, name: str | None = None
) -> ClusterAccess:
    """The `ClusterAccess` of one context (the current context when `context` is None)."""
    m = _Merged(_paths(path))
    ctx_name = context or m.current_context
    if not ctx_name:
        raise KubeconfigError(f"kubeconfig {m.label}: no context given and no current-context set")
    where = f"kubeconfig {m.label}, context {ctx_name!r}"
    if ctx_name not in m.contexts:
        known = ", ".join(m.contexts) or "none"
        raise KubeconfigError(f"kubeconfig {m.label}: unknown context {ctx_name!r} (contexts: {known})")
    ctx = m.contexts[ctx_name] or {}
    cluster_ref, user_ref = ctx.get("cluster"), ctx.get("user")
    if not cluster_ref or str(cluster_ref) not in m.clusters:
        raise KubeconfigError(f"{where}: cluster entry {cluster_ref!r} not found")
    cluster = m.clusters[str(cluster_ref)] or {}
    if user_ref and str(user_ref) not in m.users:
        raise KubeconfigError(f"{where}: user entry {user_ref!r} not found")
    user = m.users.get(str(user_ref), {}) if user_ref else {}
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeconfigError(f"{where}: cluster {cluster_ref!r} has no server")
    label = name or ctx_name

    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    ca_data = (
        _b64(cluster["certificate-authority-data"], "certificate-authority-data", where)
        if cluster.get("certificate-authority-data")
        else None
    )
    ca_file = cluster.get("certificate-authority") or None
    if insecure and (ca_data or ca_file):
        raise KubeconfigError(
            f"{where}: a root certificate together with insecure-skip-tls-verify is not allowed"
        )
    if insecure:
        log.warning(
            "cluster %s (%s): insecure-skip-tls-verify is set: the server certificate will not be verified",
            label,
            where,
        )

    token = None
    if user.get("token"):
        token = TokenSource(literal=str(user["token"]))
    elif user.get("tokenFile"):
        token = TokenSource(file=str(user["tokenFile"]))

    cert_data = (
        _b64(user["client-certificate-data"], "client-certificate-data", where)
        if user.get("client-certificate-data")
        else None
    )
    key_data = (
        _b64(user["client-key-data"], "client-key-data", where) if user.get("client-key-data") else None
    )
    cert_file = user.get("client-certificate") or None
    key_file = user.get("client-key") or None
    if bool(cert_data is not None or cert_file) != bool(key_data is not None or key_file):
        raise KubeconfigError(f"{where}: client certificate and client key must be given together")

    exec_plugin = None
    if user.get("exec"):
        e = user["exec"]
        if not isinstance(e, dict) or not e.get("command"):
            raise KubeconfigError(f"{where}: exec plugin has no command")
        exec_plugin = ExecPlugin(
            command=str(e["command"]),
            args=tuple(str(a) for a in e.get("args") or ()),
            env=tuple((str(v.get("name")), str(v.get("value", ""))) for v in e.get("env") or ()),
            api_version=str(e.get("apiVersion") or "client.authentication.k8s.io/v1"),
        )
    if user.get("auth-provider"):
        raise KubeconfigError(f"{where}: auth-provider plugins are not supported; use an exec plugin")
    if user.get("username") or user.get("password"):
        raise KubeconfigError(f"{where}: basic auth (username/password) is not supported")

    return ClusterAccess(
        name=label,
        server=server,
        ca_data=ca_data,
        ca_file=str(ca_file) if ca_file else None,
        token=token,
        client_cert_data=cert_data,
        client_key_data=key_data,
        client_cert_file=str(cert_file) if cert_file else None,
        client_key_file=str(key_file) if key_file else None,
        exec_plugin=exec_plugin,
        insecure_skip_tls_verify=insecure,
        tls_server_name=cluster.get("tls-server-name") or None,
    )
