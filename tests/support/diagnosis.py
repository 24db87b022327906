"""What the tests of pipe.diagnose, pipe.diagnose_google and pipe.diagnose_registry share: the settings, step token
and image the lines are about, each channel's way in (STS, IAM Credentials, a token service, the Docker daemon),
and the checks every line must pass."""

import re
from pathlib import Path

from pipe import config, diagnose, diagnose_google, diagnose_registry, oidc, parsers

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
    return seen(diagnose_google.sts_error(body, cfg, STEP, status))


def iam(body: dict, status: int | None = None, method: str = "generateAccessToken", cfg: config.Config = CFG) -> str:
    return seen(diagnose_google.iam_error(body, cfg, STEP, method, status))


def pull(text: str, transient: str | None = None) -> str:
    return seen(diagnose_registry.pull_error(text, IMAGE, PRINCIPAL, transient))


def token_service(status: int, text: str) -> str:
    return seen(diagnose_registry.token_service_error(status, text, IMAGE, PRINCIPAL, "us-docker.pkg.dev"))


def not_a_grant_nor_a_retry(line: str) -> None:
    assert not any(grant in line for grant in GRANTS), line
    assert "RETRY_MAX_ATTEMPTS" not in line, line


# A phrase each channel's own rules answer with a grant or another cause: the reason must win over it.
PHRASES = {
    "sts": 'Invalid value for "audience". This value should be the full resource name of the Identity Provider.',
    "iam": "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
    "token service": 'Permission "artifactregistry.repositories.downloadArtifacts" denied on resource '
                     '"projects/img-proj/locations/us/repositories/tools" (or it may not exist)',
    "daemon": "manifest for us-docker.pkg.dev/img-proj/tools/builder:1.4 not found: manifest unknown: manifest unknown",
}  # the daemon's report here carries Google's JSON (as a registry's refusal relayed whole does)
