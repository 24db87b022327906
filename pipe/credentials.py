"""Google credentials from the step token: STS exchange, then optional service-account impersonation.

google-auth does the wire work (identity_pool with a subject-token supplier, impersonated_credentials);
this module wires it to the pipe's endpoints and turns its exceptions into explained PipeErrors.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime

from google.auth import exceptions, identity_pool, impersonated_credentials

from pipe import diagnose, redact
from pipe.config import Config
from pipe.errors import PipeError
from pipe.oidc import StepToken
from pipe.transport import Transport


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

    @property
    def registry_password(self) -> str:
        return self.access_token


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

    Called directly: google-auth's IDTokenCredentials ignores endpoint overrides (PSC, emulators).
    """
    federated = federated_credentials(cfg, step, ["https://www.googleapis.com/auth/iam"])
    _refresh(federated, transport, cfg, step)
    body = {"audience": cfg.id_token_audience, "delegates": delegate_names(cfg), "includeEmail": cfg.id_token_include_email}
    response = transport(
        cfg.iam_url(cfg.service_account, "generateIdToken"), method="POST", body=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {federated.token}", "Content-Type": "application/json"},
    )
    try:
        answer = json.loads(response.data)
    except ValueError:
        answer = {"message": response.data.decode(errors="replace")}
    if response.status != 200 or not isinstance(answer, dict) or "token" not in answer:
        body = answer if isinstance(answer, dict) else {"message": response.data.decode(errors="replace")}
        raise PipeError(diagnose.iam_error(body, cfg, step, "generateIdToken", response.status))
    redact.add_secret(answer["token"])
    return answer["token"]


class _Answers:
    """The transport, remembering the last HTTP status: google-auth's exceptions carry the body but drop it."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self.status: int | None = None

    def __call__(self, *args, **kwargs):
        response = self.transport(*args, **kwargs)
        self.status = response.status
        return response


def _refresh(credentials, transport: Transport, cfg: Config, step: StepToken) -> None:
    answers = _Answers(transport)
    try:
        credentials.refresh(answers)
    except exceptions.OAuthError as error:  # STS answered with an OAuth error body
        raise PipeError(diagnose.sts_error(_body(error), cfg, step, answers.status)) from None
    except exceptions.TransportError as error:
        raise PipeError(
            f"Could not reach Google ({redact.redact(str(error))}): check STS_ENDPOINT / IAM_CREDENTIALS_ENDPOINT "
            "and the step's network access to *.googleapis.com."
        ) from None
    except exceptions.RefreshError as error:  # IAM Credentials refused the impersonation
        raise PipeError(diagnose.iam_error(_body(error), cfg, step, status=answers.status)) from None
    redact.add_secret(credentials.token)


def _body(error: Exception) -> dict:
    """google-auth puts the raw response body in args[1]."""
    raw = error.args[1] if len(error.args) > 1 else error.args[0] if error.args else ""
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return {"message": str(raw)}
    return parsed if isinstance(parsed, dict) else {"message": str(raw)}
