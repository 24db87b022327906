"""The README's Troubleshooting table, one row per class of problem, is checked against what the pipe really says:
each row's example is fed to the pipe the way that class reaches it (Google STS, IAM Credentials, the registry's
token service, or the Docker daemon's report of a pull), and the pipe's line must hold the row's third column."""

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from pipe import config, diagnose_google, diagnose_registry, oidc, parsers

ROOT = Path(__file__).resolve().parent.parent
PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bitbucket/providers/acme"
CFG = config.load({"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "SERVICE_ACCOUNT": "puller@my-proj.iam.gserviceaccount.com"}, Path("/b"))
STEP = oidc.StepToken("header.payload.sig", {"iss": "https://issuer.example", "aud": "ari:cloud:bitbucket::workspace/x",
                                              "repositoryUuid": "{r}", "branchName": "main", "iat": 1, "exp": 2, "sub": "{r}:{s}"})
IMAGE = parsers.image("IMAGE", "us-docker.pkg.dev/my-proj/tools/app:1")
PRINCIPAL = "serviceAccount:puller@my-proj.iam.gserviceaccount.com"


def sts(code: str, status: int = 400):
    return lambda example: diagnose_google.sts_error({"error": code, "error_description": example}, CFG, STEP, status)


def iam(code: int, reason: str = "", status: str = "", cfg=CFG, **metadata):
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
                "metadata": metadata}] if reason else []
    return lambda example: diagnose_google.iam_error({"error": {"code": code, "message": example, "status": status, "details": details}},
                                              cfg, STEP, status=code)


def token_service(status: int, code: str = "DENIED"):
    """A registry token service's OCI error body around the example."""
    return lambda example: diagnose_registry.token_service_error(status, json.dumps({"errors": [{"code": code, "message": example}]}),
                                                        IMAGE, PRINCIPAL, "us-docker.pkg.dev")


def google_from_registry(status: int, reason: str, **metadata):
    """Google's own envelope, as Artifact Registry's token service answers for a project-level refusal."""
    body = {"error": {"code": status, "message": None, "status": "PERMISSION_DENIED",
                      "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com",
                                   "metadata": metadata}]}}
    return lambda example: diagnose_registry.token_service_error(status, json.dumps(body).replace("null", json.dumps(example)), IMAGE,
                                                        PRINCIPAL, "us-docker.pkg.dev")


def pull(transient: str | None = None):
    """The Docker daemon's report of a failed pull (after the retries, for a transient one)."""
    return lambda example: diagnose_registry.pull_error(example, IMAGE, PRINCIPAL, transient=transient)


# Each class (the table's first column, without its parenthesis) → how its example reaches the pipe.
ROUTES = {
    "Provider name": sts("invalid_request"),
    "Provider missing, disabled or deleted": sts("invalid_target"),
    "Token audience": sts("invalid_grant"),
    "Token issuer": sts("invalid_grant"),
    "Token expired, unreadable or unverifiable": sts("invalid_grant"),
    "Attribute condition or mapping": sts("unauthorized_client"),
    "Impersonation not granted": iam(403, "IAM_PERMISSION_DENIED", "PERMISSION_DENIED"),
    "Service account missing": iam(404, status="NOT_FOUND"),
    "No API at the endpoint": lambda example: diagnose_google.sts_error(
        {"message": f"<!DOCTYPE html><html><title>{example.split(' … ')[0]}</title><p>{example.split(' … ')[1]}"},
        replace(CFG, sts_endpoint="https://sts.googleapis.com/v2"), STEP, 404),
    "Federated token refused": iam(401, status="UNAUTHENTICATED"),
    "Lifetime or argument refused": iam(400, status="INVALID_ARGUMENT", cfg=replace(CFG, lifetime=7200)),
    "API disabled": iam(403, "SERVICE_DISABLED", "PERMISSION_DENIED", service="iamcredentials.googleapis.com", consumer="projects/8667575547"),
    "Billing": token_service(403),
    "VPC Service Controls": iam(403, "SECURITY_POLICY_VIOLATED", "PERMISSION_DENIED", uid="2a1b3c", service="iamcredentials.googleapis.com"),
    "Organization policy": google_from_registry(403, "RESOURCE_USAGE_RESTRICTION_VIOLATED", consumer="projects/my-proj",
                                                service="artifactregistry.googleapis.com"),
    "Organization Restrictions": iam(403, "ORG_RESTRICTION_VIOLATION", "PERMISSION_DENIED", consumer="projects/my-proj"),
    "Account disabled or deleted": iam(403, "ACCOUNT_STATE_INVALID", "PERMISSION_DENIED"),
    "Credential not taken": lambda example: diagnose_registry.token_service_error(  # direct federation: the principal's own token
        403, json.dumps({"error": {"code": 403, "message": example, "status": "PERMISSION_DENIED", "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED", "domain": "googleapis.com"}]}}),
        IMAGE, "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/bitbucket/subject/x",
        "us-docker.pkg.dev"),
    "Any other reason Google names": iam(403, "SERVICE_NOT_VISIBLE", "PERMISSION_DENIED"),
    "Project missing or deleted": pull(),
    "Container Registry shut down": lambda example: diagnose_registry.pull_error(
        f'Head "https://gcr.io/v2/my-proj/app/manifests/1": error parsing HTTP 412 response body: "{example}"', IMAGE, PRINCIPAL),
    "Repository access": pull(),
    "No credentials reached the registry": pull(),
    "Image, tag or repository missing": pull(),
    "Customer-managed key": pull(),
    "Not a container image": pull(),
    "Image content refused": pull(),
    "Token not accepted by the registry": pull(),
    "Scopes": google_from_registry(403, "ACCESS_TOKEN_SCOPE_INSUFFICIENT", service="artifactregistry.googleapis.com"),
    "Layer refused after the manifest": pull(),
    "The way to the registry": pull(),
    "Location not served": pull(),
    "The docker service's own side": pull(),
    "A remote repository's upstream": lambda example: diagnose_registry.pull_error(
        f'Head "https://europe-docker.pkg.dev/v2/acme/hub/library/python/manifests/3.12": {example}',
        parsers.image("IMAGE", "europe-docker.pkg.dev/acme/hub/library/python:3.12"), PRINCIPAL),
    "A registry outside Google refused": lambda example: diagnose_registry.pull_error(
        f'Head "https://ghcr.io/v2/acme/app/manifests/1": {example}', parsers.image("IMAGE", "ghcr.io/acme/app:1"), PRINCIPAL),
    "Nothing answers at the host": lambda example: diagnose_registry.pull_error(
        example, parsers.image("IMAGE", "ghrc.io/acme/app:1"), PRINCIPAL, transient="network"),
    "Layers in Cloud Storage": lambda example: diagnose_registry.pull_error(
        "error pulling image configuration: error parsing HTTP 403 response body: \"<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>AccessDenied</Code><Message>Access denied.</Message><Details>{example}</Details></Error>\"", IMAGE, PRINCIPAL),
    "Transient: Google, the registry or the network": pull(transient="unavailable"),
    "No step token": None,  # refused locally before any call: the pipe's own line
}


def rows():
    section = (ROOT / "README.md").read_text().split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("**"):
            name = re.match(r"\*\*([^*]+)\*\*", cells[0])[1]
            example = re.search(r"`([^`]+)`", cells[1])[1]
            yield name, example, [part.strip(" .") for part in cells[2].split("…") if part.strip(" .")]


ROWS = list(rows())


def test_every_class_has_a_row_and_every_row_a_route():
    assert sorted(name for name, _, _ in ROWS) == sorted(ROUTES)
    assert len(ROWS) >= 20


@pytest.mark.parametrize("name, example, says", ROWS, ids=[name for name, _, _ in ROWS])
def test_the_pipe_says_what_the_readme_says(name, example, says):
    route = ROUTES[name]
    message = oidc.MISSING if route is None else route(example)
    position = 0
    for part in says:  # the third column's words appear in the message, in that order
        found = message.find(part, position)
        assert found >= 0, (part, message)
        position = found + len(part)
    assert "\n" not in message


def test_a_token_requested_for_another_provider_is_not_answered_by_widening_this_one():
    other = "projects/999999999999/locations/global/workloadIdentityPools/other/providers/elsewhere"
    step = oidc.StepToken("h.p.s", {**STEP.claims, "aud": f"https://iam.googleapis.com/{other}"})
    message = diagnose_google.sts_error({"error": "invalid_grant", "error_description": "The audience in JWT does not match the expected values."},
                                 CFG, step, 400)
    assert other in message and PROVIDER in message and "WORKLOAD_IDENTITY_PROVIDER" in message
    assert "--allowed-audiences" not in message


def test_a_vpc_service_controls_denial_is_never_answered_with_an_iam_grant():
    """SECURITY_POLICY_VIOLATED needs an ingress rule: a Workload Identity User grant would be the wrong fix."""
    message = ROUTES["VPC Service Controls"]("Request is prohibited by organization's policy. vpcServiceControlsUniqueIdentifier: 2a1b3c")
    assert "ingress rule" in message and "workloadIdentityUser" not in message and "add-iam-policy-binding" not in message
