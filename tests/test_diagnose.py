"""pipe.diagnose: what every explanation of a refusal shares, tried on every channel (STS, IAM Credentials, a token
service, the Docker daemon): Google's words on one line, the reasons every service gives (read before any words),
a refused location, transient trouble and the retry budget, and every gcloud command any line prints.

Failures are built directly (pipe.error_models) or given to the public functions (pipe.diagnose_google,
pipe.diagnose_registry) as Google, a token service or the Docker daemon sends them. What is checked is the line: one
printable line, the resource the answer names, a fix that fits the cause (never a grant when the cause is not a
missing grant, never the retry budget for what is not retried), and every gcloud command in it accepted by the real
gcloud. Each service's own rules are tested in tests/test_diagnose_google.py and tests/test_diagnose_registry.py."""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import diagnose, diagnose_google, diagnose_registry, parsers, retry
from pipe.error_models import Failure, from_google
from tests.support.budgets import EXAMPLE_DEADLINE_MS
from tests.support.diagnosis import (
    CFG,
    COMMAND,
    CONTEXT,
    GRANTS,
    HOP,
    IMAGE,
    PHRASES,
    PRINCIPAL,
    SA,
    STEP,
    iam,
    not_a_grant_nor_a_retry,
    pull,
    rpc,
    seen,
    settings_for,
    sts,
    token_service,
)
from tests.support.google_tools import GCLOUD, gcloud_verdict
from tests.support.inputs import ADVERSARIAL, BIG_TEXTS, with_examples
from tests.test_diagnose_registry import MISSING

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
                                 "to pubsub.googleapis.com", "unique ID VPC-UID-4f2a"],
    "RESOURCE_USAGE_RESTRICTION_VIOLATED": ORG_POLICY,
    "LOCATION_POLICY_VIOLATED": ORG_POLICY,
    "ORG_POLICY": ORG_POLICY,
    "CONSUMER_INVALID": PROJECT_MISSING,
    "RESOURCE_PROJECT_INVALID": PROJECT_MISSING,
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT": ["scopes do not cover", "keep https://www.googleapis.com/auth/cloud-platform"],
    "ACCESS_TOKEN_EXPIRED": ["expired", "rerun the step"],  # whose token, by service: pipe.diagnose._token_expired
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


def expected(reason: str, channel: str) -> list[str]:
    """A reason's line on a channel: at STS no access token exists yet, so an expired token is the step's."""
    if reason == "ACCESS_TOKEN_EXPIRED" and channel == "sts":
        return ["step's OIDC token is expired or not yet valid", "run the pipe earlier in the step"]
    return REASON_LINES[reason]


def test_every_reason_has_its_expected_line():
    assert set(REASON_LINES) == set(diagnose.REASONS)


@pytest.mark.parametrize("reason", diagnose.REASONS)
def test_each_reason_names_the_resource_from_its_metadata_and_the_fix(reason):
    failure = Failure("IAM Credentials", 403, "PERMISSION_DENIED", reason, message="Google's own words.", metadata=dict(METADATA))
    line = seen(diagnose.REASONS[reason](failure, CONTEXT))
    for fragment in REASON_LINES[reason]:
        assert fragment in line, (fragment, line)
    assert "HTTP 403 PERMISSION_DENIED: Google's own words." in line  # what Google said, with the explanation
    assert "img-proj" not in line  # the project the answer names, not IMAGE's
    not_a_grant_nor_a_retry(line)


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
    for fragment in expected(reason, channel):
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


# --- a project that is gone, and Google's reason read before the words ----------------------------------------------

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
        assert all(fragment in line for fragment in expected(reason, channel)), line
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
    "manifest 503": lambda: seen(diagnose_registry.manifest_error(503, IMAGE, PRINCIPAL)),
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
    **{f"manifest {status}": (lambda status=status: seen(diagnose_registry.manifest_error(status, IMAGE, PRINCIPAL))) for status in (400, 401, 403, 404)},
}


@pytest.mark.parametrize("explain", PERMANENT.values(), ids=PERMANENT.keys())
def test_a_permanent_failure_never_mentions_the_retry_budget(explain):
    line = explain()
    assert "RETRY_MAX_ATTEMPTS" not in line and "RETRY_MAX_TIME" not in line and "even after retries" not in line, line


# --- a refused location, and every route on any input -----------------------------------------------------------------

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


# Whatever Google, a registry or the daemon sends, every route of the diagnosis reads it within the example deadline
# and says one printable, bounded line: the rules' patterns (reason phrases, not-found wordings, web pages, layers)
# meet long runs, glued fragments and megabytes here, not only the examples above.
ROUTES = {
    "pull": lambda text: diagnose_registry.pull_error(text, IMAGE, PRINCIPAL),
    "token service": lambda text: diagnose_registry.token_service_error(403, text, IMAGE, PRINCIPAL, "us-docker.pkg.dev"),
    "sts": lambda text: diagnose_google.sts_error({"error": "invalid_grant", "error_description": text}, CFG, STEP, 400),
    "iam": lambda text: diagnose_google.iam_error({"message": text}, CFG, STEP, status=404),
}
# What the rules look for before a run of the server's text: each rule's own trigger, so its pattern meets the rest.
TRIGGERS = ['Get "https://ghrc.io/v2/": ', "dial tcp: lookup ghrc.io on ", "failed to register layer: ",
            "failed to register layer: lchown ", "remote error: tls: ", "x509: certificate is valid for ",
            'unknown: failed to fetch "1" from upstream: ', "unsupported media type application/vnd.",
            "Permission 'cloudkms.", "unknown: The Cloud KMS key ", "Tag ", "The mapped attribute '",
            "Failed to evaluate the attribute condition", "The size of mapped attribute ", "lsetxattr ",
            "Project #", "proxyconnect tcp: "]
PREFIXES = st.sampled_from(["", 'Head "https://gcr.io/v2/p/app/manifests/1": ', "error pulling image configuration: ",
                            'failed to resolve reference "gcr.io/p/app:1": ', "<!DOCTYPE html><html>", "Error: image ", *TRIGGERS])


@settings(max_examples=150, deadline=EXAMPLE_DEADLINE_MS)
@given(route=st.sampled_from(list(ROUTES)), prefix=PREFIXES, text=ADVERSARIAL)
@with_examples(*BIG_TEXTS, rest=("pull", ""))
def test_every_route_says_one_bounded_line_whatever_it_is_sent(text, route, prefix):
    line = seen(ROUTES[route](prefix + text))
    assert len(line) < QUOTED + 2000, len(line)  # Google's words at most QUOTED, the rest the pipe's own and short names


@settings(max_examples=120, deadline=EXAMPLE_DEADLINE_MS)
@given(route=st.sampled_from(list(ROUTES)), trigger=st.sampled_from(TRIGGERS), text=st.sampled_from(BIG_TEXTS))
def test_every_rules_trigger_followed_by_megabytes_says_one_bounded_line_in_time(text, route, trigger):
    line = seen(ROUTES[route](trigger + text))
    assert len(line) < QUOTED + 2000, len(line)


# --- every command printed runs through gcloud ---------------------------------------------------------------------------

def command_path(command: str) -> tuple[str, ...]:
    """gcloud's command group and verb: the words before the first argument (a resource, a value or a flag)."""
    words = command.split()
    return tuple(next((words[:i] for i, w in enumerate(words) if w.startswith("-") or re.search(r"[./@={]", w)), words))


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed")
def test_gcloud_accepts_every_kind_of_command_these_lines_print():
    """The lines of the tests above and of the missing images (tests/test_diagnose_registry.py), each kind of command
    once (the fullest), run with no account: gcloud parses and validates every argument, then stops at the missing
    account."""
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


def test_a_vpc_service_controls_ingress_rule_names_who_the_refused_request_spoke_for():
    """At STS and IAM Credentials the request carries the step's federated identity (the service account's token does
    not exist yet): the ingress rule must admit it; at the registry, the service account whose token it is."""
    body = rpc(403, "PERMISSION_DENIED", "Request is prohibited by organization's policy.", "SECURITY_POLICY_VIOLATED", **METADATA)
    for line in (sts(body, 403), iam(body, 403)):
        assert "admits the step's federated identity (principalSet://iam.googleapis.com/" in line and PRINCIPAL not in line, line
    assert f"admits {PRINCIPAL} to" in token_service(403, json.dumps(body))



def test_an_expired_token_is_said_by_whose_it_is():
    body = rpc(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", "ACCESS_TOKEN_EXPIRED")
    assert "step's OIDC token is expired" in sts(body, 401)
    assert "federated token expired" in iam(body, 401) and "ACCESS_TOKEN_LIFETIME" not in iam(body, 401)
    assert "raise ACCESS_TOKEN_LIFETIME" in token_service(401, json.dumps(body))
    layer = ("error pulling image configuration: error parsing HTTP 400 response body: \"<?xml version='1.0' encoding='UTF-8'?>"
             "<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message><Details>Request signature "
             "expired at: 2026-12-07T10:00:00+00:00</Details></Error>\"")
    assert "signed URL a layer was downloaded from expired" in pull(layer)
