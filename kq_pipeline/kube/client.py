"""A small, fast, thread-safe read-only Kubernetes API client: GET JSON and paged lists.

Why urllib3 and not the official client or httpx: listing 30,000 pods (limit=500) from a local
server, all three spend their time in the same place (the JSON parse and the garbage collector);
urllib3 is what the official client runs on, minus the model layer, and is thread-safe with one
connection pool per server. Bodies are parsed with orjson with the GC paused (see `gcpause`).
Measurements are in the report that chose it. `list_bodies` hands out list pages unparsed (the
continue token is read from the page's metadata alone, see `list_meta`), so the caller can parse
them where it builds rows.

Failure policy: 429/5xx and connection errors are retried with exponential backoff (honouring
`Retry-After`), a bounded number of times; 401/403/404/TLS/malformed JSON fail at once with a
typed error. A per-cluster deadline on the monotonic clock is checked before every request and
bounds every sleep and socket timeout.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InsecureRequestWarning,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

from kq_pipeline.gcpause import gc_paused
from kq_pipeline.kube.access import ClusterAccess
from kq_pipeline.kube.errors import (
    KubeAuthError,
    KubeError,
    KubeForbidden,
    KubeListExpired,
    KubeNotFound,
    KubeProtocolError,
    KubeTimeout,
    KubeTLSError,
    KubeUnavailable,
)
from kq_pipeline.kube.list_meta import MalformedList, continue_token, list_items

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "kq-pipeline/0.1"


class _Gone(Exception):
    """410 from the server; list_bodies decides whether to restart."""


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _status_message(body: bytes) -> str:
    """The `message` of a Kubernetes Status body (RBAC reason etc.), short; never request headers."""
    try:
        msg = orjson.loads(body).get("message")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return f": {str(msg)[:300]}" if msg else ""


class KubeClient:
    """One cluster's API server. Safe to share between threads."""

    def __init__(
        self,
        access: ClusterAccess,
        *,
        timeout_s: float = 30.0,
        deadline_s: float | None = None,
        max_attempts: int = 5,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 10.0,
        retry_after_max_s: float = 60.0,
        max_list_restarts: int = 3,
        pool_size: int = 4,
    ) -> None:
        self.access = access
        self.cluster = access.name
        self.timeout_s = timeout_s
        self.deadline = None if deadline_s is None else time.monotonic() + deadline_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self.max_list_restarts = max_list_restarts
        self.pool_size = pool_size
        parts = urlsplit(access.server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise KubeError(
                f"cluster {self.cluster}: server {access.server!r} is not an http(s) URL",
                cluster=self.cluster,
            )
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self.requests = 0
        """Requests sent (all attempts), for tests and metrics."""

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def __repr__(self) -> str:
        return f"KubeClient({self.access!r})"

    def _get_pool(self) -> urllib3.HTTPConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = self._new_pool()
            return self._pool

    def _new_pool(self) -> urllib3.HTTPConnectionPool:
        common: dict[str, Any] = {"maxsize": self.pool_size, "block": False, "retries": False}
        if self._scheme == "http":
            return urllib3.HTTPConnectionPool(self._host, self._port, **common)
        ctx = self.access.ssl_context()
        kw: dict[str, Any] = {"ssl_context": ctx}
        if self.access.insecure_skip_tls_verify:
            urllib3.disable_warnings(InsecureRequestWarning)  # the access already logged its own warning
            kw.update(cert_reqs="CERT_NONE", assert_hostname=False)
        elif self.access.tls_server_name:
            kw.update(
                server_hostname=self.access.tls_server_name, assert_hostname=self.access.tls_server_name
            )
        return urllib3.HTTPSConnectionPool(self._host, self._port, **common, **kw)

    # -- deadline --------------------------------------------------------------------------------------
    def remaining_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _check_deadline(self, path: str) -> float:
        remaining = self.remaining_s()
        if remaining is None:
            return self.timeout_s
        if remaining <= 0:
            raise KubeTimeout(
                f"cluster {self.cluster}: GET {path}: cluster deadline passed",
                cluster=self.cluster,
                path=path,
            )
        return min(self.timeout_s, remaining)

    # -- requests --------------------------------------------------------------------------------------
    def _err(self, cls: type[KubeError], path: str, what: str, status: int | None = None) -> KubeError:
        return cls(
            f"cluster {self.cluster}: GET {path}: {what}", cluster=self.cluster, path=path, status=status
        )

    def _get_bytes(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        url = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        attempt = 0
        reauthed = False
        while True:
            timeout = self._check_deadline(path)
            headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
            token = self.access.bearer_token()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            wait: float | None = None
            self.requests += 1
            try:
                resp = self._get_pool().urlopen(
                    "GET",
                    url,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    preload_content=True,
                    timeout=urllib3.Timeout(connect=timeout, read=timeout),
                )
            except SSLError as exc:
                raise self._err(
                    KubeTLSError, path, f"TLS error: {exc.__class__.__name__}: {_tls_reason(exc)}"
                ) from None
            except NewConnectionError as exc:  # before ConnectTimeoutError: urllib3 subclasses it
                failure = self._err(KubeUnavailable, path, f"connection failed: {_conn_reason(exc)}")
            except (ReadTimeoutError, ConnectTimeoutError):
                failure = self._err(KubeTimeout, path, f"no answer within {timeout:.1f}s")
            except HTTPError as exc:
                failure = self._err(KubeUnavailable, path, f"connection failed: {exc.__class__.__name__}")
            else:
                status = resp.status
                if status == 200:
                    return resp.data
                if status == 401:
                    if not reauthed and self.access.invalidate_credentials():
                        reauthed = True
                        self.close()  # an exec plugin may hand out a new client certificate too
                        continue
                    raise self._err(KubeAuthError, path, "401 Unauthorized: the credential was rejected", 401)
                if status == 403:
                    raise self._err(KubeForbidden, path, f"403 Forbidden{_status_message(resp.data)}", 403)
                if status == 404:
                    raise self._err(KubeNotFound, path, "404 Not Found", 404)
                if status == 410:
                    raise _Gone()
                if status not in RETRY_STATUSES:
                    raise self._err(KubeError, path, f"HTTP {status}{_status_message(resp.data)}", status)
                failure = self._err(
                    KubeUnavailable, path, f"HTTP {status} after {attempt + 1} attempts", status
                )
                wait = _retry_after_s(resp.headers.get("Retry-After"))
                if wait is not None:
                    wait = min(wait, self.retry_after_max_s)
            attempt += 1
            if attempt >= self.max_attempts:
                raise failure
            if wait is None:
                wait = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)) * random.uniform(
                    0.5, 1.0
                )
            remaining = self.remaining_s()
            if remaining is not None and wait >= remaining:
                raise self._err(
                    KubeTimeout, path, f"cluster deadline passes before the next retry ({failure})"
                )
            log.info(
                "cluster %s: GET %s: retrying in %.2fs (attempt %d/%d)",
                self.cluster,
                path,
                wait,
                attempt + 1,
                self.max_attempts,
            )
            time.sleep(wait)

    def _parse(self, body: bytes, path: str) -> Any:
        try:
            with gc_paused():
                return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise self._err(
                KubeProtocolError, path, f"malformed JSON ({exc.msg} at byte {exc.pos})"
            ) from None

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET one document (retries as described in the module docstring)."""
        try:
            body = self._get_bytes(path, params)
        except _Gone:
            raise self._err(KubeError, path, "410 Gone", 410) from None
        return self._parse(body, path)

    def list_bodies(
        self, path: str, *, limit: int = 500, on_restart: Callable[[], None] | None = None
    ) -> Iterator[bytes]:
        """Yield the raw JSON body of each page of a list, unparsed (see `page_items`).

        The continue token is read from the page's metadata alone (`list_meta`), so the items can be
        parsed wherever they are turned into rows, even in another process. A 410 Gone mid-list
        (continue token expired) restarts the list from the first page, at most `max_list_restarts`
        times. Pages already yielded belong to the failed attempt, so the caller must drop them:
        `on_restart()` is called before the first page of the new attempt. Without `on_restart` the
        list is not restarted after a page was yielded (KubeListExpired instead).
        """
        restarts = 0
        cont: str | None = None
        yielded = False
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cont:
                params["continue"] = cont
            try:
                body = self._get_bytes(path, params)
            except _Gone:
                restarts += 1
                if cont is None or restarts > self.max_list_restarts or (yielded and on_restart is None):
                    raise self._err(
                        KubeListExpired,
                        path,
                        f"410 Gone: list expired mid-way ({restarts - 1} restarts)",
                        410,
                    ) from None
                log.warning(
                    "cluster %s: GET %s: continue token expired, restarting the list", self.cluster, path
                )
                if yielded and on_restart is not None:
                    on_restart()
                cont, yielded = None, False
                continue
            cont = continue_token(body)
            yield body
            yielded = True
            if not cont:
                return

    def page_items(self, body: bytes, path: str) -> list[dict[str, Any]]:
        """The `items` of one list page body; KubeProtocolError naming the cluster if it is not a list."""
        try:
            return list_items(body)
        except MalformedList as exc:
            raise self.malformed(path, exc) from None

    def malformed(self, path: str, exc: MalformedList) -> KubeError:
        """The error for a list page of `path` that is not a list (wherever it was parsed)."""
        return self._err(KubeProtocolError, path, str(exc))

    def list_pages(
        self, path: str, *, limit: int = 500, on_restart: Callable[[], None] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the parsed `items` of each page of a list, one page in memory at a time.

        Restarts on 410 Gone as `list_bodies` does (same `on_restart` contract).
        """
        for body in self.list_bodies(path, limit=limit, on_restart=on_restart):
            yield self.page_items(body, path)

    def list_all(self, path: str, *, limit: int = 500) -> list[dict[str, Any]]:
        """Every item of a list (restarts handled); for small lists only."""
        out: list[dict[str, Any]] = []
        for page in self.list_pages(path, limit=limit, on_restart=out.clear):
            out.extend(page)
        return out


def _conn_reason(exc: NewConnectionError) -> str:
    return str(exc).rpartition(": ")[2][:200] or exc.__class__.__name__


def _tls_reason(exc: SSLError) -> str:
    reason = exc.args[0] if exc.args else exc
    return str(getattr(reason, "reason", None) or reason)[:200]
