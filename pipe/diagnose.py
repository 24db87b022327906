"""Google's and the registries' refusals, explained: what is wrong, where, and the command that fixes it.

Each answer is first read into a Failure (pipe.error_models: the reason, status and code, then Google's standard
messages where there is no structure). The explanation then goes by the reason when there is one (a disabled API,
billing, VPC Service Controls, an organization policy, a missing project: the same for every service), then by
what each service's code means, then by Google's wording where that is all there is. Where one answer has several
causes, they are named most likely first, with the check that tells them apart; a fix is never stated as fact for
a cause the answer does not establish. Every command printed is one gcloud 528 accepts (pipe.gcloud).
"""

import re
from dataclasses import dataclass
from http import HTTPStatus

from pipe import config, gcloud, google_registries, retry, service_accounts, shown
from pipe.config import CLOUD_PLATFORM, Config
from pipe.error_models import Failure, from_google, from_registry
from pipe.oidc import StepToken
from pipe.parsers import Image
from pipe.provider import named_by_audience

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


def _line(text: str) -> str:
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
    image = _image_repository(failure, context)
    return image.project if image else None


def _in(project: str | None, context: Context | None = None) -> str:
    if project:
        return f"project {project}"
    return "the project that owns the image" if context is None or context.image else "the project"


def _service_disabled(failure: Failure, context: Context) -> str:
    api = failure.get("service") or _API_OF.get(failure.service, "artifactregistry.googleapis.com")
    project = _project(failure, context)
    fix = (f"enable it with `{gcloud.services_enable(api, project=project)}`" if project else
           f"enable {api} in that project (APIs & Services in the Google Cloud console)")
    title = failure.get("title", "The API")
    return (
        f"{'The ' + title if not title.startswith('The ') else title} ({api}) is disabled in {_in(project)}, so "
        f"{failure.service} refused the request (Google: {said(failure)}): {fix} and rerun in a few minutes."
    )


def _billing_disabled(failure: Failure, context: Context) -> str:
    project = _project(failure, context)
    check = f"`{gcloud.billing_describe(project)}` shows billingEnabled; " if project else ""
    return (
        f"Billing is disabled for {_in(project)}, or its billing account is closed or past due, so {failure.service} "
        f"refused the request (Google: {said(failure)}): {check}link an open billing account to the project (Billing in "
        "the Google Cloud console), then rerun in a few minutes."
    )


def _vpc_service_controls(failure: Failure, context: Context) -> str:
    uid = failure.get("uid")
    return (
        f"VPC Service Controls refused the request to {failure.service}: a service perimeter around "
        f"{_in(_project(failure, context), context)} does not admit this step (Google: {said(failure)}). IAM grants cannot fix this: "
        f"ask the perimeter's administrator for an ingress rule that admits {context.identity} to "
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
        f"{_in(project)} (Google: {said(failure)}): {check}; ask your organization policy administrator to allow "
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
                 (f"its X-Goog-Allowed-Resources header does not list the organization that owns {_in(project)}",
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
        f"A quota{which} of {_in(project)} for {failure.get('service') or failure.service} is used up (Google: "
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
    return f"{_in(project).capitalize()} does not exist or was deleted (Google: {said(failure)}): check the project in IMAGE{commands}."


def _scope_insufficient(failure: Failure, context: Context) -> str:
    scopes = " ".join(context.cfg.scopes) if context.cfg else CLOUD_PLATFORM
    return (
        f"The access token's scopes do not cover {failure.service} (Google: {said(failure)}): ACCESS_TOKEN_SCOPES is "
        f"{scopes}; keep {CLOUD_PLATFORM} (the default) in ACCESS_TOKEN_SCOPES."
    )


def _token_expired(failure: Failure, context: Context) -> str:
    return (
        f"{failure.service} says the access token expired (Google: {said(failure)}): a long pull or run outlived it; rerun "
        "the step, or raise ACCESS_TOKEN_LIFETIME."
    )


def _suspended(failure: Failure, context: Context) -> str:
    return (
        f"{_in(_project(failure, context)).capitalize()} is suspended (Google: {said(failure)}): its owners see why in the "
        "Google Cloud console's notifications and can appeal there; nothing in the pipe's settings can change it."
    )


def _requester_pays(failure: Failure, context: Context) -> str:
    bucket = failure.get("bucket")
    turn_off = f" (`{gcloud.no_requester_pays('gs://' + bucket)}`)" if bucket else ""
    return (
        f"The Cloud Storage bucket{f' {bucket}' if bucket else ''} that holds the image's layers is a requester pays bucket, "
        f"and the Docker daemon cannot name a project to bill (Google: {said(failure)}): turn requester pays off on that "
        f"bucket{turn_off}, or move the image to Artifact Registry."
    )


def _gcr_shutdown(failure: Failure, context: Context) -> str:
    project = _project(failure, context)
    migrate = (f"`{gcloud.gcr_migrate(project)}`" if project else
               "gcloud's `artifacts docker upgrade migrate` for the project that owns the image")
    return (
        f"Container Registry no longer serves {_in(project)}: gcr.io is shut down for projects that did not move "
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
    "GCR_SHUTDOWN": _gcr_shutdown,
    "LIFETIME_OVER_ONE_HOUR": _lifetime_over_one_hour,
}


def transient(failure: Failure, pulling: str | None = None) -> str:
    """Google's or the registry's own trouble, or the network's, that outlasted the retries: not the user's configuration."""
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


def _no_api_there(failure: Failure, context: Context) -> str | None:
    """A web page answering 404 or 405 where STS or IAM Credentials should answer: no API at the URL the pipe built
    from the endpoint's root, so nothing about the provider, the account or the grants can be read from it."""
    if failure.get("answer") != "web page" or failure.status not in (404, 405) or context.cfg is None:
        return None
    cfg = context.cfg
    name, root = ("STS_ENDPOINT", cfg.sts_endpoint) if failure.service == "Google STS" else ("IAM_CREDENTIALS_ENDPOINT", cfg.iam_endpoint)
    google = config.default_endpoint(name, cfg.universe_domain)
    chooser = cfg.sources.get(name, name)
    if root == google:
        return (f"{failure.service} ({root}) answered with a web page, not the API's answer ({said(failure)}): something "
                "between the step and Google (a proxy or a firewall) answered in its place; check HTTPS_PROXY and the "
                "step's network access to *.googleapis.com.")
    return (f"{failure.service} answered with a web page, not the API's answer ({said(failure)}): no API is at {name} "
            f"{root}{f' (set by {chooser})' if chooser != name else ''}; set {name} to the API's root, {google} for "
            "Google (the pipe adds the path), or unset it.")


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


def _explain(failure: Failure, context: Context, rules) -> str:
    """The shared reasons first, then the service's own rules, then transient trouble, else None."""
    if failure.reason in REASONS:
        return REASONS[failure.reason](failure, context)
    if failure.reason == "RATE_LIMIT_EXCEEDED":  # retried (pipe.error_models), so this is what outlived the retries
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


# --- Google STS ---------------------------------------------------------------------------------------------------

_ISSUER = re.compile(r"issuer in ID Token (\S{1,500}) does not match the expected ones?(?: in config)?:?\s*(\S{0,500})")


def sts_error(body: dict, cfg: Config, step: StepToken, status: int | None = None) -> str:
    failure = from_google(body, status, "Google STS")
    context = Context(cfg, step)
    return _line(_explain(failure, context, _STS_RULES) or _sts_unknown(failure, context))


def _sts_empty(failure: Failure, context: Context) -> str | None:
    if "subject_token must be nonempty" in failure.message:
        return (f"The step's OIDC token reached Google STS empty (Google: {said(failure)}): add `oidc: true` to the step in "
                "bitbucket-pipelines.yml, and leave OIDC_TOKEN unset unless it holds a token.")
    return None


def _sts_audience_invalid(failure: Failure, context: Context) -> str | None:
    if 'Invalid value for "audience"' not in failure.message:
        return None
    cfg = context.cfg
    universe = "" if cfg.universe_domain == "googleapis.com" else (
        f" With UNIVERSE_DOMAIN {cfg.universe_domain}, STS_ENDPOINT ({cfg.sts_endpoint}) must be that universe's STS.")
    return (
        f"Google STS does not take WORKLOAD_IDENTITY_PROVIDER ({cfg.provider.name}) as a provider's name (Google: "
        f"{said(failure)}): it must be the provider's full resource name with the project NUMBER, naming the provider, not "
        f"the pool or a principalSet; `{gcloud.provider('describe', cfg.provider)}` shows whether it is one.{universe}"
    )


def _sts_no_provider(failure: Failure, context: Context) -> str | None:
    if failure.code != "invalid_target" and "target service indicated" not in failure.message:
        return None
    p = context.cfg.provider
    return (
        f"Google STS found no active workload identity provider {p.name} (Google: {said(failure)}): either the project "
        f"number {p.project_number}, pool ID {p.pool_id} or provider ID {p.provider_id} in WORKLOAD_IDENTITY_PROVIDER is "
        f"wrong, or the provider is disabled or deleted. Check with `{gcloud.provider('describe', p)}`: NOT_FOUND means "
        f"fix WORKLOAD_IDENTITY_PROVIDER; state DISABLED means `{gcloud.provider('update-oidc', p, '--no-disabled')}`; "
        f"state DELETED means `{gcloud.provider('undelete', p)}` (within 30 days)."
    )


def _sts_audience_mismatch(failure: Failure, context: Context) -> str | None:
    """Never widen a provider first: the token may simply have been requested for another provider."""
    if not re.search(r"audience in (?:ID Token|JWT)", failure.message):
        return None
    cfg, auds = context.cfg, context.step.audiences
    named = [p for aud in auds if (p := named_by_audience(aud))]
    if named and cfg.provider not in named:
        return (
            f"The step's OIDC token was requested for provider {named[0].name} (its audience), but WORKLOAD_IDENTITY_PROVIDER "
            f"is {cfg.provider.name} (Google: {said(failure)}): use the same provider in both, the step's `oidc: audiences:` "
            "and WORKLOAD_IDENTITY_PROVIDER; do not add the other provider's audience to this one."
        )
    check = gcloud.provider("describe", cfg.provider, "--format=" + gcloud.arg("value(oidc.allowedAudiences)"))
    widen = (
        "only if it is, add the audience (the flag replaces the list, so repeat every audience it printed): "
        f"`{gcloud.provider('update-oidc', cfg.provider, gcloud.list_flag('--allowed-audiences', auds[:1]))}`; " if auds else "")
    return (
        f"The step's OIDC token has audience {', '.join(auds) or '(none)'}, which provider {cfg.provider.provider_id} does "
        f"not allow (Google: {said(failure)}). First check WORKLOAD_IDENTITY_PROVIDER names the provider set up for this "
        f"workspace: `{check}` lists the audiences it accepts (an empty list means only {cfg.provider.default_oidc_audience}); "
        f"{widen}or request that audience instead with the step's `oidc: audiences: [{cfg.provider.default_oidc_audience}]`."
    )


def _sts_issuer(failure: Failure, context: Context) -> str | None:
    issuer = _ISSUER.search(failure.message)
    cfg, iss = context.cfg, context.step.claim("iss")
    if "discovery document" in failure.message and "issuer" in failure.message:
        return (
            f"Google fetched the OIDC discovery document of provider {cfg.provider.provider_id}'s issuer, and the issuer it "
            f"names is not the provider's issuer URI (Google: {said(failure)}): the two must be the same string, so a "
            f"trailing slash or another form of the URL fails; Bitbucket's is the step token's iss, {iss}: "
            f"`{gcloud.provider('update-oidc', cfg.provider, '--issuer-uri=' + gcloud.arg(iss))}`.")
    if not issuer and not ("issuer" in failure.message and "not found" in failure.message):
        return None
    expected = issuer[2] if issuer and issuer[2] else "another issuer"
    return (
        f"The step's OIDC token was issued by {iss}, but provider {cfg.provider.provider_id} expects {expected} (Google: "
        f"{said(failure)}). Each Bitbucket workspace has its own issuer (Repository settings → OpenID Connect): if that "
        "provider belongs to another workspace, set WORKLOAD_IDENTITY_PROVIDER to this workspace's provider; if it is this "
        f"workspace's provider, fix its issuer with `{gcloud.provider('update-oidc', cfg.provider, '--issuer-uri=' + gcloud.arg(iss))}`."
    )


def _sts_token_rejected(failure: Failure, context: Context) -> str | None:
    step, p, message = context.step, context.cfg.provider, failure.message
    if "stale to sign-in" in message:
        return (
            f"Google says the step's OIDC token is expired or not yet valid (iat {step.claim('iat')}, exp {step.claim('exp')}; "
            f"Google: {said(failure)}): Bitbucket's token lasts about an hour from the start of the step, so run the pipe "
            "earlier in the step or in its own step with `oidc: true`; if OIDC_TOKEN is set, it must be this step's token, "
            "not one saved earlier; a fresh token refused this way means the step's clock is off.")
    if "Unable to parse the ID Token" in message:
        return (f"Google STS could not parse the step's OIDC token as a JWT (Google: {said(failure)}): pass "
                "$BITBUCKET_STEP_OIDC_TOKEN unchanged, with no quotes, spaces or extra characters (check OIDC_TOKEN if you set it).")
    iss = step.claim("iss")
    if "Unable to verify the ID Token signature" in message:
        return (
            f"Google could not verify the step token's signature with the keys provider {p.provider_id} holds for {iss} "
            f"(Google: {said(failure)}): if the provider has uploaded keys (--jwk-json-path), they are out of date; upload the "
            f"current ones from {iss}/keys.json, or remove them so Google fetches the issuer's keys itself.")
    if "Error connecting to the given credential's issuer" in message:
        return (
            f"Google could not fetch the OIDC discovery document or keys of {iss} (Google: {said(failure)}): the issuer must "
            f"serve {iss}/.well-known/openid-configuration and its keys publicly over https; if provider {p.provider_id} has "
            f"uploaded keys (--jwk-json-path), the step token's key must be among them (refresh them from {iss}/keys.json).")
    return None


def _sts_condition(failure: Failure, context: Context) -> str | None:
    step, p = context.step, context.cfg.provider
    if "rejected by the attribute condition" in failure.message:
        condition = gcloud.arg(f"assertion.repositoryUuid == '{step.claim('repositoryUuid')}'")
        return (
            f"Provider {p.provider_id}'s attribute condition rejected this step (repositoryUuid {step.claim('repositoryUuid')}, "
            f"branchName {step.claim('branchName')}, deploymentEnvironmentUuid {step.claim('deploymentEnvironmentUuid')}; "
            f"Google: {said(failure)}): compare with "
            f"`{gcloud.provider('describe', p, '--format=' + gcloud.arg('value(attributeCondition)'))}` (claims are "
            "case-sensitive and must be mapped before the condition can use them); to admit this repository, "
            f"`{gcloud.provider('update-oidc', p, '--attribute-condition=' + condition)}`.")
    if "127 bytes" in failure.message:
        mapping = "google.subject=assertion.repositoryUuid,attribute.repository_uuid=assertion.repositoryUuid"
        return (
            f"A mapped attribute of provider {p.provider_id} exceeds Google's 127-byte limit (sub is "
            f"{len(step.claim('sub').encode())} bytes; Google: {said(failure)}): map shorter claims, e.g. "
            f"`{gcloud.provider('update-oidc', p, '--attribute-mapping=' + mapping)}` (the flag replaces the whole mapping: "
            "keep every attribute your condition and bindings use).")
    if "Scope(s) must be provided" in failure.message or "requested_token_type" in failure.message:
        return (f"Google STS refused the token exchange for {p.name} as malformed (Google: {said(failure)}): this is a bug in "
                "the pipe, please report it with the step's log (DEBUG: 'true' prints no tokens).")
    return None


_STS_RULES = (_no_api_there, _sts_empty, _sts_audience_invalid, _sts_no_provider, _sts_audience_mismatch, _sts_issuer,
              _sts_token_rejected, _sts_condition)


def _sts_unknown(failure: Failure, context: Context) -> str:
    cfg, step = context.cfg, context.step
    return (
        f"Google STS refused the token exchange for {cfg.provider.name} ({said(failure)}): compare the provider's issuer, "
        f"audiences and condition (`{gcloud.provider('describe', cfg.provider)}`) with this step's token (iss "
        f"{step.claim('iss')}, aud {', '.join(step.audiences) or '(none)'}), and {DOCTOR}."
    )


# --- IAM Credentials ------------------------------------------------------------------------------------------

def iam_error(body: dict, cfg: Config, step: StepToken, method: str = "generateAccessToken", status: int | None = None) -> str:
    failure = from_google(body, status, "IAM Credentials")
    context = Context(cfg, step)
    explained = _explain(failure, context, (_no_api_there, _iam_not_found, _iam_unauthenticated))
    if not explained and (failure.status == 403 or failure.code == "PERMISSION_DENIED" or failure.reason == "IAM_PERMISSION_DENIED"
                          or "denied on resource" in failure.message or "does not have permission" in failure.message):
        explained = _impersonation_denied(cfg, context.step, method, failure)
    if not explained and failure.code == "FAILED_PRECONDITION":
        sa = cfg.service_account
        explained = (
            f"IAM Credentials says the state of {sa} does not allow {method} (Google: {said(failure)}): most likely the "
            f"account is disabled — `{gcloud.service_account('describe', sa)}` shows disabled: true, and "
            f"`{gcloud.service_account('enable', sa)}` enables it.")
    if not explained and (failure.code == "INVALID_ARGUMENT" or (failure.status == 400 and not failure.code)):
        asked = f"ID_TOKEN_AUDIENCE ({cfg.id_token_audience})" if method == "generateIdToken" else f"ACCESS_TOKEN_SCOPES ({' '.join(cfg.scopes)})"
        explained = (
            f"IAM Credentials refused the {method} request for {cfg.service_account} as invalid (Google: {said(failure)}): "
            f"check {asked} — scopes are OAuth scopes such as cloud-platform, not your service's URL (that is "
            "ID_TOKEN_AUDIENCE) — and that SERVICE_ACCOUNT and DELEGATES are plain service account e-mails.")
    return _line(explained or (
        f"IAM Credentials {method} for {cfg.service_account} failed ({said(failure)}): check the account with "
        f"`{gcloud.service_account('describe', cfg.service_account)}` and {DOCTOR}."))


def _iam_not_found(failure: Failure, context: Context) -> str | None:
    cfg = context.cfg
    missing = re.search(r"Gaia id not found for email (\S{1,300})", failure.message)
    if failure.status != 404 and failure.code != "NOT_FOUND" and not missing:
        return None
    named = missing[1].strip(".,;:'\"()[]") if missing else ""
    who = named if service_accounts.is_email(named) else cfg.service_account
    chain = f" (or one of DELEGATES: {', '.join(cfg.delegates)})" if cfg.delegates and not missing else ""
    return (
        f"Service account {who}{chain} was not found (HTTP {failure.status or 404}: {shown.clipped(failure.message or 'no message', 300)}): "
        f"check the e-mail in SERVICE_ACCOUNT for a typo, another project or a deleted account with "
        f"`{gcloud.service_account('describe', who)}`.")


def _iam_unauthenticated(failure: Failure, context: Context) -> str | None:
    if failure.status != 401 and failure.code != "UNAUTHENTICATED" and "invalid authentication credentials" not in failure.message:
        return None
    cfg = context.cfg
    return (
        f"IAM Credentials did not accept the federated token while impersonating {cfg.service_account} ({said(failure)}): "
        f"STS_ENDPOINT ({cfg.sts_endpoint}) and IAM_CREDENTIALS_ENDPOINT ({cfg.iam_endpoint}) must be Google's endpoints of "
        "the same universe, so the token from one is valid at the other.")


def _impersonation_denied(cfg: Config, step: StepToken, method: str, failure: Failure) -> str:
    sa = cfg.service_account
    member = cfg.provider.repository_member(step.claim("repositoryUuid"))
    grant = gcloud.service_account("add-iam-policy-binding", sa, "--role=roles/iam.workloadIdentityUser", f"--member={gcloud.arg(member)}")
    chain = (
        f" With DELEGATES, the repository needs that role on {cfg.delegates[0]} and each account in the chain "
        "roles/iam.serviceAccountTokenCreator on the next." if cfg.delegates else "")
    return (
        f"This repository's identity may not impersonate {sa} for {method} (Google: {said(failure)}). Most likely the grant "
        f"is missing: `{grant}`. If that binding exists, its principalSet does not match this token: provider "
        f"{cfg.provider.provider_id} must map attribute.repository_uuid=assertion.repositoryUuid and the binding must name "
        f"repository {step.claim('repositoryUuid')}. If the account does not exist, "
        f"`{gcloud.service_account('describe', sa)}` says NOT_FOUND. Otherwise wait: {PROPAGATION}.{chain}")


# --- the registry -----------------------------------------------------------------------------------------------

def token_service_error(status: int, text: str, image: Image, principal: str, realm: str) -> str:
    """The registry's token service refused the pipe's request for a pull token."""
    failure = from_registry(text, status, f"the token service {realm}")
    return _registry_line(failure, Context(image=image, principal=principal))


def pull_error(text: str, image: Image, principal: str, transient: str | None = None) -> str:
    """The Docker daemon's report of a failed pull, after the retries."""
    failure = from_registry(text, None, "the registry")
    failure.transient = transient or failure.transient
    return _registry_line(failure, Context(image=image, principal=principal))


def manifest_error(status: int, image: Image, principal: str) -> str:
    """The registry's answer when the doctor reads IMAGE's manifest with the pull token."""
    code = {401: "UNAUTHORIZED", 403: "DENIED", 404: "MANIFEST_UNKNOWN"}.get(status, "")
    failure = Failure("the registry", status, code, message=f"HTTP {status} for the manifest of {image.display}",
                      transient=retry.of_status(status))
    return _registry_line(failure, Context(image=image, principal=principal))


def _registry_line(failure: Failure, context: Context) -> str:
    host = failure.get("host") or context.image.host
    failure.service = _registry_name(host) if failure.service == "the registry" else failure.service
    explained = _explain(failure, context, _REGISTRY_RULES)
    if failure.transient and explained == transient(failure):
        explained = transient(failure, context.image.display)
    return _line(explained or f"Pulling {context.image.display} failed ({said(failure)}): check IMAGE, and {DOCTOR}.")


def _registry_name(host: str) -> str:
    if host.endswith("storage.googleapis.com") or host.endswith(".googleusercontent.com"):
        return "Cloud Storage (serving the image's layers)"
    if google_registries.is_container_registry(host):
        return f"Container Registry ({host})"
    return "Artifact Registry" if google_registries.is_google(host) else f"the registry {host}"


def _image_repository(failure: Failure, context: Context) -> google_registries.Repository | None:
    """The Artifact Registry repository the answer is about: the one the text names, else IMAGE's."""
    host, path = failure.get("host"), failure.get("path")
    if path:  # the text names an image: its repository, or none (a base image elsewhere is not IMAGE's repository)
        return google_registries.repository_of(host or (context.image.host if context.image else ""), path)
    return google_registries.repository_of(context.image.host, context.image.path) if context.image else None


_PERMISSION = re.compile(r'Permission ["\'](?P<perm>[\w.]{1,100})["\'] denied on resource ["\'](?P<res>projects/[^"\']{1,300})["\']')
_ANONYMOUS = re.compile(r'Unauthenticated requests do not have permission ["\'](?P<perm>[\w.]{1,100})["\'] on resource '
                        r'["\'](?P<res>projects/[^"\']{1,300})["\']')
_NO_REPOSITORY = re.compile(r'Repository "(?P<repo>[^"]{1,200})" not found')
# The daemon's words for a missing tag or digest: Docker's own, and containerd's resolver (the reference repeated
# before "not found"). The retired v1 protocol's words say the same, but v1 registries said them to callers who could
# not read the image too.
_MANIFEST_NOT_FOUND = re.compile(r"\bmanifest for \S{1,600} not found|\bmanifest unknown"
                                 r"|failed to resolve reference \"(?P<ref>[^\"]{1,600})\": (?P=ref): not found")
_V1_NOT_FOUND = re.compile(r"\bTag \S{1,200} not found in repository \S|\bError: image \S{1,600} not found")


def _repository_denied(failure: Failure, context: Context) -> str | None:
    found = _ANONYMOUS.search(failure.message) or _PERMISSION.search(failure.message)
    if not found:
        return None
    repo = _resource(found["res"], failure, context)
    role = "writer" if "upload" in found["perm"] else "reader"
    if repo:
        exists = f"`{gcloud.repository('describe', repo.repository, repo.project, repo.location)}`"
        grant = f"`{_grant(repo, f'roles/artifactregistry.{role}', context)}`"
    else:
        exists, grant = "gcloud artifacts repositories describe", f"grant roles/artifactregistry.{role} on it"
    if found.re is _ANONYMOUS:
        own_host = (repo.repository if repo.repository.endswith("gcr.io") else f"{repo.location}-docker.pkg.dev") if repo else (
            "LOCATION-docker.pkg.dev")
        return (
            f"Artifact Registry received no credentials for {context.image.display} (Google: {said(failure)}): the pipe "
            f"hands the Docker daemon a registry token for {context.image.host} only, so the pull reached the registry by "
            f"another host or through a mirror or proxy that drops credentials; IMAGE must name the repository's own host "
            f"({own_host}). Check the repository exists with {exists}, and that {context.identity} may read it: {grant}.")
    return (
        f"{context.identity} may not pull {context.image.display}: Artifact Registry denied {found['perm']} on "
        f"{found['res']}, which also means the repository may not exist. Check it with {exists}: NOT_FOUND means fix the "
        f"project, location or repository in IMAGE; if it exists, grant it with {grant} ({PROPAGATION}).")


def _resource(resource: str, failure: Failure, context: Context) -> google_registries.Repository | None:
    """projects/P/locations/L/repositories/R, with the project from the text's image or IMAGE where Google redacted it;
    None when a part is no name gcloud takes (a placeholder such as <repo>)."""
    parts = resource.split("/")
    known = _image_repository(failure, context)
    if len(parts) < 6:
        return known
    project = parts[1] if google_registries.is_project(parts[1]) else known.project if known else None
    found = google_registries.Repository(project or "", parts[3], parts[5])
    return found if project and google_registries.is_repository(found) else known


def _legacy_denied(failure: Failure, context: Context) -> str | None:
    """Container Registry's "Permission denied for <tag>": the tag or repository may be missing, or the caller may not read it."""
    if failure.code != "DENIED" and "pull access denied" not in failure.message:
        return None
    repo = _image_repository(failure, context)
    if repo is None:
        return None
    host, path = failure.get("host") or context.image.host, failure.get("path") or context.image.path
    listing = f" (`{found}` lists what does)" if (found := gcloud.images_list(host, path)) else ""
    return (
        f"{_registry_name(host)} refused {path} in project {repo.project} (Google: {said(failure)}), which has two causes "
        f"it does not tell apart: IMAGE names an image or tag that does not exist{listing}, or {context.identity} may not "
        f"read it: `{_grant(repo, 'roles/artifactregistry.reader', context)}` ({PROPAGATION}).")


def _grant(repo: google_registries.Repository, role: str, context: Context) -> str:
    return gcloud.repository("add-iam-policy-binding", repo.repository, repo.project, repo.location,
                             f"--role={role}", f"--member={gcloud.arg(context.identity)}")


_REFUSED = re.compile(r"\b(?:unauthori[sz]ed|denied|forbidden|authentication required)\b", re.I)


def _outside_google(failure: Failure, context: Context) -> str | None:
    """A registry outside Google (reached because REGISTRIES lists it) refused the pull, in whatever words: what it
    refused is the credential the pipe got there with a Google token, unless the image is not there at all. Google's
    own words (a permission on a projects/… resource) were read by the rules before."""
    host = context.image.host
    refused = failure.code in ("UNAUTHORIZED", "DENIED") or failure.status in (401, 403) or _REFUSED.search(failure.message)
    if google_registries.is_google(host) or not refused:
        return None
    return (
        f"{host} refused the pull of {context.image.display} ({said(failure)}): {host} is not a Google registry, so most "
        f"likely it refused the credential the pipe got from it with the Google token, which only a registry built to take "
        f"Google tokens accepts; if the image is public, or the registry has its own login, pull it without this pipe "
        f"(remove {host} from REGISTRIES), or push the image to Artifact Registry; otherwise check that IMAGE names an "
        f"image {host} has{google_registries.mistyped(host)}.")


def _unauthorized(failure: Failure, context: Context) -> str | None:
    if failure.code != "UNAUTHORIZED" and failure.status != 401 and "unauthorized" not in failure.message.lower():
        return None
    host = context.image.host
    if "permission" in failure.message.lower():  # Container Registry's "you don't have the needed permissions"
        repo = _image_repository(failure, context)
        grant = f": `{_grant(repo, 'roles/artifactregistry.reader', context)}`" if repo else ""
        return (
            f"The registry refused {context.identity} for {context.image.display} ({said(failure)}): most likely it may "
            f"not read the repository (grant roles/artifactregistry.reader{grant}); if it may, the token was refused: keep "
            f"{CLOUD_PLATFORM} in ACCESS_TOKEN_SCOPES.")
    if "No valid credential" in failure.message:  # Artifact Registry's word for a request it saw no credential on
        return (
            f"The registry saw no valid credential on the pull of {context.image.display} ({said(failure)}): either the "
            f"pull token did not reach it (IMAGE must name the repository's own host), or the repository admits only "
            f"readers and {context.identity} needs roles/artifactregistry.reader on it ({PROPAGATION}).")
    federated = context.identity.startswith("principal")
    return (
        f"The registry did not accept the Google access token for {context.image.display} ({said(failure)}): "
        + (f"with direct federation the token is {context.identity}'s, which {host} accepts only where that principalSet "
           "has roles/artifactregistry.reader, or set SERVICE_ACCOUNT to pull as a service account; " if federated else "")
        + f"keep {CLOUD_PLATFORM} in ACCESS_TOKEN_SCOPES; an expired token is replaced when you rerun the step, and an "
        "exported one lasts ACCESS_TOKEN_LIFETIME (1 hour unless raised) for the commands after the pipe.")


def _missing(failure: Failure, context: Context) -> str | None:
    image = context.image
    if missing := _NO_REPOSITORY.search(failure.message):
        repo = _image_repository(failure, context)
        named = google_registries.Repository(repo.project, repo.location, missing["repo"]) if repo else None
        check = (f", and check with `{gcloud.repository('describe', named.repository, named.project, named.location)}`"
                 if named and google_registries.is_repository(named) else "")
        return (
            f"Artifact Registry has no repository {missing['repo']} in {_in(repo.project if repo else None)}"
            f"{f', location {repo.location}' if repo else ''} (Google: {said(failure)}): IMAGE {image.display} names a "
            f"repository that does not exist there; fix the repository in IMAGE or create the repository{check}.")
    # The registry's codes, or the daemon's "manifest for … not found": "not found" alone may be anything (a project,
    # a credential helper, a host), which the tag does not fix.
    v1 = _V1_NOT_FOUND.search(failure.message)
    if failure.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN") or _MANIFEST_NOT_FOUND.search(failure.message) or v1:
        listing = f": `{found}` lists what exists" if (found := gcloud.images_list(image.host, image.path)) else ""
        hidden = (f"; if it exists, the v1 protocol said the same to a caller who may not read it: {context.identity} needs "
                  f"roles/artifactregistry.reader, and ACCESS_TOKEN_SCOPES must keep {CLOUD_PLATFORM}" if v1 else "")
        return f"Image {image.display} was not found: check the tag or digest in IMAGE{listing}{hidden} (Google: {said(failure)})."
    if failure.code in ("BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"):
        return (f"The registry lists {image.display} but lacks one of its layers (Google: {said(failure)}): most likely the "
                "image was deleted in part or pushed incompletely, so push it again or point IMAGE at another tag or digest; "
                "if the docker service pulls through a proxy or registry mirror, it may not follow Artifact Registry's layer "
                f"download redirect: put {image.host} in NO_PROXY.")
    if failure.code in ("NAME_INVALID", "TAG_INVALID") or "invalid reference format" in failure.message or "must match" in failure.message:
        return (f"The registry refused the name {image.display} (Google: {said(failure)}): fix IMAGE; on Artifact Registry "
                "it is LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE[:TAG], lowercase.")
    return None


def _content_refused(failure: Failure, context: Context) -> str | None:
    """The OCI codes about the image's content rather than its name or access: what was stored, or what arrived."""
    image = context.image.display
    if failure.code in ("DIGEST_INVALID", "SIZE_INVALID"):
        return (f"What the registry served for {image} did not match its digest or size ({said(failure)}): something "
                "between the step and the registry changed it on the way (a proxy or registry mirror), or the image is "
                "stored damaged: rerun the step; if it happens again, push the image again or point IMAGE at another digest.")
    if failure.code in ("MANIFEST_INVALID", "MANIFEST_UNVERIFIED"):
        return (f"The registry holds a manifest for {image} that cannot be read ({said(failure)}): push the image again "
                "with a current docker or buildx, or point IMAGE at another tag or digest.")
    if failure.code == "UNSUPPORTED":
        return (f"The registry does not support this pull of {image} ({said(failure)}): most likely IMAGE names a "
                "repository that is not a Docker repository (Artifact Registry's describe shows its format), or the "
                "image is in a manifest format this registry does not serve: check IMAGE.")
    return None


def _token_mismatch(failure: Failure, context: Context) -> str | None:
    """The registry refused the pull token its own token service issued for IMAGE's repository."""
    if "does not match bearer token" not in failure.message:
        return None
    return (
        f"The registry refused the pull token its token service had just issued for {context.image.display} (Google: "
        f"{said(failure)}), even after retries with fresh tokens: most likely a passing fault on the registry's side, so "
        f"rerun the step ({RETRY_BUDGET}); if it keeps failing, IMAGE may name the repository by an alias (gcr.io's "
        "google_containers is google-containers): use the repository's own name.")


def _storage(failure: Failure, context: Context) -> str | None:
    """A layer served from Cloud Storage (Container Registry's buckets) was refused: by Cloud Storage's code."""
    code = failure.get("storage_code")
    if not code:
        return None
    image = context.image.display
    if code in ("NoSuchKey", "NoSuchBucket", "NotFound"):
        return (f"Cloud Storage has no longer one of {image}'s layers ({code}; Google: {said(failure)}): the image was deleted "
                "in part or its bucket removed; push the image again, or point IMAGE at another tag or digest.")
    if code in ("AccessDenied", "Forbidden", "InsufficientPermissions") or "nonymous" in failure.message:
        how = "without credentials" if "nonymous" in failure.message else f"as {context.identity}"
        return _layers_refused(f"Cloud Storage refused one of {image}'s layers, asked {how}", failure, context, in_bucket=True)
    return None


def _layer_denied(failure: Failure, context: Context) -> str | None:
    """The manifest was read, then a layer was refused: the storage behind the registry, not IMAGE's name. A web page
    (Google's front end refusing the client, a proxy) is no IAM answer, and no role fixes it."""
    if failure.get("fetching") != "layer" or not (failure.status == 403 or failure.code == "DENIED"):
        return None
    if failure.get("answer") == "web page":
        return None
    in_bucket = google_registries.is_container_registry(context.image.host)  # Container Registry's layers: Cloud Storage
    return _layers_refused(f"The registry served {context.image.display}'s manifest but refused one of its layers",
                           failure, context, in_bucket)


def _layers_refused(what: str, failure: Failure, context: Context, in_bucket: bool) -> str:
    """Layers in a Cloud Storage bucket (Container Registry's) need the bucket's reader role; Artifact Registry's, the repository's."""
    repo = _image_repository(failure, context)
    if not in_bucket:
        grant = f"`{_grant(repo, 'roles/artifactregistry.reader', context)}`" if repo else "grant it roles/artifactregistry.reader"
        return (f"{what} (Google: {said(failure)}): {context.identity} needs to read the whole repository: {grant} "
                f"({PROPAGATION}); and check IMAGE's host is the repository's own.")
    return (
        f"{what} (Google: {said(failure)}): the layers sit in Container Registry's Cloud Storage bucket of "
        f"{_in(repo.project if repo else None)} (artifacts.PROJECT.appspot.com, or LOCATION.artifacts.PROJECT.appspot.com); "
        f"grant {context.identity} roles/storage.objectViewer on that bucket (or roles/artifactregistry.reader once the "
        "project uses Artifact Registry), and check IMAGE's host is the repository's own.")


def _storage_permission(failure: Failure, context: Context) -> str | None:
    """Container Registry's token exchange needs the bucket's permissions: "Caller does not have permission 'storage.…'"."""
    found = re.search(r"does not have (?:permission )?'?(?P<perm>storage\.[\w.]{1,60})", failure.message)
    if not found:
        return None
    repo = _image_repository(failure, context)
    return (
        f"{context.identity} lacks {found['perm']} on the Cloud Storage bucket behind Container Registry in "
        f"{_in(repo.project if repo else None)} (Google: {said(failure)}): grant it roles/storage.objectViewer on that "
        "bucket (artifacts.PROJECT.appspot.com, or LOCATION.artifacts.PROJECT.appspot.com), or move the image to "
        "Artifact Registry and grant roles/artifactregistry.reader.")


_SCHEMA_1 = re.compile(r"schema 1|schema1|Image Format v1", re.I)


def _schema_1(failure: Failure, context: Context) -> str | None:
    """Docker no longer pulls images in its first manifest format: the image must be pushed again, nothing else helps."""
    if not _SCHEMA_1.search(failure.message):
        return None
    return (f"{context.image.display} is in Docker's retired image format (manifest schema 1), which the docker service no "
            f"longer pulls (Google: {said(failure)}): push the image again with a current docker or buildx (schema 2 or "
            "OCI) and point IMAGE at it.")


def _platform(failure: Failure, context: Context) -> str | None:
    if "no matching manifest for" not in failure.message and "cannot be used on this platform" not in failure.message:
        return None
    return (f"{context.image.display} has no variant for the docker service's platform (Google: {said(failure)}): "
            "Bitbucket's cloud steps are linux/amd64; push a linux/amd64 (or multi-platform) image and point IMAGE at it.")


def _legacy_v1(failure: Failure, context: Context) -> str | None:
    if "v1 Registry API is disabled" not in failure.message and failure.status != 412:
        return None
    if failure.status == 412 and google_registries.is_container_registry(failure.get("host") or context.image.host):
        return _gcr_shutdown(failure, context)
    if failure.status == 412:
        return None
    image = context.image
    check = f" (`{found}`)" if (found := gcloud.images_list(image.host, image.path)) else ""
    return (
        f"The registry has no image at {image.display} (Google: {said(failure)}): the daemon fell back to the retired v1 "
        f"protocol because the v2 lookup failed. Most likely IMAGE names an image or tag that does not exist; check it"
        f"{check}; if it does exist, the registry had a passing fault that outlasted the retries: rerun the step "
        f"({RETRY_BUDGET}).")


def _token_fetch(failure: Failure, context: Context) -> str | None:
    """The daemon's own request for a registry token failed: anonymous means it had no credentials for that host."""
    if "anonymous token" not in failure.message:
        return None
    host = failure.get("host") or context.image.host
    return (
        f"The registry refused an anonymous pull of {context.image.display} (Google: {said(failure)}): the credentials did "
        f"not reach {host}, which happens when the image (or a base image it names) is in another project or on another "
        f"host; IMAGE must name the repository's own host, and {context.identity} needs roles/artifactregistry.reader on "
        "every repository the image comes from.")


# Go's words for the daemon's first request to a registry (`Get "https://HOST/v2/": …`), before any answer.
_FIRST_CONTACT = re.compile(r'https://(?P<host>[a-z0-9.-]{1,253}(?::[0-9]{1,5})?)/v2/"?: ')
_DNS_LOOKUP = re.compile(r"\blookup [a-z0-9.-]{1,253}(?: on |: )")  # Go's resolver: the name was never turned into an address


def _nothing_answers(failure: Failure, context: Context) -> str | None:
    """No HTTP answer at all, on every try, from the first request to IMAGE's host when that host is not Google's:
    most likely nothing there is the registry meant (a mistyped host answers, or drops, whatever it is sent), so a
    larger retry budget is no fix. Google's hosts, a layer download and an answer that came are transient elsewhere."""
    first = _FIRST_CONTACT.search(failure.message)
    host = context.image.host
    if (not first or first["host"] != host.lower() or failure.status or failure.code or failure.transient != retry.NETWORK
            or google_registries.is_google(host) or host.lower() in google_registries.WELL_KNOWN_HOSTS
            or _DNS_LOOKUP.search(failure.message)):  # a registry for sure, or the step's DNS server failing: transient
        return None
    return (
        f"Nothing at {host} answered as a registry on any try ({said(failure)}): check the registry host in IMAGE and "
        f"REGISTRIES{google_registries.mistyped(host) or ' for a typo'}; if it is right, the step's network cannot reach "
        f"https://{host}/v2/ (a firewall, or a proxy the docker service needs: HTTPS_PROXY).")


_NO_SUCH_HOST = re.compile(r"lookup (?P<host>[a-z0-9.-]{1,253})(?: on [^:]{0,80})?: no such host")


def _unresolved(failure: Failure, context: Context) -> str | None:
    """A host name the step could not resolve: a mistyped IMAGE, or the step's DNS (a layer host, or a known one)."""
    found = _NO_SUCH_HOST.search(failure.message)
    if not found:
        return None
    host = found["host"]
    typo = (f"if {host} is mistyped, fix the host in IMAGE (Artifact Registry's are LOCATION-docker.pkg.dev)"
            if host == context.image.host.split(":")[0] else "")
    if typo and not google_registries.is_google(host):
        return f"The registry host {host} does not resolve (Google: {said(failure)}): {typo}{google_registries.mistyped(host)}."
    return (
        f"The step could not resolve {host} (Google: {said(failure)}): most likely the step's DNS or network failed, "
        f"not your configuration; rerun the step ({RETRY_BUDGET}){'; ' + typo if typo else ''}.")


# Go's TLS and proxy errors: the connection was made but could not be trusted or was not TLS. Retrying never helps.
_UNTRUSTED = re.compile(r"x509: |tls: failed to verify|certificate signed by unknown authority|certificate has expired"
                        r"|certificate is (?:not )?valid for|tls: (?:bad certificate|handshake failure)")
_PLAIN_HTTP = re.compile(r"server gave HTTP response to HTTPS client|first record does not look like a TLS handshake")
# A proxy's refusal: Go's `proxyconnect`, or the bare reason phrase Go's transport makes of a CONNECT answered with
# anything but 200 (`Head "<url>": Forbidden`, `…: Service Unavailable`): whatever the status, a registry's own answer
# always carries a code or a status number. Any standard phrase, and the two proxies commonly send.
_REASON_PHRASES = sorted({status.phrase for status in HTTPStatus if status >= 300} | {"Not Allowed", "Access Denied"}, key=len, reverse=True)
_PROXY = re.compile(r"proxyconnect tcp|Proxy Authentication Required"
                    rf"|https?://[^\s\"]{{1,2000}}\"?: (?P<phrase>{'|'.join(map(re.escape, _REASON_PHRASES))})\s*$")
_SERVER_ERROR_PHRASES = {status.phrase for status in HTTPStatus if status >= 500}
_CLOCK = re.compile(r"certificate has expired or is not yet valid|certificate is not yet valid")


def _connection_setup(failure: Failure, context: Context) -> str | None:
    """The step's network path to the registry, not the registry or IAM: a proxy or TLS inspection in between, or a
    host that does not speak TLS. Google's registries always serve a publicly trusted certificate over https."""
    text = failure.message
    host = failure.get("host") or context.image.host
    if proxy := _PROXY.search(text):
        if proxy["phrase"] in _SERVER_ERROR_PHRASES:  # the proxy's own trouble, or its way to the registry's
            return (f"A proxy between the step and {host} answered {proxy['phrase']} instead of connecting ({said(failure)}): "
                    f"either it could not reach {host} for a while, which a rerun fixes ({RETRY_BUDGET}), or it does not "
                    "let the step reach it at all: check HTTPS_PROXY and NO_PROXY in the step and the docker service.")
        return (f"The proxy between the step and {host} refused the connection ({said(failure)}): check HTTPS_PROXY and "
                "NO_PROXY in the step and the docker service, and the proxy's credentials; Google's registries need no proxy "
                "on Bitbucket Cloud.")
    if _CLOCK.search(text):
        return (f"The Docker daemon found {host}'s certificate expired or not yet valid ({said(failure)}): Google's "
                "certificates are current, so most likely the runner's clock is wrong (check `date` and NTP on a self-hosted "
                "runner); otherwise a TLS-inspecting proxy between the step and Google presents an out-of-date certificate.")
    if _UNTRUSTED.search(text):
        return (f"The Docker daemon did not trust the certificate {host} presented ({said(failure)}): Google's registries "
                "serve publicly trusted certificates, so something between the step and Google (a TLS-inspecting proxy or "
                "firewall on a self-hosted runner) replaced it, or IMAGE names a host that is not Google's; pull directly, or "
                f"install that proxy's CA for the daemon (/etc/docker/certs.d/{host}/ca.crt).")
    if _PLAIN_HTTP.search(text):
        return (f"{host} does not speak https ({said(failure)}): Google's registries always do, so IMAGE names a host or port "
                "that is not the registry's, or a proxy answers in its place; fix the host in IMAGE.")
    return None


_REGISTRY_RULES = (_storage, _storage_permission, _repository_denied, _layer_denied, _legacy_v1, _token_fetch, _token_mismatch, _schema_1, _platform,
                   _missing, _content_refused, _outside_google, _legacy_denied, _unauthorized, _unresolved, _connection_setup, _nothing_answers)
