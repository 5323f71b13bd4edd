"""How to reach one cluster: server, CA and credentials, resolved lazily and never printed.

A `ClusterAccess` holds *where* credentials live (an env var name, a token file, an exec plugin)
and reads them at use time, so a rotated projected token or a refreshed cloud token is picked up
without rebuilding anything. Literal secrets (a kubeconfig `token`, `client-key-data`) are kept in
memory only and are excluded from every repr.

Exec credential plugins do not inherit this process's environment (which holds KQ_DATABASE_URL,
DAGSTER_PG_PASSWORD, PGPASSWORD...): they get the allow-list `EXEC_ENV_*` below (see
`exec_plugin_env`). kubectl passes its whole environment; a plugin is third-party code named by a
kubeconfig, so here it sees only what plugins need by convention. The kubequery runner gets its own,
narrower set (extract/kubequery_runner.py: it is given a token, never runs a plugin).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from kq_pipeline.kube.errors import KubeConfigError

log = logging.getLogger(__name__)

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
EXEC_TIMEOUT_S = 60.0
# Refresh an exec credential this long before it expires, so a request never carries a token that
# dies in flight.
EXEC_EXPIRY_MARGIN_S = 30.0

# --- what an exec credential plugin sees of this process's environment ----------------------------
# Besides these, a plugin gets the variables its kubeconfig entry names in `exec.env` (literal values
# from the kubeconfig, set last) and KUBERNETES_EXEC_INFO (client-go's input: apiVersion, kind,
# spec.interactive=false). Everything else of this process's environment is withheld.
EXEC_ENV_ALLOWED: frozenset[str] = frozenset(
    {
        # finding programs and the user's own files
        "PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "KUBECONFIG",
        # locale and time zone (LC_* by prefix below)
        "LANG", "LANGUAGE", "TZ",
        # proxies (curl and Go honour both cases) and CA bundles
        "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY",
        "https_proxy", "http_proxy", "no_proxy", "all_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
        # gke-gcloud-auth-plugin / gcloud: Application Default Credentials and the metadata server
        "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCE_METADATA_HOST", "GCE_METADATA_IP",
        # kubelogin (Azure): managed identity endpoints read by the Azure identity library
        "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IMDS_ENDPOINT",
    }
)  # fmt: skip
EXEC_ENV_ALLOWED_PREFIXES: tuple[str, ...] = (
    "LC_",  # locale categories
    "AWS_",  # aws eks get-token, aws-iam-authenticator: AWS_PROFILE, AWS_REGION, AWS_CONFIG_FILE,
    # AWS_SHARED_CREDENTIALS_FILE, AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_*, keys...
    "CLOUDSDK_",  # gcloud's properties (CLOUDSDK_CONFIG, CLOUDSDK_CORE_PROJECT, ...)
    "AZURE_",  # kubelogin and the Azure SDK: AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE
    "AAD_",  # kubelogin's own: AAD_LOGIN_METHOD, AAD_SERVICE_PRINCIPAL_CLIENT_ID, ...
    "ARM_",  # kubelogin reads Terraform's ARM_CLIENT_ID, ARM_TENANT_ID, ...
)
EXEC_ENV_NEVER_PREFIXES: tuple[str, ...] = ("KQ_", "DAGSTER_", "PG")
"""The pipeline's own settings and secrets: never passed, not even when named in EXEC_ENV_EXTRA."""
EXEC_ENV_EXTRA = "KQ_EXEC_PLUGIN_ENV"
"""Names (comma or space separated) of further variables to pass, for a plugin with other needs
(e.g. VAULT_ADDR): the operator's explicit choice, checked against EXEC_ENV_NEVER_PREFIXES."""


def _extra_exec_env(base: Mapping[str, str]) -> frozenset[str]:
    names = frozenset(base.get(EXEC_ENV_EXTRA, "").replace(",", " ").split())
    refused = sorted(n for n in names if n.startswith(EXEC_ENV_NEVER_PREFIXES))
    if refused:
        log.warning("%s: not passed to exec plugins, never: %s", EXEC_ENV_EXTRA, ", ".join(refused))
    return names.difference(refused)


def exec_passes(name: str, extra: frozenset[str] = frozenset()) -> bool:
    """Whether an exec plugin may see this process's variable `name`."""
    if name.startswith(EXEC_ENV_NEVER_PREFIXES):
        return False
    return name in EXEC_ENV_ALLOWED or name.startswith(EXEC_ENV_ALLOWED_PREFIXES) or name in extra


def exec_plugin_env(
    configured: Sequence[tuple[str, str]], api_version: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of an exec plugin: the allowed part of `base` (default os.environ), then the
    kubeconfig's `exec.env`, then KUBERNETES_EXEC_INFO."""
    base = os.environ if base is None else base
    extra = _extra_exec_env(base)
    env = {k: v for k, v in base.items() if exec_passes(k, extra)}
    env.setdefault("PATH", os.defpath)
    env.update(dict(configured))
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    )
    return env


@dataclass(frozen=True)
class TokenSource:
    """A bearer token: a literal (memory only), an environment variable, or a file re-read per use."""

    literal: str | None = field(default=None, repr=False)
    env: str | None = None
    file: str | None = None

    def __repr__(self) -> str:
        parts = []
        if self.literal is not None:
            parts.append("literal=<redacted>")
        if self.env:
            parts.append(f"env={self.env!r}")
        if self.file:
            parts.append(f"file={self.file!r}")
        return f"TokenSource({', '.join(parts)})"

    def read(self, cluster: str) -> str:
        if self.literal:
            return self.literal
        if self.env:
            value = os.environ.get(self.env, "").strip()
            if not value:
                raise KubeConfigError(
                    f"cluster {cluster}: token environment variable {self.env} is not set or empty",
                    cluster=cluster,
                )
            return value
        if self.file:
            try:
                value = Path(self.file).read_text().strip()
            except OSError as exc:
                raise KubeConfigError(
                    f"cluster {cluster}: cannot read token file {self.file}: {exc.strerror}", cluster=cluster
                ) from None
            if not value:
                raise KubeConfigError(f"cluster {cluster}: token file {self.file} is empty", cluster=cluster)
            return value
        raise KubeConfigError(f"cluster {cluster}: no token configured", cluster=cluster)


@dataclass(frozen=True)
class ExecCredential:
    """What an exec plugin returned: a token and/or a client certificate, and until when."""

    token: str | None = field(default=None, repr=False)
    client_cert_pem: bytes | None = field(default=None, repr=False)
    client_key_pem: bytes | None = field(default=None, repr=False)
    expires_at: float | None = None
    """time.time() seconds; None means valid until the server rejects it."""

    def fresh(self) -> bool:
        return self.expires_at is None or time.time() < self.expires_at - EXEC_EXPIRY_MARGIN_S


class _ExecCache:
    """The current credential of one exec plugin; one refresh at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.credential: ExecCredential | None = None
        self.runs = 0


@dataclass(frozen=True)
class ExecPlugin:
    """A kubeconfig `users[].user.exec` credential plugin (client.authentication.k8s.io v1/v1beta1)."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    api_version: str = "client.authentication.k8s.io/v1"
    _cache: _ExecCache = field(default_factory=_ExecCache, repr=False, compare=False, hash=False)

    def credential(self, cluster: str) -> ExecCredential:
        with self._cache.lock:
            cred = self._cache.credential
            if cred is None or not cred.fresh():
                cred = self._run(cluster)
                self._cache.credential = cred
            return cred

    def invalidate(self) -> None:
        """Forget the cached credential (the server said 401), so the next use runs the plugin again."""
        with self._cache.lock:
            self._cache.credential = None

    @property
    def runs(self) -> int:
        return self._cache.runs

    def _run(self, cluster: str) -> ExecCredential:
        if self.api_version not in EXEC_API_VERSIONS:
            raise KubeConfigError(
                f"cluster {cluster}: exec plugin {self.command}: unsupported apiVersion {self.api_version!r}",
                cluster=cluster,
            )
        env = exec_plugin_env(self.env, self.api_version)
        self._cache.runs += 1
        try:
            proc = subprocess.run(
                [self.command, *self.args],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=EXEC_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            raise KubeConfigError(
                f"cluster {cluster}: exec plugin {self.command} not found", cluster=cluster
            ) from None
        except subprocess.TimeoutExpired:
            raise KubeConfigError(
                f"cluster {cluster}: exec plugin {self.command} did not answer within {EXEC_TIMEOUT_S:.0f}s",
                cluster=cluster,
            ) from None
        if proc.returncode != 0:
            # stderr is not quoted: a plugin may echo what it was given, and that can be a secret.
            raise KubeConfigError(
                f"cluster {cluster}: exec plugin {self.command} exited with code {proc.returncode}",
                cluster=cluster,
            )
        return _parse_exec_output(proc.stdout, self.command, cluster)


def _parse_exec_output(stdout: bytes, command: str, cluster: str) -> ExecCredential:
    def bad(why: str) -> KubeConfigError:
        return KubeConfigError(f"cluster {cluster}: exec plugin {command}: {why}", cluster=cluster)

    try:
        doc = json.loads(stdout)
    except ValueError:
        raise bad("output is not JSON") from None
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise bad("output is not an ExecCredential")
    if doc.get("apiVersion") not in EXEC_API_VERSIONS:
        raise bad(f"unsupported ExecCredential apiVersion {doc.get('apiVersion')!r}")
    status = doc.get("status") or {}
    token = status.get("token") or None
    cert = status.get("clientCertificateData") or None
    key = status.get("clientKeyData") or None
    if bool(cert) != bool(key):
        raise bad("clientCertificateData and clientKeyData must be given together")
    if not token and not cert:
        raise bad("ExecCredential status has neither token nor client certificate")
    expires_at = None
    if status.get("expirationTimestamp"):
        try:
            expires_at = datetime.fromisoformat(
                status["expirationTimestamp"].replace("Z", "+00:00")
            ).timestamp()
        except (ValueError, AttributeError):
            raise bad("expirationTimestamp is not RFC 3339") from None
    return ExecCredential(
        token=token,
        client_cert_pem=cert.encode() if cert else None,
        client_key_pem=key.encode() if key else None,
        expires_at=expires_at,
    )


def _as_pem(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


@dataclass(frozen=True)
class ClusterAccess:
    """Everything needed to open an authenticated, verified connection to one API server."""

    name: str
    server: str
    ca_data: str | bytes | None = field(default=None, repr=False)
    """PEM of the cluster CA (not secret, only long)."""
    ca_file: str | None = None
    token: TokenSource | None = None
    client_cert_data: bytes | None = field(default=None, repr=False)
    client_key_data: bytes | None = field(default=None, repr=False)
    client_cert_file: str | None = None
    client_key_file: str | None = None
    exec_plugin: ExecPlugin | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None

    def __repr__(self) -> str:
        auth = []
        if self.token is not None:
            auth.append(repr(self.token))
        if self.client_cert_data is not None or self.client_cert_file:
            auth.append(
                f"client_cert={'<data>' if self.client_cert_data is not None else self.client_cert_file}"
            )
        if self.exec_plugin is not None:
            auth.append(f"exec={self.exec_plugin.command!r}")
        ca = "<data>" if self.ca_data else (self.ca_file or "system")
        insecure = ", insecure_skip_tls_verify=True" if self.insecure_skip_tls_verify else ""
        auth_text = ", ".join(auth)
        head = f"ClusterAccess(name={self.name!r}, server={self.server!r}, ca={ca}"
        return f"{head}, auth=[{auth_text}]{insecure})"

    __str__ = __repr__

    @property
    def uses_tls(self) -> bool:
        return self.server.startswith("https://")

    def bearer_token(self) -> str | None:
        """The token to send now (re-read from its env var or file on every call), or None."""
        if self.token is not None:
            return self.token.read(self.name)
        if self.exec_plugin is not None:
            return self.exec_plugin.credential(self.name).token
        return None

    def client_cert_pair(self) -> tuple[bytes, bytes] | None:
        """(certificate PEM, key PEM) for mutual TLS, or None."""
        if self.client_cert_data is not None or self.client_cert_file:
            cert = (
                self.client_cert_data
                if self.client_cert_data is not None
                else self._read(self.client_cert_file)
            )
            key = (
                self.client_key_data if self.client_key_data is not None else self._read(self.client_key_file)
            )
            if not key:
                raise KubeConfigError(
                    f"cluster {self.name}: client certificate without a client key", cluster=self.name
                )
            return cert, key
        if self.exec_plugin is not None:
            cred = self.exec_plugin.credential(self.name)
            if cred.client_cert_pem and cred.client_key_pem:
                return cred.client_cert_pem, cred.client_key_pem
        return None

    def invalidate_credentials(self) -> bool:
        """Drop cached exec credentials after a 401; True when a retry may succeed with fresh ones."""
        if self.exec_plugin is not None:
            self.exec_plugin.invalidate()
            return True
        return False

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.insecure_skip_tls_verify:
            log.warning(
                "cluster %s: TLS certificate verification is disabled (insecure-skip-tls-verify)", self.name
            )
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            try:
                if self.ca_data:
                    ctx.load_verify_locations(cadata=_as_pem(self.ca_data).decode())
                elif self.ca_file:
                    ctx.load_verify_locations(cafile=self.ca_file)
            except (ssl.SSLError, OSError, ValueError) as exc:
                where = self.ca_file or "certificate-authority-data"
                raise KubeConfigError(
                    f"cluster {self.name}: cannot load CA from {where}: {exc}", cluster=self.name
                ) from None
        pair = self.client_cert_pair()
        if pair is not None:
            _load_cert_chain(ctx, *pair, cluster=self.name)
        return ctx

    def _read(self, path: str | None) -> bytes:
        if not path:
            return b""
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise KubeConfigError(
                f"cluster {self.name}: cannot read {path}: {exc.strerror}", cluster=self.name
            ) from None


def _load_cert_chain(ctx: ssl.SSLContext, cert: bytes, key: bytes, *, cluster: str) -> None:
    """Load an in-memory cert/key: `ssl` only reads files, so use a private temp file, removed at once."""
    fd, path = tempfile.mkstemp(prefix="kq-client-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cert.rstrip(b"\n") + b"\n" + key)
        ctx.load_cert_chain(path)
    except ssl.SSLError:
        raise KubeConfigError(
            f"cluster {cluster}: client certificate or key is invalid", cluster=cluster
        ) from None
    finally:
        os.unlink(path)
