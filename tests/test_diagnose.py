"""pipe.diagnose: Google's and the registries' refusals explained in one line, with the cause and the fix.

Failures are built directly (pipe.error_models) or given to the public functions as Google, a token service or the
Docker daemon sends them. What is checked is the line: one printable line, the resource the answer names, a fix that
fits the cause (never a grant when the cause is not a missing grant, never the retry budget for what is not retried),
and every gcloud command in it accepted by the real gcloud."""

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import config, diagnose, error_models, oidc, parsers, retry
from pipe.error_models import Failure, from_google, from_registry
from tests.support.budgets import EXAMPLE_DEADLINE_MS
from tests.support.google_tools import GCLOUD, gcloud_verdict
from tests.support.inputs import ADVERSARIAL, BIG_TEXTS, with_examples

PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"
SA = "puller@ci-proj.iam.gserviceaccount.com"
HOP = "ci-broker@shared-proj.iam.gserviceaccount.com"
REPOSITORY_UUID = "{0d6c1f43-6f39-4a35-9d1b-3b2f8c9e7a10}"
RUN_URL = "https://api-abc123-ew.a.run.app"
CLAIMS = {"iss": "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc",
          "aud": "ari:cloud:bitbucket::workspace/0c6e2a34-5f1b-4c7e-9d1a-7b2f8e3c4d5a",
          "sub": f"{REPOSITORY_UUID}:{{6a0c2e1d-3b4f-4c5d-8e9f-0a1b2c3d4e5f}}", "repositoryUuid": REPOSITORY_UUID,
          "branchName": "main", "iat": 1_790_000_000, "exp": 1_790_003_600}
STEP = oidc.StepToken("eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl", CLAIMS)  # only the claims are read
IMAGE = parsers.image("IMAGE", "us-docker.pkg.dev/img-proj/tools/builder:1.4")
PRINCIPAL = f"serviceAccount:{SA}"
GRANTS = ("add-iam-policy-binding", "--role=")  # what a grant command carries
COMMAND = re.compile(r"`(gcloud [^`]+)`")


def settings_for(**variables) -> config.Config:
    env = {"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": SA, "IMAGE": str(IMAGE.display), **variables}
    return config.load({name: value for name, value in env.items() if value is not None}, Path("/b"))


CFG = settings_for()
CONTEXT = diagnose.Context(CFG, STEP, IMAGE, PRINCIPAL)


def seen(line: str) -> str:
    """A line the pipe would print: one printable line."""
    assert "\n" not in line and line.isprintable() and line.strip() == line, line
    return line


def rpc(code: int, status: str, message: str, reason: str = "", **metadata) -> dict:
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
                "metadata": metadata}] if reason else []
    return {"error": {"code": code, "status": status, "message": message, "details": details}}


def sts(body: dict, status: int | None = None, cfg: config.Config = CFG) -> str:
    return seen(diagnose.sts_error(body, cfg, STEP, status))


def iam(body: dict, status: int | None = None, method: str = "generateAccessToken", cfg: config.Config = CFG) -> str:
    return seen(diagnose.iam_error(body, cfg, STEP, method, status))


def pull(text: str, transient: str | None = None) -> str:
    return seen(diagnose.pull_error(text, IMAGE, PRINCIPAL, transient))


def token_service(status: int, text: str) -> str:
    return seen(diagnose.token_service_error(status, text, IMAGE, PRINCIPAL, "us-docker.pkg.dev"))


# --- said(): Google's words, on one short line ----------------------------------------------------------------------------

QUOTED = 10 * (diagnose._QUOTE_LIMIT + 1)  # at most 301 characters of the text, each escaped to at most 10 (\U0010ffff)


def bound(failure: Failure) -> int:
    return len(f"HTTP {failure.status} {failure.code}: ") + QUOTED


def test_an_html_page_is_said_by_its_title():
    page = ("<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 502 (Server Error)!!1</title>\n"
            "  <style>*{margin:0;padding:0}</style>\n<body><p><b>502.</b> <ins>That’s an error.</ins>\n" + "x" * 5000)
    assert diagnose.said(Failure("Google STS", 502, message=page)) == "HTTP 502: Error 502 (Server Error)!!1"


def test_pretty_printed_json_is_said_on_one_line():
    body = json.dumps(rpc(403, "PERMISSION_DENIED", "Permission denied on resource."), indent=2)
    said = diagnose.said(Failure("IAM Credentials", 403, "PERMISSION_DENIED", message=body))
    assert "\n" not in said and said.startswith('HTTP 403 PERMISSION_DENIED: { "error": { "code": 403,')


def test_a_megabyte_is_said_in_three_hundred_characters():
    said = diagnose.said(Failure("the registry", 503, message="word " * 200_000))
    assert said == "HTTP 503: " + ("word " * 60)[:diagnose._QUOTE_LIMIT] + "…"


def test_control_and_bidirectional_characters_are_shown_escaped_never_acted_on():
    message = "\x1b[2J\x1b[32m✔ Pulled\x1b[0m\r\n\x00fake\u202egnp.exe\u2028next\x7f\x85end\u200f"
    said = diagnose.said(Failure("the registry", None, message=message))
    assert said.isprintable() and "\n" not in said and "\r" not in said
    assert "\\x1b[2J" in said and "\\u202e" in said and "\\x00" in said and "\\u200f" in said and "\\x7f" in said


def test_what_there_is_when_there_is_little():
    assert diagnose.said(Failure("s")) == "no message"
    assert diagnose.said(Failure("s", 404)) == "HTTP 404"
    assert diagnose.said(Failure("s", None, "DENIED", message=" \n\t ")) == "DENIED"


@settings(max_examples=200, deadline=EXAMPLE_DEADLINE_MS)
@given(message=st.one_of(st.text(), st.text().map(lambda t: t * 500)),
       status=st.one_of(st.none(), st.integers(100, 599)),
       code=st.sampled_from(["", "PERMISSION_DENIED", "invalid_grant", "DENIED", "MANIFEST_UNKNOWN"]))
@example(message="<title>" + "\u202e" * 199 + "</title>", status=500, code="")
@example(message="\U0010ffff" * 400, status=None, code="")
def test_said_is_one_printable_bounded_line_whatever_the_message(message, status, code):
    failure = Failure("the registry", status, code, message=message)
    said = diagnose.said(failure)
    assert said.isprintable() and len(said) <= bound(failure)


@pytest.mark.parametrize("status_field", ["\x1b[2J\x1b[32mPERMISSION_DENIED", "PERMISSION_DENIED_" + "X" * 8000],
                         ids=["escape sequence", "8 KB"])
def test_said_is_bounded_and_printable_whatever_the_code(status_field):
    failure = from_google({"error": {"code": 403, "status": status_field, "message": "Permission denied."}}, 403, "IAM Credentials")
    said = diagnose.said(failure)
    assert said.isprintable() and len(said) <= len("HTTP 403 : ") + 2 * QUOTED


# --- the reasons every service shares ---------------------------------------------------------------------------------------

METADATA = {"consumer": "projects/other-proj", "service": "pubsub.googleapis.com", "constraint": "constraints/gcp.restrictServiceUsage",
            "uid": "VPC-UID-4f2a", "bucket": "artifacts.other-proj.appspot.com"}
ORG_POLICY = ["(constraints/gcp.restrictServiceUsage)", "in project other-proj",
              "`gcloud resource-manager org-policies describe constraints/gcp.restrictServiceUsage --project=other-proj --effective`",
              "allow pubsub.googleapis.com"]
PROJECT_MISSING = ["Project other-proj does not exist or was deleted", "`gcloud projects describe other-proj`",
                   "`gcloud projects undelete other-proj`"]
SUSPENDED = ["Project other-proj is suspended", "appeal"]
REQUESTER_PAYS = ["bucket artifacts.other-proj.appspot.com", "requester pays",
                  "`gcloud storage buckets update gs://artifacts.other-proj.appspot.com --no-requester-pays`"]
# Each reason: what its line says, from the Failure's metadata (the project, the service, the constraint, …) and the fix.
REASON_LINES = {
    "SERVICE_DISABLED": ["(pubsub.googleapis.com) is disabled in project other-proj",
                         "`gcloud services enable pubsub.googleapis.com --project=other-proj`"],
    "BILLING_DISABLED": ["Billing is disabled for project other-proj", "`gcloud billing projects describe other-proj`",
                         "link an open billing account"],
    "SECURITY_POLICY_VIOLATED": ["VPC Service Controls", "around project other-proj", "IAM grants cannot fix this",
                                 f"admits {PRINCIPAL} to pubsub.googleapis.com", "unique ID VPC-UID-4f2a"],
    "RESOURCE_USAGE_RESTRICTION_VIOLATED": ORG_POLICY,
    "LOCATION_POLICY_VIOLATED": ORG_POLICY,
    "ORG_POLICY": ORG_POLICY,
    "CONSUMER_INVALID": PROJECT_MISSING,
    "RESOURCE_PROJECT_INVALID": PROJECT_MISSING,
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT": ["scopes do not cover", "keep https://www.googleapis.com/auth/cloud-platform"],
    "ACCESS_TOKEN_EXPIRED": ["access token expired", "raise ACCESS_TOKEN_LIFETIME"],
    "CONSUMER_SUSPENDED": SUSPENDED,
    "GCP_SUSPENDED": SUSPENDED,
    "USER_PROJECT_MISSING": REQUESTER_PAYS,
    "USER_PROJECT_DENIED": REQUESTER_PAYS,
    "LOCATION_ORG_POLICY_VIOLATED": ORG_POLICY,
    "TLS_ORG_POLICY_VIOLATED": ORG_POLICY,
    "TLS_CIPHER_RESTRICTION_VIOLATED": ORG_POLICY,
    "ENDPOINT_USAGE_RESTRICTION_VIOLATED": ORG_POLICY,
    "ORG_RESTRICTION_VIOLATION": ["Organization Restrictions", "does not list the organization that owns project other-proj",
                                  "no IAM grant or pipe setting changes this", "allow that organization"],
    "ORG_RESTRICTION_HEADER_INVALID": ["Organization Restrictions", "malformed", "fix that header"],
    "ACCOUNT_STATE_INVALID": ["disabled or deleted", f"`gcloud iam service-accounts describe projects/ci-proj/serviceAccounts/{SA}`",
                              "shows disabled: true"],
    "ACCESS_TOKEN_TYPE_UNSUPPORTED": ["refused the kind of credential", "pubsub.googleapis.com does not take this kind"],
    "CREDENTIAL_TYPE_UNSUPPORTED": ["refused the kind of credential", "pubsub.googleapis.com does not take this kind"],
    "ACCOUNT_TYPE_UNSUPPORTED": ["refused the kind of credential", "pubsub.googleapis.com does not take this kind"],
    "CREDENTIALS_MISSING": ["No credentials reached", "Authorization header", "HTTPS_PROXY"],
    "OVERLOADED_CREDENTIALS": ["two credentials at once", "HTTPS_PROXY"],
    "USER_BLOCKED_BY_ADMIN": ["Google Workspace administrator", "from pubsub.googleapis.com", "no IAM grant"],
    "RESOURCE_QUOTA_EXCEEDED": ["quota of project other-proj for pubsub.googleapis.com is used up", "ask for more"],
    "GCR_SHUTDOWN": ["no longer serves project other-proj", "`gcloud artifacts docker upgrade migrate --projects=other-proj`"],
    "LIFETIME_OVER_ONE_HOUR": ["1 hour", "ACCESS_TOKEN_LIFETIME"],
}


def test_every_reason_has_its_expected_line():
    assert set(REASON_LINES) == set(diagnose.REASONS)


def not_a_grant_nor_a_retry(line: str) -> None:
    assert not any(grant in line for grant in GRANTS), line
    assert "RETRY_MAX_ATTEMPTS" not in line, line


@pytest.mark.parametrize("reason", diagnose.REASONS)
def test_each_reason_names_the_resource_from_its_metadata_and_the_fix(reason):
    failure = Failure("IAM Credentials", 403, "PERMISSION_DENIED", reason, message="Google's own words.", metadata=dict(METADATA))
    line = seen(diagnose.REASONS[reason](failure, CONTEXT))
    for fragment in REASON_LINES[reason]:
        assert fragment in line, (fragment, line)
    assert "HTTP 403 PERMISSION_DENIED: Google's own words." in line  # what Google said, with the explanation
    assert "img-proj" not in line  # the project the answer names, not IMAGE's
    not_a_grant_nor_a_retry(line)


# A phrase each channel's own rules answer with a grant or another cause: the reason must win over it.
PHRASES = {
    "sts": 'Invalid value for "audience". This value should be the full resource name of the Identity Provider.',
    "iam": "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
    "token service": 'Permission "artifactregistry.repositories.downloadArtifacts" denied on resource '
                     '"projects/img-proj/locations/us/repositories/tools" (or it may not exist)',
    "daemon": "manifest for us-docker.pkg.dev/img-proj/tools/builder:1.4 not found: manifest unknown: manifest unknown",
}  # the daemon's report here carries Google's JSON (as a registry's refusal relayed whole does)


def through(channel: str, body: dict) -> str:
    if channel == "sts":
        return sts(body, 403)
    if channel == "iam":
        return iam(body, 403)
    if channel == "token service":
        return token_service(403, json.dumps(body))
    return pull(json.dumps(body))


@pytest.mark.parametrize("channel", PHRASES)
@pytest.mark.parametrize("reason", diagnose.REASONS)
def test_a_reason_beats_every_phrase_rule_on_every_channel(reason, channel):
    line = through(channel, rpc(403, "PERMISSION_DENIED", PHRASES[channel], reason, **METADATA))
    for fragment in REASON_LINES[reason]:
        assert fragment in line, (fragment, line)
    not_a_grant_nor_a_retry(line)
    assert "WORKLOAD_IDENTITY_PROVIDER" not in line and "was not found: check the tag" not in line


@pytest.mark.parametrize("reason, constraint", [("RESOURCE_USAGE_RESTRICTION_VIOLATED", "constraints/gcp.restrictServiceUsage"),
                                                ("LOCATION_POLICY_VIOLATED", "constraints/gcp.resourceLocations")])
def test_an_organization_policy_without_its_constraint_named_gets_the_reasons_own(reason, constraint):
    line = token_service(403, json.dumps(rpc(403, "PERMISSION_DENIED", "Request violates policy.", reason)))
    assert f"({constraint})" in line and f"describe {constraint} --project=img-proj --effective" in line  # IMAGE's project


def test_without_a_project_no_command_carries_a_placeholder():
    """gcloud refuses a placeholder in --project: with no project known, the fix is said in words."""
    for reason in ("SERVICE_DISABLED", "BILLING_DISABLED", "ORG_POLICY", "CONSUMER_INVALID", "GCR_SHUTDOWN"):
        failure = Failure("the registry", 403, "DENIED", reason, message="m")  # IMAGE on Docker Hub: no project anywhere
        line = seen(diagnose.REASONS[reason](failure, diagnose.Context(image=parsers.image("IMAGE", "acme/tool:1"))))
        assert "--project" not in line and "<" not in line, line


def test_iam_credentials_disabled_names_its_api_and_the_providers_project():
    line = iam(rpc(403, "PERMISSION_DENIED", "The caller does not have permission", "SERVICE_DISABLED"), 403)
    assert "`gcloud services enable iamcredentials.googleapis.com --project=123456789012`" in line
    not_a_grant_nor_a_retry(line)


def test_sts_disabled_names_sts_not_artifact_registry():
    line = sts(rpc(403, "PERMISSION_DENIED", "Security Token Service API has not been used in project 123456789012 before or it "
                   "is disabled."), 403)
    assert "sts.googleapis.com" in line and "artifactregistry" not in line


# --- transient or permanent ---------------------------------------------------------------------------------------------

TRANSIENT = {
    "sts 500": lambda: sts({"error": "server_error", "error_description": "Internal error."}, 500),
    "sts html 503": lambda: sts({"message": "<html><title>503 Service Unavailable</title></html>"}, 503),
    "iam 503": lambda: iam(rpc(503, "UNAVAILABLE", "The service is currently unavailable."), 503),
    "iam 504 empty": lambda: iam({"message": ""}, 504),
    "iam 429": lambda: iam(rpc(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Generate credentials'."), 429),
    "token service 502": lambda: token_service(502, "<html><title>502 Bad Gateway</title></html>"),
    "pull 503": lambda: pull("received unexpected HTTP status: 503 Service Unavailable"),
    "pull reset": lambda: pull('Head "https://us-docker.pkg.dev/v2/img-proj/tools/builder/manifests/1.4": read tcp '
                               "10.0.0.2:41234->142.250.1.1:443: read: connection reset by peer", retry.NETWORK),
    "pull throttled": lambda: pull("toomanyrequests: Too Many Requests"),
    "manifest 503": lambda: seen(diagnose.manifest_error(503, IMAGE, PRINCIPAL)),
}


@pytest.mark.parametrize("explain", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_a_transient_failure_no_rule_explains_gets_the_transient_line_with_the_retry_budget(explain):
    line = explain()
    assert "even after retries" in line and "not your configuration" in line, line
    assert diagnose.RETRY_BUDGET in line and "rerun the step" in line
    assert not any(grant in line for grant in GRANTS)


def test_the_transient_lines_say_whose_trouble_it_is():
    assert TRANSIENT["iam 429"]().startswith("IAM Credentials is rate-limiting these requests (HTTP 429 RESOURCE_EXHAUSTED")
    assert "Google's quota" in TRANSIENT["iam 429"]()
    assert "the registry's quota" in TRANSIENT["pull throttled"]() and f"serving {IMAGE.display}" in TRANSIENT["pull throttled"]()
    assert "the network between the step and it failed" in TRANSIENT["pull reset"]()
    assert TRANSIENT["pull 503"]().startswith(f"Pulling {IMAGE.display} kept failing (HTTP 503:")
    assert "the registry was unavailable" in TRANSIENT["pull 503"]()
    assert TRANSIENT["sts html 503"]().startswith("Google STS is unavailable (HTTP 503: 503 Service Unavailable) even after retries")


PERMANENT = {
    "sts unknown": lambda: sts({"error": "invalid_request", "error_description": "Something else."}, 400),
    "sts audience": lambda: sts({"error": "invalid_grant", "error_description": PHRASES["sts"]}, 400),
    "sts 503 billing": lambda: sts(rpc(503, "UNAVAILABLE", "Billing disabled.", "BILLING_DISABLED", consumer="projects/other-proj"), 503),
    "iam denied": lambda: iam(rpc(403, "PERMISSION_DENIED", PHRASES["iam"]), 403),
    "iam invalid": lambda: iam(rpc(400, "INVALID_ARGUMENT", "Request contains an invalid argument."), 400),
    "iam precondition": lambda: iam(rpc(400, "FAILED_PRECONDITION", "Precondition check failed."), 400),
    "iam not found": lambda: iam(rpc(404, "NOT_FOUND", "Not found; Gaia id not found for email " + SA), 404),
    "iam 503 disabled": lambda: iam(rpc(503, "UNAVAILABLE", "m", "SERVICE_DISABLED", service="iamcredentials.googleapis.com"), 503),
    "iam unknown": lambda: iam(rpc(409, "ABORTED", "Conflict."), 409),
    "token service denied": lambda: token_service(403, json.dumps({"errors": [{"code": "DENIED", "message": PHRASES["token service"]}]})),
    "token service 400": lambda: token_service(400, "bad request"),
    "pull missing": lambda: pull(PHRASES["daemon"]),
    "pull x509": lambda: pull('Get "https://us-docker.pkg.dev/v2/": x509: certificate signed by unknown authority'),
    "pull plain http": lambda: pull('Get "https://us-docker.pkg.dev/v2/": http: server gave HTTP response to HTTPS client'),
    "pull unexplained": lambda: pull("Error response from daemon: something odd happened"),
    **{f"manifest {status}": (lambda status=status: seen(diagnose.manifest_error(status, IMAGE, PRINCIPAL))) for status in (400, 401, 403, 404)},
}


@pytest.mark.parametrize("explain", PERMANENT.values(), ids=PERMANENT.keys())
def test_a_permanent_failure_never_mentions_the_retry_budget(explain):
    line = explain()
    assert "RETRY_MAX_ATTEMPTS" not in line and "RETRY_MAX_TIME" not in line and "even after retries" not in line, line


def test_a_v1_fallback_is_retried_and_names_the_budget_it_used():
    """The daemon falls back to v1 when the v2 lookup failed: a missing image, or a passing fault, which a retry rides
    out. The line names the budget only because the pull was retried within it."""
    text = ("Error response from daemon: v1 Registry API is disabled. If you are not explicitly using the v1 Registry API, it is "
            "possible your v2 image could not be found. Verify that your image is available, or retry with `dockerd "
            "--disable-legacy-registry`.")
    assert from_registry(text, None, "the registry").transient == retry.UNAVAILABLE
    line = pull(text)
    assert "RETRY_MAX_ATTEMPTS" in line and "IMAGE names an image or tag that does not exist" in line, line


# --- the registry's rules ---------------------------------------------------------------------------------------------

MISSING = {
    "daemon's manifest for": lambda: pull(PHRASES["daemon"]),
    "manifest unknown": lambda: pull("Error response from daemon: manifest unknown: manifest unknown"),
    "name unknown": lambda: pull("Error response from daemon: name unknown: The repository does not exist."),
    "oci MANIFEST_UNKNOWN": lambda: token_service(404, json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "gone"}]})),
    "oci NAME_UNKNOWN": lambda: token_service(404, json.dumps({"errors": [{"code": "NAME_UNKNOWN", "message": "no such name"}]})),
    "doctor's 404": lambda: seen(diagnose.manifest_error(404, IMAGE, PRINCIPAL)),
    "containerd's resolver": lambda: pull(f'failed to resolve reference "{IMAGE.reference}": {IMAGE.reference}: not found'),
    "v1 tag not found": lambda: pull(f"Tag 1.4 not found in repository {IMAGE.repository}"),
    "v1 image not found": lambda: pull(f"Error: image {IMAGE.repository}:1.4 not found"),
}


@pytest.mark.parametrize("explain", MISSING.values(), ids=MISSING.keys())
def test_a_missing_image_is_said_on_the_registrys_codes_and_the_daemons_wording(explain):
    line = explain()
    assert line.startswith(f"Image {IMAGE.display} was not found: check the tag or digest in IMAGE"), line
    assert "`gcloud artifacts docker images list us-docker.pkg.dev/img-proj/tools/builder --include-tags`" in line
    not_a_grant_nor_a_retry(line)


@pytest.mark.parametrize("text", [
    'OCI runtime create failed: runc create failed: unable to start container process: exec: "make": executable file not found '
    "in $PATH: unknown",
    'error getting credentials - err: exec: "docker-credential-gcloud": executable file not found in $PATH, out: ``',
    "Error response from daemon: network acme-build not found",
    'Error response from daemon: plugin "pipelines" not found',
    "Error response from daemon: Project 'project:other-proj' not found or deleted.",
])
def test_not_found_alone_is_no_missing_image(text):
    line = pull(text)
    assert "was not found: check the tag" not in line and "images list" not in line, line


GCR_IMAGE = parsers.image("IMAGE", "eu.gcr.io/img-proj/builder:1.4")
LAYER_REFUSED = {  # the manifest was read, then a layer or the image's config blob was refused
    "config blob": "error pulling image configuration: download failed after attempts=6: denied: access denied",
    "blob url": 'failed to copy: httpReadSeeker: failed open: unexpected status code https://{host}/v2/{path}/blobs/sha256:'
                + "a" * 64 + ": 403 Forbidden",
    "v1 layer": "Error pulling image (1.4) from {host}/{path}, Server error: Status 403 while fetching image layer (0123abcd)",
}


@pytest.mark.parametrize("text", LAYER_REFUSED.values(), ids=LAYER_REFUSED.keys())
@pytest.mark.parametrize("image, fix", [(IMAGE, "--role=roles/artifactregistry.reader"), (GCR_IMAGE, "roles/storage.objectViewer")],
                         ids=["artifact registry", "container registry"])
def test_a_refused_layer_is_the_storage_behind_the_registry_not_the_name(text, image, fix):
    """Artifact Registry serves its layers itself (the repository's reader role); Container Registry's sit in a Cloud
    Storage bucket (the bucket's viewer role). Either way the tag exists: no tag check, no retry."""
    line = seen(diagnose.pull_error(text.format(host=image.host, path=image.path), image, PRINCIPAL))
    assert "refused one of its layers" in line and fix in line, line
    assert "check the tag" not in line and diagnose.RETRY_BUDGET not in line, line


def test_googles_front_end_refusing_the_client_is_no_missing_grant():
    page = ("<html><title>403 Forbidden</title><h2>Your client does not have permission to get URL <code>/v2/img-proj/"
            "tools/builder/blobs/sha256:" + "a" * 64 + "</code> from this server.</h2></html>")
    line = pull(f"error parsing HTTP 403 response body: invalid character '<' looking for beginning of value: {json.dumps(page)}")
    assert not any(grant in line for grant in GRANTS) and "roles/" not in line, line


def test_a_missing_layer_is_not_a_missing_tag():
    line = token_service(404, json.dumps({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry"}]}))
    assert "lacks one of its layers" in line and "push it again" in line and "check the tag" not in line


CONNECTION = {
    "unknown authority": ('Get "https://us-docker.pkg.dev/v2/": x509: certificate signed by unknown authority', "trust"),
    "wrong name": ('Get "https://us-docker.pkg.dev/v2/": tls: failed to verify certificate: x509: certificate is valid for '
                   "proxy.corp.example, not us-docker.pkg.dev", "trust"),
    "expired": ('Get "https://us-docker.pkg.dev/v2/": x509: certificate has expired or is not yet valid: current time '
                "2026-01-31T12:00:00Z is after 2025-12-31T23:59:59Z", "clock"),
    "plain http": ('Get "https://us-docker.pkg.dev/v2/": http: server gave HTTP response to HTTPS client', "https"),
    "not tls": ('Get "https://us-docker.pkg.dev/v2/": tls: first record does not look like a TLS handshake', "https"),
    "proxy refused": ('Get "https://us-docker.pkg.dev/v2/": proxyconnect tcp: dial tcp 10.1.2.3:3128: connect: connection refused',
                      "proxy"),
    "proxy auth": ('Get "https://us-docker.pkg.dev/v2/": Proxy Authentication Required', "proxy"),
}
CONNECTION_SAYS = {
    "trust": ["The Docker daemon did not trust the certificate us-docker.pkg.dev presented", "/etc/docker/certs.d/us-docker.pkg.dev/ca.crt"],
    "https": ["us-docker.pkg.dev does not speak https", "fix the host in IMAGE"],
    "proxy": ["The proxy between the step and us-docker.pkg.dev refused the connection", "HTTPS_PROXY and NO_PROXY"],
    "clock": ["us-docker.pkg.dev's certificate expired or not yet valid", "the runner's clock is wrong"],
}


@pytest.mark.parametrize("text, kind", CONNECTION.values(), ids=CONNECTION.keys())
def test_tls_plain_http_and_proxy_errors_are_the_network_path(text, kind):
    """Retrying never helps these, nor does a grant: the line says which part of the way to the registry to fix."""
    line = pull(f"Error response from daemon: {text}")
    for fragment in CONNECTION_SAYS[kind]:
        assert fragment in line, (fragment, line)
    not_a_grant_nor_a_retry(line)
    assert "check the tag" not in line


# --- IAM Credentials ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["generateAccessToken", "generateIdToken"])
def test_failed_precondition_is_explained_as_a_possibly_disabled_account(method):
    line = iam(rpc(400, "FAILED_PRECONDITION", "Precondition check failed."), 400, method)
    account = f"projects/ci-proj/serviceAccounts/{SA}"
    assert f"the state of {SA} does not allow {method}" in line and "most likely the account is disabled" in line
    assert f"`gcloud iam service-accounts describe {account}` shows disabled: true" in line
    assert f"`gcloud iam service-accounts enable {account}`" in line
    assert "HTTP 400 FAILED_PRECONDITION: Precondition check failed." in line
    not_a_grant_nor_a_retry(line)


@pytest.mark.parametrize("body, method, asked", [
    (rpc(400, "INVALID_ARGUMENT", "Request contains an invalid argument."), "generateAccessToken",
     "check ACCESS_TOKEN_SCOPES (https://www.googleapis.com/auth/cloud-platform)"),
    (rpc(400, "INVALID_ARGUMENT", "Request contains an invalid argument."), "generateIdToken", f"check ID_TOKEN_AUDIENCE ({RUN_URL})"),
    ({"message": "Bad Request"}, "generateAccessToken", "check ACCESS_TOKEN_SCOPES"),  # a 400 without a code
], ids=["access token", "id token", "no code"])
def test_invalid_argument_points_at_what_was_asked_and_grants_nothing(body, method, asked):
    line = iam(body, 400, method, cfg=settings_for(ID_TOKEN_AUDIENCE=RUN_URL))
    assert f"refused the {method} request for {SA} as invalid" in line and asked in line, line
    not_a_grant_nor_a_retry(line)


@pytest.mark.parametrize("delegates", [None, HOP])
def test_a_403_is_the_missing_grant_most_likely(delegates):
    cfg = settings_for(DELEGATES=delegates)
    line = iam(rpc(403, "PERMISSION_DENIED", PHRASES["iam"], "IAM_PERMISSION_DENIED"), 403, cfg=cfg)
    member = f"principalSet://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/bitbucket/" \
             f"attribute.repository_uuid/{REPOSITORY_UUID}"
    assert (f"`gcloud iam service-accounts add-iam-policy-binding projects/ci-proj/serviceAccounts/{SA} "
            f'--role=roles/iam.workloadIdentityUser --member="{member}"`') in line, line
    assert "Most likely the grant is missing" in line and "RETRY_MAX_ATTEMPTS" not in line
    assert (f"that role on {HOP}" in line and "roles/iam.serviceAccountTokenCreator on the next" in line) == bool(delegates)


def test_the_lifetime_rule_beats_the_generic_invalid_argument():
    message = "Lifetime of access tokens can not have lifetimes of more than 1 hour."
    line = iam(rpc(400, "INVALID_ARGUMENT", message), 400, cfg=settings_for(ACCESS_TOKEN_LIFETIME="7200s"))
    assert "ACCESS_TOKEN_LIFETIME is 7200s" in line and "constraints/iam.allowServiceAccountCredentialLifetimeExtension" in line
    assert "as invalid" not in line


def test_a_missing_account_names_the_one_google_named():
    ghost = "ghost-account@other-proj.iam.gserviceaccount.com"
    line = iam(rpc(404, "NOT_FOUND", f"Not found; Gaia id not found for email {ghost}."), 404)
    assert line.startswith(f"Service account {ghost} was not found (HTTP 404")
    assert f"`gcloud iam service-accounts describe projects/other-proj/serviceAccounts/{ghost}`" in line
    not_a_grant_nor_a_retry(line)


# --- every command printed runs through gcloud ---------------------------------------------------------------------------

def command_path(command: str) -> tuple[str, ...]:
    """gcloud's command group and verb: the words before the first argument (a resource, a value or a flag)."""
    words = command.split()
    return tuple(next((words[:i] for i, w in enumerate(words) if w.startswith("-") or re.search(r"[./@={]", w)), words))


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
def test_gcloud_accepts_every_kind_of_command_these_lines_print():
    """The lines of the tests above, each kind of command once (the fullest), run with no account: gcloud parses and
    validates every argument, then stops at the missing account."""
    lines = [explain() for explain in (*TRANSIENT.values(), *PERMANENT.values(), *MISSING.values())]
    lines += [diagnose.REASONS[reason](Failure("IAM Credentials", 403, "PERMISSION_DENIED", reason, message="m",
                                               metadata=dict(METADATA)), CONTEXT) for reason in diagnose.REASONS]
    direct = diagnose.Context(settings_for(SERVICE_ACCOUNT=None), STEP)  # direct federation: the pool and provider are named
    lines += [diagnose.REASONS["ACCOUNT_STATE_INVALID"](Failure("the registry", 403, "PERMISSION_DENIED", "ACCOUNT_STATE_INVALID"), direct)]
    lines += [iam(rpc(403, "PERMISSION_DENIED", PHRASES["iam"]), 403, cfg=settings_for(DELEGATES=HOP)),
              sts({"error": "invalid_grant", "error_description": "The audience in ID Token [x] does not match the expected audience."}),
              sts({"error": "invalid_grant", "error_description": "The given credential is rejected by the attribute condition."}),
              token_service(403, json.dumps({"errors": [{"code": "DENIED", "message": PHRASES["token service"]}]}))]
    fullest: dict[tuple, str] = {}
    for command in (command for line in lines for command in COMMAND.findall(line)):
        path = command_path(command)
        if len(command) > len(fullest.get(path, "")):
            fullest[path] = command
    assert len(fullest) >= 15  # the lines do print commands: this test would pass vacuously otherwise
    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts = dict(zip(fullest.values(), pool.map(gcloud_verdict, fullest.values()), strict=True))
    refused = {command: stderr.splitlines()[-1] if stderr else "" for command, (ok, stderr) in verdicts.items() if not ok}
    assert not refused, refused


def test_a_shut_down_container_registry_without_a_project_prints_no_command_gcloud_refuses():
    image = parsers.image("IMAGE", "gcr.io/tool:1")
    text = ('Error response from daemon: Head "https://gcr.io/v2/tool/manifests/1": unexpected status code 412 Precondition '
            "Failed: Container Registry is deprecated and shutting down, please use the auto migration tool")
    line = seen(diagnose.pull_error(text, image, PRINCIPAL))
    assert "no longer serves" in line  # the shutdown is recognised
    commands = COMMAND.findall(line)
    assert all("--projects=" in command for command in commands if "upgrade migrate" in command), commands
    if GCLOUD is not None:
        assert all(gcloud_verdict(command)[0] for command in commands), commands


FRONT_END_404 = ("<!DOCTYPE html>\n<html lang=en><title>Error 404 (Not Found)!!1</title><p><b>404.</b> <ins>That’s an error.</ins>"
                 "<p>The requested URL <code>/v1/token</code> was not found on this server.  <ins>That’s all we know.</ins>")


@pytest.mark.parametrize("explain", [lambda: sts({"message": FRONT_END_404}, 404), lambda: iam({"message": FRONT_END_404}, 404)],
                         ids=["sts", "iam"])
def test_a_web_page_at_googles_own_root_is_something_in_between_not_the_account(explain):
    line = explain()
    assert "answered with a web page" in line and "HTTPS_PROXY" in line, line
    assert "was not found (" not in line and not any(grant in line for grant in GRANTS), line


def test_a_json_404_is_still_googles_answer_about_the_account():
    line = iam(rpc(404, "NOT_FOUND", "Not found; Gaia id not found for email x@y.iam.gserviceaccount.com"), 404)
    assert "web page" not in line and "was not found" in line, line


def test_a_web_page_refusing_the_client_is_not_read_as_a_wrong_root():
    page = FRONT_END_404.replace("404", "403").replace("Not Found", "Forbidden")
    assert "no API is at" not in iam({"message": page}, 403) and "web page" not in sts({"message": page}, 403)


@pytest.mark.parametrize("phrase", ["Forbidden", "Method Not Allowed", "Not Found", "Access Denied", "Bad Request"])
def test_a_bare_client_error_phrase_is_the_proxy_refusing(phrase):
    """Go turns a proxy's non-200 answer to CONNECT into its bare reason phrase; a registry's own carries a code."""
    line = pull(f'Head "https://us-docker.pkg.dev/v2/img-proj/tools/builder/manifests/1.4": {phrase}')
    assert "The proxy between the step and us-docker.pkg.dev refused the connection" in line and "NO_PROXY" in line, line
    assert diagnose.RETRY_BUDGET not in line and not any(grant in line for grant in GRANTS), line


@pytest.mark.parametrize("phrase", ["Service Unavailable", "Bad Gateway", "Gateway Timeout", "Internal Server Error"])
def test_a_bare_server_error_phrase_is_the_proxy_with_both_of_its_causes(phrase):
    line = pull(f'Get "https://gcr.io/v2/": {phrase}', transient=retry.UNAVAILABLE)
    assert f"A proxy between the step and gcr.io answered {phrase}" in line, line
    assert diagnose.RETRY_BUDGET in line and "NO_PROXY" in line and not any(grant in line for grant in GRANTS), line


def test_a_registrys_own_server_error_is_no_proxy():
    line = pull("received unexpected HTTP status: 503 Service Unavailable", transient=retry.UNAVAILABLE)
    assert "proxy" not in line.lower() and diagnose.RETRY_BUDGET in line, line


LOCATION = {
    "cloud storage": lambda: pull("error parsing HTTP 403 response body: \"<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
                                  "AccessDenied</Code><Message>Access denied.</Message><Details>We're sorry, but this service is "
                                  "not available in your location</Details></Error>\""),
    "registry": lambda: pull("denied: This service is not available in your country"),
    "iam": lambda: iam(rpc(403, "PERMISSION_DENIED", "We're sorry, but this service is not available in your location"), 403),
}


@pytest.mark.parametrize("explain", LOCATION.values(), ids=LOCATION.keys())
def test_a_refused_location_is_no_missing_permission(explain):
    line = explain()
    assert "refused to serve the step's location" in line and "runner elsewhere" in line, line
    assert "roles/" not in line and not any(grant in line for grant in GRANTS) and diagnose.RETRY_BUDGET not in line, line


def test_an_issuer_that_differs_from_its_discovery_document_is_set_to_the_tokens_iss():
    line = sts({"error": "invalid_grant", "error_description": "`issuer` claim in OIDC discovery document does not match the "
                "issuer specified in the request."}, 400)
    assert f"--issuer-uri={CLAIMS['iss']}" in line and "trailing slash" in line, line
    assert "--allowed-audiences" not in line and not any(grant in line for grant in GRANTS), line


def test_a_missing_layer_names_a_proxy_that_drops_the_download_redirect_second():
    line = pull("error pulling image configuration: download failed after attempts=1: unknown blob")
    assert line.index("push it again") < line.index("NO_PROXY"), line


def test_an_image_in_dockers_first_manifest_format_is_pushed_again_not_retagged():
    line = pull("[DEPRECATION NOTICE] Docker Image Format v1 and Docker Image manifest version 2, schema 1 support is "
                "disabled by default and will be removed in an upcoming release.")
    assert "retired image format (manifest schema 1)" in line and "push the image again" in line, line
    assert "check the tag" not in line and diagnose.RETRY_BUDGET not in line, line


def test_a_refused_google_token_names_the_exported_tokens_lifetime():
    line = pull("failed to authorize: failed to fetch oauth token: unexpected status from GET request to "
                "https://us-docker.pkg.dev/v2/token?scope=repository%3Aimg-proj%2Ftools%2Fbuilder%3Apull: 401 Unauthorized")
    assert "ACCESS_TOKEN_LIFETIME" in line and "ACCESS_TOKEN_SCOPES" in line, line


# Whatever Google, a registry or the daemon sends, every route of the diagnosis reads it within the example deadline
# and says one printable, bounded line: the rules' patterns (reason phrases, not-found wordings, web pages, layers)
# meet long runs, glued fragments and megabytes here, not only the examples above.
ROUTES = {
    "pull": lambda text: diagnose.pull_error(text, IMAGE, PRINCIPAL),
    "token service": lambda text: diagnose.token_service_error(403, text, IMAGE, PRINCIPAL, "us-docker.pkg.dev"),
    "sts": lambda text: diagnose.sts_error({"error": "invalid_grant", "error_description": text}, CFG, STEP, 400),
    "iam": lambda text: diagnose.iam_error({"message": text}, CFG, STEP, status=404),
}
PREFIXES = st.sampled_from(["", 'Head "https://gcr.io/v2/p/app/manifests/1": ', "error pulling image configuration: ",
                            'failed to resolve reference "gcr.io/p/app:1": ', "<!DOCTYPE html><html>", "Error: image "])


@settings(max_examples=150, deadline=EXAMPLE_DEADLINE_MS)
@given(route=st.sampled_from(list(ROUTES)), prefix=PREFIXES, text=ADVERSARIAL)
@with_examples(*BIG_TEXTS, rest=("pull", ""))
def test_every_route_says_one_bounded_line_whatever_it_is_sent(text, route, prefix):
    line = seen(ROUTES[route](prefix + text))
    assert len(line) < QUOTED + 2000, len(line)  # Google's words at most QUOTED, the rest the pipe's own and short names


# --- a registry outside Google, a host where nothing answers, a project that is gone: by class, in any wording -------

def _pull_from(reference: str, text: str, transient: str | None = None) -> str:
    return seen(diagnose.pull_error(text, parsers.image("IMAGE", reference), PRINCIPAL, transient))


OUTSIDE = "ghcr.io/acme/app:1"


@pytest.mark.parametrize("text", [
    'Head "https://ghcr.io/v2/acme/app/manifests/1": denied: denied',
    'Head "https://ghcr.io/v2/acme/app/manifests/1": unauthorized: authentication required',
    "denied: requested access to the resource is denied",
    'Get "https://ghcr.io/v2/acme/app/manifests/1": received unexpected HTTP status: 403 Forbidden',
    "unauthorized: ",
    '{"errors":[{"code":"DENIED","message":""}]}',
])
def test_a_registry_outside_google_refusing_in_any_words_is_the_google_token_it_does_not_take(text):
    line = _pull_from(OUTSIDE, text)
    assert "REGISTRIES" in line and "not a Google registry" in line, line
    assert "roles/artifactregistry" not in line and "add-iam-policy-binding" not in line and "RETRY_MAX_ATTEMPTS" not in line


@pytest.mark.parametrize("kind, text", [
    (retry.NETWORK, "read tcp 10.0.0.2:53496->103.224.212.220:443: read: connection reset by peer"),
    (retry.NETWORK, "EOF"),
    (retry.NETWORK, "net/http: TLS handshake timeout"),
    (retry.NETWORK, "dial tcp 103.224.212.220:443: i/o timeout"),
    (retry.NETWORK, "net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)"),
])
def test_nothing_answering_at_first_contact_is_the_host_outside_google_and_the_network_on_googles(kind, text):
    """The first request to a host outside Google that no try got an answer to: the host is most likely not the
    registry meant, and retrying longer is no fix. The same on Google's own hosts is the network, for a rerun."""
    line = _pull_from("ghrc.io/nokia/srlinux:1", f'Get "https://ghrc.io/v2/": {text}', kind)
    assert "Nothing at ghrc.io answered" in line and "ghrc.io looks like a slip for ghcr.io" in line and "IMAGE" in line, line
    assert "RETRY_MAX_ATTEMPTS" not in line
    line = _pull_from("registry.internal.example.com/team/app:1", f'Get "https://registry.internal.example.com/v2/": {text}', kind)
    assert "IMAGE" in line and "for a typo" in line and "slip" not in line, line
    for known in ("us-docker.pkg.dev/img-proj/tools/builder:1.4", "registry-1.docker.io/library/alpine:3", "quay.io/acme/app:1"):
        line = _pull_from(known, f'Get "https://{known.split("/")[0]}/v2/": {text}', kind)
        assert "RETRY_MAX_ATTEMPTS" in line and "Nothing at" not in line, line  # a registry for sure: the network
    line = _pull_from("ghrc.io/nokia/srlinux:1", f'Head "https://ghrc.io/v2/nokia/srlinux/manifests/1": {text}', kind)
    assert "Nothing at" not in line  # past the first contact something did answer: a dropped exchange, for a rerun


@pytest.mark.parametrize("text", ["dial tcp: lookup ghrc.io on 192.168.64.1:53: server misbehaving",
                                  "dial tcp: lookup ghrc.io: Temporary failure in name resolution",
                                  "dial tcp: lookup ghrc.io on 10.0.0.2:53: read udp 10.0.0.9:41000->10.0.0.2:53: i/o timeout"])
def test_the_steps_dns_failing_at_first_contact_is_no_host_to_check(text):
    """The resolver never turned the name into an address: the step's DNS server failed, whatever the host."""
    line = _pull_from("ghrc.io/nokia/srlinux:1", f'Get "https://ghrc.io/v2/": {text}', retry.NETWORK)
    assert "Nothing at" not in line and "RETRY_MAX_ATTEMPTS" in line, line


@pytest.mark.parametrize("words", [
    "Project #761227957636 has been deleted.", "Project 761227957636 has been deleted.",
    "Project '761227957636' not found or deleted.", "Project 'project:761227957636' not found or deleted.",
    "Project projects/761227957636 was deleted", "denied: denied: Project: 761227957636 is pending deletion",
    "Project 761227957636 is in DELETE_REQUESTED state",
])
def test_a_project_that_is_gone_is_said_as_such_however_google_writes_it(words):
    for line in (pull(f'Head "https://gcr.io/v2/acme/app/manifests/1": denied: {words}'),
                 token_service(403, json.dumps({"errors": [{"code": "DENIED", "message": words}]})),
                 iam(rpc(403, "PERMISSION_DENIED", words), 403)):
        assert "761227957636 does not exist or was deleted" in line and "gcloud projects undelete 761227957636" in line, line
        assert "add-iam-policy-binding" not in line


# Every reason google/api/error_reason.proto defines (googleapis-common-protos 1.76.0), as Google's APIs send them.
ERROR_REASONS = (
    "SERVICE_DISABLED BILLING_DISABLED API_KEY_INVALID API_KEY_SERVICE_BLOCKED API_KEY_HTTP_REFERRER_BLOCKED "
    "API_KEY_IP_ADDRESS_BLOCKED API_KEY_ANDROID_APP_BLOCKED API_KEY_IOS_APP_BLOCKED RATE_LIMIT_EXCEEDED "
    "RESOURCE_QUOTA_EXCEEDED LOCATION_TAX_POLICY_VIOLATED USER_PROJECT_DENIED CONSUMER_SUSPENDED CONSUMER_INVALID "
    "SECURITY_POLICY_VIOLATED ACCESS_TOKEN_EXPIRED ACCESS_TOKEN_SCOPE_INSUFFICIENT ACCOUNT_STATE_INVALID "
    "ACCESS_TOKEN_TYPE_UNSUPPORTED CREDENTIALS_MISSING RESOURCE_PROJECT_INVALID SESSION_COOKIE_INVALID USER_BLOCKED_BY_ADMIN "
    "RESOURCE_USAGE_RESTRICTION_VIOLATED SYSTEM_PARAMETER_UNSUPPORTED ORG_RESTRICTION_VIOLATION ORG_RESTRICTION_HEADER_INVALID "
    "SERVICE_NOT_VISIBLE GCP_SUSPENDED LOCATION_POLICY_VIOLATED MISSING_ORIGIN OVERLOADED_CREDENTIALS "
    "LOCATION_ORG_POLICY_VIOLATED TLS_ORG_POLICY_VIOLATED EMULATOR_QUOTA_EXCEEDED CREDENTIAL_ANDROID_APP_INVALID "
    "IAM_PERMISSION_DENIED JWT_TOKEN_INVALID CREDENTIAL_TYPE_UNSUPPORTED ACCOUNT_TYPE_UNSUPPORTED "
    "ENDPOINT_USAGE_RESTRICTION_VIOLATED TLS_CIPHER_RESTRICTION_VIOLATED MCP_SERVER_DISABLED").split()


@pytest.mark.parametrize("channel", PHRASES)
@pytest.mark.parametrize("reason", [*ERROR_REASONS, "A_REASON_GOOGLE_ADDS_LATER"])
def test_googles_reason_is_read_before_the_words_for_every_reason_it_defines(reason, channel):
    """Google's ErrorInfo classifies the refusal: a reason the pipe explains gets its line, one it does not is said
    as Google's reason; neither is answered by the phrase rules' guess from the message (another cause's fix)."""
    line = through(channel, rpc(403, "PERMISSION_DENIED", PHRASES[channel], reason, **METADATA))
    if reason in diagnose.REASONS:
        assert all(fragment in line for fragment in REASON_LINES[reason]), line
    elif reason == "RATE_LIMIT_EXCEEDED":
        assert "rate-limiting" in line and "RETRY_MAX_ATTEMPTS" in line, line
    elif reason == "IAM_PERMISSION_DENIED":
        return  # IAM's own reason: the channel's permission rule reads it (its grant is the fix there)
    else:
        assert f"for the reason {reason} (" in line and "error_reason.proto" in line, line
    not_a_grant_nor_a_retry(line) if reason != "RATE_LIMIT_EXCEEDED" else None
    assert "WORKLOAD_IDENTITY_PROVIDER" not in line and "was not found: check the tag" not in line


def test_a_reason_that_is_not_googles_form_is_not_printed():
    line = iam(rpc(403, "PERMISSION_DENIED", "m", "\x1b[31mRED; rm -rf"), 403)
    assert "rm -rf" not in line and "\x1b" not in line


# Codes a pull can meet (the OCI distribution spec's, and Docker's additions); the upload codes are a push's.
PULL_CODES = [code for code in error_models.OCI_CODES if not code.startswith("BLOB_UPLOAD") and code != "UNKNOWN"]


@pytest.mark.parametrize("code", PULL_CODES)
def test_every_registry_code_a_pull_can_meet_has_its_own_line_in_json_and_in_the_daemons_words(code):
    """The registry's error model, read by code: from a token service's JSON and from the daemon's text alike."""
    status = {"UNAUTHORIZED": 401, "DENIED": 403, "TOOMANYREQUESTS": 429, "UNAVAILABLE": 503}.get(code, 404)
    words = code.lower().replace("_", " ")
    for line in (token_service(status, json.dumps({"errors": [{"code": code, "message": "the registry's words"}]})),
                 pull(f"Head \"https://us-docker.pkg.dev/v2/img-proj/tools/builder/manifests/1.4\": {words}: the registry's words")):
        assert not line.startswith(f"Pulling {IMAGE.display} failed ("), line  # the generic line: no cause named
        if code not in ("DENIED", "UNAUTHORIZED"):
            assert not any(grant in line for grant in GRANTS), line
