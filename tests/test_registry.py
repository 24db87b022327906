"""pipe.registry: reading WWW-Authenticate challenges (real forms, odd forms, and any text at all in bounded time),
checking where a registry sends credentials, getting the pull-scoped registry token, and what the Docker daemon is
given. The registry and its token service are small loopback stubs."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import parsers, redact, registry, urls
from pipe.errors import PipeError
from pipe.registry import MAX_CHALLENGE, challenges
from pipe.retry import RetryPolicy
from pipe.transport import Transport
from tests.support.budgets import EXAMPLE_DEADLINE_MS

TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
PRINCIPAL = "serviceAccount:puller@my-proj.iam.gserviceaccount.com"
ACCESS_TOKEN = "ya29.c.test-access-token-for-the-registry-0123456789"


# --- challenges: real forms -----------------------------------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    pytest.param(  # Artifact Registry's /v2/ answer
        'Bearer realm="https://us-docker.pkg.dev/v2/token",service="us-docker.pkg.dev"',
        [("bearer", {"realm": "https://us-docker.pkg.dev/v2/token", "service": "us-docker.pkg.dev"})],
        id="artifact-registry"),
    pytest.param(  # Container Registry's, with a scope (a colon and slashes inside quotes)
        'Bearer realm="https://gcr.io/v2/token",service="gcr.io",scope="repository:my-proj/app:pull"',
        [("bearer", {"realm": "https://gcr.io/v2/token", "service": "gcr.io", "scope": "repository:my-proj/app:pull"})],
        id="container-registry"),
    pytest.param(  # distribution's (Docker Hub), a comma inside a quoted value, and an error parameter
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push",error="insufficient_scope"',
        [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                     "scope": "repository:samalba/my-app:pull,push", "error": "insufficient_scope"})],
        id="distribution"),
    pytest.param('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})], id="distribution-htpasswd"),
    pytest.param(  # RFC 7235 §4.1's example: two challenges in one header, an escaped quote kept as written
        'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
        [("newauth", {"realm": "apps", "type": "1", "title": 'Login to \\"apps\\"'}), ("basic", {"realm": "simple"})],
        id="rfc7235-example"),
    pytest.param(  # two header lines, as requests joins them
        'Basic realm="x", Bearer realm="https://a.example/token",service="a.example"',
        [("basic", {"realm": "x"}), ("bearer", {"realm": "https://a.example/token", "service": "a.example"})],
        id="several"),
    pytest.param(  # scheme and names are case-insensitive; values keep their case
        'BEARER REALM="https://A.example/Token", Service="Reg"',
        [("bearer", {"realm": "https://A.example/Token", "service": "Reg"})],
        id="case"),
    pytest.param(  # the first value of a repeated parameter is kept
        'Bearer realm="https://good.example/t",realm="https://evil.example/t",service="s",service="t"',
        [("bearer", {"realm": "https://good.example/t", "service": "s"})],
        id="repeated"),
    pytest.param(  # spaces around '=' and ','; unquoted token values
        'Bearer  realm = "https://a.example/t" ,  service= reg.example , scope=x',
        [("bearer", {"realm": "https://a.example/t", "service": "reg.example", "scope": "x"})],
        id="spaces-and-tokens"),
    pytest.param(  # a token68 reads as a scheme of its own: it gives Bearer no parameter
        'Basic dXNlcjpwYXNz==, Bearer realm="https://a.example/t"',
        [("basic", {}), ("dxnlcjpwyxnz", {}), ("bearer", {"realm": "https://a.example/t"})],
        id="token68"),
    pytest.param('Negotiate, Bearer realm="r"', [("negotiate", {}), ("bearer", {"realm": "r"})], id="bare-scheme"),
    pytest.param(  # an unclosed quote ends the text
        'Bearer service="s", realm="https://a.example/t, scope=x',
        [("bearer", {"service": "s", "realm": "https://a.example/t, scope=x"})],
        id="unclosed-quote"),
    pytest.param(  # a quote closed by the next parameter's opening quote: what follows is read as written
        'Bearer realm="https://a.example/t, service="x"',
        [("bearer", {"realm": "https://a.example/t, service="}), ("x", {})],
        id="quote-closed-late"),
    pytest.param('Bearer realm="abc\\', [("bearer", {"realm": "abc\\"})], id="unclosed-after-backslash"),
    pytest.param(  # escapes are kept as written, never decoded
        'Bearer realm="https://a.example/\\t\\"\\\\",service="s"',
        [("bearer", {"realm": 'https://a.example/\\t\\"\\\\', "service": "s"})],
        id="escapes-as-written"),
    pytest.param(  # a challenge smuggled inside a quoted string stays inside it
        'Basic realm="x, Bearer realm=\\"https://evil.example/t\\"", Bearer realm="https://good.example/t"',
        [("basic", {"realm": 'x, Bearer realm=\\"https://evil.example/t\\"'}), ("bearer", {"realm": "https://good.example/t"})],
        id="smuggled-in-quotes"),
    pytest.param(  # an unquoted URL stops at the first character a token cannot hold, as Docker reads it
        "Bearer realm=https://a.example/t",
        [("bearer", {"realm": "https"}), ("a.example", {}), ("t", {})],
        id="unquoted-url"),
    pytest.param('Bearer realm=""', [("bearer", {"realm": ""})], id="empty-value"),
    pytest.param("", [], id="empty"),
    pytest.param(' , ,\t,', [], id="separators-only"),
])
def test_challenges(header, expected):
    assert challenges(header) == expected


def test_only_the_first_max_challenge_characters_are_read():
    far = "," * MAX_CHALLENGE + 'Bearer realm="https://late.example/t"'
    assert challenges(far) == []
    prefix = "," * (MAX_CHALLENGE - 20) + 'Bearer realm="'
    near = prefix + 'https://late.example/t"'
    assert challenges(near) == [("bearer", {"realm": near[len(prefix):MAX_CHALLENGE]})]  # cut: an unclosed quote
    assert near[len(prefix):MAX_CHALLENGE] == "https:"


# --- challenges: any text, bounded ---------------------------------------------------------------------

PIECES = st.sampled_from([",", '"', "=", " ", "\t", "\\", "a", "Bearer", "realm", "=\"", '\\"', "==", "x=y", "é", "\x00"])
LONG = 60 * 1024


def check_shape(found):
    assert isinstance(found, list)
    for scheme, params in found:
        assert scheme and set(scheme) <= TCHAR and scheme == scheme.lower()
        for name, value in params.items():
            assert name and set(name) <= TCHAR and name == name.lower()
            assert isinstance(value, str) and len(value) <= MAX_CHALLENGE


@settings(deadline=EXAMPLE_DEADLINE_MS, max_examples=300)
@given(st.lists(st.tuples(PIECES, st.integers(1, 4000)), max_size=30).map(lambda runs: "".join(p * n for p, n in runs)))
@example("," * LONG)
@example('"' * LONG)
@example("=" * LONG)
@example(" " * LONG)
@example("\\" * LONG)
@example('Bearer realm="' + "x" * LONG)
@example('Bearer realm="' * (LONG // 14))
@example("a=" * (LONG // 2))
@example("Bearer " + "a=," * (LONG // 3))
@example('a="\\' * (LONG // 4))
def test_challenges_never_raise_on_runs(header):
    found = challenges(header)
    check_shape(found)
    assert found == challenges(header[:MAX_CHALLENGE])  # nothing past the cap is read


@settings(deadline=EXAMPLE_DEADLINE_MS, max_examples=300)
@given(st.text(max_size=LONG))
def test_challenges_never_raise_on_any_text(header):
    found = challenges(header)
    check_shape(found)
    assert found == challenges(header[:MAX_CHALLENGE])


NAME = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=12)
QUOTABLE = st.text(st.characters(blacklist_characters='"\\', blacklist_categories=("Cs",)), max_size=40)
TOKEN_VALUE = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~+", min_size=1, max_size=20)


@settings(deadline=EXAMPLE_DEADLINE_MS, max_examples=300)
@given(st.lists(st.tuples(NAME, st.lists(st.tuples(NAME, st.one_of(QUOTABLE.map(lambda v: (v, True)),
                                                                   TOKEN_VALUE.map(lambda v: (v, False)))),
                                          min_size=1, max_size=5)), min_size=1, max_size=4))
def test_well_formed_challenges_read_back(written):
    header = ", ".join(scheme + " " + ", ".join(f'{name}="{value}"' if quoted else f"{name}={value}"
                                                 for name, (value, quoted) in params) for scheme, params in written)
    expected = []
    for scheme, params in written:
        read: dict[str, str] = {}
        for name, (value, _) in params:
            read.setdefault(name.lower(), value)
        expected.append((scheme.lower(), read))
    if len(header) <= MAX_CHALLENGE:
        assert challenges(header) == expected


# --- loopback stubs ---------------------------------------------------------------------------------------

class Stub:
    """An HTTP server on 127.0.0.1:0 answering with `self.answer = (status, [(header, value)], body)`; it records
    every request's method, path and headers."""

    def __init__(self, status=200, headers=(), body=b""):
        self.answer = (status, list(headers), body)
        self.requests: list[tuple[str, str, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self):
                stub.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers, body = stub.answer
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _reply

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    started: list[Stub] = []

    def start(*args, **kwargs) -> Stub:
        server = Stub(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def transport():
    return Transport(RetryPolicy(attempts=1, timeout=10))


def challenge(value: str):
    return [("WWW-Authenticate", value)]


# --- token_service ----------------------------------------------------------------------------------------

def test_a_token_service_on_the_registrys_own_host_is_used(stub):
    reg = stub(401)
    reg.answer = (401, challenge(f'Bearer realm="{reg.url}/v2/token",service="{reg.host}"'), b"")
    found = registry.token_service(reg.host, (reg.host,), transport())
    assert found == registry.TokenService(reg.host, urls.parse(f"{reg.url}/v2/token"), reg.host)
    method, path, headers = reg.requests[0]
    assert (method, path) == ("GET", "/v2/") and "authorization" not in headers  # asked anonymously


def test_the_bearer_challenge_is_found_among_several_header_lines(stub):
    reg = stub(401)
    reg.answer = (401, [("WWW-Authenticate", 'Basic realm="x"'), ("WWW-Authenticate", f'bEaReR REALM="{reg.url}/t", SERVICE="svc"')], b"")
    found = registry.token_service(reg.host, (reg.host,), transport())
    assert str(found.realm) == f"{reg.url}/t" and found.service == "svc"


@pytest.mark.parametrize("headers", [
    ['Bearer realm="{listed}",realm="https://evil.example/token"'],  # one parameter twice: Docker keeps the last
    ['Bearer realm="{listed}",service="a",service="b"'],
    ['Bearer realm="{listed}"', 'Bearer realm="https://evil.example/token"'],  # two header lines, two token services
    ['Bearer realm="{listed}", Bearer realm="https://evil.example/token"'],  # two challenges in one line
], ids=["realm twice", "service twice", "two lines", "one line"])
def test_a_challenge_clients_could_read_two_ways_is_refused(stub, headers):
    """Whichever reading a client takes (first or last value, one challenge per line or several), the pipe sends no
    token: the exported docker config would otherwise let the CLI follow the reading the pipe did not check."""
    reg = stub(401)
    reg.answer = (401, [("WWW-Authenticate", h.format(listed=f"{reg.url}/v2/token")) for h in headers], b"")
    with pytest.raises(PipeError, match="a challenge clients read differently") as refused:
        registry.token_service(reg.host, (reg.host, "evil.example"), transport())
    assert "\n" not in refused.value.message


def test_the_same_token_service_named_twice_is_no_ambiguity(stub):
    reg = stub(401)
    same = f'Bearer realm="{reg.url}/v2/token",service="{reg.host}"'
    reg.answer = (401, [("WWW-Authenticate", same), ("WWW-Authenticate", same)], b"")
    assert registry.token_service(reg.host, (reg.host,), transport()).service == reg.host


def test_a_token_service_on_another_host_must_be_listed(stub):
    tokens = stub(200)
    reg = stub(401, challenge(f'Bearer realm="{tokens.url}/token",service="reg"'))
    with pytest.raises(PipeError) as refused:
        registry.token_service(reg.host, (reg.host,), transport())
    assert refused.value.message.startswith(f"{reg.host} sends registry credentials to the token service {tokens.host}")
    assert f"add '{tokens.host}' to REGISTRIES" in refused.value.message and "\n" not in refused.value.message
    found = registry.token_service(reg.host, (reg.host, tokens.host), transport())
    assert found.realm.netloc == tokens.host
    assert tokens.requests == []  # checking where credentials go sends the token service nothing


@pytest.mark.parametrize("realm", [
    "http://tokens.example.com/token",  # plain http off loopback, even when listed
    "https://tokens.example.com\\@127.0.0.1/token",
    "https://user@tokens.example.com/token",
    "/v2/token",  # relative
    "",
])
def test_a_token_service_no_token_may_reach_is_refused_even_when_listed(stub, realm):
    reg = stub(401, challenge(f'Bearer realm="{realm}",service="s"'))
    with pytest.raises(PipeError) as refused:
        registry.token_service(reg.host, (reg.host, "tokens.example.com"), transport())
    assert "REGISTRIES cannot allow it" in refused.value.message and "\n" not in refused.value.message


def test_a_google_token_service_needs_no_listing(stub):
    reg = stub(401, challenge('Bearer realm="https://us-docker.pkg.dev/v2/token",service="us-docker.pkg.dev"'))
    found = registry.token_service(reg.host, (reg.host,), transport())
    assert found.realm.netloc == "us-docker.pkg.dev" and found.service == "us-docker.pkg.dev"


def test_an_open_registry_needs_no_token(stub):
    reg = stub(200, body=b"{}")
    found = registry.token_service(reg.host, (reg.host,), transport())
    assert found == registry.TokenService(reg.host, None, None)
    image = parsers.image("IMAGE", f"{reg.host}/acme/tools/app:1")
    assert registry.pull_token(image, found, ACCESS_TOKEN, PRINCIPAL, transport()) is None
    assert len(reg.requests) == 1  # no token request anywhere
    assert registry.daemon_auth(None) == {}


@pytest.mark.parametrize("header", ['Basic realm="Registry Realm"', None])
def test_a_challenge_without_a_token_service_is_refused_for_a_pull(stub, header):
    reg = stub(401, challenge(header) if header else [])
    with pytest.raises(PipeError) as refused:
        registry.token_service(reg.host, (reg.host,), transport())
    assert f"{reg.host} answered HTTP 401 with no token service in its challenge" in refused.value.message
    assert "never the Google access token" in refused.value.message and "\n" not in refused.value.message


def test_a_basic_challenge_is_accepted_for_an_export_check(stub):
    reg = stub(401, challenge('Basic realm="Registry Realm"'))
    assert registry.token_service(reg.host, (reg.host,), transport(), pull=False) == registry.TokenService(reg.host, None, None)


def test_an_export_check_still_vets_a_named_token_service(stub):
    reg = stub(401, challenge('Bearer realm="https://evil.example/token",service="s"'))
    with pytest.raises(PipeError, match="may not receive Google tokens"):
        registry.token_service(reg.host, (reg.host,), transport(), pull=False)


@pytest.mark.parametrize("status", [403, 404, 500])
def test_other_answers_to_the_challenge_check_are_refused(stub, status):
    reg = stub(status, challenge('Bearer realm="https://us-docker.pkg.dev/v2/token"'))
    with pytest.raises(PipeError) as refused:
        registry.token_service(reg.host, (reg.host,), transport())
    assert f"{reg.host} answered HTTP {status} at {reg.url}/v2/" in refused.value.message


def test_an_unreachable_registry_is_explained():
    closed = Stub()
    closed.close()  # nothing listens there any more
    with pytest.raises(PipeError) as refused:
        registry.token_service(closed.host, (closed.host,), transport())
    assert refused.value.message.startswith(
        f"Could not reach http://{closed.host}/v2/ to check where {closed.host} sends registry credentials")
    assert "\n" not in refused.value.message


def test_registries_off_loopback_are_asked_over_https():
    assert registry.registry_url("us-docker.pkg.dev") == "https://us-docker.pkg.dev/v2/"
    assert registry.registry_url("localhost:5000") == "http://localhost:5000/v2/"
    assert registry.registry_url("127.0.0.1:5000") == "http://127.0.0.1:5000/v2/"
    assert registry.registry_url("10.0.0.1:5000") == "https://10.0.0.1:5000/v2/"


# --- pull_token ---------------------------------------------------------------------------------------------

def token_service_at(server: Stub, path: str = "/v2/token", service: str | None = "reg.example") -> registry.TokenService:
    return registry.TokenService("reg.example", urls.parse(f"{server.url}{path}"), service)


def test_the_pull_token_request_names_service_scope_and_basic_credentials(stub):
    tokens = stub(200, body=json.dumps({"token": "registry-token-0123456789abcdef-0123456789", "expires_in": 3600}).encode())
    image = parsers.image("IMAGE", "us-docker.pkg.dev/my-proj/tools/builder:1.4")
    got = registry.pull_token(image, token_service_at(tokens), ACCESS_TOKEN, PRINCIPAL, transport())
    assert got == "registry-token-0123456789abcdef-0123456789"
    method, path, headers = tokens.requests[0]
    url = urlsplit(path)
    assert method == "GET" and url.path == "/v2/token"
    assert parse_qs(url.query) == {"service": ["reg.example"], "scope": ["repository:my-proj/tools/builder:pull"]}
    scheme, _, credentials = headers["authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(credentials).decode() == f"oauth2accesstoken:{ACCESS_TOKEN}"
    assert "registry-token-0123456789abcdef-0123456789" not in redact.redact("registry-token-0123456789abcdef-0123456789")


def test_a_realm_with_a_query_keeps_it(stub):
    tokens = stub(200, body=b'{"token": "registry-token-with-query-0123456789abcdef"}')
    image = parsers.image("IMAGE", "us-docker.pkg.dev/my-proj/tools/builder@sha256:" + "a" * 64)
    registry.pull_token(image, token_service_at(tokens, "/auth?account=ci", service=None), ACCESS_TOKEN, PRINCIPAL, transport())
    query = parse_qs(urlsplit(tokens.requests[0][1]).query)
    assert query == {"account": ["ci"], "scope": ["repository:my-proj/tools/builder:pull"]}  # no service when none named


def test_oauth_access_token_is_read_when_token_is_absent(stub):
    tokens = stub(200, body=b'{"access_token": "registry-oauth-token-0123456789-abcdefghij"}')
    image = parsers.image("IMAGE", "us-docker.pkg.dev/my-proj/tools/builder:1.4")
    assert registry.pull_token(image, token_service_at(tokens), ACCESS_TOKEN, PRINCIPAL, transport()) == "registry-oauth-token-0123456789-abcdefghij"


@pytest.mark.parametrize("field", ["token", "access_token"])
@pytest.mark.parametrize("wrap", ["{}", "registry:{}", "{}.sig"])
def test_a_token_service_handing_back_the_google_token_is_refused(stub, field, wrap):
    """The daemon must never receive the Google token, however the token service dresses it up as a registry token."""
    tokens = stub(200, body=json.dumps({field: wrap.format(ACCESS_TOKEN)}).encode())
    image = parsers.image("IMAGE", "us-docker.pkg.dev/my-proj/tools/builder:1.4")
    with pytest.raises(PipeError, match="answered with the Google access token itself") as refused:
        registry.pull_token(image, token_service_at(tokens), ACCESS_TOKEN, PRINCIPAL, transport())
    assert ACCESS_TOKEN not in refused.value.message


def test_a_denied_pull_token_is_explained(stub):
    denied = {"errors": [{"code": "DENIED", "message": 'Permission "artifactregistry.repositories.downloadArtifacts" denied on '
                                                     'resource "projects/my-proj/locations/us/repositories/tools" (or it may not exist)'}]}
    tokens = stub(403, [("Content-Type", "application/json")], json.dumps(denied).encode())
    image = parsers.image("IMAGE", "us-docker.pkg.dev/my-proj/tools/builder:1.4")
    with pytest.raises(PipeError) as refused:
        registry.pull_token(image, token_service_at(tokens), ACCESS_TOKEN, PRINCIPAL, transport())
    line = refused.value.message
    assert "\n" not in line
    assert "may not pull us-docker.pkg.dev/my-proj/tools/builder:1.4" in line
    assert "roles/artifactregistry.reader" in line and "puller@my-proj.iam.gserviceaccount.com" in line
    assert ACCESS_TOKEN not in line


@pytest.mark.parametrize("body, field", [
    (b"oops, not json", "the body"),
    (b"", "the body"),
    (b'["token"]', "the body"),
    (b"{}", "access_token"),
    (b'{"token": 5}', "token"),
    (b'{"token": ""}', "token"),
    (b'{"token": "has a space"}', "token"),
    (b'{"token": "ok-registry-token-0123456789-abcdefghij", "expires_in": -1}', "expires_in"),
    (b'{"token": "ok-registry-token-0123456789-abcdefghij", "expires_in": "soon"}', "expires_in"),
])
def test_a_200_with_a_bad_body_is_refused_in_one_line(stub, body, field):
    tokens = stub(200, body=body)
    image = parsers.image("IMAGE", "us-docker.pkg.dev/my-proj/tools/builder:1.4")
    with pytest.raises(PipeError) as refused:
        registry.pull_token(image, token_service_at(tokens), ACCESS_TOKEN, PRINCIPAL, transport())
    line = refused.value.message
    assert line.startswith(f"The token service {tokens.host} answered HTTP 200, but") and f"({field})" in line
    assert "REGISTRIES" in line and "\n" not in line


def test_the_whole_flow_gives_the_daemon_only_the_registry_token(stub):
    reg = stub(401)
    reg.answer = (401, challenge(f'Bearer realm="{reg.url}/v2/token",service="{reg.host}"'), b"")
    service = registry.token_service(reg.host, (reg.host,), transport())
    reg.answer = (200, [], b'{"token": "flow-registry-token-0123456789-abcdefghij"}')
    image = parsers.image("IMAGE", f"{reg.host}/acme/tools/app:1")
    token = registry.pull_token(image, service, ACCESS_TOKEN, PRINCIPAL, transport())
    assert parse_qs(urlsplit(reg.requests[1][1]).query)["scope"] == ["repository:acme/tools/app:pull"]
    assert registry.daemon_auth(token) == {"registrytoken": "flow-registry-token-0123456789-abcdefghij"}


# --- what the daemon gets, and who receives credentials --------------------------------------------------------

@pytest.mark.parametrize("token", ["registry-token-0123", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"])
def test_daemon_auth_is_the_registry_token_only(token):
    auth = registry.daemon_auth(token)
    assert auth == {"registrytoken": token}
    assert not {"username", "password", "auth", "identitytoken", "serveraddress"} & set(auth)


@pytest.mark.parametrize("token", [None, ""])
def test_daemon_auth_is_empty_for_an_open_registry(token):
    assert registry.daemon_auth(token) == {}


def test_the_manifest_check_reads_with_the_registry_token(stub):
    reg = stub(200)
    image = parsers.image("IMAGE", f"{reg.host}/acme/tools/app:1")
    assert registry.manifest(image, "manifest-registry-token-0123", transport()) == 200
    method, path, headers = reg.requests[0]
    assert (method, path) == ("HEAD", "/v2/acme/tools/app/manifests/1")
    assert headers["authorization"] == "Bearer manifest-registry-token-0123"
    assert "application/vnd.oci.image.index.v1+json" in headers["accept"]


IMAGE = parsers.image("IMAGE", "europe-docker.pkg.dev/my-proj/tools/app:1")


@pytest.mark.parametrize("image, action, export, extra, expected", [
    (IMAGE, "pull", False, ("reg.example",), ["europe-docker.pkg.dev"]),
    (IMAGE, "run", False, (), ["europe-docker.pkg.dev"]),
    (IMAGE, "auth", False, ("reg.example",), []),
    (IMAGE, "doctor", False, (), []),
    (IMAGE, "auth", True, ("reg.example", "europe-docker.pkg.dev"), ["europe-docker.pkg.dev", "reg.example"]),
    (IMAGE, "run", True, ("reg.example",), ["europe-docker.pkg.dev", "reg.example"]),
    (None, "auth", True, ("reg.example", "other.example:5000"), ["reg.example", "other.example:5000"]),
    (None, "auth", False, ("reg.example",), []),
])
def test_receiving_credentials(image, action, export, extra, expected):
    assert registry.receiving_credentials(image, action, export, extra) == expected


def test_check_allowed_refuses_a_registry_that_is_neither_google_nor_listed():
    image = parsers.image("IMAGE", "ghcr.io/acme/app:1")
    with pytest.raises(PipeError, match="not a Google registry"):
        registry.check_allowed(image, ())
    registry.check_allowed(image, ("ghcr.io",))
    registry.check_allowed(IMAGE, ())
