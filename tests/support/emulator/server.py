"""The HTTP face of the emulator: one loopback server for STS, IAM Credentials, the AR realm
and Bitbucket's OIDC documents, with a request log and fault injection."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

from . import iam, keys, replies, routes
from .faults import Faults
from .realm import RegistrySigner
from .replies import Reply
from .tokens import AccessToken, TokenStore
from .world import World

REDACTED = "<redacted>"
_SECRET_HEADERS = {"authorization", "proxy-authorization"}


@dataclass
class RequestRecord:
    route: str | None
    method: str
    path: str
    headers: dict[str, str]
    body: dict
    query: dict[str, list[str]]
    status: int | None = None
    fault: str | None = None
    request_reason: str | None = None  # X-Goog-Request-Reason, as Google's audit logs keep it

    def header(self, name: str) -> str | None:
        """Header lookup ignoring case (clients differ: google-auth sends `authorization`)."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def as_dict(self) -> dict:
        return asdict(self)


class Emulator:
    """Google's endpoints on a loopback port. Usable as a context manager."""

    def __init__(self, world: World, host: str = "127.0.0.1", port: int = 0,
                 registry_signing_key_path: str | None = None,
                 registry_issuer: str = "emulated-artifact-registry",
                 registry_service: str = "127.0.0.1:5000", clock=time.time):
        self._retired_issuers: list = []  # issuers of replaced worlds, still scanned for leaks
        self._world = world
        self.clock = clock
        self.faults = Faults()
        self.tokens = TokenStore()
        self.requests: list[RequestRecord] = []
        self.google_signer = iam.new_signer(keys.new_rsa_key())
        key = (
            keys.load_private_pem(Path(registry_signing_key_path).read_bytes())
            if registry_signing_key_path
            else keys.new_rsa_key()
        )
        self.registry_signer = RegistrySigner(key, registry_issuer, registry_service)
        self._address = (host, port)
        self._lock = threading.Lock()  # one request at a time reads the world and token tables
        self._idle = threading.Condition()  # guards _in_flight, for wait_idle()
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._listeners: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    # -- lifecycle
    def start(self) -> Self:
        self._server = self._listen(ThreadingHTTPServer(self._address, _Handler))
        return self

    def serve_tls(self, host: str, port: int, certfile: str, keyfile: str) -> str:
        """Also answer over TLS on host:port, for clients off loopback (the same world, tokens and log); returns its URL."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        server = _TLSServer((host, port), _Handler)
        # The handshake then runs in the request's thread, so a stalled client cannot block accept().
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._listen(server)
        return f"https://{host}:{server.server_address[1]}"

    def _listen(self, server: ThreadingHTTPServer) -> ThreadingHTTPServer:
        server.daemon_threads = True
        server.emulator = self
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self._listeners.append((server, thread))
        return server

    def stop(self) -> None:
        for server, thread in self._listeners:
            server.shutdown()
            server.server_close()
            thread.join()
        self._listeners.clear()
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- the world can be swapped between tests; tokens issued earlier stay known
    @property
    def world(self) -> World:
        return self._world

    @world.setter
    def world(self, world: World) -> None:
        self._retired_issuers.extend(self._world.issuers)
        self._world = world

    # -- what tests inspect
    def issued_tokens(self) -> list[str]:
        """Every secret ever minted or issued: OIDC JWTs, access tokens, ID tokens, registry JWTs."""
        issuers = self._retired_issuers + self._world.issuers
        minted = [t for issuer in issuers for t in issuer.minted]
        return minted + self.tokens.secrets()

    def token_info(self, token: str) -> AccessToken | None:
        """Who an access token stands for, its scopes and expiry."""
        return self.tokens.lookup(token)

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def google_jwk(self) -> dict:
        return keys.public_jwk(self.google_signer.key, self.google_signer.kid)

    # -- called by the handler
    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no request is in flight (a "slow" fault answers after its client gave up)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError(f"{self._in_flight} request(s) still in flight after {timeout:.0f}s")

    def serve(self, handler: _Handler, incoming: routes.Incoming) -> None:
        with self._idle:
            self._in_flight += 1
        try:
            self._serve(handler, incoming)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _serve(self, handler: _Handler, incoming: routes.Incoming) -> None:
        route = routes.classify(incoming.method, incoming.path)
        if route == "control":
            handler.send_reply(routes.control(self, incoming))
            return
        incoming.body = routes.parse_for_log(route, incoming)
        record = RequestRecord(
            route, incoming.method, incoming.path,
            {k: (REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in incoming.headers.items()},
            incoming.body, incoming.query, request_reason=incoming.header("X-Goog-Request-Reason"),
        )
        fault = self.faults.take(route) if route in ("sts", "iam", "realm") else None
        if fault:
            record.fault = fault.kind
        if fault and fault.kind == "reset":
            self._log(record)
            handler.reset_connection()
            return
        if fault and fault.kind == "slow":
            time.sleep(fault.delay)
        if fault and fault.kind in ("503", "500", "429"):
            reply = _fault_reply(route, fault)
        else:
            with self._lock:
                reply = routes.dispatch(self, route, incoming)
        record.status = reply.status
        self._log(record)  # before replying, so a test sees the record once it has the answer
        handler.send_reply(reply)

    def _log(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)


def _fault_reply(route: str, fault) -> Reply:
    status = int(fault.kind)
    if route == "realm":
        reply = replies.registry_fault(status).reply()
    else:
        error = {503: replies.unavailable, 500: replies.internal_error, 429: replies.resource_exhausted}[status]
        reply = error().reply()
    if status == 429 and fault.retry_after is not None:
        reply.headers["Retry-After"] = str(fault.retry_after)
    return reply


class _TLSServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that rejects the certificate or hangs up mid-handshake is the client's problem, not a traceback."""
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ESF"
    sys_version = ""
    # Headers and body are written separately: with Nagle's algorithm on, a keep-alive client (requests reusing one
    # connection for STS then IAM) waits ~40 ms for a delayed ACK per call, which Google's servers never cost.
    disable_nagle_algorithm = True

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def _handle(self):
        split = urlsplit(self.path)
        incoming = routes.Incoming(
            method=self.command,
            path=unquote(split.path),  # google-cloud-iam percent-encodes the '@' in the email
            query=parse_qs(split.query, keep_blank_values=True),
            headers=dict(self.headers.items()),
            raw=self._read_body(),
            base_url=f"{'https' if isinstance(self.server, _TLSServer) else 'http'}://{self.server.server_address[0]}:{self.server.server_address[1]}",
        )
        self.server.emulator.serve(self, incoming)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_reply(self, reply: Reply) -> None:
        if reply.page is not None:
            payload, kind = reply.page.encode(), "text/html; charset=UTF-8"
        else:
            payload = b"" if reply.body is None else json.dumps(reply.body, separators=(",", ":")).encode()
            kind = replies.JSON
        self.send_response(reply.status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        try:
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a "slow" fault past its timeout)

    def reset_connection(self) -> None:
        """Drop the connection with a TCP RST and no HTTP response at all."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
