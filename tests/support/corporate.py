"""A corporate network in miniature, for the tests: a private certificate authority made at
test time (trustme), one HTTPS server on 127.0.0.1 that plays both the API
(``https://api.corp.test``) and the token endpoint (``https://auth.corp.test``), and a
forward proxy on 127.0.0.1 that alone knows where those names are (``.test`` names never
resolve, so nothing reaches them except through the proxy's CONNECT tunnels).

The token endpoint rotates refresh tokens (each one works once) and can require a client
certificate signed by the CA (``tls_client_auth``). Everything the servers saw is recorded.
"""

from __future__ import annotations

import http.server
import select
import socket
import socketserver
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

from .handlers import QuietHandler

API_HOST = "api.corp.test"
AUTH_HOST = "auth.corp.test"
API_URL = f"https://{API_HOST}/"
TOKEN_URL = f"https://{AUTH_HOST}/oauth/token"
CLIENT_ID = "corp-client"
CLIENT_SECRET = "corp-secret-value-41"
_IO_TIMEOUT = 5.0


@dataclass
class Seen:
    """What the servers saw: token requests (their headers and form), the bearer tokens the API
    got, the proxy's tunnels by host, and the client certificates' subjects."""

    token_requests: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)
    api_bearers: list[str] = field(default_factory=list)
    tunnels: Counter[str] = field(default_factory=Counter)
    client_subjects: list[str] = field(default_factory=list)


class CorporateNetwork:
    """The CA, the HTTPS server and the proxy; a context manager that starts and stops them."""

    def __init__(self, folder: Path, *, require_client_cert: bool = False) -> None:
        self.ca = trustme.CA(organization_name="Corp Private CA")
        self.ca_file = folder / "corp-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.seen = Seen()
        self.generation = 0
        self._lock = threading.Lock()
        self._server = _https_server(self, require_client_cert)
        self._proxy = _Proxy(self)
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._proxy.serve_forever, daemon=True),
        ]

    @property
    def proxy_url(self) -> str:
        """The forward proxy's URL, for ``session.proxies``."""
        return f"http://127.0.0.1:{self._proxy.server_address[1]}"

    @property
    def server_port(self) -> int:
        return int(self._server.server_address[1])

    def client_cert(self, folder: Path, name: str = CLIENT_ID) -> Path:
        """A client certificate (and its key) signed by the CA, as one PEM file."""
        issued = self.ca.issue_cert(name, common_name=name)
        path = folder / f"{name}.pem"
        issued.private_key_and_cert_chain_pem.write_to_path(str(path))
        return path

    def grant(self) -> dict[str, Any]:
        """The current grant, as a token file holds it, already expired."""
        with self._lock:
            return {
                "access_token": f"at-{self.generation}",
                "token_type": "Bearer",
                "refresh_token": f"rt-{self.generation}",
                "expires_at": 1,
            }

    def token_answer(self, headers: dict[str, str], form: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            self.seen.token_requests.append((headers, form))
            if form.get("refresh_token") != f"rt-{self.generation}":
                return 400, {"error": "invalid_grant"}
            self.generation += 1
            return 200, {
                "access_token": f"at-{self.generation}",
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": f"rt-{self.generation}",
            }

    def api_answer(self, authorization: str) -> int:
        with self._lock:
            self.seen.api_bearers.append(authorization)
            return 200 if authorization == f"Bearer at-{self.generation}" else 401

    def __enter__(self) -> CorporateNetwork:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self._proxy, self._server):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(_IO_TIMEOUT)


def _https_server(
    network: CorporateNetwork, require_client_cert: bool
) -> http.server.ThreadingHTTPServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    network.ca.issue_cert(API_HOST, AUTH_HOST).configure_cert(context)
    if require_client_cert:
        network.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED

    class Handler(QuietHandler):
        timeout = _IO_TIMEOUT

        def do_GET(self) -> None:
            status = network.api_answer(self.headers.get("Authorization", ""))
            self.send_json(status, {"ok": status == 200})

        def do_POST(self) -> None:
            form = self.read_form()
            peer = (
                self.connection.getpeercert()
                if isinstance(self.connection, ssl.SSLSocket)
                else None
            )
            if peer:
                names: list[Any] = [pair for part in peer.get("subject", ()) for pair in part]
                network.seen.client_subjects.extend(
                    str(pair[1]) for pair in names if pair[0] == "commonName"
                )
            self.send_json(*network.token_answer(dict(self.headers.items()), form))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


class _Proxy(socketserver.ThreadingTCPServer):
    """A forward proxy that opens CONNECT tunnels to the two corporate names only."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, network: CorporateNetwork) -> None:
        self.network = network
        super().__init__(("127.0.0.1", 0), _Tunnel)


class _Tunnel(socketserver.StreamRequestHandler):
    server: _Proxy

    def handle(self) -> None:
        self.request.settimeout(_IO_TIMEOUT)
        request_line = self.rfile.readline(65536).decode("latin-1").split()
        while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
            pass  # the request's headers: nothing in them matters here
        if len(request_line) != 3 or request_line[0] != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Only CONNECT\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = request_line[1].rpartition(":")
        if host not in (API_HOST, AUTH_HOST) or port != "443":
            self.wfile.write(b"HTTP/1.1 403 Not on this network\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.network.seen.tunnels[host] += 1
        with socket.create_connection(
            ("127.0.0.1", self.server.network.server_port), timeout=_IO_TIMEOUT
        ) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _pipe(self.request, upstream)


def _pipe(one: socket.socket, other: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    peers = {one: other, other: one}
    while True:
        readable, _, _ = select.select(list(peers), [], [], _IO_TIMEOUT)
        if not readable:
            return
        for source in readable:
            try:
                chunk = source.recv(65536)
                if chunk:
                    peers[source].sendall(chunk)
            except OSError:  # a side gave up (a refused handshake, say): the tunnel ends
                return
            if not chunk:
                return
