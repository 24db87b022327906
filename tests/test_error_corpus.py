"""Real error texts, quoted verbatim in public threads and Google's pages (tests/data/google_errors.json), fed
to the pipe the way it really receives them, must each come out as one line with cause and fix.

STS and IAM answers are served over HTTP to google-auth by a local server that replies with the quoted body
and status, so they reach pipe.credentials exactly as Google's would (OAuthError / RefreshError /
the generateIdToken response); registry texts are the Docker daemon's pull error, as pipe.container passes
it on. Every gcloud command a line prints is then run through the real gcloud.
"""

import base64
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipe import config, credentials, diagnose, oidc, transport
from pipe.errors import PipeError
from tests.support.figures import record
from tests.support.google_tools import GCLOUD, gcloud_verdict, report_missing

CORPUS = json.loads((Path(__file__).parent / "data" / "google_errors.json").read_text())
PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"
SERVICE_ACCOUNT = "puller@my-proj.iam.gserviceaccount.com"
IMAGE = "us-docker.pkg.dev/my-proj/tools/builder:1.4"
REPOSITORY_UUID = "{0d6c1f43-6f39-4a35-9d1b-3b2f8c9e7a10}"
WORKSPACE = "acme"
CLAIMS = {  # the shape of a Bitbucket step token's claims
    "iss": f"https://api.bitbucket.org/2.0/workspaces/{WORKSPACE}/pipelines-config/identity/oidc",
    "aud": "ari:cloud:bitbucket::workspace/0c6e2a34-5f1b-4c7e-9d1a-7b2f8e3c4d5a",
    "sub": f"{REPOSITORY_UUID}:{{6a0c2e1d-3b4f-4c5d-8e9f-0a1b2c3d4e5f}}",
    "repositoryUuid": REPOSITORY_UUID,
    "workspaceUuid": "{0c6e2a34-5f1b-4c7e-9d1a-7b2f8e3c4d5a}",
    "branchName": "main",
    "iat": 1_790_000_000,
    "exp": 1_790_003_600,
}
# When a thread does not give the status, Google's usual one for that kind of answer (CHOSEN).
DEFAULT_STATUS = {"sts": 400, "iam": 403}
_FEDERATED = json.dumps({"access_token": "ya29.federated-test", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                         "token_type": "Bearer", "expires_in": 3599})


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


STEP = oidc.StepToken(f"{_b64({'alg': 'RS256', 'kid': 'k1'})}.{_b64(CLAIMS)}.c2lnbmF0dXJl", CLAIMS)


class _Google(BaseHTTPRequestHandler):
    """Answers STS with the entry's body (or a federated token) and IAM Credentials with the entry's body."""

    answer: dict = {}

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        entry = self.answer
        route = "sts" if self.path == "/v1/token" else "iam"
        if route != entry["channel"]:
            status, body, kind = 200, _FEDERATED, "application/json"
        else:
            status = entry["status"] or DEFAULT_STATUS[route]
            body, kind = entry["text"], "application/json; charset=UTF-8"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _config(endpoint: str, **extra: str) -> config.Config:
    env = {"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SERVICE_ACCOUNT, "IMAGE": IMAGE,
           "STS_ENDPOINT": endpoint, "IAM_CREDENTIALS_ENDPOINT": endpoint, "RETRY_MAX_ATTEMPTS": "1", **extra}
    return config.load(env, Path("/b"))


def _line(entry: dict, endpoint: str) -> str:
    """What the pipe prints for this answer, reached the way the pipe reaches it."""
    if entry["channel"] == "registry":
        return diagnose.registry_error(entry["text"], IMAGE, f"serviceAccount:{SERVICE_ACCOUNT}")
    _Google.answer = entry
    cfg = _config(endpoint, ID_TOKEN_AUDIENCE="https://api-abc123-ew.a.run.app") if entry.get("method") == "generateIdToken" else _config(endpoint)
    google = transport.Transport(transport.RetryPolicy(attempts=cfg.retry_attempts))  # one try: what survives the retries
    try:
        if entry.get("method") == "generateIdToken":
            credentials.id_token(cfg, STEP, google)
        else:
            credentials.mint(cfg, STEP, google)
    except PipeError as error:
        return error.message
    raise AssertionError(f"{entry['id']}: the pipe accepted Google's refusal")


def _flat(text: str) -> str:
    return " ".join(text.split())


def problems(entry: dict, line: str) -> list[str]:
    found = [f"missing {fragment!r}" for fragment in entry["expect"] if fragment not in line]
    found += [f"has {fragment!r} (a fix for another cause)" for fragment in entry["forbid"] if fragment in line]
    if "\n" in line:
        found.append("more than one line")
    if _flat(line) in (_flat(entry["text"]), f"{_flat(entry['text'])}."):
        found.append("Google's text alone")
    if "Traceback" in line or "{'message'" in line:
        found.append("raw exception or body")
    if "--allowed-audiences" in line and not ("WORKLOAD_IDENTITY_PROVIDER" in line
                                              and line.index("describe") < line.index("--allowed-audiences")):
        found.append("widens the provider's audiences before asking to check WORKLOAD_IDENTITY_PROVIDER")
    return found


@pytest.fixture(scope="module")
def lines() -> dict[str, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Google)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        said = {entry["id"]: _line(entry, endpoint) for entry in CORPUS}
    finally:
        server.shutdown()
    explained = [entry for entry in CORPUS if not problems(entry, said[entry["id"]])]
    record("real error texts", f"{len(CORPUS)} tried, {len(explained)} explained")
    return said


def test_the_corpus_is_real_and_complete():
    assert len(CORPUS) >= 45
    assert len({entry["id"] for entry in CORPUS}) == len(CORPUS)
    for entry in CORPUS:
        assert entry["source"].startswith("https://"), entry["id"]
        assert entry["channel"] in ("sts", "iam", "registry"), entry["id"]
        assert (entry["channel"] == "iam") == (entry.get("method") in ("generateAccessToken", "generateIdToken")), entry["id"]
        assert entry["as_quoted"] and entry["fixed_by"] and entry["expect"], entry["id"]
    assert {entry["channel"] for entry in CORPUS} == {"sts", "iam", "registry"}


@pytest.mark.parametrize("entry", CORPUS, ids=[entry["id"] for entry in CORPUS])
def test_each_real_text_gets_cause_and_fix(entry, lines):
    assert not problems(entry, lines[entry["id"]]), (problems(entry, lines[entry["id"]]), lines[entry["id"]])


def test_the_status_google_sent_is_part_of_the_explanation(lines):
    # An empty 404 used to come out as "failed: {'message': ''}"; a 429/5xx as a refusal.
    assert "was not found (HTTP 404" in lines["gha-auth-471"]
    assert "HTTP 504" in lines["opstrace-191"] and "on Google's side" in lines["opstrace-191"]


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
def test_gcloud_accepts_every_command_the_explanations_print(lines):
    commands = sorted({c for line in lines.values() for c in re.findall(r"`(gcloud [^`]+)`", line)})
    assert len(commands) >= 20  # the explanations do print commands: this test would pass vacuously otherwise
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = dict(zip(commands, pool.map(gcloud_verdict, commands), strict=True))
    refused = {command: stderr.splitlines()[-1] for command, (ok, stderr) in verdicts.items() if not ok}
    record("gcloud commands in error explanations", f"{len(commands)} run through gcloud, {len(commands) - len(refused)} accepted")
    assert not refused, refused


def test_missing_google_tools_are_reported():
    report_missing()
