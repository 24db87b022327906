"""pipe.credentials: the step token traded for Google's tokens through google-auth, checked on the wire.

A loopback fake of STS and IAM Credentials records every request as it arrived (form fields, JSON bodies, headers)
and answers what each test sets, success by default; its tokens are random and not token-shaped, so only their
registration, never redaction's shape rules, can hide them. One test runs the whole chain against the strict
emulator of Google (tests/support/emulator), which checks each request's fields and the grants as Google documents.
"""

import base64
import json
import secrets
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest

from pipe import config, credentials, main, oidc, redact
from pipe.errors import PipeError
from tests.support.emulator import TOKEN_CREATOR, WORKLOAD_IDENTITY_USER, ServiceAccount
from tests.support.emulator.replies import not_found_page

PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"
SA = "puller@my-proj.iam.gserviceaccount.com"
HOP_1 = "ci-broker@shared-proj.iam.gserviceaccount.com"
HOP_2 = "release-hop@shared-proj.iam.gserviceaccount.com"
REPOSITORY_UUID = "{0d6c1f43-6f39-4a35-9d1b-3b2f8c9e7a10}"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
USERINFO = "https://www.googleapis.com/auth/userinfo.email"
IAM_SCOPE = "https://www.googleapis.com/auth/iam"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
RUN_URL = "https://api-abc123-ew.a.run.app"
IAP_CLIENT = "123456789012-abcdef0123456789.apps.googleusercontent.com"
PRINCIPAL_SET = ("principalSet://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/bitbucket/"
                 f"attribute.repository_uuid/{REPOSITORY_UUID}")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def step_token() -> oidc.StepToken:
    """A step token shaped like Bitbucket's, new for each test (nothing knows it for redaction yet)."""
    claims = {"iss": "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc",
              "aud": "ari:cloud:bitbucket::workspace/0c6e2a34-5f1b-4c7e-9d1a-7b2f8e3c4d5a",
              "sub": f"{REPOSITORY_UUID}:{{6a0c2e1d-3b4f-4c5d-8e9f-0a1b2c3d4e5f}}", "repositoryUuid": REPOSITORY_UUID,
              "branchName": "main", "jti": secrets.token_hex(8), "iat": 1_790_000_000, "exp": 1_790_003_600}
    return oidc.StepToken(f"{_b64({'alg': 'RS256', 'kid': 'k1'})}.{_b64(claims)}.{secrets.token_urlsafe(32)}", claims)


def hidden(secret: str) -> bool:
    """Would the pipe's redaction hide this secret from a line printed now? (A match may go on across the space into
    "after" when the secret's next characters happen to follow: redaction errs on the side of hiding more.)"""
    printed = redact.redact(f"before {secret} after")
    return printed.startswith(f"before {redact.REDACTED}") and secret not in printed


# --- a fake of Google's two services ---------------------------------------------------------------------------------

@dataclass
class Request:
    route: str  # sts, introspect, generateAccessToken, generateIdToken, or the path asked for anything else
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def form(self) -> dict[str, str]:
        fields = parse_qs(self.body.decode(), keep_blank_values=True, strict_parsing=True)
        assert all(len(values) == 1 for values in fields.values()), fields  # each field once
        return {name: values[0] for name, values in fields.items()}

    def json(self) -> dict:
        return json.loads(self.body)


class FakeGoogle:
    """STS and IAM Credentials on one loopback port. Each request is recorded before it is answered, so a client
    holding an answer finds its request in `requests`."""

    def __init__(self):
        self.requests: list[Request] = []
        self.federated = "fed-" + secrets.token_hex(24)
        self.impersonated = "sa-" + secrets.token_hex(24)
        self.id_token = f"hdr{secrets.token_hex(8)}.pld{secrets.token_hex(16)}.sig{secrets.token_hex(16)}"
        self.expire_time = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        self.answers = {
            "sts": (200, {"access_token": self.federated, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                          "token_type": "Bearer", "expires_in": 3599}),
            "generateAccessToken": (200, {"accessToken": self.impersonated,
                                          "expireTime": self.expire_time.strftime("%Y-%m-%dT%H:%M:%SZ")}),
            "generateIdToken": (200, {"token": self.id_token}),
            # RFC 7662, which the pipe never calls but gcloud does for a federated token's account (tests/test_export.py)
            "introspect": (200, {"active": True, "scope": CLOUD_PLATFORM, "exp": str(int(self.expire_time.timestamp())),
                                 "username": PRINCIPAL_SET.replace("principalSet:", "principal:").replace(
                                     "attribute.repository_uuid", "subject")}),
        }
        self.url = ""

    def answer(self, route: str, status: int, body) -> None:
        self.answers[route] = (status, body)

    def routes(self) -> list[str]:
        return [request.route for request in self.requests]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        fake: FakeGoogle = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        routes = {"/v1/token": "sts", "/v1/introspect": "introspect"}
        iam = self.path.startswith("/v1/projects/-/serviceAccounts/") and ":generate" in self.path
        route = routes.get(self.path) or (self.path.rpartition(":")[2] if iam else self.path)
        fake.requests.append(Request(route, self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if route not in fake.answers:  # a URL no API serves: Google's front end answers with its page
            status, answer, kind = 404, not_found_page(self.path).page.encode(), "text/html; charset=UTF-8"
        else:
            (status, answer), kind = fake.answers[route], "application/json; charset=UTF-8"
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST  # noqa: N815

    def log_message(self, *args):
        pass


@contextmanager
def serving(fake: FakeGoogle):
    """The fake on an ephemeral loopback port (its root in fake.url) while the context lasts."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def google():
    with serving(FakeGoogle()) as fake:
        yield fake


@pytest.fixture
def nowhere():
    """A loopback address that refuses connections: a port bound but never listening (no other process can take it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def settings(google: FakeGoogle, **variables) -> config.Config:
    """The pipe's Config from its variables, pointed at the fake; a variable set to None is left out."""
    env = {"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "STS_ENDPOINT": google.url,
           "IAM_CREDENTIALS_ENDPOINT": google.url, **variables}
    return config.load({name: value for name, value in env.items() if value is not None}, Path("/b"))


def transport(cfg: config.Config):
    """The transport the pipe builds for these settings (retries, REQUEST_REASON, which hosts get it)."""
    return main._transport(cfg)


def naive_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # google-auth's expiry is naive UTC


# --- what goes over the wire -------------------------------------------------------------------------------------------

def test_direct_federation_trades_the_step_token_at_sts_once(google):
    cfg = settings(google, SERVICE_ACCOUNT=None, ACCESS_TOKEN_SCOPES=f"cloud-platform,{USERINFO}")
    step = step_token()
    before = naive_utc()
    minted = credentials.mint(cfg, step, transport(cfg))
    after = naive_utc()
    [sts] = google.requests  # one exchange: no IAM call, nothing else asked
    assert (sts.route, sts.method) == ("sts", "POST")
    assert sts.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sts.form() == {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": "//iam.googleapis.com/" + PROVIDER,
        "scope": f"{CLOUD_PLATFORM} {USERINFO}",  # ACCESS_TOKEN_SCOPES, in order, for the federated token itself
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": step.value,
        "subject_token_type": JWT_TYPE,
    }
    assert "authorization" not in sts.headers  # the step token travels in the form only
    assert minted.access_token == google.federated
    assert minted.principal == PRINCIPAL_SET
    assert before + timedelta(seconds=3599) <= minted.expiry <= after + timedelta(seconds=3599)


def test_impersonation_sends_the_federated_token_only_to_generate_access_token(google):
    cfg = settings(google, ACCESS_TOKEN_SCOPES=f"cloud-platform,{USERINFO}")
    step = step_token()
    minted = credentials.mint(cfg, step, transport(cfg))
    sts, iam = google.requests
    assert (sts.route, iam.route) == ("sts", "generateAccessToken")
    # The federated token is asked only for what impersonation needs; the service account's gets the scopes.
    assert sts.form()["scope"] == IAM_SCOPE and sts.form()["subject_token"] == step.value
    assert iam.path == f"/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"
    assert iam.headers["authorization"] == f"Bearer {google.federated}"
    assert iam.headers["content-type"] == "application/json"
    body = iam.json()
    assert body["scope"] == [CLOUD_PLATFORM, USERINFO] and body["lifetime"] == "3600s"
    assert body.get("delegates") in (None, [])  # no chain: Google reads null and [] alike
    assert step.value not in iam.body.decode() and not any(step.value in v for v in iam.headers.values())
    assert (minted.access_token, minted.principal) == (google.impersonated, f"serviceAccount:{SA}")
    assert minted.expiry == google.expire_time.replace(tzinfo=None)


@pytest.mark.parametrize("delegates, lifetime, sent", [
    ([HOP_1], None, "3600s"),
    ([HOP_1, HOP_2], "1800s", "1800s"),
    ([HOP_2, HOP_1], "43200s", "43200s"),  # the order is the chain's: never sorted
])
def test_delegates_and_lifetime_are_sent_as_the_chain_and_duration(google, delegates, lifetime, sent):
    cfg = settings(google, DELEGATES=",".join(delegates), ACCESS_TOKEN_LIFETIME=lifetime)
    credentials.mint(cfg, step_token(), transport(cfg))
    iam = google.requests[-1]
    assert iam.json()["delegates"] == [f"projects/-/serviceAccounts/{email}" for email in delegates]
    assert iam.json()["lifetime"] == sent
    assert iam.path.endswith(f"/serviceAccounts/{SA}:generateAccessToken")  # the target, not the first hop


@pytest.mark.parametrize("audience", [RUN_URL, IAP_CLIENT])
@pytest.mark.parametrize("include_email, delegates", [(None, []), ("true", [HOP_1, HOP_2])])
def test_id_token_request(google, audience, include_email, delegates):
    cfg = settings(google, ID_TOKEN_AUDIENCE=audience, ID_TOKEN_INCLUDE_EMAIL=include_email, DELEGATES=",".join(delegates) or None)
    token = credentials.id_token(cfg, step_token(), transport(cfg))
    sts, idt = google.requests
    assert (sts.route, idt.route) == ("sts", "generateIdToken")
    assert sts.form()["scope"] == IAM_SCOPE  # the federated token may only call IAM Credentials
    assert idt.path == f"/v1/projects/-/serviceAccounts/{SA}:generateIdToken"
    assert idt.headers["authorization"] == f"Bearer {google.federated}"
    assert idt.json() == {"audience": audience, "delegates": [f"projects/-/serviceAccounts/{e}" for e in delegates],
                          "includeEmail": include_email == "true"}
    assert token == google.id_token


def test_request_reason_goes_on_every_call_to_both_endpoints(google):
    """STS and IAM Credentials on two loopback names, so each host's header is checked on its own."""
    reason = "release 1.4 (ticket #42)"
    iam_root = google.url.replace("127.0.0.1", "localhost")
    cfg = settings(google, REQUEST_REASON=reason, IAM_CREDENTIALS_ENDPOINT=iam_root, ID_TOKEN_AUDIENCE=RUN_URL)
    http = transport(cfg)
    credentials.mint(cfg, step_token(), http)
    credentials.id_token(cfg, step_token(), http)
    assert google.routes() == ["sts", "generateAccessToken", "sts", "generateIdToken"]
    assert [r.headers["host"].split(":")[0] for r in google.requests] == ["127.0.0.1", "localhost", "127.0.0.1", "localhost"]
    assert [r.headers.get("x-goog-request-reason") for r in google.requests] == [reason] * 4


def test_without_a_request_reason_no_call_carries_one(google):
    cfg = settings(google, ID_TOKEN_AUDIENCE=RUN_URL)
    credentials.mint(cfg, step_token(), transport(cfg))
    credentials.id_token(cfg, step_token(), transport(cfg))
    assert len(google.requests) == 4 and not any("x-goog-request-reason" in r.headers for r in google.requests)


def test_a_config_files_token_type_and_lifetime_reach_the_wire(google):
    """GOOGLE_OIDC_CONFIG_FILE chooses the token type and lifetime; the step token replaces its source. (Endpoints outside
    googleapis.com take the pipe's variables, which override the file's.)"""
    file = {
        "universe_domain": "googleapis.com", "type": "external_account", "audience": "//iam.googleapis.com/" + PROVIDER,
        "subject_token_type": ID_TOKEN_TYPE, "token_url": f"{google.url}/v1/token",
        "credential_source": {"file": "/nonexistent/oidc.jwt", "format": {"type": "text"}},
        "service_account_impersonation_url": f"{google.url}/v1/projects/-/serviceAccounts/{SA}:generateAccessToken",
        "service_account_impersonation": {"token_lifetime_seconds": 900},
    }
    cfg = config.load({"GOOGLE_OIDC_CONFIG_FILE": json.dumps(file), "STS_ENDPOINT": google.url,
                       "IAM_CREDENTIALS_ENDPOINT": google.url}, Path("/b"))
    step = step_token()
    minted = credentials.mint(cfg, step, transport(cfg))
    sts, iam = google.requests
    assert sts.form()["subject_token_type"] == ID_TOKEN_TYPE and sts.form()["subject_token"] == step.value
    assert sts.form()["audience"] == file["audience"]
    assert iam.json()["lifetime"] == "900s" and minted.principal == f"serviceAccount:{SA}"


# --- redaction: known the moment it exists ------------------------------------------------------------------------------

class Watching:
    """The pipe's transport, noting as each answer is handed on which of the fake's tokens redaction hides already."""

    def __init__(self, http, tokens: dict[str, str]):
        self.http, self.tokens, self.seen = http, tokens, []

    def __call__(self, url, *args, **kwargs):
        answer = self.http(url, *args, **kwargs)
        text = answer.data.decode()
        self.seen.append({name: hidden(token) for name, token in self.tokens.items() if token in text})
        return answer


def test_every_token_is_known_to_redaction_as_its_answer_arrives(google):
    cfg = settings(google, ID_TOKEN_AUDIENCE=RUN_URL)
    step = step_token()
    tokens = {"federated": google.federated, "impersonated": google.impersonated, "id": google.id_token}
    assert not any(hidden(token) for token in [*tokens.values(), step.value.split(".")[1]])  # only registration hides them
    watching = Watching(transport(cfg), tokens)
    credentials.mint(cfg, step, watching)
    credentials.id_token(cfg, step, watching)
    assert watching.seen == [{"federated": True}, {"impersonated": True}, {"federated": True}, {"id": True}]
    assert hidden(step.value.split(".")[1])  # the step token it sent, even its payload alone


@pytest.mark.parametrize("route, body, token", [
    ("sts", lambda g: {"access_token": g.federated, "token_type": "Bearer"}, "federated"),  # no expires_in
    ("generateAccessToken", lambda g: {"accessToken": g.impersonated}, "impersonated"),  # no expireTime
    ("generateAccessToken", lambda g: {"accessToken": g.impersonated, "expireTime": "2001-01-01T00:00:00Z"}, "impersonated"),
])
def test_a_token_in_a_refused_success_answer_is_still_known(google, route, body, token):
    google.answer(route, 200, body(google))
    cfg = settings(google)
    with pytest.raises(PipeError):
        credentials.mint(cfg, step_token(), transport(cfg))
    assert hidden(getattr(google, token))


# --- refusals and odd success answers ---------------------------------------------------------------------------------

def rpc(code: int, status: str, message: str, *details) -> dict:
    return {"error": {"code": code, "status": status, "message": message, "details": list(details)}}


REFUSALS = {
    "sts audience": ("sts", 400, {"error": "invalid_grant", "error_description":
                                  "The audience in ID Token [ari:cloud:bitbucket::workspace/x] does not match the expected audience."},
                     ["HTTP 400 invalid_grant", "First check WORKLOAD_IDENTITY_PROVIDER"]),
    "sts no provider": ("sts", 400, {"error": "invalid_target", "error_description": "The target service indicated by the "
                                     "\"audience\" parameters is invalid."}, ["found no active workload identity provider", PROVIDER]),
    "sts text": ("sts", 400, b"Bad Request", ["Google STS refused the token exchange", "HTTP 400: Bad Request"]),
    "sts html 502": ("sts", 502, b"<html><head><title>502 Bad Gateway</title></head><body>\n<h1>oops</h1></body></html>",
                     ["Google STS is unavailable (HTTP 502: 502 Bad Gateway) even after retries", "RETRY_MAX_ATTEMPTS"]),
    "iam denied": ("generateAccessToken", 403, rpc(403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' "
                                                   "denied on resource (or it may not exist)."),
                   ["HTTP 403 PERMISSION_DENIED", "may not impersonate", "--role=roles/iam.workloadIdentityUser", REPOSITORY_UUID]),
    "iam empty 404": ("generateAccessToken", 404, b"", [f"Service account {SA} was not found (HTTP 404: no message)"]),
    "iam disabled account": ("generateAccessToken", 400, rpc(400, "FAILED_PRECONDITION", "Precondition check failed."),
                             ["HTTP 400 FAILED_PRECONDITION", "gcloud iam service-accounts enable"]),
    "iam unauthenticated": ("generateAccessToken", 401, rpc(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
                            ["did not accept the federated token", "HTTP 401 UNAUTHENTICATED"]),
    "iam throttled": ("generateAccessToken", 429, rpc(429, "RESOURCE_EXHAUSTED", "Quota exceeded."),
                      ["rate-limiting", "HTTP 429 RESOURCE_EXHAUSTED"]),
    "id token denied": ("generateIdToken", 403, rpc(403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getOpenIdToken' "
                                                    "denied on resource (or it may not exist)."),
                        ["for generateIdToken", "HTTP 403 PERMISSION_DENIED"]),
    "id token invalid": ("generateIdToken", 400, rpc(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
                         [f"check ID_TOKEN_AUDIENCE ({RUN_URL})", "HTTP 400 INVALID_ARGUMENT"]),
}


def mint_all(cfg: config.Config, step: oidc.StepToken) -> None:
    """What the pipe does with an ID_TOKEN_AUDIENCE: the access token, then the ID token."""
    http = transport(cfg)
    credentials.mint(cfg, step, http)
    credentials.id_token(cfg, step, http)


@pytest.mark.parametrize("route, status, body, says", REFUSALS.values(), ids=REFUSALS.keys())
def test_each_refusal_is_one_explained_line_and_the_last_call(google, route, status, body, says):
    google.answer(route, status, body)
    cfg = settings(google, ID_TOKEN_AUDIENCE=RUN_URL, RETRY_MAX_ATTEMPTS="1")
    with pytest.raises(PipeError) as refused:
        mint_all(cfg, step_token())
    line = refused.value.message
    assert "\n" not in line and "Traceback" not in line and "{'" not in line, line
    for fragment in says:
        assert fragment in line, (fragment, line)
    assert google.routes()[-1] == route  # nothing is asked after a refusal
    assert google.routes().count(route) == 1  # and a permanent one, or one try, is asked once


LONG = "0123456789abcdef" * 3  # tokens long enough to be Google's, so each body is refused for the field it breaks
LONG_FED, LONG_SA = f"fed-{LONG}", f"sa-{LONG}"
ODD_SUCCESSES = {
    "sts short token": ("sts", {"access_token": "fed-01234567", "expires_in": 3600}, "its access_token is not a token (12 characters"),
    "sts not json": ("sts", b"OK, not json", "Google STS answered HTTP 200, but its body is not valid JSON"),
    "sts no expiry": ("sts", {"access_token": LONG_FED, "token_type": "Bearer"}, "its expires_in is missing (expires_in)"),
    "sts token a number": ("sts", {"access_token": 12345678, "expires_in": 3600}, "its access_token is a number, not a string"),
    "sts token with a space": ("sts", {"access_token": f"fed {LONG}", "expires_in": 3600}, "its access_token is not a token"),
    "sts absurd expiry": ("sts", {"access_token": LONG_FED, "expires_in": 10**9}, "(expires_in)"),
    "sts list": ("sts", [], "its body is JSON but not an object"),
    "iam no expiry": ("generateAccessToken", {"accessToken": LONG_SA}, "its expireTime is missing (expireTime)"),
    "iam past expiry": ("generateAccessToken", {"accessToken": LONG_SA, "expireTime": "2001-01-01T00:00:00Z"},
                        "is in the past or more than 12 hours ahead (expireTime)"),
    "iam other time form": ("generateAccessToken", {"accessToken": LONG_SA, "expireTime": "2099-01-01T00:00:00.5Z"},
                            "its expireTime is not a time like"),
    "iam token null": ("generateAccessToken", {"accessToken": None, "expireTime": "2099-01-01T00:00:00Z"},
                       "its accessToken is missing (accessToken)"),
    "id token not a jwt": ("generateIdToken", {"token": f"not-a-jwt-{LONG}"}, "its token is not a JWT (token)"),
    "id token missing": ("generateIdToken", {"id_token": "a.b.c"}, "its token is missing (token)"),
}


@pytest.mark.parametrize("route, body, says", ODD_SUCCESSES.values(), ids=ODD_SUCCESSES.keys())
def test_an_odd_success_answer_is_refused_naming_service_and_field_before_it_is_used(google, route, body, says):
    google.answer(route, 200, body)
    cfg = settings(google, ID_TOKEN_AUDIENCE=RUN_URL)
    with pytest.raises(PipeError) as refused:
        mint_all(cfg, step_token())
    line = refused.value.message
    assert says in line and "HTTP 200" in line and "which it never does" in line and "\n" not in line, line
    service = {"sts": "Google STS", "generateAccessToken": "IAM Credentials generateAccessToken",
               "generateIdToken": "IAM Credentials generateIdToken"}[route]
    assert line.startswith(service)
    assert google.routes()[-1] == route  # a token from a refused answer is never sent on


@pytest.mark.parametrize("variable, route", [("STS_ENDPOINT", "sts"), ("IAM_CREDENTIALS_ENDPOINT", "generateAccessToken")])
@pytest.mark.parametrize("extra", ["/v1", "/v2", "/iam"])
def test_an_endpoint_with_a_wrong_root_is_named_not_the_account_or_provider(google, variable, route, extra):
    """Google's front end answers a URL no API serves with its 404 page: the line names the variable and its root,
    never a missing service account or provider, and never a grant."""
    cfg = settings(google, **{variable: google.url + extra}, RETRY_MAX_ATTEMPTS="1")
    with pytest.raises(PipeError) as refused:
        credentials.mint(cfg, step_token(), transport(cfg))
    line = refused.value.message
    assert f"no API is at {variable} {google.url}{extra}" in line and "unset it" in line, line
    assert "Error 404 (Not Found)!!1" in line and "was not found (" not in line and "add-iam-policy-binding" not in line, line
    assert route not in google.routes()  # the right path was never reached


def test_an_unreachable_google_is_one_line_naming_the_endpoints(google, nowhere):
    for variables in ({"STS_ENDPOINT": nowhere}, {"IAM_CREDENTIALS_ENDPOINT": nowhere}):
        cfg = settings(google, RETRY_MAX_ATTEMPTS="1", **variables)
        with pytest.raises(PipeError) as refused:
            credentials.mint(cfg, step_token(), transport(cfg))
        assert refused.value.message.startswith("Could not reach Google (connection failed")
        assert "STS_ENDPOINT / IAM_CREDENTIALS_ENDPOINT" in refused.value.message


@pytest.mark.parametrize("failure", ["refused connection", "oversized answer"])
def test_an_unreachable_or_oversized_generate_id_token_is_one_line_too(google, nowhere, failure):
    if failure == "refused connection":
        cfg = settings(google, IAM_CREDENTIALS_ENDPOINT=nowhere, ID_TOKEN_AUDIENCE=RUN_URL, RETRY_MAX_ATTEMPTS="1")
    else:
        google.answer("generateIdToken", 200, b'{"token": "' + b"a" * 70_000 + b'"}')
        cfg = settings(google, ID_TOKEN_AUDIENCE=RUN_URL, RETRY_MAX_ATTEMPTS="1")
    with pytest.raises(PipeError) as refused:
        credentials.id_token(cfg, step_token(), transport(cfg))
    assert "\n" not in refused.value.message and "IAM_CREDENTIALS_ENDPOINT" in refused.value.message


# --- the strict emulator ------------------------------------------------------------------------------------------------

def test_the_chain_is_what_google_accepts_and_every_token_it_issued_is_known(emu):
    """Through a delegate, with a lifetime and the e-mail claim: the emulator refuses any field Google would."""
    world = emu.world
    target = world.service_account(world.labels["service_account"])
    hop = ServiceAccount("ci-broker@acme-ci.iam.gserviceaccount.com", target.project_number)
    hop.grant(WORKLOAD_IDENTITY_USER, world.providers[0].principal_set("repository_uuid", world.labels["repository_uuid"]))
    target.bindings.clear()  # only the hop may mint the target's tokens
    target.grant(TOKEN_CREATOR, hop.member)
    world.service_accounts.append(hop)
    earlier = set(emu.issued_tokens())  # the emulator lives for the session: other tests' tokens are not this one's
    value = world.issuer().mint(world.labels["repository_uuid"])
    step = oidc.StepToken(value, oidc.decode_claims(value))
    cfg = config.load({"WORKLOAD_IDENTITY_PROVIDER": world.labels["provider"], "SERVICE_ACCOUNT": target.email,
                       "DELEGATES": hop.email, "STS_ENDPOINT": emu.url, "IAM_CREDENTIALS_ENDPOINT": emu.url,
                       "ACCESS_TOKEN_LIFETIME": "1800s", "ID_TOKEN_AUDIENCE": RUN_URL, "ID_TOKEN_INCLUDE_EMAIL": "true"}, Path("/b"))
    http = transport(cfg)
    minted = credentials.mint(cfg, step, http)
    id_token = credentials.id_token(cfg, step, http)
    issued = emu.token_info(minted.access_token)
    assert issued.kind == "service_account" and issued.principal.email == target.email and issued.scopes == (CLOUD_PLATFORM,)
    assert minted.expiry == datetime.fromtimestamp(issued.expiry, UTC).replace(tzinfo=None)
    claims = jwt.decode(id_token, options={"verify_signature": False})
    assert (claims["aud"], claims["email"]) == (RUN_URL, target.email)
    assert [r.route for r in emu.requests] == ["sts", "iam", "sts", "iam"] and all(r.status == 200 for r in emu.requests)
    # Every token issued here, the step token included: a 16-character piece of its middle (no shape rule's marker).
    issued_here = [token for token in emu.issued_tokens() if token not in earlier]
    assert len(issued_here) == 5  # the step token, two federated tokens, the access token and the ID token
    for token in issued_here:
        middle = token[len(token) // 2: len(token) // 2 + 16]
        assert hidden(middle), token[:12]
