"""The emulated world as plain data: issuers, providers, service accounts, registry IAM.

Tests state each case by building or mutating these objects; the endpoints only read them.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field

import jwt

from . import keys
from .principals import (
    ServiceAccountPrincipal,
    all_identities,
    principal,
    principal_set,
    service_account_member,
)

BITBUCKET_API = "https://api.bitbucket.org/2.0/workspaces"
_ATTRIBUTE_KEY = re.compile(r"^(google\.(subject|groups|display_name)|attribute\.[a-z_][a-z0-9_]*)$")


def braced(value: str) -> str:
    """Bitbucket wraps every UUID claim in braces."""
    return value if value.startswith("{") else "{" + value + "}"


def new_uuid() -> str:
    return braced(str(uuid.uuid4()))


@dataclass(eq=False)
class Issuer:
    """Bitbucket's per-workspace OIDC issuer; owns one RS256 signing key."""

    workspace_slug: str
    workspace_uuid: str = field(default_factory=new_uuid)
    key: object = field(default_factory=keys.new_rsa_key, repr=False)
    kid: str = field(default_factory=lambda: secrets.token_hex(16))
    minted: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.workspace_uuid = braced(self.workspace_uuid)

    @property
    def iss(self) -> str:
        return f"{BITBUCKET_API}/{self.workspace_slug}/pipelines-config/identity/oidc"

    @property
    def default_audience(self) -> str:
        return f"ari:cloud:bitbucket::workspace/{self.workspace_uuid.strip('{}')}"

    def mint(
        self,
        repository_uuid: str,
        *,
        step_uuid: str | None = None,
        pipeline_uuid: str | None = None,
        branch: str = "main",
        deployment_environment_uuid: str | None = None,
        aud: str | list[str] | None = None,
        lifetime: int = 3600,
        iat: int | None = None,
        extra_claims: dict | None = None,
        drop_claims=(),
        signing_key=None,
        kid: str | None = None,
    ) -> str:
        """A step token with Bitbucket's claims. `kid=""` leaves the kid header out."""
        issued = int(time.time()) if iat is None else int(iat)
        repo, step = braced(repository_uuid), braced(step_uuid or new_uuid())
        env = braced(deployment_environment_uuid) if deployment_environment_uuid else None
        claims = {
            "sub": f"{repo}:{env}:{step}" if env else f"{repo}:{step}",
            "aud": self.default_audience if aud is None else aud,
            "iss": self.iss,
            "iat": issued,
            "exp": issued + lifetime,
            "repositoryUuid": repo,
            "workspaceUuid": self.workspace_uuid,
            "pipelineUuid": braced(pipeline_uuid or new_uuid()),
            "stepUuid": step,
            "branchName": branch,
        }
        if env:
            claims["deploymentEnvironmentUuid"] = env
        claims.update(extra_claims or {})
        for name in drop_claims:
            claims.pop(name, None)
        key_id = self.kid if kid is None else kid
        headers = {"kid": key_id} if key_id else {}
        token = jwt.encode(claims, signing_key or self.key, algorithm="RS256", headers=headers)
        self.minted.append(token)
        return token

    def jwks(self) -> dict:
        return {"keys": [keys.public_jwk(self.key, self.kid)]}

    def discovery(self, jwks_uri: str | None = None) -> dict:
        return {
            "issuer": self.iss,
            "jwks_uri": jwks_uri or f"{self.iss}/keys.json",
            "subject_types_supported": ["public"],
            "response_types_supported": ["id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "branchName", "compliant",
                "deploymentEnvironmentUuid", "pipelineUuid", "repositoryUuid",
                "stepUuid", "workspaceUuid",
            ],
        }


@dataclass(eq=False)
class Provider:
    """A workload identity pool OIDC provider, with Google's creation-time rules."""

    project_number: str
    pool_id: str
    provider_id: str
    issuer_uri: str
    allowed_audiences: list[str] = field(default_factory=list)
    attribute_mapping: dict[str, str] = field(
        default_factory=lambda: {"google.subject": "assertion.sub"}
    )
    attribute_condition: str | None = None
    disabled: bool = False

    def __post_init__(self):
        self.project_number = str(self.project_number)
        if not self.project_number.isdigit():
            raise ValueError("a provider lives in a project *number*")
        if not self.issuer_uri.startswith("https://"):
            raise ValueError("Invalid OIDC issuer URI. The scheme must be https.")
        if "google.subject" not in self.attribute_mapping:
            raise ValueError("attribute mapping must map google.subject")
        for key in self.attribute_mapping:
            if not _ATTRIBUTE_KEY.match(key):
                raise ValueError(f"invalid attribute mapping key {key!r}")

    @property
    def pool(self) -> str:
        return f"projects/{self.project_number}/locations/global/workloadIdentityPools/{self.pool_id}"

    @property
    def name(self) -> str:
        return f"{self.pool}/providers/{self.provider_id}"

    @property
    def audience(self) -> str:
        """What a client sends to STS as `audience`."""
        return f"//iam.googleapis.com/{self.name}"

    @property
    def accepted_audiences(self) -> list[str]:
        """With no allowed audiences Google accepts only the https: form of the resource name."""
        return list(self.allowed_audiences) or [f"https://iam.googleapis.com/{self.name}"]

    def principal(self, subject: str) -> str:
        return principal(self.pool, subject)

    def principal_set(self, attribute: str, value: str) -> str:
        return principal_set(self.pool, attribute, value)

    def all_identities(self) -> str:
        return all_identities(self.pool)


@dataclass(eq=False)
class ServiceAccount:
    email: str
    project_number: str
    bindings: dict[str, list[str]] = field(default_factory=dict)
    lifetime_extension_allowed: bool = False
    unique_id: str = ""

    def __post_init__(self):
        self.project_number = str(self.project_number)
        if not self.unique_id:
            # Google's unique ids are 21 digits; derive one so it is stable across runs.
            digits = str(int(hashlib.sha256(self.email.encode()).hexdigest(), 16))
            self.unique_id = "1" + digits[:20]

    @property
    def member(self) -> str:
        return service_account_member(self.email)

    def as_principal(self) -> ServiceAccountPrincipal:
        return ServiceAccountPrincipal(self.email, self.project_number, self.unique_id)

    def grant(self, role: str, member: str) -> ServiceAccount:
        self.bindings.setdefault(role, []).append(member)
        return self


@dataclass(eq=False)
class World:
    issuers: list[Issuer] = field(default_factory=list)
    providers: list[Provider] = field(default_factory=list)
    service_accounts: list[ServiceAccount] = field(default_factory=list)
    registry_hosts: dict[str, str] = field(default_factory=dict)
    repository_bindings: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    disabled_projects: set[str] = field(default_factory=set)
    labels: dict[str, str] = field(default_factory=dict)

    def issuer(self, workspace_slug: str | None = None) -> Issuer:
        for candidate in self.issuers:
            if workspace_slug in (None, candidate.workspace_slug):
                return candidate
        raise KeyError(workspace_slug)

    def issuer_by_iss(self, iss: str) -> Issuer | None:
        return next((i for i in self.issuers if i.iss == iss), None)

    def provider(self, number: str, pool_id: str, provider_id: str) -> Provider | None:
        wanted = (str(number), pool_id, provider_id)
        return next(
            (p for p in self.providers if (p.project_number, p.pool_id, p.provider_id) == wanted),
            None,
        )

    def service_account(self, email_or_id: str) -> ServiceAccount | None:
        return next(
            (sa for sa in self.service_accounts if email_or_id in (sa.email, sa.unique_id)), None
        )

    def grant_repository(self, resource: str, role: str, member: str) -> None:
        self.repository_bindings.setdefault(resource, {}).setdefault(role, []).append(member)

    def to_json(self) -> str:
        return json.dumps(
            {
                "issuers": [
                    {
                        "workspace_slug": i.workspace_slug,
                        "workspace_uuid": i.workspace_uuid,
                        "kid": i.kid,
                        "private_key_pem": keys.private_pem(i.key),
                    }
                    for i in self.issuers
                ],
                "providers": [
                    {
                        "project_number": p.project_number,
                        "pool_id": p.pool_id,
                        "provider_id": p.provider_id,
                        "issuer_uri": p.issuer_uri,
                        "allowed_audiences": p.allowed_audiences,
                        "attribute_mapping": p.attribute_mapping,
                        "attribute_condition": p.attribute_condition,
                        "disabled": p.disabled,
                    }
                    for p in self.providers
                ],
                "service_accounts": [
                    {
                        "email": sa.email,
                        "project_number": sa.project_number,
                        "unique_id": sa.unique_id,
                        "bindings": sa.bindings,
                        "lifetime_extension_allowed": sa.lifetime_extension_allowed,
                    }
                    for sa in self.service_accounts
                ],
                "registry_hosts": self.registry_hosts,
                "repository_bindings": self.repository_bindings,
                "disabled_projects": sorted(self.disabled_projects),
                "labels": self.labels,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> World:
        data = json.loads(text)
        issuers = [
            Issuer(
                workspace_slug=i["workspace_slug"],
                workspace_uuid=i["workspace_uuid"],
                kid=i["kid"],
                key=keys.load_private_pem(i["private_key_pem"]),
            )
            for i in data.get("issuers", [])
        ]
        return cls(
            issuers=issuers,
            providers=[Provider(**p) for p in data.get("providers", [])],
            service_accounts=[ServiceAccount(**sa) for sa in data.get("service_accounts", [])],
            registry_hosts=dict(data.get("registry_hosts", {})),
            repository_bindings=dict(data.get("repository_bindings", {})),
            disabled_projects={str(p) for p in data.get("disabled_projects", [])},
            labels=dict(data.get("labels", {})),
        )
