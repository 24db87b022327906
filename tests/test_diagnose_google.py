"""pipe.diagnose_google: Google STS's and IAM Credentials' refusals explained in one line, by their own rules (the
reasons every service shares are tested in tests/test_diagnose.py)."""

import pytest

from tests.support.diagnosis import (
    CLAIMS,
    COMMAND,
    GRANTS,
    HOP,
    PHRASES,
    REPOSITORY_UUID,
    RUN_URL,
    SA,
    iam,
    not_a_grant_nor_a_retry,
    rpc,
    settings_for,
    sts,
)
from tests.support.google_tools import GCLOUD, gcloud_verdict

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


# --- Google STS ------------------------------------------------------------------------------------------------------

def test_an_issuer_that_differs_from_its_discovery_document_is_set_to_the_tokens_iss():
    line = sts({"error": "invalid_grant", "error_description": "`issuer` claim in OIDC discovery document does not match the "
                "issuer specified in the request."}, 400)
    assert f"--issuer-uri={CLAIMS['iss']}" in line and "trailing slash" in line, line
    assert "--allowed-audiences" not in line and not any(grant in line for grant in GRANTS), line


# --- a web page where the API should answer ----------------------------------------------------------------------------

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
    for line in (iam({"message": page}, 403), sts({"message": page}, 403)):
        assert "no API is at" not in line and "Google's front end refused this client" in line, line


@pytest.mark.parametrize("page", ["<html><title>ERROR: The requested URL could not be retrieved</title><p>Access control "
                                  "configuration prevents your request from being allowed at this time.</p></html>",
                                  "<!DOCTYPE html><html><title>Blocked</title><p>This site is blocked by Zscaler.</p></html>"])
def test_a_proxys_block_page_at_sts_or_iam_is_the_proxy_not_the_provider(page):
    for line in (iam({"message": page}, 403), sts({"message": page}, 403)):
        assert "a proxy or web filter" in line and "HTTPS_PROXY" in line and "--allowed-audiences" not in line, line
        assert "add-iam-policy-binding" not in line


# --- classes an independent review found with probes the suite had never seen ------------------------------------------

def _bad_request(field: str, description: str) -> dict:
    return {"error": {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT", "details": [
        {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": field, "description": description}]}]}}


def test_the_field_google_names_in_a_bad_request_decides_the_variable_to_check():
    assert "ID_TOKEN_AUDIENCE" in iam(_bad_request("audience", "Invalid audience."), 400, method="generateIdToken")
    line = iam(_bad_request("scope", "Invalid scope."), 400)
    assert "check ACCESS_TOKEN_SCOPES" in line, line
    line = iam(_bad_request("lifetime", "Access tokens can not have lifetimes of more than 1 hour."), 400,
               cfg=settings_for(ACCESS_TOKEN_LIFETIME="7200s"))
    assert "constraints/iam.allowServiceAccountCredentialLifetimeExtension" in line and "ACCESS_TOKEN_SCOPES" not in line, line


def test_an_account_id_in_the_wrong_form_points_at_the_account_first():
    line = iam(rpc(400, "INVALID_ARGUMENT", f"Invalid form of account ID {SA}. Should be [Gaia ID |Email |Unique ID |] of the account"), 400)
    assert "SERVICE_ACCOUNT and DELEGATES are plain service account e-mails" in line and "ACCESS_TOKEN_SCOPES" not in line, line


def test_the_project_a_policy_refusal_names_is_the_one_checked():
    body = {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "Request is disallowed by organization's "
                      "constraints/gcp.restrictServiceUsage constraint for 'projects/555666777888' attempting to use service "
                      "'iamcredentials.googleapis.com'.", "details": [{"@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                      "violations": [{"type": "constraints/gcp.restrictServiceUsage", "subject": "orgpolicy:projects/555666777888"}]}]}}
    line = iam(body, 403)
    assert "--project=555666777888" in line and "--project=123456789012" not in line, line


@pytest.mark.parametrize("words, attribute", [("The mapped attribute 'google.subject' must be of type STRING.", "google.subject"),
                                              ("The mapped attribute 'attribute.branch' must not be empty.", "attribute.branch")])
def test_a_mapping_google_cannot_use_names_the_attribute_and_the_mapping_fix(words, attribute):
    line = sts({"error": "unauthorized_client", "error_description": words}, 400)
    assert f"makes {attribute} something Google cannot use" in line and "--attribute-mapping=" in line, line


def test_an_oversized_attribute_is_the_one_google_names():
    line = sts({"error": "invalid_grant", "error_description": "The size of mapped attribute attribute.branch_name exceeds the "
                "127 bytes limit."}, 400)
    assert "attribute.branch_name is the one Google names" in line and "sub is" not in line, line


def test_an_unreachable_bitbucket_issuer_is_the_providers_issuer_or_passing_trouble():
    line = sts({"error": "invalid_grant", "error_description": "Error connecting to the given credential's issuer."}, 400)
    assert "issuer URI is exactly https://api.bitbucket.org/" in line and "rerun the step" in line, line


@pytest.mark.parametrize("words", ["ID Token expired at 1790003600. Token used too late, current time is 1790004511.",
                                   "ID Token is not yet valid: issued at 1790000000, current time 1789999874.",
                                   "ID Token issued at 1790000000 is stale to sign-in."])
def test_at_sts_an_expired_or_early_token_is_the_steps_never_the_access_tokens(words):
    line = sts({"error": "invalid_grant", "error_description": words}, 400)
    assert "step's OIDC token is expired or not yet valid" in line and "ACCESS_TOKEN_LIFETIME" not in line, line


def test_at_sts_a_signature_or_keys_refusal_is_the_providers_keys():
    line = sts({"error": "invalid_grant", "error_description": "Invalid JWT signature: the ID Token could not be verified with "
                "the JWKS configured on the provider."}, 400)
    assert "keys.json" in line and "uploaded keys" in line, line


def test_a_condition_that_cannot_be_evaluated_names_the_missing_claim_and_has():
    line = sts({"error": "unauthorized_client", "error_description": "Failed to evaluate the attribute condition: no such key: "
                "branchName"}, 400)
    assert "reads branchName" in line and "has(assertion.branchName)" in line, line
    [command] = COMMAND.findall(line)  # a command to run as printed: no placeholder in it
    assert command.endswith('--format="value(attributeCondition)"'), command
    if GCLOUD:
        assert gcloud_verdict(command)[0], command


def test_the_new_sts_lines_commands_run_in_gcloud():
    lines = [sts({"error": "unauthorized_client", "error_description": "The mapped attribute 'google.subject' must be of type "
                  "STRING."}, 400),
             sts({"error": "invalid_grant", "error_description": "Error connecting to the given credential's issuer."}, 400)]
    commands = [command for line in lines for command in COMMAND.findall(line)]
    assert len(commands) == 3, commands
    if GCLOUD:
        assert all(gcloud_verdict(command)[0] for command in commands), commands


def test_a_json_not_found_from_sts_is_the_provider():
    line = sts({"error": {"code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found."}}, 404)
    assert "found no active workload identity provider" in line and "WORKLOAD_IDENTITY_PROVIDER" in line, line


def test_a_lifetime_field_violation_is_the_lifetime_whatever_its_description_names():
    line = iam(_bad_request("lifetime", "Lifetime must be at most 3600s unless the service account is listed in "
                            "constraints/iam.allowServiceAccountCredentialLifetimeExtension."), 400,
               cfg=settings_for(ACCESS_TOKEN_LIFETIME="7200s"))
    assert "ACCESS_TOKEN_LIFETIME to 3600s or less" in line and "organization policy administrator" not in line, line


def test_a_missing_account_google_names_from_delegates_is_said_to_be_in_delegates():
    line = iam(rpc(404, "NOT_FOUND", f"Not found; Gaia id not found for email {HOP}"), 404, cfg=settings_for(DELEGATES=HOP))
    assert f"{HOP}, listed in DELEGATES, was not found" in line and "check that e-mail in DELEGATES" in line, line


def test_a_user_project_refused_outside_cloud_storage_is_the_service_usage_grant_google_names():
    body = rpc(403, "PERMISSION_DENIED", "Caller does not have required permission to use project my-proj. Grant the caller the "
               "roles/serviceusage.serviceUsageConsumer role.", "USER_PROJECT_DENIED", consumer="projects/my-proj")
    line = iam(body, 403)
    assert "roles/serviceusage.serviceUsageConsumer" in line and "requester pays" not in line, line
    [command] = COMMAND.findall(line)
    assert command.startswith("gcloud projects add-iam-policy-binding my-proj") and "principalSet://" in command
    if GCLOUD:
        assert gcloud_verdict(command)[0], command
