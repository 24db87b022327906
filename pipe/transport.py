"""HTTP for every call the pipe makes (Google STS, IAM Credentials, the registry's challenge, token service and
manifests), as google-auth's Request: bounded, quiet about secrets, never redirected, and retried when transient.

- Bounded: one exchange, from connecting to the answer's last byte, has one deadline (REQUEST_TIMEOUT, and never past
  the retry budget); a watchdog shuts the socket at the deadline, so a server dripping a byte at a time cannot hold
  the step. An answer's body is capped before and after decompression, and its headers in number and size.
- Quiet: every credential the pipe sends (a bearer token, Basic credentials, a subject token) and every token an
  answer carries is registered for redaction before anything can print it.
- Never redirected: Google's endpoints and token services do not redirect these calls; following one would re-send
  the token past every host check.
- No proxy for plain http (loopback emulators and registries): a proxy would see the token in clear. https goes
  through HTTPS_PROXY as usual, inside a CONNECT tunnel.
- Retried: google-auth makes a single attempt; what pipe.retry calls transient is tried again within the budget.
"""

import base64
import http.client
import logging
import re
import socket
import threading
import time
from urllib.parse import parse_qsl

import requests
import urllib3
from google.auth import exceptions
from google.auth.transport import requests as google_requests

from pipe import answers, redact, retry, untrusted, urls
from pipe.errors import PipeError

log = logging.getLogger("pipe")

MAX_BODY = untrusted.MAX_JSON  # bytes of an answer, on the wire and decoded
MAX_HEADERS = 100  # http.client's own cap, which refuses a 101st header line
MAX_HEADER_BYTES = 16 * 1024  # CHOSEN: Google's and registries' answers carry about 1 KB of headers
_TOKEN_FIELDS = ("access_token", "accessToken", "token", "id_token", "idToken", "refresh_token", "subject_token", "actor_token")
_MIN_TOKEN = answers.MIN_TOKEN  # shorter values are not tokens (and an answer must not make ordinary words redacted)


class Refused(exceptions.TransportError):
    """An answer the pipe will not read (too large, too many headers): permanent, explained in one line."""


class Dropped(exceptions.TransportError):
    """The exchange broke off (a reset, a refused connection, an answer cut short): transient."""


class TimedOut(Dropped):
    """No complete answer within the exchange's deadline: transient."""


# --- the deadline ---------------------------------------------------------------------------------

_current = threading.local()


class _Deadline:
    """Shuts every socket of one exchange when its time is up, waking whatever read or write waits on it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._sockets: list = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self):
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        _current.deadline = None

    def watch(self, sock) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock) -> None:
    try:  # the plain socket's shutdown, also for TLS: it only ends the fd's traffic, whatever thread reads it
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _watch(sock) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self):
        sock = super()._new_conn()
        _watch(sock)  # from the TCP connection on: a proxy's CONNECT answer, then the exchange
        return sock

    def request(self, *args, **kwargs):
        _watch(self.sock)  # a kept-alive connection, reused for this exchange
        return super().request(*args, **kwargs)


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self):
        sock = super()._new_conn()
        _watch(sock)  # from the TCP connection on: a proxy's CONNECT answer, the TLS handshake, then the exchange
        return sock

    def request(self, *args, **kwargs):
        _watch(self.sock)
        return super().request(*args, **kwargs)


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections the exchange's deadline can shut (proxied ones too)."""

    _POOLS = {"http": _HTTPPool, "https": _HTTPSPool}

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._POOLS

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = self._POOLS
        return manager


def _session(trust_env: bool) -> requests.Session:
    session = requests.Session()
    session.trust_env = trust_env  # False: no proxies (nor .netrc) from the environment
    for scheme in ("http://", "https://"):
        session.mount(scheme, _Adapter())
    return session


# --- answers ----------------------------------------------------------------------------------------

class Answer:
    """An answer read whole within the caps: what google-auth's transport.Response offers."""

    def __init__(self, status: int, headers, data: bytes):
        self.status, self.headers, self.data = status, headers, data


def _read(response: requests.Response, what: str) -> Answer:
    headers = response.headers
    if len(headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in headers.items()) > MAX_HEADER_BYTES:
        raise Refused(f"{what} answered with {len(headers)} headers of {sum(len(k) + len(v) for k, v in headers.items())} "
                      f"bytes, more than any real answer ({MAX_HEADERS} headers, {MAX_HEADER_BYTES // 1024} KB)")
    raw, chunks, size = response.raw, [], 0
    for chunk in raw.stream(16 * 1024, decode_content=True):
        size += len(chunk)
        if size > MAX_BODY or raw.tell() > MAX_BODY:  # decoded, and as sent (before decompression)
            raise Refused(f"{what} sent an answer of more than {MAX_BODY // 1024} KB, far more than any real answer")
        chunks.append(chunk)
    return Answer(response.status_code, headers, b"".join(chunks))


def register_secrets(data: bytes | str | None) -> None:
    """The tokens a JSON body or a form carries, known to redaction before anything can print them."""
    if not data:
        return
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    fields = untrusted.json_or_none(text) or {}
    if not fields and "=" in text[:untrusted.MAX_JSON]:
        fields = dict(parse_qsl(text[:untrusted.MAX_JSON]))
    for name in _TOKEN_FIELDS:
        value = fields.get(name)
        if isinstance(value, str) and len(value) >= _MIN_TOKEN and not any(c.isspace() for c in value):
            redact.add_secret(value)


def _register_credentials(headers: dict) -> None:
    for name, value in headers.items():
        if name.lower() != "authorization" or not isinstance(value, str):
            continue
        scheme, _, credential = value.partition(" ")
        if scheme.lower() == "basic":
            try:
                credential = base64.b64decode(credential).decode().partition(":")[2]
            except ValueError:
                pass
        redact.add_secret(credential)


# --- the transport -----------------------------------------------------------------------------------

def describe(url: str) -> str:
    """What a URL is, in the user's terms."""
    if url.endswith("/v1/token"):
        return "Google STS token exchange"
    if ":generateAccessToken" in url:
        return "IAM Credentials generateAccessToken"
    if ":generateIdToken" in url:
        return "IAM Credentials generateIdToken"
    parsed = urls.parse(url)
    return f"the registry at {parsed.netloc}" if parsed else "the registry"


def _setting(url: str) -> str:
    """The variable that chose this URL, for the redirect refusal."""
    if url.endswith("/v1/token"):
        return "STS_ENDPOINT"
    if ":generate" in url:
        return "IAM_CREDENTIALS_ENDPOINT"
    return "IMAGE or REGISTRIES"


def refuse_redirect(url: str, answer: Answer) -> None:
    location = urls.parse(answer.headers.get("Location") or "")
    target = location.netloc if location else "an address the pipe will not read"
    raise PipeError(
        f"{describe(url)} answered with a redirect (HTTP {answer.status}) to {target}: the pipe never follows "
        f"redirects with a token; set {_setting(url)} to the final address if you trust it."
    )


_TRANSIENT = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError)
_PERMANENT = (requests.exceptions.SSLError, requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader)


class Transport(google_requests.Request):
    """`headers` go only to `header_hosts` (REQUEST_REASON is for Google's audit logs, not a registry's)."""

    def __init__(self, policy: retry.RetryPolicy | None = None, headers: dict | None = None, sleep=time.sleep,
                 clock=time.monotonic, header_hosts: frozenset[str] | None = None):
        self.policy = policy or retry.RetryPolicy()
        self.headers = headers or {}
        self.header_hosts = header_hosts
        self.sleep, self.clock = sleep, clock
        self._proxied, self._direct = _session(trust_env=True), _session(trust_env=False)
        super().__init__(self._proxied)

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs) -> Answer:
        parsed = urls.parse(url)
        ours = self.header_hosts is None or (parsed is not None and parsed.netloc in self.header_hosts)
        headers = {**(headers or {}), **(self.headers if ours else {})}
        _register_credentials(headers)
        register_secrets(body)
        tries = retry.Attempts(self.policy, describe(url), self.clock, self.sleep)
        for attempt in tries:
            seconds = max(0.1, min(self.policy.timeout, tries.remaining()))  # the last try still gets a moment
            try:
                answer = self._exchange(url, method, body, headers, seconds)
            except Dropped as error:  # permanent failures (TLS, caps, a bad URL) are raised at once
                if tries.again(attempt, str(error), retry.NETWORK):
                    continue
                raise
            if 300 <= answer.status < 400:
                refuse_redirect(url, answer)
            kind = retry.of_status(answer.status)
            if kind is None or not tries.again(attempt, f"HTTP {answer.status}", kind, answer.headers.get("Retry-After")):
                return answer  # the caller explains Google's final answer
        raise AssertionError("unreachable")

    def _exchange(self, url: str, method: str, body, headers: dict, seconds: float) -> Answer:
        parsed = urls.parse(url)
        session = self._direct if parsed is None or parsed.scheme == "http" else self._proxied
        what = describe(url)
        with _Deadline(seconds) as deadline:
            try:
                response = session.request(method, url, data=body, headers=headers, timeout=seconds, stream=True,
                                           allow_redirects=False)
                try:
                    answer = _read(response, what)
                finally:
                    response.close()
            except exceptions.TransportError:
                raise
            except requests.exceptions.RequestException as error:
                if deadline.expired:
                    raise TimedOut(f"timed out: no complete answer within {seconds:.3g}s") from None
                if _header_overflow(error):
                    raise Refused(f"{what} answered with more headers, or a longer header line, than any real answer "
                                  f"({MAX_HEADERS} lines of at most 64 KB)") from None
                if isinstance(error, _PERMANENT) or not isinstance(error, _TRANSIENT):
                    raise exceptions.TransportError(_reason(error)) from error
                problem = "timed out" if isinstance(error, requests.exceptions.Timeout) else "connection failed"
                raise Dropped(f"{problem} ({type(error).__name__})") from error
            except (OSError, urllib3.exceptions.HTTPError) as error:  # a socket shut mid-read by the deadline, or a broken answer
                if deadline.expired:
                    raise TimedOut(f"timed out: no complete answer within {seconds:.3g}s") from None
                raise Dropped(f"connection failed ({type(error).__name__})") from error
        if 200 <= answer.status < 300:  # a token only comes in a success; an error body's "token" is just text a
            register_secrets(answer.data)  # server chose, which would otherwise blank it out of every line
        return answer


def _header_overflow(error: BaseException) -> bool:
    """http.client refuses a 101st header line or one over 64 KB before the answer is handed over: that is the
    answer's size, not a network fault, so it is refused rather than retried."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, http.client.LineTooLong) or (
                isinstance(error, http.client.HTTPException) and "got more than" in str(error)):
            return True
        error = error.__cause__ or error.__context__ or (error.args[0] if error.args and isinstance(error.args[0], BaseException) else None)
        seen += 1
    return False


_USERINFO = re.compile(r"(?<=//)[^/@\s]{0,256}@")


def _reason(error: Exception) -> str:
    """A requests error in one line: bounded, any URL's user info (a proxy's password) removed, secrets redacted."""
    return redact.redact(_USERINFO.sub("", " ".join(untrusted.text(str(error), 1024).split())))
