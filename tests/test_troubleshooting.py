"""The README's Troubleshooting table is checked against what the pipe really says for each of Google's answers."""

import re
from dataclasses import replace
from pathlib import Path

import pytest

from pipe import config, diagnose, oidc, parsers

ROOT = Path(__file__).resolve().parent.parent
PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"
CFG = config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": "puller@my-proj.iam.gserviceaccount.com"}, Path("/b"))
STEP = oidc.StepToken("header.payload.sig", {"iss": "https://issuer.example", "aud": "ari:cloud:bitbucket::workspace/x",
                                              "repositoryUuid": "{r}", "branchName": "main", "iat": 1, "exp": 2})
DENIED = ('denied: Permission "artifactregistry.repositories.downloadArtifacts" denied on resource '
          '"projects/p-1234/locations/us/repositories/r" (or it may not exist)')
ANONYMOUS = ('denied: Unauthenticated request. Unauthenticated requests do not have permission '
             '"artifactregistry.repositories.downloadArtifacts" on resource "projects/p-1234/locations/us/repositories/r" (or it may not exist)')


def sts(code, text, status=400):
    return lambda: diagnose.sts_error({"error": code, "error_description": text}, CFG, STEP, status)


def iam(code, message, reason="", cfg=CFG):
    body = {"error": {"code": code, "message": message, "details": [{"reason": reason}] if reason else []}}
    return lambda: diagnose.iam_error(body, cfg, STEP, status=code)


def registry(text):
    image = parsers.image("IMAGE", "us-docker.pkg.dev/p-1234/r/i:1")
    return lambda: diagnose.pull_error(text, image, "serviceAccount:puller@my-proj.iam.gserviceaccount.com")


# Google's answer as the README's first column starts it → how the pipe is fed that answer.
ANSWERS = {
    'Invalid value for "audience"': sts("invalid_request", 'Invalid value for "audience". '
                                                          'This value should be the full resource name of the Identity Provider.'),
    "The target service indicated": sts("invalid_target", 'The target service indicated by the "audience" parameters is invalid.'),
    "The audience in ID Token": sts("invalid_grant", "The audience in ID Token [x] does not match the expected audience."),
    "The audience in JWT": sts("invalid_grant", "The audience in JWT does not match the expected values."),
    "The issuer in ID Token": sts("invalid_grant", "The issuer in ID Token https://x does not match the expected ones: https://y"),
    "ID Token issued at": sts("invalid_grant", "ID Token issued at 1 is stale to sign-in."),
    "Unable to parse the ID Token": sts("invalid_grant", "Unable to parse the ID Token."),
    "Unable to verify the ID Token signature": sts("invalid_grant", "Unable to verify the ID Token signature."),
    "Error connecting to the given credential's issuer": sts("invalid_grant", "Error connecting to the given credential's issuer."),
    "The given credential is rejected": sts("unauthorized_client", "The given credential is rejected by the attribute condition."),
    "The size of mapped attribute": sts("invalid_request", "The size of mapped attribute exceeds the 127 bytes limit."),
    "Scope(s) must be provided": sts("invalid_request", "Scope(s) must be provided."),
    "The request was throttled due to rate limit": sts(
        "quota_exceeded", "The request was throttled due to rate limit: sts.googleapis.com/requests. Please retry after a few seconds.", 429),
    "The service is currently unavailable": lambda: diagnose.sts_error(
        {"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}, CFG, STEP),
    "Permission 'iam.serviceAccounts.getAccessToken'": iam(403, "Permission 'iam.serviceAccounts.getAccessToken' denied on resource "
                                                                "(or it may not exist).", "IAM_PERMISSION_DENIED"),
    "The caller does not have permission": iam(403, "The caller does not have permission"),
    "Not found; Gaia id not found": iam(404, "Not found; Gaia id not found for email puller@my-proj.iam.gserviceaccount.com"),
    "IAM Service Account Credentials API": iam(403, "IAM Service Account Credentials API has not been used in project 8667575547 "
                                                    "before or it is disabled.", "SERVICE_DISABLED"),
    "Request had invalid authentication credentials": iam(401, "Request had invalid authentication credentials."),
    "can not have lifetimes of more than 1 hour": iam(400, "can not have lifetimes of more than 1 hour. Use the Org Policy ...",
                                                      cfg=replace(CFG, lifetime=7200)),
    "The access token lifetime cannot exceed": iam(400, "The access token lifetime cannot exceed 3600 seconds."),
    "Request contains an invalid argument": iam(400, "Request contains an invalid argument.", "INVALID_ARGUMENT"),
    "denied: Permission": registry(DENIED),
    "denied: Unauthenticated request": registry(ANONYMOUS),
    'name unknown: Repository "R" not found': registry('name unknown: Repository "r" not found'),
    "unauthorized: authentication failed": registry("unauthorized: authentication failed"),
    "manifest unknown": registry("manifest for x not found: manifest unknown: manifest unknown"),
    "subject_token must be nonempty": None,  # refused locally before any call: checked below
}


def rows():
    section = (ROOT / "README.md").read_text().split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            google = re.search(r"`([^`]+)`", cells[0])[1]
            yield google, [part.strip(" .") for part in cells[1].split("…") if part.strip(" .")]


ROWS = list(rows())


def key_of(google: str) -> str | None:
    return next((k for k in ANSWERS if google.startswith(k) or k in google), None)


def test_every_row_is_checked_and_every_check_has_a_row():
    keys = [key_of(google) for google, _ in ROWS]
    assert None not in keys and sorted(keys) == sorted(ANSWERS)


@pytest.mark.parametrize("google, says", ROWS, ids=[g[:40] for g, _ in ROWS])
def test_the_pipe_says_what_the_readme_says(google, says):
    answer = ANSWERS[key_of(google)]
    message = oidc.MISSING if answer is None else answer()
    position = 0
    for part in says:  # the middle column's words appear in the message, in that order
        found = message.find(part, position)
        assert found >= 0, (part, message)
        position = found + len(part)
    assert "\n" not in message


def test_a_token_requested_for_another_provider_is_not_answered_by_widening_this_one():
    other = "projects/999999999999/locations/global/workloadIdentityPools/other/providers/elsewhere"
    step = oidc.StepToken("h.p.s", {**STEP.claims, "aud": f"https://iam.googleapis.com/{other}"})
    message = diagnose.sts_error({"error": "invalid_grant", "error_description": "The audience in JWT does not match the expected values."},
                                 CFG, step, 400)
    assert other in message and PROVIDER in message and "WORKLOAD_IDENTITY_PROVIDER" in message
    assert "--allowed-audiences" not in message and "update-oidc" not in message
