"""pipe.diagnose_registry: the registries' refusals explained in one line (a token service's answer, the Docker
daemon's report of a pull, the doctor's read of the manifest), by the registry's rules (the reasons every service
shares are tested in tests/test_diagnose.py)."""

import json

import pytest

from pipe import diagnose, diagnose_registry, error_models, parsers, retry
from pipe.error_models import from_registry
from tests.support.diagnosis import (
    COMMAND,
    GRANTS,
    IMAGE,
    PHRASES,
    PRINCIPAL,
    not_a_grant_nor_a_retry,
    pull,
    seen,
    token_service,
)
from tests.support.google_tools import GCLOUD, gcloud_verdict

# --- the registry's rules ---------------------------------------------------------------------------------------------

MISSING = {
    "daemon's manifest for": lambda: pull(PHRASES["daemon"]),
    "manifest unknown": lambda: pull("Error response from daemon: manifest unknown: manifest unknown"),
    "name unknown": lambda: pull("Error response from daemon: name unknown: The repository does not exist."),
    "oci MANIFEST_UNKNOWN": lambda: token_service(404, json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "gone"}]})),
    "oci NAME_UNKNOWN": lambda: token_service(404, json.dumps({"errors": [{"code": "NAME_UNKNOWN", "message": "no such name"}]})),
    "doctor's 404": lambda: seen(diagnose_registry.manifest_error(404, IMAGE, PRINCIPAL)),
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
    line = seen(diagnose_registry.pull_error(text.format(host=image.host, path=image.path), image, PRINCIPAL))
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
                   "proxy.corp.example, not us-docker.pkg.dev", "name"),
    "alert": ('Get "https://us-docker.pkg.dev/v2/": remote error: tls: handshake failure', "alert"),
    "old protocol": ('Get "https://us-docker.pkg.dev/v2/": remote error: tls: protocol version not supported', "alert"),
    "proxy scheme": ('Get "https://us-docker.pkg.dev/v2/": proxyconnect tcp: tls: first record does not look like a TLS handshake',
                     "scheme"),
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
    "name": ["The certificate presented for us-docker.pkg.dev is proxy.corp.example's", "exempt us-docker.pkg.dev from inspection"],
    "alert": ["The TLS handshake with us-docker.pkg.dev was aborted by the other side", "HTTPS_PROXY and NO_PROXY"],
    "scheme": ["HTTPS_PROXY names its proxy with https://", "http://HOST:PORT"],
}


@pytest.mark.parametrize("text, kind", CONNECTION.values(), ids=CONNECTION.keys())
def test_tls_plain_http_and_proxy_errors_are_the_network_path(text, kind):
    """Retrying never helps these, nor does a grant: the line says which part of the way to the registry to fix."""
    line = pull(f"Error response from daemon: {text}")
    for fragment in CONNECTION_SAYS[kind]:
        assert fragment in line, (fragment, line)
    not_a_grant_nor_a_retry(line)
    assert "check the tag" not in line


def test_a_v1_fallback_is_retried_and_names_the_budget_it_used():
    """The daemon falls back to v1 when the v2 lookup failed: a missing image, or a passing fault, which a retry rides
    out. The line names the budget only because the pull was retried within it."""
    text = ("Error response from daemon: v1 Registry API is disabled. If you are not explicitly using the v1 Registry API, it is "
            "possible your v2 image could not be found. Verify that your image is available, or retry with `dockerd "
            "--disable-legacy-registry`.")
    assert from_registry(text, None, "the registry").transient == retry.UNAVAILABLE
    line = pull(text)
    assert "RETRY_MAX_ATTEMPTS" in line and "IMAGE names an image or tag that does not exist" in line, line


def test_a_shut_down_container_registry_without_a_project_prints_no_command_gcloud_refuses():
    image = parsers.image("IMAGE", "gcr.io/tool:1")
    text = ('Error response from daemon: Head "https://gcr.io/v2/tool/manifests/1": unexpected status code 412 Precondition '
            "Failed: Container Registry is deprecated and shutting down, please use the auto migration tool")
    line = seen(diagnose_registry.pull_error(text, image, PRINCIPAL))
    assert "no longer serves" in line  # the shutdown is recognised
    commands = COMMAND.findall(line)
    assert all("--projects=" in command for command in commands if "upgrade migrate" in command), commands
    if GCLOUD is not None:
        assert all(gcloud_verdict(command)[0] for command in commands), commands


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


# --- a registry outside Google, a host where nothing answers: by class, in any wording ----------------------------------

def _pull_from(reference: str, text: str, transient: str | None = None) -> str:
    return seen(diagnose_registry.pull_error(text, parsers.image("IMAGE", reference), PRINCIPAL, transient))


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


# --- classes an independent review found with probes the suite had never seen ------------------------------------------

@pytest.mark.parametrize("text", [
    'failed to resolve reference "us-docker.pkg.dev/img-proj/tools/builder:1.4": pulling from host us-docker.pkg.dev '
    "failed with status code [manifests 1.4]: 403 Forbidden",
    'failed to resolve reference "us-docker.pkg.dev/img-proj/tools/builder:1.4": failed to authorize: failed to fetch oauth '
    "token: unexpected status from GET request to https://us-docker.pkg.dev/v2/token?scope=repository%3Aimg-proj%2Ftools"
    "%2Fbuilder%3Apull&service=us-docker.pkg.dev: 403 Forbidden",
    "unexpected status from HEAD request to https://us-docker.pkg.dev/v2/img-proj/tools/builder/manifests/1.4: 403 Forbidden",
])
def test_a_bare_403_in_containerds_words_is_a_refusal_with_its_two_causes(text):
    line = pull(text)
    assert "image or tag that does not exist" in line and "roles/artifactregistry.reader" in line, line


def test_iam_permission_denied_in_error_info_names_the_permission_and_repository_from_its_metadata():
    body = {"error": {"code": 403, "message": "The caller does not have permission", "status": "PERMISSION_DENIED", "details": [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED", "domain": "artifactregistry.googleapis.com",
         "metadata": {"permission": "artifactregistry.repositories.downloadArtifacts",
                      "resource": "projects/img-proj/locations/us/repositories/tools"}}]}}
    line = token_service(403, json.dumps(body))
    assert "denied artifactregistry.repositories.downloadArtifacts on projects/img-proj/locations/us/repositories/tools" in line
    assert "--role=roles/artifactregistry.reader" in line


@pytest.mark.parametrize("reference, host", [("registry.internal.exmaple.com/team/app:1", "registry.internal.exmaple.com"),
                                              ("ghrc.io/nokia/srlinux:1", "ghrc.io")])
def test_a_host_outside_google_that_does_not_exist_is_the_host_to_fix_never_a_rerun(reference, host):
    for resolver in (" on 169.254.169.254:53", " on [fd00::53]:53", ""):
        line = _pull_from(reference, f'Get "https://{host}/v2/": dial tcp: lookup {host}{resolver}: no such host', retry.NETWORK)
        assert f"The registry host {host} does not resolve" in line and "RETRY_MAX_ATTEMPTS" not in line, line
    assert "looks like a slip for ghcr.io" in _pull_from("ghrc.io/nokia/srlinux:1", 'lookup ghrc.io on 10.0.0.2:53: no such host')


@pytest.mark.parametrize("text, says", [
    ("failed to register layer: Error processing tar file(exit status 1): container id 1000000 cannot be mapped to a host id",
     "above 65535"),
    ("failed to register layer: ApplyLayer exit status 1 stdout:  stderr: Container ID 165536 cannot be mapped to a host ID",
     "above 65535"),
    ("failed to register layer: write /usr/lib/x86_64-linux-gnu/libcuda.so: no space left on device", "ran out of disk"),
    ("filesystem layer verification failed for digest sha256:" + "5" * 64, "arrived different from its digest"),
])
def test_a_failure_on_the_daemons_own_side_is_said_as_such(text, says):
    line = pull(text)
    assert says in line and "IMAGE" in line, line
    not_a_grant_nor_a_retry(line)


@pytest.mark.parametrize("page, says", [
    ("<html><head><title>Access Denied</title></head><body>Access to the requested URL has been blocked by your "
     "organization's web filtering policy.</body></html>", "a proxy or web filter"),
    ("<!DOCTYPE html><html><title>Blocked</title><p>This site is blocked by Zscaler.</p></html>", "a proxy or web filter"),
    ("<html><title>403 Forbidden</title><h2>Your client does not have permission to get URL <code>/v2/token</code> from "
     "this server.</h2></html>", "Google's front end refused this client"),
])
def test_a_web_page_refusing_the_token_request_is_who_sent_it_not_a_grant(page, says):
    line = token_service(403, page)
    assert says in line, line
    not_a_grant_nor_a_retry(line)


@pytest.mark.parametrize("text, says", [
    ('Get "https://registry.internal.example.com/v2/": tls: failed to verify certificate: x509: certificate signed by '
     "unknown authority", "a certificate the Docker daemon does not trust"),
    ('Get "https://registry.internal.example.com/v2/": http: server gave HTTP response to HTTPS client', "serves plain http"),
])
def test_tls_trouble_at_a_registry_outside_google_is_that_registrys(text, says):
    line = _pull_from("registry.internal.example.com/team/app:1", text)
    assert says in line and "publicly trusted certificate" in line and "Google's registries" not in line, line


def test_a_remote_repositorys_upstream_limit_is_no_google_quota():
    line = _pull_from("europe-docker.pkg.dev/acme-prod/dockerhub-remote/library/python:3.12",
                      'Head "https://europe-docker.pkg.dev/v2/acme-prod/dockerhub-remote/library/python/manifests/3.12": unknown: '
                      'failed to fetch "3.12" from upstream: toomanyrequests: You have reached your unauthenticated pull rate limit.')
    assert "upstream credentials" in line and "Quotas" not in line, line


@pytest.mark.parametrize("text, says", [
    ("no match for platform in manifest: not found", "has no variant for the docker service's platform"),
    ("unsupported media type application/vnd.in-toto+json", "application/vnd.in-toto+json, not a container image"),
    ('Encountered remote "application/vnd.cncf.helm.config.v1+json"(unknown) when fetching', "vnd.cncf.helm.config.v1+json"),
    ("failed to register layer: ApplyLayer exit status 1 stdout:  stderr: lchown /home/app/.cache/pip: invalid argument",
     "above 65535"),
])
def test_what_the_image_is_and_where_it_unpacks_in_containerds_and_dockers_other_words(text, says):
    line = pull(text)
    assert says in line and "IMAGE" in line, line
    not_a_grant_nor_a_retry(line)


def test_windows_words_for_a_failed_connect_are_a_network_failure():
    text = ('Get "https://gcr.io/v2/": dial tcp 74.125.143.82:443: connectex: A connection attempt failed because the '
            "connected party did not properly respond after a period of time")
    assert retry.of_daemon(text) == retry.NETWORK


def test_a_registry_outside_googles_own_pull_limit_is_no_google_quota():
    line = _pull_from("registry-1.docker.io/library/python:3.12", 'Head "https://registry-1.docker.io/v2/library/python/'
                      'manifests/3.12": toomanyrequests: You have reached your unauthenticated pull rate limit.', retry.THROTTLED)
    assert line.startswith("registry-1.docker.io is limiting pulls") and "Quotas" not in line and "Artifact Registry" in line, line


def test_a_registry_outside_google_asking_for_basic_auth_is_the_google_token_it_does_not_take():
    line = _pull_from("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1", 'Head "https://123456789012.dkr.ecr.eu-west-1.'
                      'amazonaws.com/v2/app/manifests/1": no basic auth credentials')
    assert "not a Google registry" in line and "REGISTRIES" in line, line



def test_a_denial_on_the_key_that_encrypts_the_repository_is_the_keys_never_a_registry_role():
    for text in ('denied: Permission \'cloudkms.cryptoKeyVersions.useToDecrypt\' denied on resource '
                 "'projects/kms-proj/locations/us/keyRings/ar/cryptoKeys/tools' (or it may not exist).",
                 "unknown: The Cloud KMS key projects/kms-proj/locations/us/keyRings/ar/cryptoKeys/tools/cryptoKeyVersions/1 is "
                 "not enabled, current state is: DISABLED."):
        line = pull(f'Head "https://us-docker.pkg.dev/v2/img-proj/tools/builder/manifests/1.4": {text}')
        assert "customer-managed Cloud KMS key" in line and "roles/cloudkms.cryptoKeyEncrypterDecrypter" in line, line
        assert "roles/artifactregistry" not in line and "add-iam-policy-binding" not in line


def test_a_denial_on_another_repository_is_a_virtual_repositorys_upstream_read_by_the_service_agent():
    line = pull('Head "https://us-docker.pkg.dev/v2/img-proj/tools/builder/manifests/1.4": denied: Permission '
                '"artifactregistry.repositories.downloadArtifacts" denied on resource '
                '"projects/shared-images/locations/us/repositories/base" (or it may not exist)')
    assert "a repository IMAGE does not name" in line and "service agent" in line, line
    assert "roles/artifactregistry.reader on projects/shared-images/locations/us/repositories/base" in line
    assert f"does, not {PRINCIPAL}" in line and "add-iam-policy-binding" not in line


def test_a_tag_a_cleanup_policy_removed_is_a_tag_to_change():
    line = pull('Head "https://gcr.io/v2/img-proj/builder/manifests/v1": unknown: Tag v1 was deleted or has expired. To pull, '
                "revive via time machine")
    assert "was deleted, by a person or a cleanup policy" in line and "IMAGE" in line, line


def test_no_credentials_arriving_at_the_right_host_is_a_proxy_dropping_them():
    line = pull('Head "https://us-docker.pkg.dev/v2/img-proj/tools/builder/manifests/1.4": denied: Unauthenticated request. '
                'Unauthenticated requests do not have permission "artifactregistry.repositories.downloadArtifacts" on resource '
                '"projects/img-proj/locations/us/repositories/tools" (or it may not exist)')
    assert "dropped the Authorization header" in line and "NO_PROXY" in line and "add-iam-policy-binding" not in line, line


@pytest.mark.parametrize("text, says", [
    ("failed to register layer: Error processing tar file(exit status 1): mknod /dev/null: operation not permitted", "device files"),
    ('failed commit on ref "layer-sha256:' + "a" * 64 + '": commit failed: failed size validation: 1873412 != 27145615: failed '
     "precondition", "arrived different from its digest"),
])
def test_more_of_the_daemons_own_failures(text, says):
    line = pull(text)
    assert says in line, line



def test_a_located_artifact_registry_host_that_does_not_resolve_is_most_likely_its_location():
    line = seen(diagnose_registry.pull_error(
        'Get "https://me-central3-docker.pkg.dev/v2/": dial tcp: lookup me-central3-docker.pkg.dev on 169.254.169.254:53: no such host',
        parsers.image("IMAGE", "me-central3-docker.pkg.dev/img-proj/tools/builder:1.4"), PRINCIPAL, retry.NETWORK))
    assert line.index("me-central3 is no location") < line.index("RETRY_MAX_ATTEMPTS"), line
    [command] = COMMAND.findall(line)
    if GCLOUD:
        assert gcloud_verdict(command)[0], command


@pytest.mark.parametrize("text, says", [
    ("failed to register layer: max depth exceeded", "more layers than the Docker daemon stacks"),
    ("failed to register layer: lsetxattr security.capability /usr/bin/ping: operation not supported", "security.capability"),
    ("failed to register layer: Error processing tar file(exit status 1): archive/tar: invalid tar header", "most likely zstd"),
    ("failed to extract layer sha256:" + "b" * 64 + ": failed to get stream processor for "
     "application/vnd.docker.image.rootfs.diff.tar.zstd: no processor for media-type: unknown", "most likely zstd"),
    ("image with reference us-docker.pkg.dev/img-proj/tools/builder:1.4 was found but does not match the specified platform: "
     "wanted linux/amd64, actual: linux/arm64/v8", "has no variant for the docker service's platform"),
])
def test_a_fourth_rounds_daemon_side_classes(text, says):
    line = pull(text)
    assert says in line and "IMAGE" in line, line
    not_a_grant_nor_a_retry(line)


def test_a_trailing_unknown_is_containerds_error_class_and_the_words_before_it_are_kept():
    failure = from_registry("failed to get stream processor: no processor for media-type: unknown", None, "the registry")
    assert failure.code == "" and "no processor for media-type" in failure.message


def test_an_expired_certificate_at_a_registry_outside_google_is_that_registrys_to_renew():
    line = _pull_from("registry.internal.example.com/team/app:1", 'Get "https://registry.internal.example.com/v2/": x509: '
                      "certificate has expired or is not yet valid: current time 2026-12-07T10:15:02Z is after 2026-11-30T23:59:59Z")
    assert "owner must renew it" in line and "Google's certificates" not in line, line
