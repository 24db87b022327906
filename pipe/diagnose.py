"""Google's terse errors, explained: which claim, value or resource is wrong, and the command that fixes it.

Each function takes Google's answer (parsed body, HTTP status when known) plus what the pipe knows
(variables, the step token's claims, read locally) and returns one line: the cause, or the likely causes
most likely first with the check that tells them apart, and the fix with real values. Google's own text
is quoted, never returned alone. Every command printed is one gcloud 528 accepts (pipe.gcloud).
"""

import re

from pipe import gcloud, parsers, registry
from pipe.config import CLOUD_PLATFORM, Config
from pipe.errors import PipeError
from pipe.oidc import StepToken

DOCTOR = "run the step with ACTION: doctor to check each stage"
PROPAGATION = "new IAM bindings take up to 5 minutes to work"
_QUOTE_LIMIT = 300


def _quote(text: str) -> str:
    """Google's text on one line, short: pretty-printed JSON and HTML error pages would break the line."""
    title = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
    flat = " ".join((title[1] if title else text).split())
    return flat if len(flat) <= _QUOTE_LIMIT else flat[:_QUOTE_LIMIT] + "…"


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


_BUSY_TEXT = re.compile(r"throttled|rate limit|quota[_ ]exceeded|RESOURCE_EXHAUSTED|Too Many Requests", re.I)


def transient(body: dict, service: str, status: int | None = None) -> str | None:
    """Google's own trouble (5xx, 429, quota) that outlasted the retries: not the user's configuration."""
    error = body.get("error")
    envelope = error if isinstance(error, dict) else {}
    oauth_code = error if isinstance(error, str) else ""
    code = _int(envelope.get("code")) or status
    text = _text(body)
    busy = code == 429 or oauth_code in ("quota_exceeded", "rate_limit_exceeded") or bool(_BUSY_TEXT.search(text))
    if not busy and not (code and code >= 500) and oauth_code != "temporarily_unavailable":
        return None
    label = " ".join(part for part in (f"HTTP {code}" if code else "", envelope.get("status") or oauth_code) if part)
    said = ": ".join(part for part in (label, _quote(text)) if part)
    if busy:
        return _one_line(
            f"{service} is rate-limiting these requests ({said}) even after retries: this is Google's quota for token "
            "requests, not your configuration; rerun the step, spread out parallel steps, or ask for more quota "
            "(IAM Quota page, https://console.cloud.google.com/iam-admin/quotas); RETRY_MAX_ATTEMPTS and RETRY_MAX_TIME widen the retry budget."
        )
    return _one_line(
        f"{service} is unavailable ({said}) even after retries: this is on Google's side, rerun the step; "
        "RETRY_MAX_ATTEMPTS and RETRY_MAX_TIME widen the retry budget."
    )


def _text(body: dict) -> str:
    """The human part of any of Google's error shapes (OAuth, JSON envelope, or raw text)."""
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or "")
    return _message_in(str(body.get("error_description") or body.get("message") or ""))


_JSON_MESSAGE = re.compile(r'"message":\s*"((?:[^"\\]|\\.)*)"')


def _message_in(raw: str) -> str:
    """The message of an envelope that is not valid JSON (cut short, or with a trailing comma as Google's page shows)."""
    found = _JSON_MESSAGE.search(raw)
    return found[1].replace('\\"', '"') if found else raw


# --- STS ---------------------------------------------------------------------------------------

_PROVIDER_AUDIENCE = re.compile(
    r"(?:https:)?//iam\.[a-z0-9.-]+/(projects/[0-9]+/locations/global/workloadIdentityPools/[^/]+/providers/[^/]+)"
)
_ISSUER = re.compile(r"issuer in ID Token (\S+) does not match the expected ones?(?: in config)?:?\s*(\S*)")


def sts_error(body: dict, cfg: Config, step: StepToken, status: int | None = None) -> str:
    return _one_line(_sts(body, cfg, step, status))


def _sts(body: dict, cfg: Config, step: StepToken, status: int | None) -> str:
    busy = transient(body, "Google STS", status)
    if busy:
        return busy
    code = body.get("error") if isinstance(body.get("error"), str) else ""
    text = _text(body)
    said = _quote(text)
    name = cfg.provider.name
    if "subject_token must be nonempty" in text:
        return (
            f"The step's OIDC token reached Google STS empty (Google: {said}): add `oidc: true` to the step in "
            "bitbucket-pipelines.yml, and leave OIDC_TOKEN unset unless it holds a token."
        )
    if 'Invalid value for "audience"' in text:
        universe = "" if cfg.universe_domain == "googleapis.com" else (
            f" With UNIVERSE_DOMAIN {cfg.universe_domain}, STS_ENDPOINT ({cfg.sts_endpoint}) must be that universe's STS."
        )
        return (
            f"Google STS does not take WORKLOAD_IDENTITY_PROVIDER ({name}) as a provider's name (Google: {said}): it must "
            "be the provider's full resource name with the project NUMBER, naming the provider, not the pool or a "
            f"principalSet; `{gcloud.provider('describe', cfg.provider)}` shows whether it is one.{universe}"
        )
    if code == "invalid_target" or "target service indicated" in text:
        return (
            f"Google STS found no active workload identity provider {name} (Google: {said}): either the project "
            f"number {cfg.provider.project_number}, pool ID {cfg.provider.pool_id} or provider ID {cfg.provider.provider_id} "
            f"in WORKLOAD_IDENTITY_PROVIDER is wrong, or the provider is disabled or deleted. Check with "
            f"`{gcloud.provider('describe', cfg.provider)}`: NOT_FOUND means fix WORKLOAD_IDENTITY_PROVIDER; state DISABLED "
            f"means `{gcloud.provider('update-oidc', cfg.provider, '--no-disabled')}`; state DELETED means "
            f"`{gcloud.provider('undelete', cfg.provider)}` (within 30 days)."
        )
    if re.search(r"audience in (?:ID Token|JWT)", text):
        return _audience(cfg, step, said)
    issuer = _ISSUER.search(text)
    if issuer or ("issuer" in text and "not found" in text):
        expected = issuer[2] if issuer and issuer[2] else "another issuer"
        return (
            f"The step's OIDC token was issued by {step.claim('iss')}, but provider {cfg.provider.provider_id} expects "
            f"{expected} (Google: {said}). Each Bitbucket workspace has its own issuer (Repository settings → OpenID "
            f"Connect): if that provider belongs to another workspace, set WORKLOAD_IDENTITY_PROVIDER to this workspace's "
            f"provider; if it is this workspace's provider, fix its issuer with "
            f"`{gcloud.provider('update-oidc', cfg.provider, '--issuer-uri=' + gcloud.arg(step.claim('iss')))}`."
        )
    if "stale to sign-in" in text:
        return (
            f"Google says the step's OIDC token is expired or not yet valid (iat {step.claim('iat')}, exp "
            f"{step.claim('exp')}; Google: {said}): Bitbucket's token lasts about an hour from the start of the step, so "
            "run the pipe earlier in the step or in its own step with `oidc: true`; a fresh token refused this way "
            "means the step's clock is off."
        )
    if "Unable to parse the ID Token" in text:
        return (
            f"Google STS could not parse the step's OIDC token as a JWT (Google: {said}): pass $BITBUCKET_STEP_OIDC_TOKEN "
            "unchanged, with no quotes, spaces or extra characters (check OIDC_TOKEN if you set it)."
        )
    if "Unable to verify the ID Token signature" in text:
        return (
            f"Google could not verify the step token's signature with the keys provider {cfg.provider.provider_id} "
            f"holds for {step.claim('iss')} (Google: {said}): if the provider has uploaded keys (--jwk-json-path), they "
            f"are out of date; upload the current ones from {step.claim('iss')}/keys.json, or remove them so Google "
            "fetches the issuer's keys itself."
        )
    if "Error connecting to the given credential's issuer" in text:
        return (
            f"Google could not fetch the OIDC discovery document or keys of {step.claim('iss')} (Google: {said}): the "
            f"issuer must serve {step.claim('iss')}/.well-known/openid-configuration and its keys publicly over https; "
            f"if provider {cfg.provider.provider_id} has uploaded keys (--jwk-json-path), the step token's key must be "
            f"among them (refresh them from {step.claim('iss')}/keys.json)."
        )
    if "rejected by the attribute condition" in text:
        condition = gcloud.arg(f"assertion.repositoryUuid == '{step.claim('repositoryUuid')}'")
        return (
            f"Provider {cfg.provider.provider_id}'s attribute condition rejected this step "
            f"(repositoryUuid {step.claim('repositoryUuid')}, branchName {step.claim('branchName')}, "
            f"deploymentEnvironmentUuid {step.claim('deploymentEnvironmentUuid')}; Google: {said}): compare with "
            f"`{gcloud.provider('describe', cfg.provider, '--format=' + gcloud.arg('value(attributeCondition)'))}` "
            "(claims are case-sensitive and must be mapped before the condition can use them); to admit this "
            f"repository, `{gcloud.provider('update-oidc', cfg.provider, '--attribute-condition=' + condition)}`."
        )
    if "127 bytes" in text:
        mapping = "google.subject=assertion.repositoryUuid,attribute.repository_uuid=assertion.repositoryUuid"
        return (
            f"A mapped attribute of provider {cfg.provider.provider_id} exceeds Google's 127-byte limit (sub is "
            f"{len(step.claim('sub').encode())} bytes; Google: {said}): map shorter claims, e.g. "
            f"`{gcloud.provider('update-oidc', cfg.provider, '--attribute-mapping=' + mapping)}` (the flag replaces the "
            "whole mapping: keep every attribute your condition and bindings use)."
        )
    if "Scope(s) must be provided" in text or "requested_token_type" in text:
        return (
            f"Google STS refused the token exchange for {name} as malformed (Google: {said}): this is a bug in the "
            "pipe, please report it with the step's log (DEBUG: 'true' prints no tokens)."
        )
    return (
        f"Google STS refused the token exchange for {name} ({code or 'HTTP ' + str(status or '?')}: {said}): compare the "
        f"provider's issuer, audiences and condition (`{gcloud.provider('describe', cfg.provider)}`) with this step's "
        f"token (iss {step.claim('iss')}, aud {', '.join(step.audiences) or '(none)'}), and {DOCTOR}."
    )


def _audience(cfg: Config, step: StepToken, said: str) -> str:
    """Never widen a provider first: the token may simply have been requested for another provider."""
    auds = step.audiences
    named = [m[1] for aud in auds if (m := _PROVIDER_AUDIENCE.fullmatch(aud))]
    if named and cfg.provider.name not in named:
        return (
            f"The step's OIDC token was requested for provider {named[0]} (its audience), but WORKLOAD_IDENTITY_PROVIDER "
            f"is {cfg.provider.name} (Google: {said}): use the same provider in both, the step's `oidc: audiences:` and "
            "WORKLOAD_IDENTITY_PROVIDER; do not add the other provider's audience to this one."
        )
    shown = ", ".join(auds) or "(none)"
    check = gcloud.provider("describe", cfg.provider, "--format=" + gcloud.arg("value(oidc.allowedAudiences)"))
    widen = (
        f"only if it is, add the audience (the flag replaces the list, so repeat every audience it printed): "
        f"`{gcloud.provider('update-oidc', cfg.provider, '--allowed-audiences=' + gcloud.arg(auds[0]))}`; "
        if auds else ""
    )
    return (
        f"The step's OIDC token has audience {shown}, which provider {cfg.provider.provider_id} does not allow "
        f"(Google: {said}). First check WORKLOAD_IDENTITY_PROVIDER names the provider set up for this workspace: "
        f"`{check}` lists the audiences it accepts (an empty list means only https://iam.googleapis.com/{cfg.provider.name}); "
        f"{widen}or request that audience instead with the step's `oidc: audiences: [https://iam.googleapis.com/{cfg.provider.name}]`."
    )


# --- IAM Credentials -----------------------------------------------------------------------

def _iam_message(body: dict) -> tuple[str, str, int | None]:
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    reasons = [d.get("reason", "") for d in error.get("details", []) if isinstance(d, dict)]
    message = str(error.get("message") or _message_in(str(body.get("message") or "")))
    return message, " ".join(reasons), _int(error.get("code"))


def iam_error(body: dict, cfg: Config, step: StepToken, method: str = "generateAccessToken", status: int | None = None) -> str:
    return _one_line(_iam(body, cfg, step, method, status))


def _iam(body: dict, cfg: Config, step: StepToken, method: str, status: int | None) -> str:
    busy = transient(body, "IAM Credentials", status)
    if busy:
        return busy
    message, reasons, code = _iam_message(body)
    code = code or status
    said = _quote(message) or "no message"
    sa = cfg.service_account
    describe = gcloud.service_account("describe", sa)
    if "SERVICE_DISABLED" in reasons or "has not been used in project" in message:
        project = re.search(r"project (\d+)", message)
        number = project[1] if project else cfg.provider.project_number
        return (
            f"The IAM Service Account Credentials API is disabled in project {number} (Google: {said}): enable it with "
            f"`gcloud services enable iamcredentials.googleapis.com --project={number}` and rerun in a few minutes."
        )
    missing = re.search(r"Gaia id not found for email (\S+)", message)
    if code == 404 or missing or "NOT_FOUND" in message:
        who = missing[1].rstrip(".") if missing else sa
        chain = f" (or one of DELEGATES: {', '.join(cfg.delegates)})" if cfg.delegates and not missing else ""
        return (
            f"Service account {who}{chain} was not found (HTTP {code or 404}: {said}): check the e-mail in SERVICE_ACCOUNT "
            f"for a typo, another project or a deleted account with `{gcloud.service_account('describe', who)}`."
        )
    if code == 401 or "invalid authentication credentials" in message:
        return (
            f"IAM Credentials did not accept the federated token while impersonating {sa} ({said}): STS_ENDPOINT "
            f"({cfg.sts_endpoint}) and IAM_CREDENTIALS_ENDPOINT ({cfg.iam_endpoint}) must be Google's endpoints of the "
            "same universe, so the token from one is valid at the other."
        )
    if "lifetime" in message and ("1 hour" in message or "3600" in message):
        if cfg.lifetime > 3600:
            return (
                f"Google refused a token lifetime over 1 hour for {sa} (ACCESS_TOKEN_LIFETIME is {cfg.lifetime}s; "
                f"Google: {said}): set ACCESS_TOKEN_LIFETIME to 3600s or less, or list the account in the org policy "
                "constraints/iam.allowServiceAccountCredentialLifetimeExtension."
            )
        return (
            f"Google says the token lifetime exceeds 1 hour although ACCESS_TOKEN_LIFETIME is {cfg.lifetime}s "
            f"(Google: {said}): the runner's clock is ahead of Google's; set ACCESS_TOKEN_LIFETIME to 3300s to leave room."
        )
    if code == 403 or "IAM_PERMISSION_DENIED" in reasons or "denied on resource" in message or "does not have permission" in message:
        return _impersonation_denied(cfg, step, method, said)
    if code == 400 or "INVALID_ARGUMENT" in message or "invalid argument" in message:
        asked = f"ID_TOKEN_AUDIENCE ({cfg.id_token_audience})" if method == "generateIdToken" else (
            f"ACCESS_TOKEN_SCOPES ({' '.join(cfg.scopes)})"
        )
        return (
            f"IAM Credentials refused the {method} request for {sa} as invalid (Google: {said}): check {asked} — scopes "
            "are OAuth scopes such as cloud-platform, not your service's URL (that is ID_TOKEN_AUDIENCE) — and that "
            "SERVICE_ACCOUNT and DELEGATES are plain service account e-mails."
        )
    return (
        f"IAM Credentials {method} for {sa} failed (HTTP {code or '?'}: {said}): check the account with `{describe}` "
        f"and {DOCTOR}."
    )


def _impersonation_denied(cfg: Config, step: StepToken, method: str, said: str) -> str:
    sa = cfg.service_account
    member = cfg.provider.repository_member(step.claim("repositoryUuid"))
    grant = gcloud.service_account("add-iam-policy-binding", sa, "--role=roles/iam.workloadIdentityUser", f"--member={gcloud.arg(member)}")
    chain = (
        f" With DELEGATES, the repository needs that role on {cfg.delegates[0]} and each account in the chain "
        "roles/iam.serviceAccountTokenCreator on the next."
        if cfg.delegates else ""
    )
    return (
        f"This repository's identity may not impersonate {sa} for {method} (Google: {said}). Most likely the grant is "
        f"missing: `{grant}`. If that binding exists, its principalSet does not match this token: provider "
        f"{cfg.provider.provider_id} must map attribute.repository_uuid=assertion.repositoryUuid and the binding must name "
        f"repository {step.claim('repositoryUuid')}. If the account does not exist, "
        f"`{gcloud.service_account('describe', sa)}` says NOT_FOUND. Otherwise wait: {PROPAGATION}.{chain}"
    )


# --- Registry --------------------------------------------------------------------------------

_DENIED = re.compile(r'Permission "(?P<perm>[\w.]+)" denied on resource "(?P<res>projects/[^"]+)"')
_ANONYMOUS = re.compile(r'Unauthenticated requests do not have permission "(?P<perm>[\w.]+)" on resource "(?P<res>projects/[^"]+)"')
_NO_REPOSITORY = re.compile(r'name unknown: Repository "(?P<repo>[^"]+)" not found')
_REGISTRY_BUSY = re.compile(r"\b(?:429|5\d\d)\b|Service Unavailable|Bad Gateway|Gateway Time-?out|Too Many Requests", re.I)
_GCR_LOCATIONS = {"gcr.io": "us", "us.gcr.io": "us", "eu.gcr.io": "europe", "asia.gcr.io": "asia"}


def _image(reference: str) -> parsers.Image | None:
    try:
        return parsers.image("IMAGE", reference)
    except PipeError:  # a reference the pipe did not validate: nothing more to name
        return None


def _repository_of(reference: str) -> tuple[str, str, str] | None:
    """(project, location, repository) of an Artifact Registry image; gcr.io images live in repository 'gcr.io'."""
    image = _image(reference)
    parts = image.path.split("/") if image else []
    if image and image.host.endswith("-docker.pkg.dev") and len(parts) >= 3:
        return parts[0], image.host.removesuffix("-docker.pkg.dev"), parts[1]
    if image and image.host in _GCR_LOCATIONS and len(parts) >= 2:
        return parts[0], _GCR_LOCATIONS[image.host], image.host
    return None


def _resource(res: str, reference: str) -> tuple[str, str, str]:
    """(project, location, repository) of projects/P/locations/L/repositories/R; IMAGE's project when the text hides it."""
    parts = res.split("/")
    if len(parts) < 6:
        return _repository_of(reference) or ("PROJECT", "LOCATION", "REPOSITORY")
    project = parts[1] if _is_project_id(parts[1]) else (_repository_of(reference) or ("PROJECT",))[0]
    return project, parts[3], parts[5]


def _is_project_id(text: str) -> bool:
    try:
        parsers.project_id("PROJECT_ID", text)
    except PipeError:
        return False  # e.g. a log's redacted "<PROJECT_ID>"
    return True


def registry_error(explanation: str, reference: str, principal: str) -> str:
    return _one_line(_registry(explanation, reference, principal))


def _registry(explanation: str, reference: str, principal: str) -> str:
    said = _quote(explanation)
    host = reference.split("/", 1)[0]
    anonymous = _ANONYMOUS.search(explanation)
    denied = _DENIED.search(explanation) or anonymous
    if denied:
        project, location, repository = _resource(denied["res"], reference)
        role = "writer" if "upload" in denied["perm"] else "reader"
        exists = gcloud.repository("describe", repository, project, location)
        grant = gcloud.repository("add-iam-policy-binding", repository, project, location,
                                  f"--role=roles/artifactregistry.{role}", f"--member={gcloud.arg(principal)}")
        if anonymous:
            own_host = repository if repository.endswith("gcr.io") else f"{location}-docker.pkg.dev"
            return (
                f"Artifact Registry received no credentials for {reference} (Google: {said}): the pipe hands the Docker "
                f"daemon {principal}'s token for {host} only, so the pull reached the registry by another host or "
                f"through a mirror or proxy that drops credentials; IMAGE must name the repository's own host "
                f"({own_host}). Check the repository exists with `{exists}`, and that {principal} may read it: `{grant}`."
            )
        return (
            f"{principal} may not pull {reference}: Artifact Registry denied {denied['perm']} on {denied['res']}, which "
            f"also means the repository may not exist. Check it with `{exists}`: NOT_FOUND means fix the project, "
            f"location or repository in IMAGE; if it exists, grant it with `{grant}` ({PROPAGATION})."
        )
    missing = _NO_REPOSITORY.search(explanation)
    if missing:
        project, location, _ = _repository_of(reference) or ("PROJECT", "LOCATION", "")
        return (
            f"Artifact Registry has no repository {missing['repo']} in project {project}, location {location} (Google: "
            f"{said}): IMAGE {reference} names a repository that does not exist there; fix the repository in IMAGE "
            f"or create the repository, and check with "
            f"`{gcloud.repository('describe', missing['repo'], project, location)}`."
        )
    if "manifest unknown" in explanation or "not found" in explanation:
        image = _image(reference)
        listing = (f": `gcloud artifacts docker images list {image.repository} --include-tags` lists what exists"
                   if image and image.host.endswith("-docker.pkg.dev") else "")
        return f"Image {reference} was not found: check the tag or digest in IMAGE{listing} (Google: {said})."
    if "anonymous token" in explanation:
        return (
            f"The registry refused an anonymous pull of {reference} (Google: {said}): the credentials did not reach "
            f"{host}, or {principal} has no access to a repository in another project; grant it "
            "roles/artifactregistry.reader on every repository the image comes from."
        )
    if _REGISTRY_BUSY.search(explanation):
        return (
            f"The registry {host} kept failing on Google's side ({said}) even after retries: rerun the step; "
            "RETRY_MAX_ATTEMPTS and RETRY_MAX_TIME widen the retry budget."
        )
    if "unauthorized" in explanation.lower() or "authentication failed" in explanation or "401" in explanation:
        return _token_refused(reference, host, principal, said)
    return f"Pulling {reference} failed ({said}): check IMAGE, and {DOCTOR}."


def _token_refused(reference: str, host: str, principal: str, said: str) -> str:
    if not registry.is_google(host):
        return (
            f"The registry did not accept the Google access token for {reference} ({said}): {host} is not a Google "
            "registry and does not take Google tokens; remove it from REGISTRIES or push the image to Artifact Registry."
        )
    federated = principal.startswith("principal")
    return (
        f"The registry did not accept the Google access token for {reference} ({said}): "
        + (
            f"with direct federation the token is {principal}'s, which {host} accepts only where that principalSet has "
            "roles/artifactregistry.reader, or set SERVICE_ACCOUNT to pull as a service account; "
            if federated else ""
        )
        + f"keep {CLOUD_PLATFORM} in ACCESS_TOKEN_SCOPES; a token that expired during a long pull is replaced when "
        "you rerun the step."
    )

