"""Google credentials from the step token: STS exchange, then optional service-account impersonation, and ID tokens.

google-auth does the wire work (identity_pool with a subject-token supplier, impersonated_credentials); this module
wires it to the pipe's endpoints and transport, checks each success answer's fields before google-auth reads them
(pipe.answers), and turns google-auth's exceptions into explained PipeErrors (pipe.diagnose_google).
"""

import json
from dataclasses import dataclass, field
from datetime import datetime

from google.auth import exceptions, identity_pool, impersonated_credentials

from pipe import answers, diagnose_google, redact, untrusted
from pipe.config import Config
from pipe.errors import PipeError
from pipe.oidc import StepToken
from pipe.transport import Transport

IAM_SCOPE = "https://www.googleapis.com/auth/iam"


class _StepTokenSupplier(identity_pool.SubjectTokenSupplier):
    """Hands google-auth the step token from memory: no token file is written."""

    def __init__(self, token: str):
        self._token = token

    def get_subject_token(self, context, request):
        return self._token


@dataclass(frozen=True)
class Minted:
    access_token: str = field(repr=False)
    expiry: datetime | None
    principal: str  # who the token speaks for, in IAM member form


def federated_credentials(cfg: Config, step: StepToken, scopes) -> identity_pool.Credentials:
    return identity_pool.Credentials(
        audience=cfg.provider.audience,
        subject_token_type=cfg.subject_token_type,
        token_url=cfg.token_url,
        subject_token_supplier=_StepTokenSupplier(step.value),
        scopes=list(scopes),
        universe_domain=cfg.universe_domain,
    )


def mint(cfg: Config, step: StepToken, transport: Transport) -> Minted:
    """One access token: the federated token itself, or the service account's."""
    federated = federated_credentials(cfg, step, cfg.scopes)
    if cfg.service_account is None:
        _refresh(federated, transport, cfg, step)
        return Minted(federated.token, federated.expiry, cfg.provider.repository_member(step.claim("repositoryUuid")))

    impersonated = impersonated_credentials.Credentials(
        source_credentials=federated,
        target_principal=cfg.service_account,
        target_scopes=list(cfg.scopes),
        delegates=delegate_names(cfg) or None,
        lifetime=cfg.lifetime,
        iam_endpoint_override=cfg.iam_url(cfg.service_account, "generateAccessToken"),
    )
    _refresh(impersonated, transport, cfg, step)
    return Minted(impersonated.token, impersonated.expiry, f"serviceAccount:{cfg.service_account}")


def delegate_names(cfg: Config) -> list[str]:
    return [f"projects/-/serviceAccounts/{email}" for email in cfg.delegates]


def id_token(cfg: Config, step: StepToken, transport: Transport) -> str:
    """An ID token for Cloud Run, IAP or Cloud Functions (IAM generateIdToken).

    Called directly: google-auth's IDTokenCredentials ignores endpoint overrides (PSC, emulators)."""
    federated = federated_credentials(cfg, step, [IAM_SCOPE])
    _refresh(federated, transport, cfg, step)
    request = {"audience": cfg.id_token_audience, "delegates": delegate_names(cfg), "includeEmail": cfg.id_token_include_email}
    try:
        answer = transport(
            cfg.iam_url(cfg.service_account, "generateIdToken"), method="POST", body=json.dumps(request).encode(),
            headers={"Authorization": f"Bearer {federated.token}", "Content-Type": "application/json"},
        )
    except exceptions.TransportError as error:
        raise _unreachable(error) from None
    if answer.status != 200:
        raise PipeError(diagnose_google.iam_error(_error_body(answer.data), cfg, step, "generateIdToken", answer.status))
    token = answers.id_token(answer.data)
    redact.add_secret(token)
    return token


class _Checked:
    """The transport as google-auth sees it: remembers the last HTTP status (google-auth's exceptions carry the body
    but drop it), and checks every success answer's fields before google-auth reads them."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self.status: int | None = None

    def __call__(self, url, *args, **kwargs):
        answer = self.transport(url, *args, **kwargs)
        self.status = answer.status
        if answer.status == 200:
            if url.endswith("/v1/token"):
                answers.check_sts(answer.data)
            elif url.endswith(":generateAccessToken"):
                answers.check_access_token(answer.data)
        return answer


def _refresh(credentials, transport: Transport, cfg: Config, step: StepToken) -> None:
    checked = _Checked(transport)
    try:
        credentials.refresh(checked)
    except exceptions.OAuthError as error:  # STS answered with an OAuth error body
        raise PipeError(diagnose_google.sts_error(_error_body(error), cfg, step, checked.status)) from None
    except exceptions.TransportError as error:
        raise _unreachable(error) from None
    except exceptions.RefreshError as error:  # IAM Credentials refused the impersonation
        raise PipeError(diagnose_google.iam_error(_error_body(error), cfg, step, status=checked.status)) from None
    redact.add_secret(credentials.token)


def _unreachable(error: exceptions.TransportError) -> PipeError:
    """Every call to Google that got no answer (after the retries), or one the transport refused to read."""
    return PipeError(f"Could not reach Google ({redact.redact(str(error))}): check STS_ENDPOINT / IAM_CREDENTIALS_ENDPOINT "
                     "and the step's network access to *.googleapis.com.")


def _error_body(source) -> dict:
    """Google's error body as a dict: from an answer's bytes, or google-auth's exception (the raw body in args[1])."""
    if isinstance(source, bytes | str):
        raw = source
    else:
        raw = source.args[1] if len(source.args) > 1 else source.args[0] if source.args else ""
        if isinstance(raw, dict):
            return raw
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return untrusted.json_or_none(text) or {"message": untrusted.text(text)}
