"""Real error texts, quoted verbatim in public threads and Google's pages, fed to the pipe the way it really receives
them, must each come out as one line with cause and fix (tests/data/CORPUS.md says how the corpus was built).

Two parts, as the corpus was built: the texts the diagnosis rules were written from (google_errors.json, each its own
test), and a held-out third chosen and kept by someone else, which the rule writer does not read
(held_out_errors.json): its figure is reported and held to the same bar, without printing its texts.

Routes, each the pipe's own code from the answer on:
- sts, iam: a local server answers with the quoted body and status, read by google-auth through pipe.credentials;
- token_service: a local server answers the pipe's pull-token request (pipe.registry.pull_token);
- registry: the Docker daemon's report of a failed pull, through pipe.container.pull (one try: what outlived the
  retries) with a stand-in for the daemon that reports the text as the Engine API does, in the pull's event stream.
Every gcloud command a line prints is then run through the real gcloud.
"""

import base64
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipe import config, container, credentials, google_registries, oidc, parsers, registry, retry, transport, urls
from pipe.errors import PipeError
from tests.support.figures import record
from tests.support.google_tools import GCLOUD, gcloud_verdict

DATA = Path(__file__).parent / "data"
CORPUS = json.loads((DATA / "google_errors.json").read_text())
HELD_OUT = json.loads((DATA / "held_out_errors.json").read_text())  # never printed: only its figure is
CHANNELS = ("sts", "iam", "token_service", "registry")
PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"
SERVICE_ACCOUNT = "puller@my-proj.iam.gserviceaccount.com"
PRINCIPAL = f"serviceAccount:{SERVICE_ACCOUNT}"
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
# When a source does not give the status, Google's usual one for that kind of answer (CHOSEN).
DEFAULT_STATUS = {"sts": 400, "iam": 403, "token_service": 403}
_FEDERATED = json.dumps({"access_token": "ya29.federated-test-token-0123456789", "issued_token_type":
                         "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 3599})


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


STEP = oidc.StepToken(f"{_b64({'alg': 'RS256', 'kid': 'k1'})}.{_b64(CLAIMS)}.c2lnbmF0dXJl", CLAIMS)


class _Google(BaseHTTPRequestHandler):
    """STS, IAM Credentials and a registry token service on one port: the entry's channel answers with its text,
    the others with success."""

    answer: dict = {}

    def _reply(self, status: int, body: str, kind: str = "application/json; charset=UTF-8"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        entry = self.answer
        route = "sts" if self.path == "/v1/token" else "iam"
        if route != entry["channel"]:
            return self._reply(200, _FEDERATED)
        self._reply(entry["status"] or DEFAULT_STATUS[route], entry["text"])

    def do_GET(self):  # noqa: N802
        entry = self.answer
        self._reply(entry["status"] or DEFAULT_STATUS["token_service"], entry["text"])

    def log_message(self, *args):
        pass


def _config(endpoint: str, **extra: str) -> config.Config:
    env = {"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SERVICE_ACCOUNT, "IMAGE": IMAGE,
           "STS_ENDPOINT": endpoint, "IAM_CREDENTIALS_ENDPOINT": endpoint, "RETRY_MAX_ATTEMPTS": "1", **extra}
    return config.load(env, Path("/b"))


# The image a source was pulling, where its text names one (the pipe only ever meets texts about its own IMAGE):
# a manifest URL, Docker's "for"/"reference" forms, the v1-era "(TAG) from REPO" and "TAG not found in repository
# REPO", or only a host (`Get https://HOST/v2/`), which keeps the default image's path.
_NAMED_IMAGE = re.compile(r"https://([a-z0-9.-]+)/v2/([a-z0-9._/-]+?)/manifests/([A-Za-z0-9_.:-]+)"
                          r"|(?:for|reference \"?) ?([a-z0-9.-]+\.[a-z]+/[a-z0-9._/-]+)(?::([A-Za-z0-9_.-]+))?")
_V1_IMAGE = re.compile(r"\((?P<tag>[A-Za-z0-9_.-]+)\) from (?P<repo>[a-z0-9.-]+\.[a-z]+/[a-z0-9._/-]+)"
                       r"|Tag (?P<tag2>[A-Za-z0-9_.-]+) not found in repository (?P<repo2>[a-z0-9.-]+\.[a-z]+/[a-z0-9._/-]+)")
_HOST_ONLY = re.compile(r"https://([a-z0-9.-]+\.[a-z]+)/v[12]/")


def image_of(entry: dict) -> parsers.Image:
    """IMAGE as the source had it. An IMAGE the pipe refuses by its host (pipe.google_registries) never reaches a pull:
    the refusal is then what the pipe says."""
    text = entry["text"]
    if found := _NAMED_IMAGE.search(text):
        host, path, tag = (found[1], found[2], found[3]) if found[1] else (*found[4].split("/", 1), found[5] or "latest")
        reference = f"{host}/{path}" + (f"@{tag.replace('-', ':', 1)}" if tag.startswith("sha256") else f":{tag}")
    elif found := _V1_IMAGE.search(text):
        reference = f"{found['repo'] or found['repo2']}:{found['tag'] or found['tag2']}"
    elif found := _HOST_ONLY.search(text):
        reference = f"{found[1]}/{IMAGE.split('/', 1)[1]}"
    else:
        return parsers.image("IMAGE", IMAGE)
    try:
        return parsers.image("IMAGE", reference)
    except PipeError:
        if google_registries.docker_host_problem(reference.split("/", 1)[0]):
            raise
        return parsers.image("IMAGE", IMAGE)  # a placeholder such as <PROJECT_ID>: the default image stands in


class _Daemon:
    """The Docker SDK's client as pipe.container uses it: its pull reports the text in the event stream."""

    def __init__(self, text: str):
        self.api = self
        self.text = text

    def pull(self, reference, **options):
        yield {"status": f"Pulling from {reference}"}
        yield {"errorDetail": {"message": self.text}, "error": self.text}


def _line(entry: dict, endpoint: str) -> str:
    """What the pipe prints for this answer, reached the way the pipe reaches it."""
    _Google.answer = entry
    policy = retry.RetryPolicy(attempts=1)
    try:
        image = image_of(entry)
        if entry["channel"] == "registry":
            container.pull(_Daemon(entry["text"]), image, {"registrytoken": "registry-test-token"}, PRINCIPAL, policy)
        elif entry["channel"] == "token_service":
            service = registry.TokenService(image.host, urls.parse(f"{endpoint}/v2/token"), image.host)
            registry.pull_token(image, service, "ya29.access-test-token-0123456789", PRINCIPAL, transport.Transport(policy))
        else:
            idt = entry.get("method") == "generateIdToken"
            cfg = _config(endpoint, **({"ID_TOKEN_AUDIENCE": "https://api-abc123-ew.a.run.app"} if idt else {}))
            google = transport.Transport(policy)
            credentials.id_token(cfg, STEP, google) if idt else credentials.mint(cfg, STEP, google)
    except PipeError as error:
        return error.message
    raise AssertionError(f"{entry['id']}: the pipe accepted the refusal")


def _flat(text: str) -> str:
    return " ".join(text.split())


def problems(entry: dict, line: str) -> list[str]:
    found = [f"missing {fragment!r}" for fragment in entry["expect"] if fragment not in line]
    found += [f"has {fragment!r} (a fix for another cause)" for fragment in entry["forbid"] if fragment in line]
    if "\n" in line:
        found.append("more than one line")
    if _flat(line) in (_flat(entry["text"]), f"{_flat(entry['text'])}."):
        found.append("Google's text alone")
    if "Traceback" in line or "{'message'" in line or "Unexpected error" in line:
        found.append("raw exception or body")
    if "--allowed-audiences" in line and not ("WORKLOAD_IDENTITY_PROVIDER" in line
                                              and line.index("describe") < line.index("--allowed-audiences")):
        found.append("widens the provider's audiences before asking to check WORKLOAD_IDENTITY_PROVIDER")
    return found


def wrong(entry: dict, line: str) -> bool:
    """A wrong fix: one the entry names as another cause's."""
    return any(fragment in line for fragment in entry["forbid"])


def _answers(entries: list[dict]) -> dict[str, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Google)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        return {entry["id"]: _line(entry, endpoint) for entry in entries if entry.get("reachable", True)}
    finally:
        server.shutdown()


def _figure(entries: list[dict], said: dict[str, str]) -> str:
    reachable = [entry for entry in entries if entry["id"] in said]
    explained = [entry for entry in reachable if not problems(entry, said[entry["id"]])]
    mistaken = [entry for entry in reachable if wrong(entry, said[entry["id"]])]
    return (f"{len(entries)} texts, {len(reachable)} reachable, {len(explained)} explained "
            f"({100 * len(explained) // max(1, len(reachable))}%), {len(mistaken)} with a wrong fix")


@pytest.fixture(scope="module")
def lines() -> dict[str, str]:
    said = _answers(CORPUS)
    record("real error texts (built from)", _figure(CORPUS, said))
    return said


def test_the_corpus_is_real_and_complete():
    everything = CORPUS + HELD_OUT
    assert len(everything) >= 120
    assert len({entry["id"] for entry in everything}) == len(everything)
    for entry in everything:
        assert entry["source"].startswith("https://"), entry["id"]
        assert entry["channel"] in CHANNELS, entry["id"]
        assert (entry["channel"] == "iam") == (entry.get("method") in ("generateAccessToken", "generateIdToken")), entry["id"]
        assert entry["as_quoted"] and entry["fixed_by"] and entry["expect"], entry["id"]
    outside_google = [entry for entry in everything if entry["channel"] in ("registry", "token_service")]
    assert 2 * len(outside_google) >= len(everything)  # at least half: registry, Cloud Storage and network failures


@pytest.mark.parametrize("entry", [entry for entry in CORPUS if entry.get("reachable", True)], ids=lambda entry: entry["id"])
def test_each_real_text_gets_cause_and_fix(entry, lines):
    assert not problems(entry, lines[entry["id"]]), (problems(entry, lines[entry["id"]]), lines[entry["id"]])


# Issue 16's bar for the held-out part is no wrong fix. Its two wrong fixes were found by an auditor who may read it,
# and those entries moved to the built-from part, read (tests/data/CORPUS.md, "Spent held-out entries"): what is left
# is held to none.
KNOWN_WRONG_FIXES = 0


def test_the_held_out_third_gets_cause_and_fix_as_often():
    """≥ 90% of the reachable held-out texts explained, wrong fixes no more than known. Only the figure is shown."""
    said = _answers(HELD_OUT)
    figure = _figure(HELD_OUT, said)
    reachable = [entry for entry in HELD_OUT if entry["id"] in said]
    good_enough = 10 * sum(not problems(entry, said[entry["id"]]) for entry in reachable) >= 9 * len(reachable)
    wrong_fixes = sum(wrong(entry, said[entry["id"]]) for entry in reachable)
    record("real error texts (held out, unread)", figure + ("" if not wrong_fixes else " (the bar is none: not met)"))
    del reachable, said  # nothing of the held-out part in a failure's report: only the figure
    assert good_enough and wrong_fixes <= KNOWN_WRONG_FIXES, figure


def test_the_status_google_sent_is_part_of_the_explanation(lines):
    # An empty 404 used to come out as "failed: {'message': ''}"; a 429/5xx as a refusal.
    assert "was not found (HTTP 404" in lines["gha-auth-471"]
    assert "HTTP 504" in lines["opstrace-191"] and "on Google's side" in lines["opstrace-191"]


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
def test_gcloud_accepts_every_command_the_explanations_print(lines):
    """Both parts' commands; the held-out part's are counted, not shown."""
    held_out = _answers(HELD_OUT)
    ours = sorted({c for line in lines.values() for c in re.findall(r"`(gcloud [^`]+)`", line)})
    unread = sorted({c for line in held_out.values() for c in re.findall(r"`(gcloud [^`]+)`", line)} - set(ours))
    assert len(ours) >= 20  # the explanations do print commands: this test would pass vacuously otherwise
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = dict(zip(ours + unread, pool.map(gcloud_verdict, ours + unread), strict=True))
    refused = {command: stderr.splitlines()[-1] for command, (ok, stderr) in verdicts.items() if not ok and command in ours}
    refused_unread = sum(not ok for command, (ok, _) in verdicts.items() if command in unread)
    record("gcloud commands in error explanations",
           f"{len(verdicts)} run through gcloud ({len(unread)} from the held-out part), {len(verdicts) - len(refused) - refused_unread} accepted")
    assert not refused, refused
    assert refused_unread == 0, f"{refused_unread} commands printed for held-out texts were refused by gcloud"
