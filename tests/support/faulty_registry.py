"""A front for the real registry: the Docker daemon pulls through it, and it forwards every request to docker-registry
unchanged (challenge, manifests, blobs) except the ones a test asked to fail or to change.

Faults are what a pull meets on the way to Artifact Registry and Cloud Storage: an HTTP status (429, 500, 502, 503,
504), a connection reset before any answer, or an answer cut short (EOF mid-body; for a HEAD, which has no body,
before the answer). Each fault is for requests whose path matches a pattern, a given number of times. As a hostile
registry it can also answer `/v2/` with another challenge after the first one (`later_challenges`), the first answer
being what the pipe checks. Every request is logged with the fault it got and the credentials it carried.
"""

import http.client
import re
import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization"}


@dataclass
class Fault:
    pattern: re.Pattern
    kind: str  # "429", "503", …, "reset" or "eof"
    count: int


@dataclass
class FaultyRegistry:
    upstream: str  # host:port of the real registry
    host: str = "127.0.0.1"  # where to listen
    tls: tuple[str, str] | None = None  # (certificate, key) to serve https, as a registry off loopback must
    upstream_ca: str | None = None  # the upstream's CA, when it serves https
    later_challenges: list[str] | None = None  # WWW-Authenticate headers for every /v2/ answer after the first
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, fault)
    authorizations: list[str] = field(default_factory=list)  # the Authorization headers it received
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _challenges_answered: int = 0

    def inject(self, path: str, kind: str, count: int = 1) -> None:
        with self._lock:
            self.faults.append(Fault(re.compile(path), kind, count))

    def take(self, path: str) -> str | None:
        with self._lock:
            for fault in self.faults:
                if fault.count > 0 and fault.pattern.search(path):
                    fault.count -= 1
                    return fault.kind
        return None

    def start(self) -> "FaultyRegistry":
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                fault = registry.take(self.path)
                with registry._lock:
                    registry.log.append((self.command, self.path, fault))
                    if self.headers.get("Authorization"):
                        registry.authorizations.append(self.headers["Authorization"])
                if fault == "eof" and self.command == "HEAD":  # no body to cut: the connection drops before the answer
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if fault and fault.isdigit():  # the OCI code distribution sends with each status
                    code = "TOOMANYREQUESTS" if fault == "429" else "UNAVAILABLE"
                    body = b'{"errors":[{"code":"%s","message":"injected"}]}' % code.encode()
                    self.send_response(int(fault))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self._relay(cut=fault == "eof")

            def _relay(self, cut: bool):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
                upstream = (http.client.HTTPSConnection(registry.upstream, timeout=60,
                                                        context=ssl.create_default_context(cafile=registry.upstream_ca))
                            if registry.upstream_ca else http.client.HTTPConnection(registry.upstream, timeout=60))
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status)
                headers = [(n, v) for n, v in answer.getheaders() if n.lower() not in _HOP_BY_HOP and n.lower() != "content-length"]
                if self.path == "/v2/" and registry.later_challenges is not None:
                    with registry._lock:
                        registry._challenges_answered += 1
                        later = registry._challenges_answered > 1
                    if later:  # what the daemon would act on, after the pipe has checked the first answer
                        headers = [(n, v) for n, v in headers if n.lower() != "www-authenticate"]
                        headers += [("WWW-Authenticate", value) for value in registry.later_challenges]
                for name, value in headers:
                    self.send_header(name, value)
                if self.command == "HEAD":  # the size of the body a GET would have: the daemon reads it as the manifest's size
                    self.send_header("Content-Length", answer.getheader("Content-Length", "0"))
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if cut and len(data) > 1:  # the answer's head, then the connection drops: an EOF mid-body
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"{self.host}:{self.server.server_address[1]}"
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
