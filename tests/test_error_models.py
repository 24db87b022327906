"""pipe.error_models: Google's error answers (google.rpc.Status with ErrorInfo, OAuth's shape, text) and the registry's
(OCI `{"errors": [...]}` bodies, the Docker daemon's reports) read into one Failure: code, reason, status, message,
what the text names (project, service, image), and whether trying again can help.

The texts are real: quoted in /work/shared/reference/*.md and tests/data/google_errors.json (their ids in comments)."""

import json
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import error_models, untrusted
from pipe.error_models import OCI_CODES, Failure, from_google, from_registry
from pipe.retry import NETWORK, THROTTLED, UNAVAILABLE
from tests.support.budgets import EXAMPLE_DEADLINE_MS
from tests.support.inputs import ADVERSARIAL, BIG_TEXTS, with_examples

LIMITS = settings(max_examples=200, deadline=EXAMPLE_DEADLINE_MS)
KINDS = {None, THROTTLED, UNAVAILABLE, NETWORK}
METADATA_FROM_TEXT = {"consumer", "service", "title", "constraint", "uid", "bucket", "host", "path", "storage_code"}
HOST = re.compile(r"[a-z0-9.-]{1,253}(?::[0-9]{1,5})?")

from_registry("warm up: denied: x https://a.b/v2/c/manifests/d", None, "r")


def rpc_status(code: int, status: str, message: str, *details) -> dict:
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


def error_info(reason: str, **metadata) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com", "metadata": metadata}


# --- Google: google.rpc.Status ------------------------------------------------------------------------------------------

GET_ACCESS_TOKEN_DENIED = rpc_status(
    403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED", "domain": "iam.googleapis.com",
     "metadata": {"permission": "iam.serviceAccounts.getAccessToken"}})
IAM_API_DISABLED = rpc_status(
    403, "PERMISSION_DENIED",
    "IAM Service Account Credentials API has not been used in project 8667575547 before or it is disabled. Enable it by visiting "
    "https://console.developers.google.com/apis/api/iamcredentials.googleapis.com/overview?project=8667575547 then retry. If you "
    "enabled this API recently, wait a few minutes for the action to propagate to our systems and retry.",
    {"@type": "type.googleapis.com/google.rpc.Help"}, {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED"})
UNAUTHENTICATED = rpc_status(
    401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")


def test_error_info_gives_the_reason_and_its_metadata():
    failure = from_google(GET_ACCESS_TOKEN_DENIED, 403, "IAM Credentials")
    assert (failure.service, failure.status, failure.code, failure.reason) == ("IAM Credentials", 403, "PERMISSION_DENIED", "IAM_PERMISSION_DENIED")
    assert failure.metadata == {"permission": "iam.serviceAccounts.getAccessToken"}
    assert failure.get("permission") == "iam.serviceAccounts.getAccessToken" and failure.get("nothing", "-") == "-"
    assert failure.message.startswith("Permission 'iam.serviceAccounts.getAccessToken' denied") and failure.transient is None


def test_an_api_disabled_message_names_the_project_service_and_api():
    failure = from_google(IAM_API_DISABLED, None, "IAM Credentials")
    assert failure.status == 403  # from the body's code when the caller had none
    assert failure.reason == "SERVICE_DISABLED" and failure.transient is None
    assert failure.metadata == {"consumer": "8667575547", "title": "IAM Service Account Credentials API",
                                "service": "iamcredentials.googleapis.com"}


def test_error_info_metadata_wins_over_what_the_message_names():
    body = rpc_status(403, "PERMISSION_DENIED", IAM_API_DISABLED["error"]["message"],
                      error_info("SERVICE_DISABLED", service="iamcredentials.googleapis.com", consumer="projects/8667575547"))
    assert from_google(body, 403, "IAM").metadata["consumer"] == "projects/8667575547"


def test_metadata_values_become_text_and_only_twenty_are_kept():
    values = {f"k{i}": i for i in range(30)} | {"list": [1, "a"], "nested": {"a": "b\nc"}, "none": None}
    failure = from_google(rpc_status(403, "PERMISSION_DENIED", "x", error_info("SOMETHING", **values)), 403, "IAM")
    assert len(failure.metadata) == 20 and all(isinstance(v, str) for v in failure.metadata.values())
    assert failure.metadata["k0"] == "0" and failure.get("k0") == "0"
    failure = from_google(rpc_status(403, "PERMISSION_DENIED", "x", error_info("R", list=[1, "a"], nested={"a": "b\nc"}, none=None)), 403, "IAM")
    assert failure.metadata == {"list": '[1, "a"]', "nested": '{"a": "b\\nc"}', "none": ""}
    assert failure.get("none", "default") == "default"


def test_the_callers_status_wins_and_the_bodys_code_must_be_an_http_status():
    assert from_google(UNAUTHENTICATED, 400, "IAM").status == 400
    assert from_google(UNAUTHENTICATED, None, "IAM").status == 401
    for code in (True, 99, 600, "403", 403.0, None):
        assert from_google({"error": {"code": code, "status": "PERMISSION_DENIED"}}, None, "IAM").status is None


@pytest.mark.parametrize("details", [None, 5, True, "ErrorInfo", {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "X"},
                                     [None, 1, "x", []], [{"@type": "type.googleapis.com/google.rpc.Help", "reason": "NOT_THIS"}],
                                     [{"reason": "NO_TYPE"}], [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "metadata": [1]}]])
def test_details_of_any_shape_are_read_or_ignored(details):
    failure = from_google({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "m", "details": details}}, None, "IAM")
    assert failure.reason == "" and failure.metadata == {} and failure.code == "PERMISSION_DENIED" and failure.message == "m"


@pytest.mark.parametrize("body, status, reason, transient", [
    (rpc_status(503, "UNAVAILABLE", "The service is currently unavailable."), None, "", UNAVAILABLE),
    (rpc_status(500, "INTERNAL", "Internal error encountered."), None, "", UNAVAILABLE),
    (rpc_status(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."), None, "", UNAVAILABLE),
    (rpc_status(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute' of service "
                "'iamcredentials.googleapis.com' for consumer 'project_number:123'.",
                error_info("RATE_LIMIT_EXCEEDED", service="iamcredentials.googleapis.com", consumer="projects/123")),
     None, "RATE_LIMIT_EXCEEDED", THROTTLED),
    # A reason that names a setting is never retried, whatever the status.
    (rpc_status(403, "PERMISSION_DENIED", "Permission denied", error_info("SERVICE_DISABLED")), 503, "SERVICE_DISABLED", None),
    (rpc_status(429, "RESOURCE_EXHAUSTED", "x", error_info("RESOURCE_QUOTA_EXCEEDED")), None, "RESOURCE_QUOTA_EXCEEDED", None),
    (rpc_status(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", error_info("ACCESS_TOKEN_EXPIRED")),
     None, "ACCESS_TOKEN_EXPIRED", None),
    (rpc_status(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.",
                error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", service="iamcredentials.googleapis.com")),
     None, "ACCESS_TOKEN_SCOPE_INSUFFICIENT", None),
    (rpc_status(403, "PERMISSION_DENIED", "Request is prohibited by organization's policy. vpcServiceControlsUniqueIdentifier: "
                "c45c76a3f28239f8"), None, "SECURITY_POLICY_VIOLATED", None),
    (rpc_status(400, "FAILED_PRECONDITION", "Operation denied by org policy on resource: [constraints/iam.disableServiceAccountKeyCreation]"),
     None, "ORG_POLICY", None),
    (GET_ACCESS_TOKEN_DENIED, None, "IAM_PERMISSION_DENIED", None),
    (UNAUTHENTICATED, None, "", None),
])
def test_what_google_says_is_transient_and_what_is_not(body, status, reason, transient):
    failure = from_google(body, status, "IAM Credentials")
    assert (failure.reason, failure.transient) == (reason, transient)


def test_the_message_names_a_vpc_identifier_and_a_constraint():
    vpc = from_google(rpc_status(403, "PERMISSION_DENIED", "Request is prohibited by organization's policy. "
                                 "vpcServiceControlsUniqueIdentifier: c45c76a3f28239f8"), None, "IAM")
    assert vpc.get("uid") == "c45c76a3f28239f8"
    org = from_google(rpc_status(400, "FAILED_PRECONDITION", "Violates constraint constraints/iam.workloadIdentityPoolProviders"), None, "STS")
    assert org.get("constraint") == "constraints/iam.workloadIdentityPoolProviders"


def test_the_message_is_one_line_cut_to_the_text_bound():
    body = rpc_status(500, "INTERNAL", "first\n\n  second\tthird\r\n" + "x " * 60_000)
    failure = from_google(body, None, "IAM")
    assert failure.message.startswith("first second third x x") and "\n" not in failure.message
    assert len(failure.message) <= untrusted.MAX_TEXT


# --- Google: OAuth's shape (STS) and bodies that are neither ---------------------------------------------------------------

@pytest.mark.parametrize("error, description, status, transient", [
    ("invalid_grant", "The audience in ID Token [ari:cloud:bitbucket::workspace/0f3a9c1e-5b7d-2f4a-6c8e-0b1d3f5a7c9e] does not match "
     "the expected audience.", 400, None),
    ("invalid_target", 'The target service indicated by the "audience" parameters is invalid. This might either be because the pool '
     "or provider is disabled or deleted or because it doesn't exist.", 400, None),
    ("unauthorized_client", "The given credential is rejected by the attribute condition.", 400, None),
    ("invalid_request", "Scope(s) must be provided.", 400, None),
    ("quota_exceeded", "The request was throttled due to rate limit: sts.googleapis.com/requests", 429, THROTTLED),
    ("temporarily_unavailable", "The service is temporarily unavailable.", 503, UNAVAILABLE),
    ("server_error", "Internal error.", None, UNAVAILABLE),
])
def test_oauth_errors_give_code_and_description(error, description, status, transient):
    failure = from_google({"error": error, "error_description": description}, status, "Google STS")
    assert (failure.code, failure.message, failure.status, failure.transient) == (error, description, status, transient)


def test_an_oauth_error_code_is_cut():
    assert from_google({"error": "e" * 5000}, 400, "STS").code == "e" * 100


@pytest.mark.parametrize("body, message", [
    ({"message": "The service is currently unavailable."}, "The service is currently unavailable."),
    # Google's envelope cut short (not JSON): its message is still read, unescaped.
    ({"message": '{"error": {"code": 403, "message": "Permission \\"iam.serviceAccounts.getAccessToken\\" denied", "status": "PERM'},
     'Permission "iam.serviceAccounts.getAccessToken" denied'),
    ({"message": '{"error": {"message": "unterminated'}, '{"error": {"message": "unterminated'),
    ({"message": ["not", "text"]}, '["not", "text"]'),
    ({}, ""),
    ({"error": 5, "message": "x"}, "x"),
])
def test_a_body_that_is_neither_gives_its_text(body, message):
    assert from_google(body, 502, "IAM").message == message


# --- registries: OCI bodies -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, status, code, transient", [
    ('{"errors":[{"code":"UNAUTHORIZED","message":"not authenticated: No credential was supplied."}]}', 401, "UNAUTHORIZED", None),
    ('{"errors":[{"code":"UNAUTHORIZED","message":"authentication failed"}]}', 401, "UNAUTHORIZED", None),
    ('{"errors":[{"code":"DENIED","message":"Permission \\"artifactregistry.repositories.downloadArtifacts\\" denied on resource '
     '\\"projects/P/locations/L/repositories/R\\" (or it may not exist)"}]}', 403, "DENIED", None),
    ('{"errors":[{"code":"NAME_UNKNOWN","message":"Repository \\"containers\\" not found"}]}', 404, "NAME_UNKNOWN", None),
    ('{"errors":[{"code":"TOOMANYREQUESTS","message":"Quota exceeded"}]}', 403, "TOOMANYREQUESTS", THROTTLED),
    ('{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}', 503, "UNAVAILABLE", UNAVAILABLE),
    ('{"errors":[{"code":"denied","message":"lower case"}]}', None, "DENIED", None),
    ('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}', 500, "MANIFEST_UNKNOWN", None),  # a code beats a 5xx
    ('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}', 401, "UNAUTHORIZED", None),
])
def test_oci_error_bodies(body, status, code, transient):
    failure = from_registry(body, status, "the token service us-docker.pkg.dev")
    assert (failure.code, failure.status, failure.transient) == (code, status, transient)
    assert failure.message == json.loads(body)["errors"][0]["message"]


def test_several_oci_errors_are_joined_and_only_five_read():
    body = json.dumps({"errors": [{"code": "DENIED", "message": f"m{i}"} for i in range(8)] + ["not a dict"]})
    assert from_registry(body, 403, "r").message == "m0; m1; m2; m3; m4"


@pytest.mark.parametrize("body", ['{"errors": []}', '{"errors": "DENIED"}', '{"errors": ["DENIED"]}', '{"errors": {"code": "DENIED"}}'])
def test_oci_bodies_without_an_error_object_are_read_as_text(body):
    failure = from_registry(body, 403, "r")
    assert failure.message == body and failure.status == 403
    assert failure.code == "DENIED"  # no code in the body: the status's own, as the distribution spec pairs them


@pytest.mark.parametrize("text, code", [
    ('failed to resolve reference "us-docker.pkg.dev/p/r/i:1": pulling from host us-docker.pkg.dev failed with status code '
     "[manifests 1]: 403 Forbidden", "DENIED"),
    ("unexpected status from HEAD request to https://us-docker.pkg.dev/v2/p/r/i/manifests/1: 401 Unauthorized", "UNAUTHORIZED"),
    ('Head "https://us-docker.pkg.dev/v2/p/r/i/manifests/1": Forbidden', ""),  # a bare phrase is a proxy's CONNECT answer
    ("denied: requested access to the resource is denied", "DENIED"),
])
def test_a_bare_refusal_status_in_the_daemons_words_reads_as_its_code(text, code):
    assert from_registry(text, None, "the registry").code == code


def test_googles_envelope_from_a_registry_is_read_as_google():
    failure = from_registry(json.dumps(GET_ACCESS_TOKEN_DENIED), None, "the token service gcr.io")
    assert (failure.code, failure.reason, failure.status) == ("PERMISSION_DENIED", "IAM_PERMISSION_DENIED", 403)


def test_the_container_registry_api_disabled_body():  # cloud-robotics-core-44
    body = ('{"errors":[{"code":"DENIED","message":"Token exchange failed for project \'[project-name]\'. Please enable Google '
            "Container Registry API in Cloud Console at https://console.cloud.google.com/apis/api/containerregistry.googleapis.com/"
            'overview?project=[project-name] before performing this operation."}]}')
    failure = from_registry(body, 403, "the token service gcr.io")
    assert (failure.code, failure.reason, failure.get("service")) == ("DENIED", "SERVICE_DISABLED", "containerregistry.googleapis.com")


def test_billing_named_in_an_oci_body_gives_the_project():  # cup-174
    body = ('{"errors":[{"code":"DENIED","message":"This API method requires billing to be enabled. Please enable billing on project '
            "#24742942950 by visiting https://console.developers.google.com/billing/enable?project=24742942950 then retry. If you enabled "
            'billing for this project recently, wait a few minutes for the action to propagate to our systems and retry."}]}')
    failure = from_registry(body, None, "r")
    assert (failure.reason, failure.get("consumer"), failure.transient) == ("BILLING_DISABLED", "24742942950", None)


# --- registries: the Docker daemon's reports -------------------------------------------------------------------------------

# (text, code, status, transient, host, path): corpus ids in comments.
DAEMON_REPORTS = [
    ('Head "https://europe-west2-docker.pkg.dev/v2/my-project/ml/app/manifests/4.19.5": denied: Permission '
     '"artifactregistry.repositories.downloadArtifacts" denied on resource "projects/my-project/locations/europe-west2/repositories/ml" '
     "(or it may not exist)", "DENIED", None, None, "europe-west2-docker.pkg.dev", "my-project/ml/app"),  # registry-auth.md §5
    ('Head "http://127.0.0.1:5000/v2/proj/repo/hello/manifests/1": unauthorized: authentication failed',
     "UNAUTHORIZED", None, None, "127.0.0.1:5000", "proj/repo/hello"),  # registry-auth.md §9
    ("manifest for gcr.io/cadvisor/cadvisor:v0.41.0 not found: manifest unknown: Failed to fetch \"v0.41.0\" from request "
     '"/v2/cadvisor/cadvisor/manifests/v0.41.0".', "MANIFEST_UNKNOWN", None, None, "gcr.io", "cadvisor/cadvisor"),  # dockprom-242
    ('name unknown: Repository "containers" not found', "NAME_UNKNOWN", None, None, None, None),  # avocano-412
    ("error pulling image configuration: unknown blob", "BLOB_UNKNOWN", None, None, None, None),  # hub-feedback-2039
    ("Head \"https://us.gcr.io/v2/larder-prod/kubewise/manifests/0.11.11\": unknown: Project 'project:larder-prod' not found or deleted.",
     "UNKNOWN", None, None, "us.gcr.io", "larder-prod/kubewise"),  # kubewise-59
    ('denied: Permission denied for "latest" from request "/v2/android-battery-historian/stable/manifests/latest".',
     "DENIED", None, None, "", "android-battery-historian/stable"),  # battery-historian-131
    ("pull access denied for gcr.io/makisu-project/makisu, repository does not exist or may require 'docker login'",
     "", None, None, "gcr.io", "makisu-project/makisu"),  # makisu-45
    ('failed to resolve reference "gcr.io/kuar-demo/kuard-amd64:blue": unexpected status from HEAD request to '
     "https://gcr.io/v2/kuar-demo/kuard-amd64/manifests/blue: 412 Precondition Failed", "", 412, None, "gcr.io", "kuar-demo/kuard-amd64"),
    ("received unexpected HTTP status: 500 Internal Server Error", "", 500, UNAVAILABLE, None, None),  # conda-forge-status-102
    ("error pulling image configuration: received unexpected HTTP status: 502 Bad Gateway", "", 502, UNAVAILABLE, None, None),
    ('Get "https://gcr.io/v2/": EOF', "", None, NETWORK, "gcr.io", ""),  # gcp-community-1977-eof
    ('Get "https://us-east4-docker.pkg.dev/v2/k8s-artifacts-prod/images/ingress-nginx/kube-webhook-certgen/manifests/sha256:'
     '39c5b2e3310dc4264d638ad28d9d1d96c4cbb2b2dcfb52368fe4e3c63f61e10f": read tcp 10.183.231.70:43720->142.251.163.82:443: '
     "read: connection reset by peer", "", None, NETWORK, "us-east4-docker.pkg.dev", "k8s-artifacts-prod/images/ingress-nginx/kube-webhook-certgen"),
    ("toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: "
     "https://www.docker.com/increase-rate-limit", "TOOMANYREQUESTS", None, THROTTLED, None, None),  # activemq-artemis-docker-175
    ("toomanyrequests: Quota exceeded for quota metric 'Requests per project per region' and limit 'Requests per project per region per "
     "minute per region' of service 'artifactregistry.googleapis.com' for consumer 'project_number:388270116193'.",
     "TOOMANYREQUESTS", None, THROTTLED, None, None),  # kueue-11414
    ('Error: Status 405 trying to pull repository k8s-testimages/kubekins-test: "v1 Registry API is disabled. See '
     'https://cloud.google.com/container-registry/docs/support/deprecation-notices"', "", 405, None, None, None),  # kubernetes-48011
    ('Head "https://gcr.io/v2/distroless/base-debian12/manifests/latest": unauthorized: authentication failed',
     "UNAUTHORIZED", None, None, "gcr.io", "distroless/base-debian12"),  # distroless-1747
    ("Head \"https://gcr.io/v2/zenika-hub/alpine-chrome/manifests/124\": denied: This API method requires billing to be enabled.",
     "DENIED", None, None, "gcr.io", "zenika-hub/alpine-chrome"),  # coolify-11243
    # A number that looks like a status in the image reference: the code decides.
    ("manifest for us-docker.pkg.dev/my-project/tools/builder:502 not found: manifest unknown: manifest unknown",
     "MANIFEST_UNKNOWN", None, None, "us-docker.pkg.dev", "my-project/tools/builder"),
]


@pytest.mark.parametrize("text, code, status, transient, host, path", DAEMON_REPORTS)
def test_daemon_reports(text, code, status, transient, host, path):
    failure = from_registry(text, None, "the registry")
    assert (failure.code, failure.status, failure.transient) == (code, status, transient), failure
    if host is not None:
        assert (failure.get("host"), failure.get("path")) == (host, path), failure.metadata


def test_the_message_is_what_follows_the_earliest_code():
    failure = from_registry('Head "https://gcr.io/v2/p/i/manifests/1": denied: Permission denied for "1": unauthorized: x', None, "r")
    assert failure.code == "DENIED" and failure.message == 'Permission denied for "1": unauthorized: x'
    assert from_registry("denied", None, "r").code == "DENIED"
    assert from_registry("it was denied by policy", None, "r").code == ""  # a word, not the daemon's `: denied:`


def test_the_callers_status_wins_over_the_text():
    failure = from_registry("received unexpected HTTP status: 500 Internal Server Error", 429, "r")
    assert (failure.status, failure.transient) == (429, THROTTLED)
    assert from_registry("unauthorized: authentication failed", 500, "r").transient is None  # the code, not the daemon's 500


@pytest.mark.parametrize("text, status", [
    ("error parsing HTTP 412 response body: invalid character 'C' looking for beginning of value", 412),
    ("Error: Status 403 trying to pull repository oss-fuzz-base/base-builder", 403),
    ("failed to fetch oauth token: unexpected status: 401 Unauthorized", 401),
    ("received unexpected HTTP status: 503 Service Unavailable", 503),
    ("unexpected status from GET request to https://gcr.io/v2/token?service=gcr.io: 412 Precondition Failed", 412),
    ("manifest for gcr.io/p/app:502 not found: manifest unknown", None),
    ("dial tcp 74.125.204.82:443: i/o timeout", None),
])
def test_the_http_status_embedded_in_a_report(text, status):
    assert from_registry(text, None, "r").status == status


def test_cloud_storage_xml_errors_give_their_code_and_message():
    text = ("error pulling image configuration: error parsing HTTP 403 response body: invalid character '<' looking for beginning of "
            "value: \"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access denied.</Message><Details>"
            "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object.</Details></Error>\"")
    failure = from_registry(text, None, "r")  # runner-images-7659
    assert (failure.status, failure.get("storage_code"), failure.transient) == (403, "AccessDenied", None)
    assert failure.message == "Access denied. Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object."
    requester_pays = from_registry(  # kubernetes-62393
        "error pulling image configuration: error parsing HTTP 400 response body: invalid character '<' looking for beginning of value: "
        "\"<?xml version='1.0' encoding='UTF-8'?><Error><Code>UserProjectMissing</Code><Message>Bucket is a requester pays bucket but "
        'no user project provided.</Message></Error>"', None, "r")
    assert (requester_pays.reason, requester_pays.get("storage_code")) == ("USER_PROJECT_MISSING", "UserProjectMissing")
    billing = from_registry("<Error><Code>AccountProblem</Code><Message>Your Google account is not currently enabled for this "
                            "operation.</Message></Error>", 403, "r")  # k8s-app-engine-70
    assert billing.reason == "BILLING_DISABLED"


def test_a_layer_url_names_its_bucket():
    text = ("error pulling image configuration: Get https://storage.googleapis.com/artifacts.google-appengine.appspot.com/containers/"
            "images/sha256:6b9502deb56602a5daacd0bfb524d10fffc86e2aa4dc57e7f137d16640b9f4e9: dial tcp 172.217.12.144:443: i/o timeout")
    failure = from_registry(text, None, "r")  # sample-media-pwa-35
    assert (failure.get("bucket"), failure.get("host"), failure.transient) == ("artifacts.google-appengine.appspot.com", "storage.googleapis.com", NETWORK)


@pytest.mark.parametrize("text, gcr_shutdown", [
    ('Head "https://gcr.io/v2/oauth2l/oauth2l/manifests/latest": error parsing HTTP 412 response body: invalid character \'R\' looking '
     'for beginning of value: "Request Rejected: Please contact project owners"', True),  # oauth2l-172
    ('failed to resolve reference "gcr.io/kuar-demo/kuard-amd64:blue": unexpected status from HEAD request to '
     "https://gcr.io/v2/kuar-demo/kuard-amd64/manifests/blue: 412 Precondition Failed", True),  # kuard-59
    ('Head "https://eu.gcr.io/v2/p/i/manifests/1": 412 Precondition Failed', True),
    ('Head "https://us-docker.pkg.dev/v2/p/r/i/manifests/1": 412 Precondition Failed', False),
    ('Head "https://registry.example.com/v2/p/i/manifests/1": 412 Precondition Failed', False),
])
def test_a_412_from_container_registry_means_it_is_shut_down(text, gcr_shutdown):
    failure = from_registry(text, None, "r")
    assert failure.status == 412 and (failure.reason == "GCR_SHUTDOWN") is gcr_shutdown


def test_the_artifact_registry_api_disabled_report():  # validator-1753
    text = ('Head "https://gcr.io/v2/validator/validator/manifests/latest": denied: Artifact Registry API has not been used in project '
            "215900959124 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/"
            "artifactregistry.googleapis.com/overview?project=215900959124 then retry.")
    failure = from_registry(text, None, "r")
    assert (failure.code, failure.reason, failure.transient) == ("DENIED", "SERVICE_DISABLED", None)
    assert failure.metadata == {"consumer": "215900959124", "title": "Artifact Registry API", "service": "artifactregistry.googleapis.com",
                                "host": "gcr.io", "path": "validator/validator"}


def test_a_vpc_service_controls_denial():  # clusterfuzz-1642
    failure = from_registry("Get https://gcr.io/v2/clusterfuzz-images/base/manifests/c44bf3f-201902112042: denied: Request is prohibited "
                            "by organization's policy. vpcServiceControlsUniqueIdentifier: c45c76a3f28239f8", None, "r")
    assert (failure.reason, failure.get("uid"), failure.get("path")) == ("SECURITY_POLICY_VIOLATED", "c45c76a3f28239f8", "clusterfuzz-images/base")


@pytest.mark.parametrize("text", [
    "denied: Token exchange failed for project 'recommended-ludoj'. Please enable Google Container Registry API in Cloud Console at "
    "https://console.cloud.google.com/apis/api/containerregistry.googleapis.com/overview?project=recommended-ludoj before performing "
    "this operation.",  # recommend-games-server-322
    "unauthorized: You don't have the needed permissions to perform this operation, and you may have invalid credentials. To "
    "authenticate your request, follow the steps in: https://cloud.google.com/container-registry/docs/advanced-authentication",
    "toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: "
    "https://www.docker.com/increase-rate-limit",
])
def test_a_help_link_is_not_the_registry_named(text):
    assert from_registry(text, None, "the registry").get("host") in ("", "gcr.io")


@pytest.mark.parametrize("text", [
    "pull access denied for myorg/private, repository does not exist or may require 'docker login': denied: requested access to the "
    "resource is denied",
    'Error: Status 403 trying to pull repository oss-fuzz-base/base-builder: "Unable to access the repository: oss-fuzz-base/base-builder; '
    'please verify that it exists and you have permission to access it (no valid credential was supplied)."',  # oss-fuzz-474
])
def test_a_repository_without_a_registry_host_names_no_host(text):
    assert from_registry(text, None, "the registry").get("host") not in ("myorg", "oss-fuzz-base")


# --- properties -----------------------------------------------------------------------------------------------------------

def check_failure(failure: Failure, service: str, host_read: bool = True) -> None:
    assert isinstance(failure, Failure) and failure.service == service
    assert failure.transient in KINDS
    assert failure.status is None or isinstance(failure.status, int)
    assert isinstance(failure.code, str) and isinstance(failure.reason, str) and isinstance(failure.message, str)
    assert len(failure.message) <= 5 * untrusted.MAX_TEXT + 8 and len(failure.code) <= untrusted.MAX_TEXT
    assert all(isinstance(k, str) and isinstance(v, str) and len(v) <= untrusted.MAX_TEXT for k, v in failure.metadata.items())
    if host_read and failure.get("host"):  # read from the text (Google's ErrorInfo metadata may say anything)
        assert HOST.fullmatch(failure.get("host")), failure.metadata


PERMANENT_CODES = frozenset(OCI_CODES) - {"TOOMANYREQUESTS", "UNAVAILABLE", "UNKNOWN"}
STATUSES = st.one_of(st.none(), st.sampled_from([401, 403, 404, 412, 429, 500, 502, 503]), st.integers(-10, 1000))


@LIMITS
@given(st.one_of(ADVERSARIAL, st.lists(st.sampled_from([row[0] for row in DAEMON_REPORTS]), max_size=3).map(" | ".join)), STATUSES)
@with_examples(*BIG_TEXTS, rest=(None,))
@example(json.dumps({"errors": [{"code": "DENIED", "message": "x" * 60_000}] * 5}), 403)
@example("denied: " * 40_000, None)
@example('Head "https://' + "a" * 300_000, None)
def test_any_registry_text_gives_a_bounded_failure(text, status):
    failure = from_registry(text, status, "the registry")
    check_failure(failure, "the registry", host_read=untrusted.json_or_none(untrusted.text(text)) is None)
    if failure.code in PERMANENT_CODES and failure.reason != "RATE_LIMIT_EXCEEDED":
        assert failure.transient is None, failure


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40), ADVERSARIAL),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["code", "status", "message", "details", "@type", "reason", "metadata", "error", "x"]), children,
                        max_size=4)),
    max_leaves=12,
)
ERROR_INFO = st.fixed_dictionaries({"@type": st.just("type.googleapis.com/google.rpc.ErrorInfo"), "reason": JSON_VALUES,
                                    "metadata": st.one_of(JSON_VALUES, st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=30))})
GOOGLE_BODIES = st.one_of(
    st.dictionaries(st.sampled_from(["error", "error_description", "message", "errors"]), JSON_VALUES, max_size=3),
    st.builds(lambda code, status, message, details: {"error": {"code": code, "status": status, "message": message, "details": details}},
              JSON_VALUES, JSON_VALUES, st.one_of(ADVERSARIAL, JSON_VALUES), st.lists(st.one_of(ERROR_INFO, JSON_VALUES), max_size=3)),
    st.builds(lambda error, description: {"error": error, "error_description": description}, ADVERSARIAL, ADVERSARIAL),
)


@LIMITS
@given(GOOGLE_BODIES, STATUSES)
@with_examples(*({"message": t} for t in BIG_TEXTS), rest=(None,))
@example({"error": {"code": 403, "message": "has not been used in project " * 10_000, "details": [{"@type": "google.rpc.ErrorInfo",
          "metadata": {str(i): "v" * 3000 for i in range(100)}}]}}, 403)
@example({"error": "quota_exceeded", "error_description": '"message": "' * 20_000}, 429)
def test_any_google_body_gives_a_bounded_failure(body, status):
    failure = from_google(body, status, "Google STS")
    check_failure(failure, "Google STS", host_read=False)
    assert len(failure.message) <= untrusted.MAX_TEXT
    error = body.get("error")
    details = error.get("details") if isinstance(error, dict) and isinstance(error.get("details"), list) else []
    infos = [d for d in details if isinstance(d, dict) and str(d.get("@type", "")).endswith("google.rpc.ErrorInfo")]
    assert len(failure.metadata) <= 20 * len(infos) + len(METADATA_FROM_TEXT)  # at most 20 entries from each ErrorInfo


@LIMITS
@given(GOOGLE_BODIES, STATUSES)
def test_a_google_body_reads_the_same_from_a_registry(body, status):
    text = json.dumps(body)
    if untrusted.json_or_none(untrusted.text(text)) is None or not isinstance(body.get("error"), dict):
        return
    direct = from_google(json.loads(untrusted.text(text)), status, "r")
    via = from_registry(text, status, "r")
    assert (via.code, via.reason, via.status, via.message, via.transient) == (direct.code, direct.reason, direct.status, direct.message, direct.transient)


def test_error_models_exports_the_oci_codes_the_spec_lists():
    assert set(error_models.OCI_CODES) >= {"BLOB_UNKNOWN", "DENIED", "MANIFEST_UNKNOWN", "NAME_UNKNOWN", "TOOMANYREQUESTS", "UNAUTHORIZED",
                                           "UNSUPPORTED"}
