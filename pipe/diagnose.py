"""Google's terse errors, explained: which claim, value or resource is wrong, and the command that fixes it.

Each function takes Google's parsed error body plus what the pipe knows (variables, the step token's
claims, read locally) and returns one line. Unknown errors keep Google's own text.
"""

import re

from pipe.config import Config
from pipe.oidc import StepToken


def _provider_cmd(cfg: Config, verb: str = "update-oidc") -> str:
    p = cfg.provider
    return (
        f"gcloud iam workload-identity-pools providers {verb} {p.provider_id} "
        f"--workload-identity-pool={p.pool_id} --location=global --project={p.project_number}"
    )


def transient(body: dict, service: str) -> str | None:
    """Google's own trouble (5xx, 429) that outlasted the retries: not the user's configuration."""
    error = body.get("error")
    if isinstance(error, dict) and (int(error.get("code") or 0) >= 500 or error.get("code") == 429):
        return (
            f"{service} is unavailable (HTTP {error.get('code')} {error.get('status', '')}: {error.get('message', '')}) "
            "even after retries: this is on Google's side, rerun the step; RETRY_MAX_ATTEMPTS and RETRY_MAX_TIME "
            "widen the retry budget."
        )
    return None


# --- STS ---------------------------------------------------------------------------------

def sts_error(body: dict, cfg: Config, step: StepToken) -> str:
    busy = transient(body, "Google STS")
    if busy:
        return busy
    code = str(body.get("error", ""))
    text = str(body.get("error_description", body.get("message", "")))
    provider = cfg.provider.name
    if "audience" in text and "Invalid value" in text:
        return (
            f"Google STS rejected the provider name {provider}: WORKLOAD_IDENTITY_PROVIDER must be the provider's "
            f"full resource name with the project NUMBER (Google: {text})"
        )
    if code == "invalid_target":
        return (
            f"Workload identity provider {provider} does not exist or is disabled: check the project number, pool "
            f"and provider IDs with `{_provider_cmd(cfg, 'describe')}` (an undeleted provider must be re-enabled)."
        )
    if "does not match the expected audience" in text:
        auds = ", ".join(step.audiences) or "(none)"
        return (
            f"The step's OIDC token has audience {auds}, which provider {cfg.provider.provider_id} does not allow: "
            f"add it with `{_provider_cmd(cfg)} --allowed-audiences={step.audiences[0] if step.audiences else '<AUDIENCE>'}` "
            "(list every audience to keep; the flag replaces the list)."
        )
    if text.startswith("The issuer in ID Token"):
        return (
            f"The step's OIDC token was issued by {step.claim('iss')}, but provider {cfg.provider.provider_id} "
            f"expects another issuer: set it with `{_provider_cmd(cfg)} --issuer-uri={step.claim('iss')}` "
            "(each Bitbucket workspace has its own issuer, shown under Repository settings → OpenID Connect)."
        )
    if "stale to sign-in" in text:
        return (
            f"Google says the step's OIDC token is expired or not yet valid (iat {step.claim('iat')}, "
            f"exp {step.claim('exp')}): run the pipe within the hour after the step starts, or check the clock."
        )
    if "Unable to verify the ID Token signature" in text or "Error connecting to the given credential's issuer" in text:
        return (
            f"Google could not verify the token's signature with the keys of {step.claim('iss')} ({text}): "
            f"if the provider has uploaded keys (--jwk-json-path), refresh them from {step.claim('iss')}/keys.json "
            "or remove them so Google fetches the issuer's keys."
        )
    if "rejected by the attribute condition" in text:
        return (
            f"Provider {cfg.provider.provider_id}'s attribute condition rejected this step "
            f"(repositoryUuid {step.claim('repositoryUuid')}, branchName {step.claim('branchName')}, "
            f"deploymentEnvironmentUuid {step.claim('deploymentEnvironmentUuid')}): compare with "
            f"`{_provider_cmd(cfg, 'describe')} --format='value(attributeCondition)'` and fix it with "
            f"`{_provider_cmd(cfg)} --attribute-condition=\"assertion.repositoryUuid == '{step.claim('repositoryUuid')}'\"`."
        )
    if "127 bytes" in text:
        return (
            f"A mapped attribute exceeds Google's 127-byte limit: map shorter claims in provider "
            f"{cfg.provider.provider_id} (`{_provider_cmd(cfg)} --attribute-mapping=google.subject=assertion.sub,...`)."
        )
    if "subject_token must be nonempty" in text:
        return "The OIDC token is empty: add `oidc: true` to the step in bitbucket-pipelines.yml."
    return f"Google STS refused the token exchange for {provider}: {code}: {text}".rstrip(": ")


# --- IAM Credentials -----------------------------------------------------------------------

def _iam_message(body: dict) -> tuple[str, str, int]:
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    reasons = [d.get("reason", "") for d in error.get("details", []) if isinstance(d, dict)]
    message = str(error.get("message") or body.get("message") or body)
    return message, " ".join(reasons), int(error.get("code") or 0)


def iam_error(body: dict, cfg: Config, step: StepToken, method: str = "generateAccessToken") -> str:
    busy = transient(body, "IAM Credentials")
    if busy:
        return busy
    message, reasons, code = _iam_message(body)
    sa = cfg.service_account
    if "SERVICE_DISABLED" in reasons or "has not been used in project" in message:
        project = re.search(r"project (\d+)", message)
        number = project[1] if project else "<PROJECT_NUMBER>"
        return (
            f"The IAM Service Account Credentials API is disabled in project {number}: enable it with "
            f"`gcloud services enable iamcredentials.googleapis.com --project={number}` and retry in a few minutes."
        )
    if "IAM_PERMISSION_DENIED" in reasons or "denied on resource" in message:
        return (
            f"This repository's identity may not impersonate {sa} ({message}): grant it with "
            f"`gcloud iam service-accounts add-iam-policy-binding {sa} --role=roles/iam.workloadIdentityUser "
            f"--member={cfg.provider.repository_member(step.claim('repositoryUuid'))}` (the provider must map "
            "attribute.repository_uuid=assertion.repositoryUuid). Check that the account exists; new bindings take up to 5 minutes."
        )
    if code == 401:
        return (
            f"IAM Credentials did not accept the federated token while impersonating {sa} ({message}): "
            "check IAM_CREDENTIALS_ENDPOINT and that STS_ENDPOINT is Google's."
        )
    if "lifetimes of more than 1 hour" in message:
        return (
            f"Google refused a token lifetime over 1 hour for {sa} ({message}): allow it with the org policy "
            "constraints/iam.allowServiceAccountCredentialLifetimeExtension listing the account, or set "
            "ACCESS_TOKEN_LIFETIME to 3600s or less."
        )
    return f"IAM Credentials {method} for {sa} failed: {message}"


# --- Registry --------------------------------------------------------------------------------

_DENIED_RE = re.compile(r'Permission "(?P<perm>[\w.]+)" denied on resource "(?P<res>projects/[^"]+)"')


def registry_error(explanation: str, reference: str, principal: str) -> str:
    denied = _DENIED_RE.search(explanation)
    if denied:
        res = denied["res"].split("/")
        project, location, repository = (res[1], res[3], res[5]) if len(res) >= 6 else ("<P>", "<L>", "<R>")
        role = "writer" if "upload" in denied["perm"] else "reader"
        return (
            f"{principal} may not pull {reference}: Artifact Registry denied {denied['perm']} on {denied['res']}. "
            f"Grant it with `gcloud artifacts repositories add-iam-policy-binding {repository} --project={project} "
            f"--location={location} --role=roles/artifactregistry.{role} --member={principal}`."
        )
    if "manifest unknown" in explanation or "not found" in explanation:
        return (
            f"Image {reference} was not found: check the tag or digest "
            "(`gcloud artifacts docker images list <LOCATION>-docker.pkg.dev/<PROJECT>/<REPOSITORY> --include-tags`)."
        )
    if "authentication failed" in explanation or "unauthorized" in explanation:
        return (
            f"The registry did not accept the Google access token for {reference} ({explanation}): Artifact Registry "
            "needs the cloud-platform scope; for direct federation grant the principalSet roles/artifactregistry.reader."
        )
    return f"Pulling {reference} failed: {explanation}"
