"""One simulated cluster: its objects, credentials, fault switches and HTTP(S) listener."""

from __future__ import annotations

import random
import secrets
import ssl
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from kq_pipeline.gcpause import gc_paused
from kq_pipeline.simulator import discovery
from kq_pipeline.simulator.api import ClusterApi
from kq_pipeline.simulator.catalog import CRD_KEY, CRD_TYPE, Catalog, parse_minor
from kq_pipeline.simulator.conversions import objects_for
from kq_pipeline.simulator.faults import FaultController
from kq_pipeline.simulator.rbac import Authorizer
from kq_pipeline.simulator.server import ApiHttpServer
from kq_pipeline.simulator.store import ClusterStore
from kq_pipeline.simulator.writes import TokenController

if TYPE_CHECKING:
    from kq_pipeline.simulator.churn import ChurnReport

DEFAULT_MINOR = 29
REQUEST_LOG_SIZE = 100_000


class SimulatedCluster:
    """A Kubernetes API server for one cluster. `start()` after `stop()` listens on the same port again.

    A "apiextensions.k8s.io/v1/customresourcedefinitions" list in `generated` (even an empty one) makes
    the cluster serve CRDs and the kinds they define, with the objects under "<group>/<version>/<plural>"
    (any one served version; the others are converted).
    """

    def __init__(
        self,
        name: str,
        generated: dict[str, Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        minor: int = DEFAULT_MINOR,
        rbac_rules: Any = None,
        continue_ttl: float = 300.0,
        token: str | None = None,
        ca_pem: str = "",
        token_delay_s: float = 0.05,
    ) -> None:
        """`ca_pem`: the CA the token controller writes into service-account token Secrets (ca.crt);
        `token_delay_s`: how long after a token Secret is created the controller fills it."""
        self.name = name
        self.host = host
        self.port = port
        version = generated.get("version")
        self.version_info: dict[str, str] = (
            dict(version) if isinstance(version, dict) else discovery.version_info(f"v1.{minor}.3")
        )
        self.minor = parse_minor(self.version_info["gitVersion"])
        self._tls = tls
        self._ca_pem = ca_pem
        self._token_delay_s = token_delay_s
        self._token = token or secrets.token_urlsafe(32)
        crds = generated.get(CRD_KEY)
        self.catalog = Catalog.for_minor(self.minor, crds if isinstance(crds, list) else None)
        self._crd_lock = threading.Lock()
        with gc_paused():
            served = {rt: objects_for(rt, generated) for rt in self.catalog.types}
            self.store = ClusterStore(served, continue_ttl)
        self.faults = FaultController(on_refuse=self._refuse)
        self.tokens = TokenController(self.catalog, self.store, ca_pem, token_delay_s)
        """Service-account tokens (TokenRequest and token Secrets); they outlive a stop and start.
        Tests move `tokens.clock` forward to expire them."""
        self._stopping = threading.Event()
        self._authorizer = Authorizer(rbac_rules) if rbac_rules is not None else None
        self._server: ApiHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._reopen: threading.Timer | None = None
        self._refused = False
        self.api: ClusterApi | None = None
        self.request_log: deque[str] = deque(maxlen=REQUEST_LOG_SIZE)
        """The API requests served, oldest first, as "GET /apis/cert-manager.io/v1/certificates" (no
        query string); tests read it to prove what a client asked for (and what it did not)."""

    def __repr__(self) -> str:
        return f"SimulatedCluster(name={self.name!r}, url={self.url!r}, running={self.running})"

    @property
    def token(self) -> str:
        return self._token

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def objects(self) -> dict[str, list[dict[str, Any]]]:
        """Current objects per "<group_version>/<resource>" (after any mutation faults)."""
        return self.store.objects()

    @property
    def git_version(self) -> str:
        return self.version_info["gitVersion"]

    def remove_crd(self, name: str) -> dict[str, Any] | None:
        """Delete CRD `name` ("certificates.cert-manager.io") and with it its kinds and their objects,
        as `kubectl delete crd` does; returns the deleted CRD, or None if there is no such CRD.

        Also reachable over HTTP: DELETE /apis/apiextensions.k8s.io/v1/customresourcedefinitions/<name>.
        """
        with self._crd_lock:
            if self.catalog.lookup(CRD_TYPE.group, CRD_TYPE.version, CRD_TYPE.resource) is None:
                return None
            gone = self.store.delete(CRD_TYPE, "", name)
            if gone is None:
                return None
            remaining = [e.obj for e in self.store.history(CRD_TYPE).current.entries]
            catalog = Catalog.for_minor(self.minor, remaining)
            dropped = [t for t in self.catalog.types if t not in catalog.types]
            self.catalog = catalog
            if self.api is not None:
                self.api.set_catalog(catalog)  # first stop routing to the kinds, then forget their objects
            self.store.drop(dropped)
            return gone

    def install_crd(
        self, crd: dict[str, Any], objects: dict[str, list[dict[str, Any]]] | None = None
    ) -> None:
        """Create CRD `crd` and serve its kind from now on, as `kubectl apply` of a CRD does, with
        `objects` ("<group>/<version>/<plural>" -> objects at any one served version, as
        generate_objects returns them). The reverse of `remove_crd`; ValueError if it exists."""
        with self._crd_lock:
            if self.catalog.lookup(CRD_TYPE.group, CRD_TYPE.version, CRD_TYPE.resource) is None:
                raise ValueError(f"cluster {self.name} does not serve CustomResourceDefinitions")
            if self.store.write(CRD_TYPE, crd, create=True) is None:
                raise ValueError(f"CRD {crd['metadata']['name']} exists")
            every = [e.obj for e in self.store.history(CRD_TYPE).current.entries]
            catalog = Catalog.for_minor(self.minor, every)
            added = [t for t in catalog.types if t not in self.catalog.types]
            self.store.add({t: objects_for(t, objects or {}) for t in added})  # objects first, then routes
            self.catalog = catalog
            if self.api is not None:
                self.api.set_catalog(catalog)

    def churn(self, fraction: float, seed: Any = None, *, now: int | None = None) -> ChurnReport:
        """Change about `fraction` of the objects as a live cluster does between loads (churn.py); the
        same seed on the same objects makes the same changes. Also: POST /_sim/churn."""
        from kq_pipeline.simulator.churn import churn

        return churn(self, fraction, random.Random(seed), now=now)

    def churn_action(self, action: str, **params: Any) -> ChurnReport:
        """One named change ("delete", "replace_pod", "roll", "scale", "add_node", "remove_node"), with
        what controllers do after it; see churn.churn_action for the parameters."""
        from kq_pipeline.simulator.churn import churn_action

        return churn_action(self, action, **params)

    def set_rbac_rules(self, rules: Any) -> None:
        """Enforce a Role/ClusterRole manifest (or a list of rules); None turns RBAC off."""
        self._authorizer = Authorizer(rules) if rules is not None else None
        if self.api is not None:
            self.api.authorizer = self._authorizer

    def start(self) -> SimulatedCluster:
        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = ApiHttpServer((self.host, self.port), _placeholder_api(), self._tls)
            self.port = server.server_address[1]
            self.api = ClusterApi(
                self.name,
                self.catalog,
                self.store,
                self._token,
                self.version_info,
                self.faults,
                f"{self.host}:{self.port}",
                self._authorizer,
                self._stopping,
                ca_pem=self._ca_pem,
                token_delay_s=self._token_delay_s,
                tokens=self.tokens,
            )
            self.api.crd_deleter = self.remove_crd
            self.api.request_log = self.request_log
            server.api = self.api
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"sim-{self.name}",
                daemon=True,
            )
            self._thread.start()
            return self

    def stop(self) -> None:
        """Stop listening and cut open connections: clients now get "connection refused"."""
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            self._stopping.set()
            server.shutdown()
            server.server_close()
            server.close_connections()
            if self._thread is not None:
                self._thread.join(timeout=5)

    def _refuse(self, enabled: bool, seconds: float | None) -> None:
        with self._lock:
            if self._reopen is not None:
                self._reopen.cancel()
                self._reopen = None
            if enabled:
                self._refused = True
                self.stop()
                if seconds:
                    self._reopen = threading.Timer(seconds, self._refuse, args=(False, None))
                    self._reopen.daemon = True
                    self._reopen.start()
            elif self._refused:
                self._refused = False
                self.start()


def _placeholder_api() -> Any:
    """The server is bound before the API knows its port (for /api's serverAddress); set right after."""
    return None
