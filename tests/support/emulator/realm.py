"""Artifact Registry's docker token realm, `GET /v2/token`, issuing distribution-2.8 JWTs."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from dataclasses import dataclass

import jwt

from . import keys, replies
from .principals import AR_ADMIN, AR_READER, AR_REPO_ADMIN, AR_WRITER, holds_role
from .replies import RegistryError, Reply
from .tokens import CLOUD_PLATFORM, CLOUD_PLATFORM_READ_ONLY, AccessToken, TokenStore
from .world import World

# docker login -u oauth2accesstoken, docker-credential-gcloud and docker-credential-gcr.
USERNAMES = re.compile(r"^(oauth2accesstoken|_dcgcloud_token|_dcgcr_.+_token)$")
TOKEN_LIFETIME = 3600
_ROLES = {
    "pull": (AR_READER, AR_WRITER, AR_REPO_ADMIN, AR_ADMIN),
    "push": (AR_WRITER, AR_REPO_ADMIN, AR_ADMIN),
    "delete": (AR_REPO_ADMIN, AR_ADMIN),
}
_PERMISSIONS = {
    "pull": "artifactregistry.repositories.downloadArtifacts",
    "push": "artifactregistry.repositories.uploadArtifacts",
    "delete": "artifactregistry.repositories.deleteArtifacts",
}
_OAUTH_SCOPES = {
    "pull": {CLOUD_PLATFORM, CLOUD_PLATFORM_READ_ONLY},
    "push": {CLOUD_PLATFORM},
    "delete": {CLOUD_PLATFORM},
}
_DENIAL_ORDER = ("push", "delete", "pull")  # a refused push names uploadArtifacts


@dataclass
class RegistrySigner:
    """The realm's signing key; distribution finds it in rootcertbundle by its libtrust kid."""

    key: object
    issuer: str
    service: str

    @property
    def kid(self) -> str:
        return keys.libtrust_kid(self.key.public_key())

    def sign(self, subject: str, audience: str, access: list, now: float) -> str:
        issued = int(now)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,  # distribution 2.8 needs a string, not a list
            "exp": issued + TOKEN_LIFETIME,
            "nbf": issued,
            "iat": issued,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})


def handle(world: World, store: TokenStore, signer: RegistrySigner, query: dict[str, list[str]],
           authorization: str | None, now: float, realm_url: str) -> Reply:
    try:
        service = (query.get("service") or [signer.service])[-1]
        if service not in world.registry_hosts:
            raise replies.registry_unknown_service(service)
        scopes = _parse_scopes(query.get("scope", []))
        caller = _authenticate(store, authorization, now)
        if caller is None and not scopes:
            raise replies.registry_no_credential(realm_url, service)
        access, denial = _grant(world, caller, scopes, world.registry_hosts[service])
        if scopes and not access:
            raise denial
    except RegistryError as exc:
        return exc.reply()
    subject = caller.principal.id if caller else ""
    token = signer.sign(subject, service, access, now)
    store.add_secret(token)
    issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return Reply(200, {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME, "issued_at": issued_at})


def _parse_scopes(values: list[str]) -> list[tuple[str, str, list[str]]]:
    """`scope` may repeat, and each value may hold several space-separated scopes."""
    parsed = []
    for item in (s for value in values for s in value.split()):
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name:
            raise RegistryError(400, "UNSUPPORTED", f"invalid scope {item!r}")  # CHOSEN
        wanted = actions.split(",")
        if "*" in wanted:
            wanted = list(_ROLES)
        parsed.append((kind, name, wanted))
    return parsed


def _authenticate(store: TokenStore, authorization: str | None, now: float) -> AccessToken | None:
    """None means anonymous; any credential that is not a live emulator token fails."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise replies.registry_auth_failed() from None
    record = store.lookup(password) if scheme.lower() == "basic" and USERNAMES.match(user) else None
    if record is None or not record.alive(now):
        raise replies.registry_auth_failed()
    return record


def _grant(world: World, caller: AccessToken | None, scopes, location: str):
    """Grant each requested action the caller may perform; remember the first refusal."""
    if caller:
        members = caller.principal.members() | {"allAuthenticatedUsers", "allUsers"}
    else:
        members = {"allUsers"}
    oauth_scopes = set(caller.scopes) if caller else {CLOUD_PLATFORM}
    access, denial = [], None
    for kind, name, actions in scopes:
        if kind != "repository":
            continue
        parts = name.split("/")
        if len(parts) < 3:
            raise replies.registry_name_invalid(len(parts))
        resource = f"projects/{parts[0]}/locations/{location}/repositories/{parts[1]}"
        bindings = _merged(world.repository_bindings, resource, f"projects/{parts[0]}")
        granted = [
            a for a in actions
            if a in _ROLES and holds_role(bindings, _ROLES[a], members) and _OAUTH_SCOPES[a] & oauth_scopes
        ]
        if granted:
            access.append({"type": "repository", "name": name, "actions": granted})
        refused = [a for a in _DENIAL_ORDER if a in actions and a not in granted]
        if refused and denial is None:
            denial = replies.registry_denied(_PERMISSIONS[refused[0]], resource, anonymous=caller is None)
    return access, denial or RegistryError(403, "DENIED", "Permission denied")


def _merged(bindings: dict, *resources: str) -> dict[str, list[str]]:
    """Repository IAM plus the project's IAM, which AR also honours."""
    merged: dict[str, list[str]] = {}
    for resource in resources:
        for role, members in bindings.get(resource, {}).items():
            merged.setdefault(role, []).extend(members)
    return merged
