"""What every explanation of a refusal shares: what the pipe knows (Context), Google's words on one line (said), the
reasons every service gives (REASONS), transient trouble, and explain(), which tries them in that order around a
service's own rules.

Each answer is first read into a Failure (pipe.error_models: the reason, status and code, then Google's standard
messages where there is no structure). The explanation then goes by the reason when there is one (a disabled API,
billing, VPC Service Controls, an organization policy, a missing project: the same for every service, here), then by
what each service's code means (pipe.diagnose_google for Google STS and IAM Credentials, pipe.diagnose_registry for
the registries), then by Google's wording where that is all there is. Where one answer has several causes, they are
named most likely first, with the check that tells them apart; a fix is never stated as fact for a cause the answer
does not establish. Every command printed is one gcloud 528 accepts (pipe.gcloud).
"""

import re
from dataclasses import dataclass

from pipe import gcloud, google_registries, retry, shown
from pipe.config import CLOUD_PLATFORM, Config
from pipe.error_models import Failure
from pipe.oidc import StepToken
from pipe.parsers import Image

DOCTOR = "run the step with ACTION: doctor to check each stage"
PROPAGATION = "new IAM bindings take up to 5 minutes to work"
RETRY_BUDGET = "RETRY_MAX_ATTEMPTS and RETRY_MAX_TIME widen the retry budget"
_QUOTE_LIMIT = 300


@dataclass(frozen=True)
class Context:
    """What the pipe knows besides the answer: its settings, the step token's claims, the image and who pulls it."""

    cfg: Config | None = None
    step: StepToken | None = None
    image: Image | None = None
    principal: str | None = None  # who the access token speaks for, as an IAM member

    @property
    def identity(self) -> str:
        if self.principal:
            return self.principal
        return f"serviceAccount:{self.cfg.service_account}" if self.cfg and self.cfg.service_account else "the step's identity"

    @property
    def service_account(self) -> str | None:
        """The service account whose token was sent, or None with direct federation (or when nothing says)."""
        member = self.identity
        return member.removeprefix("serviceAccount:") if member.startswith("serviceAccount:") else None


def said(failure: Failure) -> str:
    """Google's text on one line, short: pretty-printed JSON and HTML error pages would break the line."""
    text = failure.message
    title = re.search(r"<title>([^<]{0,200})</title>", text, re.I)
    flat = " ".join((title[1] if title else text).split())
    code = shown.clipped(failure.code, 60)  # a status or code is a short name; a server may send anything there
    label = " ".join(part for part in (f"HTTP {failure.status}" if failure.status else "", code) if part)
    quoted = flat if len(flat) <= _QUOTE_LIMIT else flat[:_QUOTE_LIMIT] + "…"
    return ": ".join(part for part in (label, shown.clipped(quoted, _QUOTE_LIMIT + 1)) if part) or "no message"


def one_line(text: str) -> str:
    """The explanation as printed: one line, single spaces."""
    return " ".join(text.split())


# --- the reasons every service shares ------------------------------------------------------------------------

# The API each service is, for an answer that says "disabled" without naming one.
_API_OF = {"Google STS": "sts.googleapis.com", "IAM Credentials": "iamcredentials.googleapis.com"}


def _project(failure: Failure, context: Context) -> str | None:
    """The project the answer is about: ErrorInfo's consumer, the project the message names, the provider's for STS
    and IAM Credentials (whose APIs are enabled where the pool is), or IMAGE's; None when none is known (a command is
    then not printed: gcloud refuses a placeholder in --project)."""
    consumer = failure.get("consumer").removeprefix("projects/").removeprefix("project:")
    if google_registries.is_project(consumer):
        return consumer
    if failure.service in _API_OF and context.cfg is not None:
        return context.cfg.provider.project_number
    image = image_repository(failure, context)
    return image.project if image else None


def the_project(project: str | None, context: Context | None = None) -> str:
    """How a line names the project: "project P", or which project is meant when none is known."""
    if project:
        return f"project {project}"
    return "the project that owns the image" if context is None or context.image else "the project"


def image_repository(failure: Failure, context: Context) -> google_registries.Repository | None:
    """The Artifact Registry repository the answer is about: the one the text names, else IMAGE's."""
    host, path = failure.get("host"), failure.get("path")
    if path:  # the text names an image: its repository, or none (a base image elsewhere is not IMAGE's repository)
        return google_registries.repository_of(host or (context.image.host if context.image else ""), path)
    return google_registries.repository_of(context.image.host, context.image.path) if context.image else None


def _service_disabled(failure: Failure, context: Context) -> str:
    api = failure.get("service") or _API_OF.get(failure.service, "artifactregistry.googleapis.com")
    project = _project(failure, context)
    fix = (f"enable it with `{gcloud.services_enable(api, project=project)}`" if project else
           f"enable {api} in that project (APIs & Services in the Google Cloud console)")
    title = failure.get("title", "The API")
    return (
        f"{'The ' + title if not title.startswith('The ') else title} ({api}) is disabled in {the_project(project)}, so "
        f"{failure.service} refused the request (Google: {said(failure)}): {fix} and rerun in a few minutes."
    )


def _billing_disabled(failure: Failure, context: Context) -> str:
    project = _project(failure, context)
    check = f"`{gcloud.billing_describe(project)}` shows billingEnabled; " if project else ""
    return (
        f"Billing is disabled for {the_project(project)}, or its billing account is closed or past due, so {failure.service} "
        f"refused the request (Google: {said(failure)}): {check}link an open billing account to the project (Billing in "
        "the Google Cloud console), then rerun in a few minutes."
    )


def _caller(failure: Failure, context: Context) -> str:
    """Who the refused request spoke for, as an IAM member: at STS and IAM Credentials, the step's federated identity
    (the service account's token does not exist yet); at a registry, whoever the access token speaks for."""
    if failure.service in _API_OF and context.cfg is not None and context.step is not None:
        return context.cfg.provider.repository_member(context.step.claim("repositoryUuid"))
    return context.identity


def _identity_named(failure: Failure, context: Context) -> str:
    member = _caller(failure, context)
    return f"the step's federated identity ({member})" if member.startswith("principal") else member


def _vpc_service_controls(failure: Failure, context: Context) -> str:
    uid = failure.get("uid")
    return (
        f"VPC Service Controls refused the request to {failure.service}: a service perimeter around "
        f"{the_project(_project(failure, context), context)} does not admit this step (Google: {said(failure)}). IAM grants cannot fix this: "
        f"ask the perimeter's administrator for an ingress rule that admits {_identity_named(failure, context)} to "
        f"{failure.get('service', 'the service')}{f' (unique ID {uid} finds the denial in the audit logs)' if uid else ''}, "
        "or run the step from inside the perimeter."
    )


_CONSTRAINT_OF = {  # the org policy constraint each policy reason stands for (google/api/error_reason.proto)
    "RESOURCE_USAGE_RESTRICTION_VIOLATED": "constraints/gcp.restrictServiceUsage",
    "LOCATION_POLICY_VIOLATED": "constraints/gcp.resourceLocations",
    "LOCATION_ORG_POLICY_VIOLATED": "constraints/gcp.resourceLocations",
    "TLS_ORG_POLICY_VIOLATED": "constraints/gcp.restrictTLSVersion",
    "TLS_CIPHER_RESTRICTION_VIOLATED": "constraints/gcp.restrictTLSCipherSuites",
    "ENDPOINT_USAGE_RESTRICTION_VIOLATED": "constraints/gcp.restrictEndpointUsage",
}


def _organization_policy(failure: Failure, context: Context) -> str:
    constraint = failure.get("constraint").rstrip(".") or _CONSTRAINT_OF.get(failure.reason, "")
    project = _project(failure, context)
    check = (f"`{gcloud.org_policy_describe(constraint, project)}` shows it" if constraint and project else
             "the Organization Policies page of the Google Cloud console lists them")
    return (
        f"An organization policy{f' ({constraint})' if constraint else ''} forbids this request to {failure.service} in "
        f"{the_project(project)} (Google: {said(failure)}): {check}; ask your organization policy administrator to allow "
        f"{failure.get('service', 'the service') if _ABOUT_SERVICES.get(constraint, True) else 'an exception'} for the "
        "project, or use a project the policy allows."
    )


# Which constraints say which services may be used (the fix allows the service); the others are about where resources
# are, or how the connection is made (the fix is an exception for the project).
_ABOUT_SERVICES = {"constraints/gcp.resourceLocations": False, "constraints/gcp.restrictTLSVersion": False,
                   "constraints/gcp.restrictTLSCipherSuites": False}


def _organization_restrictions(failure: Failure, context: Context) -> str:
    """Organization Restrictions: an egress proxy adds X-Goog-Allowed-Resources, naming the organizations requests
    may reach; Google refuses a resource outside them, or a header it cannot read. No grant or variable changes it."""
    project = _project(failure, context)
    what, ask = (("the X-Goog-Allowed-Resources header it adds is malformed", "fix that header")
                 if failure.reason == "ORG_RESTRICTION_HEADER_INVALID" else
                 (f"its X-Goog-Allowed-Resources header does not list the organization that owns {the_project(project)}",
                  "allow that organization"))
    return (
        f"A proxy between the step and Google applies Organization Restrictions, and {what}, so {failure.service} "
        f"refused the request (Google: {said(failure)}): no IAM grant or pipe setting changes this; ask whoever runs the "
        f"proxy to {ask}, or run the step on a network without that proxy.")


def _account_state_invalid(failure: Failure, context: Context) -> str:
    sa = context.service_account
    if sa:
        check = (f"`{gcloud.service_account('describe', sa)}` shows disabled: true (`{gcloud.service_account('enable', sa)}` "
                 "enables it) or NOT_FOUND (a deleted account: set SERVICE_ACCOUNT to one that exists)")
    elif context.cfg is not None:
        provider = context.cfg.provider
        check = (f"check that the workload identity pool and its provider are enabled (`{gcloud.pool('describe', provider)}` "
                 f"and `{gcloud.provider('describe', provider)}` show their state), or set SERVICE_ACCOUNT")
    else:
        check = "check that the workload identity pool, its provider and the service account are enabled"
    return (f"The account behind the access token is disabled or deleted, so {failure.service} refused it (Google: "
            f"{said(failure)}): {check}.")


def _credential_unsupported(failure: Failure, context: Context) -> str:
    api = failure.get("service") or failure.service
    if context.identity.startswith("principal"):
        fix = (f"without SERVICE_ACCOUNT the pipe uses the federated token itself, which some APIs do not take: set "
               f"SERVICE_ACCOUNT to a service account this repository may impersonate, and {api} gets its token instead")
    else:
        fix = (f"{api} does not take this kind of token or account (a service account's access token, here): its "
               "documentation names the credentials it takes")
    return f"{failure.service} refused the kind of credential it was sent (Google: {said(failure)}): {fix}."


def _credentials_missing(failure: Failure, context: Context) -> str:
    return (
        f"No credentials reached {failure.service} (Google: {said(failure)}), though the pipe sent them: something "
        "between the step and Google removed the Authorization header (a proxy: check HTTPS_PROXY and NO_PROXY), or the "
        "request went to a host the credentials were not for (for a pull, IMAGE must name the repository's own host).")


def _overloaded_credentials(failure: Failure, context: Context) -> str:
    return (
        f"The request to {failure.service} carried two credentials at once (Google: {said(failure)}): the pipe sends one, "
        "so something between the step and Google added its own (a proxy that injects credentials): check HTTPS_PROXY "
        "and NO_PROXY, and let requests to Google's hosts pass unchanged.")


def _blocked_by_admin(failure: Failure, context: Context) -> str:
    return (
        f"A Google Workspace administrator of the account's organization blocks it from {failure.get('service') or failure.service} "
        f"(Google: {said(failure)}): no IAM grant or pipe setting changes this; only that administrator can allow it "
        "(Admin console, Security, API controls).")


def _quota_used_up(failure: Failure, context: Context) -> str:
    project = _project(failure, context)
    metric, limit = failure.get("quota_metric"), failure.get("quota_limit")
    which = f" ({metric}, limit {limit})" if metric and limit else ""
    return (
        f"A quota{which} of {the_project(project)} for {failure.get('service') or failure.service} is used up (Google: "
        f"{said(failure)}): waiting does not restore a resource quota; free some of it, or ask for more (IAM & Admin, "
        "Quotas in the Google Cloud console).")


def _reason_without_advice(failure: Failure, context: Context) -> str:
    """A reason from google/api/error_reason.proto that no line here explains: Google's own classification, said as
    such, rather than a guess from the message's words (which would be some other cause's fix)."""
    return (
        f"{failure.service} refused the request for the reason {failure.shown_reason or 'it names'} (Google: {said(failure)}), "
        "which is none of the causes the pipe knows a fix for: Google describes each reason in "
        "https://github.com/googleapis/googleapis/blob/master/google/api/error_reason.proto; "
        f"{DOCTOR}.")


def _project_missing(failure: Failure, context: Context) -> str:
    project = _project(failure, context)
    commands = (f" (`{gcloud.project_describe(project)}`); a project deleted less than 30 days ago can be restored with "
                f"`{gcloud.project_undelete(project)}`") if project else ""
    return f"{the_project(project).capitalize()} does not exist or was deleted (Google: {said(failure)}): check the project in IMAGE{commands}."


def _scope_insufficient(failure: Failure, context: Context) -> str:
    scopes = " ".join(context.cfg.scopes) if context.cfg else CLOUD_PLATFORM
    return (
        f"The access token's scopes do not cover {failure.service} (Google: {said(failure)}): ACCESS_TOKEN_SCOPES is "
        f"{scopes}; keep {CLOUD_PLATFORM} (the default) in ACCESS_TOKEN_SCOPES."
    )


def _token_expired(failure: Failure, context: Context) -> str:
    if failure.service == "Google STS":  # no access token exists yet at STS: the expired token is the step's
        return step_token_expired(failure, context)
    if failure.service == "IAM Credentials":  # the federated token STS just issued, whose lifetime no variable sets
        return (f"IAM Credentials says the federated token expired (Google: {said(failure)}): STS issued it moments "
                "before, so most likely the runner's clock is off or the step stalled between the two calls; rerun the step.")
    if failure.get("storage_code") == "ExpiredToken" or "signature expired" in failure.message.lower():
        return (f"The signed URL a layer was downloaded from expired before the download finished (Google: {said(failure)}): "
                "a slow or stalled download; rerun the step, and check the step's network if it keeps happening.")
    return (
        f"{failure.service} says the access token expired (Google: {said(failure)}): a long pull or run outlived it; rerun "
        "the step, or raise ACCESS_TOKEN_LIFETIME."
    )


def step_token_expired(failure: Failure, context: Context) -> str:
    """Google says the step's OIDC token is expired or not yet valid: Bitbucket's token lasts about an hour."""
    step = context.step
    times = f"iat {step.claim('iat')}, exp {step.claim('exp')}; " if step else ""
    return (
        f"Google says the step's OIDC token is expired or not yet valid ({times}Google: {said(failure)}): Bitbucket's "
        "token lasts about an hour from the start of the step, so run the pipe earlier in the step or in its own step "
        "with `oidc: true`; if OIDC_TOKEN is set, it must be this step's token, not one saved earlier; a fresh token "
        "refused this way means the step's clock is off.")


def _suspended(failure: Failure, context: Context) -> str:
    return (
        f"{the_project(_project(failure, context)).capitalize()} is suspended (Google: {said(failure)}): its owners see why in the "
        "Google Cloud console's notifications and can appeal there; nothing in the pipe's settings can change it."
    )


def _requester_pays(failure: Failure, context: Context) -> str:
    """A user project refused: a requester pays bucket behind a layer, or, elsewhere, the caller's use of the project
    Google names (roles/serviceusage.serviceUsageConsumer, as Google's own message says)."""
    layer = (failure.get("storage_code") or failure.get("fetching") == "layer" or failure.get("bucket")
             or "requester pays" in failure.message.lower() or failure.service.startswith("Cloud Storage"))
    if not layer:
        project = _project(failure, context)
        member = _caller(failure, context)
        grant = (f"`{gcloud.project_grant(project, 'roles/serviceusage.serviceUsageConsumer', member)}`"
                 if project and ":" in member and " " not in member else f"roles/serviceusage.serviceUsageConsumer for {member}")
        return (f"{failure.service} refused the use of {the_project(project)} as the request's quota and billing project "
                f"(Google: {said(failure)}): grant {grant} on it.")
    bucket = failure.get("bucket")
    turn_off = f" (`{gcloud.no_requester_pays('gs://' + bucket)}`)" if bucket else ""
    return (
        f"The Cloud Storage bucket{f' {bucket}' if bucket else ''} that holds the image's layers is a requester pays bucket, "
        f"and the Docker daemon cannot name a project to bill (Google: {said(failure)}): turn requester pays off on that "
        f"bucket{turn_off}, or move the image to Artifact Registry."
    )


def gcr_shutdown(failure: Failure, context: Context) -> str:
    """Container Registry is shut down for the project (a reason, and a 412 the registry's rules meet)."""
    project = _project(failure, context)
    migrate = (f"`{gcloud.gcr_migrate(project)}`" if project else
               "gcloud's `artifacts docker upgrade migrate` for the project that owns the image")
    return (
        f"Container Registry no longer serves {the_project(project)}: gcr.io is shut down for projects that did not move "
        f"(Google: {said(failure)}). Move to Artifact Registry: {migrate} creates gcr.io repositories in Artifact "
        "Registry that keep the same image names; or push the image to a LOCATION-docker.pkg.dev repository and change IMAGE."
    )


def _lifetime_over_one_hour(failure: Failure, context: Context) -> str:
    """IAM refuses a lifetime over 1 hour unless the org policy lists the account; the constraint is the remedy."""
    cfg = context.cfg
    if cfg is None or cfg.lifetime > 3600:
        asked = f" for {cfg.service_account} (ACCESS_TOKEN_LIFETIME is {cfg.lifetime}s; " if cfg else " ("
        return (
            f"Google refused a token lifetime over 1 hour{asked}Google: {said(failure)}): set ACCESS_TOKEN_LIFETIME to "
            "3600s or less, or list the account in the org policy constraints/iam.allowServiceAccountCredentialLifetimeExtension.")
    return (
        f"Google says the token lifetime exceeds 1 hour although ACCESS_TOKEN_LIFETIME is {cfg.lifetime}s (Google: "
        f"{said(failure)}): the runner's clock is ahead of Google's; set ACCESS_TOKEN_LIFETIME to 3300s to leave room.")


REASONS = {
    "SERVICE_DISABLED": _service_disabled,
    "BILLING_DISABLED": _billing_disabled,
    "SECURITY_POLICY_VIOLATED": _vpc_service_controls,
    "RESOURCE_USAGE_RESTRICTION_VIOLATED": _organization_policy,
    "LOCATION_POLICY_VIOLATED": _organization_policy,
    "LOCATION_ORG_POLICY_VIOLATED": _organization_policy,
    "TLS_ORG_POLICY_VIOLATED": _organization_policy,
    "TLS_CIPHER_RESTRICTION_VIOLATED": _organization_policy,
    "ENDPOINT_USAGE_RESTRICTION_VIOLATED": _organization_policy,
    "ORG_POLICY": _organization_policy,
    "ORG_RESTRICTION_VIOLATION": _organization_restrictions,
    "ORG_RESTRICTION_HEADER_INVALID": _organization_restrictions,
    "ACCOUNT_STATE_INVALID": _account_state_invalid,
    "ACCESS_TOKEN_TYPE_UNSUPPORTED": _credential_unsupported,
    "CREDENTIAL_TYPE_UNSUPPORTED": _credential_unsupported,
    "ACCOUNT_TYPE_UNSUPPORTED": _credential_unsupported,
    "CREDENTIALS_MISSING": _credentials_missing,
    "OVERLOADED_CREDENTIALS": _overloaded_credentials,
    "USER_BLOCKED_BY_ADMIN": _blocked_by_admin,
    "RESOURCE_QUOTA_EXCEEDED": _quota_used_up,
    "CONSUMER_INVALID": _project_missing,
    "RESOURCE_PROJECT_INVALID": _project_missing,
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT": _scope_insufficient,
    "ACCESS_TOKEN_EXPIRED": _token_expired,
    "CONSUMER_SUSPENDED": _suspended,
    "GCP_SUSPENDED": _suspended,
    "USER_PROJECT_MISSING": _requester_pays,
    "USER_PROJECT_DENIED": _requester_pays,
    "GCR_SHUTDOWN": gcr_shutdown,
    "LIFETIME_OVER_ONE_HOUR": _lifetime_over_one_hour,
}


def transient(failure: Failure, pulling: str | None = None) -> str:
    """Google's or the registry's own trouble, or the network's, that outlasted the retries: not the user's configuration."""
    if failure.transient == retry.THROTTLED and pulling and failure.service.startswith("the registry "):
        return (  # a registry outside Google: its own limit (Docker Hub's lasts hours), which no Google quota raises
            f"{failure.service.removeprefix('the registry ')} is limiting pulls of {pulling} ({said(failure)}) even after "
            "retries: that registry's own limit, which no Google quota raises; wait for it to reset, or copy the image "
            "to Artifact Registry (or a remote repository there with upstream credentials) and change IMAGE.")
    if failure.transient == retry.THROTTLED:
        who = f"{failure.service}, serving {pulling}," if pulling else failure.service
        return (
            f"{who} is rate-limiting these requests ({said(failure)}) even after retries: this is "
            f"{'the registry' if pulling else 'Google'}'s quota, not your configuration; rerun the step, spread out "
            f"parallel steps, or ask for more quota (IAM & Admin → Quotas in the Google Cloud console); {RETRY_BUDGET}."
        )
    cause = ("the network between the step and it failed" if failure.transient == retry.NETWORK else
             "the registry was unavailable" if pulling else "this is on Google's side")
    what = f"Pulling {pulling} kept failing" if pulling else f"{failure.service} is unavailable"
    return f"{what} ({said(failure)}) even after retries: {cause}, not your configuration; rerun the step; {RETRY_BUDGET}."


_LOCATION_REFUSED = re.compile(r"not available in your (?:location|country|region)", re.I)


def _location_refused(failure: Failure, context: Context) -> str | None:
    """Google's answer to an address in a country or region it does not serve: no identity or permission is involved."""
    if not _LOCATION_REFUSED.search(failure.message):
        return None
    return (
        f"{failure.service} refused to serve the step's location (Google: {said(failure)}): Google does not serve some "
        "countries and regions and judges by the address the step's traffic leaves from; no grant or pipe setting changes "
        "that: run the step on a runner elsewhere (Bitbucket's cloud runners), or copy the image to a registry reachable from "
        "there and change IMAGE.")


def explain(failure: Failure, context: Context, rules) -> str:
    """The shared reasons first, then the service's own rules (functions of the failure and context, each a line or
    None: pipe.diagnose_google's and pipe.diagnose_registry's), then transient trouble, else the empty string."""
    if failure.reason in REASONS:
        return REASONS[failure.reason](failure, context)
    if failure.reason == "RATE_LIMIT_EXCEEDED" and failure.domain:  # Google's own, retried: what outlived the retries
        return transient(failure)
    if failure.domain.startswith("googleapis.com") and failure.reason and failure.reason != "IAM_PERMISSION_DENIED":
        return _reason_without_advice(failure, context)  # IAM's own reason is its permission rule's (some answers say it here)
    if refused := _location_refused(failure, context):
        return refused
    for rule in rules:
        found = rule(failure, context)
        if found:
            return found
    if failure.transient:
        return transient(failure)
    return ""
