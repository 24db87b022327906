"""Google STS's and IAM Credentials' refusals, explained: the exchange of the step's OIDC token, and the
impersonation of SERVICE_ACCOUNT.

The reasons every service shares come first (pipe.diagnose.explain); then these rules, by what each service's code
and words mean; else a line naming what to compare and the command that checks it.
"""

import re

from pipe import config, gcloud, service_accounts, shown, urls
from pipe.config import Config
from pipe.diagnose import DOCTOR, PROPAGATION, Context, explain, one_line, said, step_token_expired
from pipe.error_models import Failure, from_google
from pipe.oidc import StepToken
from pipe.provider import named_by_audience

# --- both services ------------------------------------------------------------------------------------------------

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


def _page_in_between(failure: Failure, context: Context) -> str | None:
    """A web page refusing the request where Google's API answers in JSON (a proxy's or web filter's block page):
    nothing about the provider, the account or the grants can be read from it. 404/405 pages are _no_api_there's."""
    if failure.get("answer") != "web page" or failure.status in (404, 405) or failure.transient:
        return None
    host = urls.parse(context.cfg.sts_endpoint if failure.service == "Google STS" else context.cfg.iam_endpoint)
    if failure.get("page") == "Google's":
        return (f"Google's front end refused this client with its own page ({said(failure)}) before {failure.service} read "
                "the request: no provider, grant or variable changes that; it judges the client's address or the request's "
                "shape, so check that nothing between the step and Google rewrites requests, or run the step on another runner.")
    return (f"Something between the step and {failure.service} answered with its own web page ({said(failure)}): a proxy "
            "or web filter blocks or replaces Google's answers, which no grant or provider setting changes; check HTTPS_PROXY "
            f"and NO_PROXY, or have {host.host if host else 'the endpoint'} allowed there.")


# --- Google STS ---------------------------------------------------------------------------------------------------

_ISSUER = re.compile(r"issuer in ID Token (\S{1,500}) does not match the expected ones?(?: in config)?:?\s*(\S{0,500})")


def sts_error(body: dict, cfg: Config, step: StepToken, status: int | None = None) -> str:
    failure = from_google(body, status, "Google STS")
    context = Context(cfg, step)
    return one_line(explain(failure, context, _STS_RULES) or _sts_unknown(failure, context))


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
    """invalid_target, or a JSON 404 (NOT_FOUND) from STS: the only thing STS looks up is the provider."""
    not_found = (failure.status == 404 or failure.code == "NOT_FOUND") and failure.get("answer") != "web page"
    if failure.code != "invalid_target" and "target service indicated" not in failure.message and not not_found:
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


# Google's words at STS about the step token itself (no access token exists yet): its time, its signature.
_STEP_TOKEN_TIME = re.compile(r"stale to sign-in|ID Token (?:has )?expired|(?:ID Token|token) is not yet valid"
                              r"|Token used too (?:late|early)|issued (?:at a time )?in the future", re.I)
_STEP_TOKEN_SIGNATURE = re.compile(r"Unable to verify the ID Token signature|JWT signature|\bJWKS?\b|could not be verified", re.I)


def _sts_token_rejected(failure: Failure, context: Context) -> str | None:
    step, p, message = context.step, context.cfg.provider, failure.message
    if _STEP_TOKEN_TIME.search(message):
        return step_token_expired(failure, context)
    if "Unable to parse the ID Token" in message:
        return (f"Google STS could not parse the step's OIDC token as a JWT (Google: {said(failure)}): pass "
                "$BITBUCKET_STEP_OIDC_TOKEN unchanged, with no quotes, spaces or extra characters (check OIDC_TOKEN if you set it).")
    iss = step.claim("iss")
    if _STEP_TOKEN_SIGNATURE.search(message):
        return (
            f"Google could not verify the step token's signature with the keys provider {p.provider_id} holds for {iss} "
            f"(Google: {said(failure)}): if the provider has uploaded keys (--jwk-json-path), they are out of date; upload the "
            f"current ones from {iss}/keys.json, or remove them so Google fetches the issuer's keys itself.")
    if "Error connecting to the given credential's issuer" in message:
        bitbucket = urls.is_within(urls.parse(iss).host, "bitbucket.org") if urls.parse(iss) else False
        if bitbucket:  # Bitbucket serves its discovery document publicly: the provider's issuer, or passing trouble
            issuer = gcloud.provider("describe", p, "--format=" + gcloud.arg("value(oidc.issuerUri)"))
            return (f"Google could not fetch the OIDC discovery document of the step token's issuer (Google: {said(failure)}): "
                    f"Bitbucket serves {iss}/.well-known/openid-configuration and its keys publicly over https, so check "
                    f"that provider {p.provider_id}'s issuer URI is exactly {iss} (`{issuer}`) and that it has no "
                    f"out-of-date uploaded keys (refresh them from {iss}/keys.json); if both are right, it was passing "
                    "trouble between Google and Bitbucket: rerun the step.")
        return (
            f"Google could not fetch the OIDC discovery document or keys of {iss} (Google: {said(failure)}): the issuer must "
            f"serve {iss}/.well-known/openid-configuration and its keys publicly over https; if provider {p.provider_id} has "
            f"uploaded keys (--jwk-json-path), the step token's key must be among them (refresh them from {iss}/keys.json).")
    return None


def _sts_condition(failure: Failure, context: Context) -> str | None:
    step, p = context.step, context.cfg.provider
    if evaluated := _CONDITION_FAILED.search(failure.message):  # the condition read a claim this token lacks
        return (f"Provider {p.provider_id}'s attribute condition could not be evaluated for this step's token (Google: "
                f"{said(failure)}): it reads {evaluated['key'] or 'a claim'} that this token does not carry (Bitbucket "
                "leaves out deploymentEnvironmentUuid outside deployments, for one); "
                f"`{gcloud.provider('describe', p, '--format=' + gcloud.arg('value(attributeCondition)'))}` shows the "
                f"condition: guard that claim with has(), as in has(assertion.{evaluated['key'] or 'branchName'}) && …, and set "
                "it again with update-oidc --attribute-condition.")
    if "rejected by the attribute condition" in failure.message:
        condition = gcloud.arg(f"assertion.repositoryUuid == '{step.claim('repositoryUuid')}'")
        return (
            f"Provider {p.provider_id}'s attribute condition rejected this step (repositoryUuid {step.claim('repositoryUuid')}, "
            f"branchName {step.claim('branchName')}, deploymentEnvironmentUuid {step.claim('deploymentEnvironmentUuid')}; "
            f"Google: {said(failure)}): compare with "
            f"`{gcloud.provider('describe', p, '--format=' + gcloud.arg('value(attributeCondition)'))}` (claims are "
            "case-sensitive and must be mapped before the condition can use them); to admit this repository, "
            f"`{gcloud.provider('update-oidc', p, '--attribute-condition=' + condition)}`.")
    if mapped := _MAPPED_ATTRIBUTE.search(failure.message):  # Google names the attribute its mapping made wrong
        attribute = mapped["attribute"]
        mapping = "google.subject=assertion.sub,attribute.repository_uuid=assertion.repositoryUuid"
        return (f"Provider {p.provider_id}'s attribute mapping makes {attribute} something Google cannot use for this "
                f"step's token (Google: {said(failure)}): fix the expression that maps {attribute} so it gives a non-empty "
                f"string from claims this token has (`{gcloud.provider('describe', p, '--format=' + gcloud.arg('value(attributeMapping)'))}` "
                f"shows it), with `{gcloud.provider('update-oidc', p, '--attribute-mapping=' + mapping)}` "
                "or your own mapping (the flag replaces the whole mapping: keep every attribute your condition and bindings use).")
    if "127 bytes" in failure.message:
        mapping = "google.subject=assertion.repositoryUuid,attribute.repository_uuid=assertion.repositoryUuid"
        named = _ATTRIBUTE_NAMED.search(failure.message)
        size = f"{named['attribute']} is the one Google names" if named else f"sub is {len(step.claim('sub').encode())} bytes"
        return (
            f"A mapped attribute of provider {p.provider_id} exceeds Google's 127-byte limit ({size}; "
            f"Google: {said(failure)}): map shorter claims, e.g. "
            f"`{gcloud.provider('update-oidc', p, '--attribute-mapping=' + mapping)}` (the flag replaces the whole mapping: "
            "keep every attribute your condition and bindings use).")
    if "Scope(s) must be provided" in failure.message or "requested_token_type" in failure.message:
        return (f"Google STS refused the token exchange for {p.name} as malformed (Google: {said(failure)}): this is a bug in "
                "the pipe, please report it with the step's log (DEBUG: 'true' prints no tokens).")
    return None


_CONDITION_FAILED = re.compile(r"(?:Failed to evaluate|error evaluating|evaluation of) the attribute condition"
                               r"(?:[^.]{0,100}?no such key:? '?(?P<key>[A-Za-z_][\w]{0,60}))?", re.I)
_MAPPED_ATTRIBUTE = re.compile(r"The mapped attribute '?(?P<attribute>(?:google|attribute)\.[\w.]{1,100})'? must (?:be|not)")
_ATTRIBUTE_NAMED = re.compile(r"mapped attribute '?(?P<attribute>(?:google|attribute)\.[\w.]{1,100})'? exceeds")


_STS_RULES = (_no_api_there, _page_in_between, _sts_empty, _sts_audience_invalid, _sts_no_provider, _sts_audience_mismatch, _sts_issuer,
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
    explained = explain(failure, context, (_no_api_there, _page_in_between, _iam_not_found, _iam_unauthenticated))
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
        explained = _invalid_argument(cfg, method, failure)
    return one_line(explained or (
        f"IAM Credentials {method} for {cfg.service_account} failed ({said(failure)}): check the account with "
        f"`{gcloud.service_account('describe', cfg.service_account)}` and {DOCTOR}."))


# Which variable sets each field of IAM Credentials' requests (what BadRequest's field violation names).
_VARIABLE_OF_FIELD = {"lifetime": "ACCESS_TOKEN_LIFETIME", "scope": "ACCESS_TOKEN_SCOPES", "audience": "ID_TOKEN_AUDIENCE",
                      "name": "SERVICE_ACCOUNT", "delegates": "DELEGATES"}
_ACCOUNT_FORM = re.compile(r"account id|service account|email", re.I)


def _invalid_argument(cfg: Config, method: str, failure: Failure) -> str:
    """An invalid request: the field Google names (BadRequest), else the account's form if the words are about it,
    else what the method asks for."""
    field = failure.get("field").split(".")[-1]
    values = {"ACCESS_TOKEN_LIFETIME": f"{cfg.lifetime}s", "ACCESS_TOKEN_SCOPES": " ".join(cfg.scopes),
              "ID_TOKEN_AUDIENCE": cfg.id_token_audience or "", "SERVICE_ACCOUNT": cfg.service_account or "",
              "DELEGATES": ", ".join(cfg.delegates)}
    if field in _VARIABLE_OF_FIELD:
        name = _VARIABLE_OF_FIELD[field]
        check = f"{name} ({values[name]}), the request's {field} Google refused"
    elif _ACCOUNT_FORM.search(failure.message):
        check = "that SERVICE_ACCOUNT and DELEGATES are plain service account e-mails (name@project.iam.gserviceaccount.com)"
    elif method == "generateIdToken":
        check = f"ID_TOKEN_AUDIENCE ({cfg.id_token_audience}): a URL or name your service expects"
    else:
        check = (f"ACCESS_TOKEN_SCOPES ({' '.join(cfg.scopes)}): OAuth scopes such as cloud-platform, not your service's "
                 "URL (that is ID_TOKEN_AUDIENCE); and that SERVICE_ACCOUNT and DELEGATES are plain service account e-mails")
    return f"IAM Credentials refused the {method} request for {cfg.service_account} as invalid (Google: {said(failure)}): check {check}."


def _iam_not_found(failure: Failure, context: Context) -> str | None:
    cfg = context.cfg
    missing = re.search(r"Gaia id not found for email (\S{1,300})", failure.message)
    if failure.status != 404 and failure.code != "NOT_FOUND" and not missing:
        return None
    named = missing[1].strip(".,;:'\"()[]") if missing else ""
    who = named if service_accounts.is_email(named) else cfg.service_account
    chain = f" (or one of DELEGATES: {', '.join(cfg.delegates)})" if cfg.delegates and not missing else ""
    if who in cfg.delegates:  # Google names the missing hop: it is DELEGATES' to fix
        return (f"Service account {who}, listed in DELEGATES, was not found (HTTP {failure.status or 404}: "
                f"{shown.clipped(failure.message or 'no message', 300)}): check that e-mail in DELEGATES for a typo, another "
                f"project or a deleted account with `{gcloud.service_account('describe', who)}`.")
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
