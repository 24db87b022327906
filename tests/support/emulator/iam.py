"""IAM Credentials API: `generateAccessToken` and `generateIdToken` for a service account."""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass

import jwt

from . import replies
from .principals import CAN_MINT_TOKENS, TOKEN_CREATOR, holds_role
from .replies import GoogleError, Reply, invalid_argument
from .tokens import CLOUD_PLATFORM, IAM_SCOPE, AccessToken, TokenStore, new_access_token
from .world import ServiceAccount, World

PATH = re.compile(r"^/v1/projects/-/serviceAccounts/([^/:]+):(generateAccessToken|generateIdToken)$")
# The REST reference documents projects/-/serviceAccounts/<email or id>; gcloud's documented delegation chain
# (auth/impersonate_service_account "a,b") sends the bare emails (core/credentials/store.py ParseImpersonationAccounts).
_DELEGATE = re.compile(r"^(?:projects/-/serviceAccounts/)?([^/]+)$")
_DURATION = re.compile(r"^(-?\d+)(\.\d{1,9})?s$")
_API_SCOPES = {CLOUD_PLATFORM, IAM_SCOPE}
_FIELDS = {
    "generateAccessToken": {"delegates": list, "scope": list, "lifetime": str},
    "generateIdToken": {"delegates": list, "audience": str, "includeEmail": bool},
}
_SNAKE_TO_CAMEL = {"include_email": "includeEmail"}  # proto JSON accepts both spellings
PERMISSIONS = {
    "generateAccessToken": "iam.serviceAccounts.getAccessToken",
    "generateIdToken": "iam.serviceAccounts.getOpenIdToken",
}
ONE_HOUR, TWELVE_HOURS = 3600, 43200
GOOGLE_ISSUER = "https://accounts.google.com"


@dataclass
class GoogleSigner:
    """The key Google signs service-account ID tokens with (served at /oauth2/v3/certs)."""

    key: object
    kid: str


def handle(world: World, store: TokenStore, signer: GoogleSigner, method: str, account: str,
           authorization: str | None, raw: bytes, now: float) -> Reply:
    try:
        caller = _authenticate(store, authorization, now)
        if not _API_SCOPES & set(caller.scopes):
            raise replies.scope_insufficient(method[0].upper() + method[1:])
        body = _parse(method, raw)
        target = world.service_account(account)
        _check_api_enabled(world, caller, target)
        delegates = _delegates(body.get("delegates"))
        _authorize(world, caller, delegates, account, PERMISSIONS[method])
        if method == "generateAccessToken":
            return _access_token(store, target, body, now)
        return _id_token(store, signer, target, body, now)
    except GoogleError as exc:
        return exc.reply()


def _authenticate(store: TokenStore, authorization: str | None, now: float) -> AccessToken:
    scheme, _, token = (authorization or "").partition(" ")
    record = store.lookup(token.strip()) if scheme.lower() == "bearer" else None
    if record is None or not record.alive(now):
        raise replies.unauthenticated()
    return record


def _parse(method: str, raw: bytes) -> dict:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise invalid_argument("Invalid JSON payload received. Unexpected token.")
    body = {}
    for name, value in data.items():
        name = _SNAKE_TO_CAMEL.get(name, name)
        expected = _FIELDS[method].get(name)
        if expected is None:
            raise invalid_argument(replies.unknown_field(name))
        if value is None:
            continue  # google-auth sends "delegates": null
        if not isinstance(value, expected) or (expected is list and not all(isinstance(v, str) for v in value)):
            raise invalid_argument(f"Invalid value at '{name}'")
        body[name] = value
    return body


def _check_api_enabled(world: World, caller: AccessToken, target: ServiceAccount | None) -> None:
    """The API must be on in the caller's (consumer) project and in the SA's project."""
    for project in (caller.principal.project_number, target.project_number if target else None):
        if project and project in world.disabled_projects:
            raise replies.service_disabled(project)


def _delegates(values) -> list[str]:
    accounts = []
    for value in values or []:
        match = _DELEGATE.match(value)
        if not match:
            raise invalid_argument(replies.bad_delegate(value))
        accounts.append(match.group(1))
    return accounts


def _authorize(world: World, caller: AccessToken, delegates: list[str], account: str, permission: str) -> None:
    """Caller → first hop needs a token-minting role; each hop needs Token Creator on the next."""
    chain = [world.service_account(a) for a in [*delegates, account]]
    if any(sa is None for sa in chain):
        raise replies.iam_permission_denied(permission)
    members = caller.principal.members()
    roles = CAN_MINT_TOKENS
    for sa in chain:
        if not holds_role(sa.bindings, roles, members):
            raise replies.iam_permission_denied(permission)
        members, roles = {sa.member}, (TOKEN_CREATOR,)


def _access_token(store: TokenStore, target: ServiceAccount, body: dict, now: float) -> Reply:
    scopes = body.get("scope") or []
    if scopes == [""]:
        scopes = [CLOUD_PLATFORM]  # reported: a single empty scope means cloud-platform
    if not scopes:
        raise invalid_argument(replies.SCOPE_REQUIRED)
    lifetime = _duration(body.get("lifetime", "3600s"))
    if lifetime <= 0:
        raise invalid_argument(replies.LIFETIME_ZERO)
    if lifetime > ONE_HOUR and not target.lifetime_extension_allowed:
        raise invalid_argument(replies.LIFETIME_OVER_HOUR)
    if lifetime > TWELVE_HOURS:
        raise invalid_argument(replies.LIFETIME_OVER_12H)
    expiry = int(now) + int(lifetime)
    token = new_access_token("ya29.c.")
    store.add_access(AccessToken(token, "service_account", target.as_principal(), tuple(scopes), expiry))
    # google-auth parses expireTime strictly as %Y-%m-%dT%H:%M:%SZ.
    return Reply(200, {"accessToken": token, "expireTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry))})


def _duration(value: str) -> float:
    match = _DURATION.match(value)
    if not match:
        raise invalid_argument(
            "Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration), "
            f'Field \'lifetime\', Illegal duration format; duration must end with \'s\': "{value}"'
        )
    return float(match.group(1) + (match.group(2) or ""))


def _id_token(store: TokenStore, signer: GoogleSigner, target: ServiceAccount, body: dict, now: float) -> Reply:
    audience = body.get("audience")
    if not audience:
        raise invalid_argument(replies.AUDIENCE_REQUIRED)
    issued = int(now)
    claims = {
        "aud": audience,
        "azp": target.unique_id,
        "exp": issued + ONE_HOUR,
        "iat": issued,
        "iss": GOOGLE_ISSUER,
        "sub": target.unique_id,
    }
    if body.get("includeEmail"):
        claims.update(email=target.email, email_verified=True)
    token = jwt.encode(claims, signer.key, algorithm="RS256", headers={"kid": signer.kid, "typ": "JWT"})
    store.add_secret(token)
    return Reply(200, {"token": token})


def new_signer(key) -> GoogleSigner:
    return GoogleSigner(key, secrets.token_hex(20))
