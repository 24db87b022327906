"""pipe.transport's bounds, against small loopback servers that misbehave on purpose: one deadline per exchange
(a server dripping its head or body a byte at a time is cut off), caps on bodies (plain and gzip) and headers, no
redirect followed, every credential registered for redaction as soon as it is sent or received, and no proxy for
plain http. (Retries are tests/test_transport.py's.)"""

import base64
import json
import secrets
import socket
import threading
import time
import zlib
from urllib.parse import urlencode

import pytest
import requests
from google.auth import exceptions

from pipe import redact, transport
from pipe.errors import PipeError
from pipe.retry import RetryPolicy
from pipe.transport import MAX_BODY, MAX_HEADER_BYTES, MAX_HEADERS, Refused, TimedOut, Transport

PACE = 0.3  # seconds between two bytes of a dripping server
SLACK = 5.0  # liveness bound: a cut-off call returns within its deadline plus this


# --- loopback servers ---------------------------------------------------------------------------------

def _read_request(conn: socket.socket) -> bytes:
    """One request's head and body (by Content-Length), as sent."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return data
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        more = conn.recv(65536)
        if not more:
            break
        body += more
    return head + b"\r\n\r\n" + body


class Loopback:
    """A TCP server on 127.0.0.1:0. Each connection's request is recorded, then `answer(conn, server)` writes what
    it likes, in a thread of its own; `stop` is set when the test is over (a stalling answer waits on it)."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn):
        with conn:
            try:
                request = _read_request(conn)
                if not request:
                    return
                self.requests.append(request)
                self.answer(conn, self)
            except OSError:  # the client shut the connection: what a cut-off looks like from here
                pass

    def close(self):
        self.stop.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.listener.close()
        for thread in list(self._threads):
            thread.join(timeout=5)


@pytest.fixture
def serve():
    started: list[Loopback] = []

    def start(answer) -> Loopback:
        server = Loopback(answer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def reply(status: int = 200, headers: dict | None = None, body: bytes = b""):
    """An answer sent at once."""
    def answer(conn, server):
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in {"Content-Length": str(len(body)), **(headers or {})}.items()]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return answer


def drip(conn, server, data: bytes):
    for byte in data:
        if server.stop.wait(PACE):
            return
        conn.sendall(bytes([byte]))


def one_try(timeout: float = 30.0) -> Transport:
    return Transport(RetryPolicy(attempts=1, timeout=timeout), sleep=_no_sleep)


def _no_sleep(seconds):
    raise AssertionError(f"no pause expected (asked for {seconds}s)")


class Stopwatch:
    def __enter__(self):
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.monotonic() - self.started
        return False


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


# --- one deadline per exchange ------------------------------------------------------------------------

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Padding: " + b"p" * 200 + b"\r\nContent-Length: 2\r\n\r\n{}"


def test_a_head_dripped_a_byte_at_a_time_is_cut_off_at_the_deadline(serve):
    """Each byte arrives well within any per-read timeout; only the exchange's own deadline can end it."""
    server = serve(lambda conn, srv: drip(conn, srv, HEAD))
    deadline = 1.5
    assert len(HEAD) * PACE > deadline + SLACK  # the whole head would take far longer than the bound
    with Stopwatch() as watch, pytest.raises(TimedOut, match="timed out"):
        one_try(deadline)(f"{server.url}/v2/")
    assert watch.elapsed < deadline + SLACK
    assert len(server.requests) == 1


def test_a_body_dripped_a_byte_at_a_time_is_cut_off_at_the_deadline(serve):
    body = json.dumps({"token": "x" * 500}).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)

    def answer(conn, srv):
        conn.sendall(head)  # the head at once: the response object exists before the body stalls
        drip(conn, srv, body)

    server = serve(answer)
    deadline = 1.5
    with Stopwatch() as watch, pytest.raises(TimedOut, match="timed out"):
        one_try(deadline)(f"{server.url}/token", method="POST", body=b"a=b")
    assert watch.elapsed < deadline + SLACK
    assert len(server.requests) == 1


def test_the_retry_budget_shortens_the_deadline(serve):
    """With less budget left than REQUEST_TIMEOUT, the exchange ends with the budget."""
    server = serve(lambda conn, srv: drip(conn, srv, HEAD))
    call = Transport(RetryPolicy(attempts=1, timeout=60, budget=1.0), sleep=_no_sleep)
    with Stopwatch() as watch, pytest.raises(TimedOut):
        call(f"{server.url}/v2/")
    assert watch.elapsed < 1.0 + SLACK


# --- bodies -------------------------------------------------------------------------------------------

def stall(conn, srv):
    srv.stop.wait()  # the rest never comes while the test runs


def test_a_gzip_body_expanding_past_the_cap_is_refused_without_reading_the_rest(serve):
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    part = compressor.compress(b"\0" * (40 * 1024 * 1024)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(part) < MAX_BODY  # as sent, it is within the cap: only decoding shows its size

    def answer(conn, srv):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (len(part) + 1_000_000) + part)
        stall(conn, srv)  # a reader that wanted it all would wait here until the deadline (TimedOut)

    server = serve(answer)
    with Stopwatch() as watch, pytest.raises(Refused, match=f"more than {MAX_BODY // 1024} KB"):
        one_try(20)(f"{server.url}/v1/token", method="POST")
    assert watch.elapsed < 20


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_plain_body_over_the_cap_is_refused_without_reading_the_rest(serve, framing):
    sent = b"x" * (MAX_BODY + 32 * 1024)

    def answer(conn, srv):
        if framing == "chunked":
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(sent) + sent + b"\r\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (100 * 1024 * 1024) + sent)
        stall(conn, srv)

    server = serve(answer)
    with Stopwatch() as watch, pytest.raises(Refused, match="far more than any real answer"):
        one_try(20)(f"{server.url}/v2/token")
    assert watch.elapsed < 20


def test_a_body_at_the_cap_is_read(serve):
    body = b"y" * MAX_BODY
    server = serve(reply(200, body=body))
    assert one_try(10)(f"{server.url}/v2/").data == body


def test_a_refused_body_is_not_retried(serve):
    server = serve(reply(200, body=b"z" * (MAX_BODY + 1)))
    with pytest.raises(Refused):
        Transport(RetryPolicy(attempts=3, timeout=10), sleep=_no_sleep)(f"{server.url}/v2/")
    assert len(server.requests) == 1


# --- headers ------------------------------------------------------------------------------------------

def test_headers_over_the_byte_cap_are_refused(serve):
    server = serve(reply(200, {f"X-Filler-{i}": "f" * 400 for i in range(50)}, b"{}"))  # 50 headers, ~20 KB
    with pytest.raises(Refused, match=f"{MAX_HEADER_BYTES // 1024} KB"):
        one_try(10)(f"{server.url}/v2/")


def test_one_header_over_the_byte_cap_is_refused(serve):
    server = serve(reply(200, {"X-Big": "b" * (MAX_HEADER_BYTES + 1)}, b"{}"))
    with pytest.raises(Refused):
        one_try(10)(f"{server.url}/v2/")


def test_headers_within_the_caps_are_read(serve):
    server = serve(reply(200, {f"X-H-{i}": "v" * 100 for i in range(MAX_HEADERS - 10)}, b"{}"))
    answer = one_try(10)(f"{server.url}/v2/")
    assert answer.status == 200 and answer.headers["X-H-0"] == "v" * 100


def test_more_headers_than_the_cap_are_refused_once(serve):
    server = serve(reply(200, {f"X-H-{i}": "v" for i in range(MAX_HEADERS + 1)}, b"{}"))
    with pytest.raises(Refused):
        Transport(RetryPolicy(attempts=3, timeout=10), sleep=lambda s: None)(f"{server.url}/v2/")
    assert len(server.requests) == 1


def test_a_header_line_over_64_kb_is_refused_once(serve):
    server = serve(reply(200, {"X-Huge": "h" * 70_000}, b"{}"))
    with pytest.raises(Refused):
        Transport(RetryPolicy(attempts=3, timeout=10), sleep=lambda s: None)(f"{server.url}/v2/")
    assert len(server.requests) == 1


# --- redirects ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_and_its_target_never_asked(serve, status):
    target = serve(reply(200, body=b'{"access_token": "never-read"}'))
    redirecting = serve(reply(status, {"Location": f"{target.url}/v1/token"}))
    token = "t" + secrets.token_urlsafe(24)
    with pytest.raises(PipeError) as refused:
        Transport(RetryPolicy(attempts=3, timeout=10), sleep=_no_sleep)(
            f"{redirecting.url}/v1/token", method="POST", body=urlencode({"subject_token": token}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert target.requests == []
    assert len(redirecting.requests) == 1  # refused, not retried
    assert f"redirect (HTTP {status}) to 127.0.0.1:{target.port}" in refused.value.message
    assert "STS_ENDPOINT" in refused.value.message and "\n" not in refused.value.message


def test_a_redirect_without_location_is_refused_too(serve):
    server = serve(reply(302))
    with pytest.raises(PipeError, match="redirect"):
        one_try(10)(f"{server.url}/v2/")


# --- credentials registered for redaction -------------------------------------------------------------

def fresh_secret() -> str:
    """A token no shape rule catches (not eyJ…, not ya29…): only its registration can redact it."""
    value = "tok" + secrets.token_hex(16)
    assert redact.redact(f"seen {value} here") == f"seen {value} here"
    return value


def hidden(value: str) -> bool:
    return value not in redact.redact(f"leaked: {value}.") and redact.REDACTED in redact.redact(f"leaked: {value}.")


def test_a_bearer_token_sent_is_registered(serve):
    token = fresh_secret()
    server = serve(reply(200, body=b"{}"))
    one_try(10)(f"{server.url}/v2/", headers={"Authorization": f"Bearer {token}"})
    assert f"Bearer {token}".encode() in server.requests[0]
    assert hidden(token)


def test_a_bearer_token_is_registered_even_when_nothing_answers():
    token = fresh_secret()
    with pytest.raises(transport.Dropped):
        one_try(5)(f"http://127.0.0.1:{closed_port()}/v2/", headers={"Authorization": f"Bearer {token}"})
    assert hidden(token)


def test_the_transports_own_headers_are_registered(serve):
    token = fresh_secret()
    server = serve(reply(200, body=b"{}"))
    Transport(RetryPolicy(attempts=1, timeout=10), headers={"authorization": f"Bearer {token}"})(f"{server.url}/v2/")
    assert hidden(token)


def test_basic_credentials_register_the_password_only(serve):
    password = fresh_secret()
    server = serve(reply(200, body=b"{}"))
    basic = base64.b64encode(f"oauth2accesstoken:{password}".encode()).decode()
    one_try(10)(f"{server.url}/v2/token", headers={"Authorization": f"Basic {basic}"})
    assert hidden(password)
    assert redact.redact("user oauth2accesstoken") == "user oauth2accesstoken"  # the user name is no secret


@pytest.mark.parametrize("as_bytes", [True, False])
def test_a_subject_token_in_a_form_body_is_registered(serve, as_bytes):
    token = fresh_secret()
    server = serve(reply(200, body=b"{}"))
    form = urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": token,
                      "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"})
    one_try(10)(f"{server.url}/v1/token", method="POST", body=form.encode() if as_bytes else form)
    assert token.encode() in server.requests[0]
    assert hidden(token)


@pytest.mark.parametrize("field", ["access_token", "accessToken", "token"])
def test_tokens_in_a_success_answer_are_registered(serve, field):
    token = fresh_secret()
    server = serve(reply(200, {"Content-Type": "application/json"}, json.dumps({field: token}).encode()))
    assert one_try(10)(f"{server.url}/v1/token", method="POST").status == 200
    assert hidden(token)


@pytest.mark.parametrize("status", [400, 401, 403, 500])
def test_an_error_answer_cannot_choose_what_gets_redacted(serve, status):
    """No token comes in a refusal: a 'token' field there is text the server chose, and registering it would let a
    listed registry blank any text it likes (an image name, the printed `source` line) out of every line. A token
    the pipe sent and the server echoes is still redacted: it was registered when sent."""
    chosen, sent = "us-docker.pkg.dev/acme/tools/builder-0123456789", fresh_secret()
    server = serve(reply(status, {"Content-Type": "application/json"},
                         json.dumps({"token": chosen, "access_token": chosen, "echo": sent}).encode()))
    one_try(10)(f"{server.url}/v2/", headers={"Authorization": f"Bearer {sent}"})
    assert redact.redact(f"pulling {chosen}") == f"pulling {chosen}"
    assert hidden(sent)


def test_short_or_spaced_answer_fields_are_not_registered(serve):
    """Ordinary words in an answer's token field must not become redacted everywhere."""
    server = serve(reply(400, body=json.dumps({"token": "invalid", "access_token": "not a token at all here"}).encode()))
    one_try(10)(f"{server.url}/v2/token")
    assert redact.redact("an invalid request: not a token at all here") == "an invalid request: not a token at all here"


# --- no proxy for plain http --------------------------------------------------------------------------

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(params=["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def proxy(serve, monkeypatch, request):
    """A recording 'proxy' named by one proxy variable (and by HTTPS_PROXY); it refuses whatever it gets."""
    recorder = serve(reply(403, body=b"proxy says no"))
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(request.param, recorder.url)
    monkeypatch.setenv("HTTPS_PROXY", recorder.url)
    return recorder


def test_plain_http_never_goes_through_a_proxy(serve, proxy):
    server = serve(reply(200, body=b'{"ok": true}'))
    answer = one_try(10)(f"{server.url}/v2/", headers={"Authorization": "Bearer " + fresh_secret()})
    assert answer.status == 200 and answer.data == b'{"ok": true}'
    assert len(server.requests) == 1 and proxy.requests == []
    # the environment really names the proxy: a client that honours it sends this request there
    assert requests.get(f"{server.url}/v2/", timeout=10).status_code == 403
    assert proxy.requests[0].startswith(f"GET {server.url}/v2/ HTTP/1.1".encode())


def test_https_goes_through_the_proxy_in_a_tunnel(proxy):
    with pytest.raises(exceptions.TransportError):
        one_try(10)("https://registry.example.test/v2/")
    assert len(proxy.requests) == 1
    assert proxy.requests[0].startswith(b"CONNECT registry.example.test:443 ")


def test_a_proxy_dripping_its_connect_answer_is_cut_off_at_the_deadline(serve, monkeypatch):
    """The deadline watches the socket from the TCP connection on: http.client reads a proxy's CONNECT answer with
    per-read timeouts only, and a proxy sending a byte at a time would otherwise hold the step."""
    connect_answer = b"HTTP/1.1 200 Connection established\r\nX-Slow: " + b"s" * 200 + b"\r\n\r\n"
    proxy = serve(lambda conn, srv: drip(conn, srv, connect_answer))
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    deadline = 1.5
    assert len(connect_answer) * PACE > deadline + SLACK
    with Stopwatch() as watch, pytest.raises(exceptions.TransportError):
        one_try(deadline)("https://sts.example.test/v1/token", method="POST", body=b"a=b")
    assert watch.elapsed < deadline + SLACK
    assert proxy.requests and proxy.requests[0].startswith(b"CONNECT sts.example.test:443 ")
