"""HTTP/1.1 (keep-alive) over TLS for one cluster: a thread per connection, handshakes off the accept loop."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kq_pipeline.simulator.api import ClusterApi, Request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without TCP_NODELAY, Nagle + the client's delayed ACK
    # add ~40 ms to every response.
    disable_nagle_algorithm = True
    server_version = "kq-simulator"
    sys_version = ""
    server: ApiHttpServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: no per-request logs
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(
            method=self.command,
            target=self.path,
            authorization=self.headers.get("Authorization"),
            cert_user=self.server.peer_user(self.connection),
            loopback=_is_loopback(self.client_address[0]),
            body=body,
            content_type=self.headers.get("Content-Type"),
        )
        resp = self.server.api.handle(req)
        if resp is None:
            self.close_connection = True
            return
        self.send_response(resp.code)
        headers = {"Content-Type": "application/json", "Cache-Control": "no-cache, private", **resp.headers}
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: ClusterApi, tls: ssl.SSLContext | None) -> None:
        self.api = api
        self.tls = tls
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn = request
        with self._conns_lock:
            self._conns.add(request)
        try:
            if self.tls is not None:
                request.settimeout(10)
                try:
                    conn = self.tls.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError):
                    return
                conn.settimeout(None)
                with self._conns_lock:
                    self._conns.add(conn)
            self.RequestHandlerClass(conn, client_address, self)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
        finally:
            with self._conns_lock:
                self._conns.discard(request)
                self._conns.discard(conn)
            if conn is not request:
                with contextlib.suppress(OSError):
                    conn.close()

    def peer_user(self, conn: Any) -> str | None:
        """CN of a client certificate the TLS layer verified against the fleet CA."""
        if not isinstance(conn, ssl.SSLSocket):
            return None
        cert = conn.getpeercert()
        if not cert:
            return None
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None

    def close_connections(self) -> None:
        """Cut every open (keep-alive) connection, so a stopped cluster is really gone."""
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
