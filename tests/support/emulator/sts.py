"""STS `POST /v1/token`: the OIDC token exchange, checked in Google's order with Google's texts."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, unquote

import jwt

from . import cel, keys, replies
from .principals import FederatedPrincipal
from .replies import Reply, StsError
from .tokens import AccessToken, TokenStore, new_access_token
from .world import Provider, World

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TOKEN_TYPES = {"urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token"}
SKEW = 60  # seconds of clock skew Google tolerates
MAX_LIFETIME = 3600
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")

_WORKLOAD = re.compile(
    r"^//iam\.googleapis\.com/projects/(\d+)/locations/global/"
    r"workloadIdentityPools/([^/]+)/providers/([^/]+)$"
)
_WORKFORCE = re.compile(r"^//iam\.googleapis\.com/locations/global/workforcePools/[^/]+/providers/[^/]+$")
_CAMEL = {
    "tokenTypeHint": "token_type_hint",
    "grantType": "grant_type",
    "requestedTokenType": "requested_token_type",
    "subjectToken": "subject_token",
    "subjectTokenType": "subject_token_type",
}
_NO_CLAIM_CHECKS = {
    "verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False,
    "verify_iss": False, "verify_sub": False, "verify_jti": False,
}


def parse_body(content_type: str, raw: bytes) -> dict:
    """google-auth posts a snake_case form; google-github-actions posts camelCase JSON."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise StsError("invalid_request", "Invalid JSON payload received.")
        return {_CAMEL.get(k, k): v for k, v in data.items()}
    form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    params = {k: v[-1] for k, v in form.items()}
    if "options" in params:
        # google-auth quotes the JSON before form-encoding it: one more decode is needed.
        params["options"] = unquote(params["options"])
    return params


def exchange(world: World, store: TokenStore, params: dict, now: float) -> Reply:
    try:
        provider = _check_request(world, params)
        claims = _verify_token(world, provider, params["subject_token"], now)
        mapped = cel.map_attributes(provider.attribute_mapping, claims)
        cel.check_condition(provider.attribute_condition, claims, mapped)
    except StsError as exc:
        return exc.reply()
    return _issue(store, provider, mapped, params["scope"].split(), claims["exp"], now)


def _check_request(world: World, params: dict) -> Provider:
    if params.get("grant_type") != TOKEN_EXCHANGE:
        raise StsError("invalid_request", replies.STS_BAD_GRANT_TYPE)
    if params.get("requested_token_type") != ACCESS_TOKEN_TYPE:
        raise StsError("invalid_request", replies.STS_BAD_REQUESTED_TYPE)
    if params.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
        raise StsError("invalid_request", replies.STS_BAD_SUBJECT_TYPE)
    audience = params.get("audience")
    audience = audience if isinstance(audience, str) else ""
    if _WORKFORCE.match(audience):
        raise StsError("invalid_target", replies.STS_BAD_TARGET)  # no workforce pools here
    match = _WORKLOAD.match(audience)
    if not match:
        raise StsError("invalid_request", replies.STS_BAD_AUDIENCE)
    provider = world.provider(*match.groups())
    if provider is None or provider.disabled:
        raise StsError("invalid_target", replies.STS_BAD_TARGET)
    scope = params.get("scope")
    if not isinstance(scope, str) or not scope.split():
        raise StsError("invalid_request", replies.STS_NO_SCOPE)
    token = params.get("subject_token")
    if not isinstance(token, str) or not token:
        raise StsError("invalid_request", replies.STS_EMPTY_SUBJECT_TOKEN)
    _check_options(params.get("options"))
    return provider


def _check_options(options) -> None:
    if options is None:
        return
    try:
        value = json.loads(options) if isinstance(options, str) else options
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise StsError("invalid_request", replies.STS_BAD_OPTIONS)


def _verify_token(world: World, provider: Provider, token: str, now: float) -> dict:
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False, **_NO_CLAIM_CHECKS})
    except jwt.PyJWTError:
        raise StsError("invalid_grant", replies.STS_UNPARSABLE_TOKEN) from None
    # The issuer decides whose keys verify the signature, so a foreign issuer is reported as such
    # (the message users with a wrong --issuer-uri see) rather than as a key lookup failure.
    if unverified.get("iss") != provider.issuer_uri:
        raise StsError("invalid_grant", replies.sts_wrong_issuer(unverified.get("iss"), provider.issuer_uri))
    claims = _verify_signature(world, provider, token, header)
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
    if not any(a in provider.accepted_audiences for a in auds):
        raise StsError("invalid_grant", replies.sts_wrong_audience(auds))
    iat, exp = claims.get("iat"), claims.get("exp")
    if not _is_time(iat) or not _is_time(exp) or now > exp + SKEW or iat > now + SKEW:
        raise StsError("invalid_grant", replies.sts_stale(iat))
    return claims


def _verify_signature(world: World, provider: Provider, token: str, header: dict) -> dict:
    """Google fetches the provider's issuer JWKS; here the issuer lives in the world."""
    issuer = world.issuer_by_iss(provider.issuer_uri)
    if issuer is None:
        raise StsError("invalid_grant", replies.STS_ISSUER_UNREACHABLE)
    kid = header.get("kid")
    candidates = [k for k in issuer.jwks()["keys"] if kid is None or k.get("kid") == kid]
    if not candidates:
        raise StsError("invalid_grant", replies.STS_ISSUER_UNREACHABLE)
    alg = header.get("alg")
    if alg not in RSA_ALGORITHMS:
        raise StsError("invalid_grant", replies.STS_BAD_SIGNATURE)
    for jwk in candidates:
        try:
            claims = jwt.decode(token, keys.key_from_jwk(jwk), algorithms=[alg], options=_NO_CLAIM_CHECKS)
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            raise StsError("invalid_grant", replies.STS_UNPARSABLE_TOKEN) from None
        return claims
    raise StsError("invalid_grant", replies.STS_BAD_SIGNATURE)


def _as_tuple(value) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _is_time(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _issue(store: TokenStore, provider: Provider, mapped: dict, scopes, exp, now: float) -> Reply:
    remaining = int(exp - now)
    if remaining < 0:
        # Measured: a JWT that expires during the exchange (within the skew) gives HTTP 500.
        return replies.internal_error().reply()
    principal = FederatedPrincipal(
        pool=provider.pool,
        subject=mapped["google.subject"],
        attributes={
            k.removeprefix("attribute."): v
            for k, v in mapped.items()
            if k.startswith("attribute.") and isinstance(v, str)
        },
        groups=_as_tuple(mapped.get("google.groups")),
    )
    lifetime = min(remaining, MAX_LIFETIME)
    token = new_access_token("ya29.d.")
    store.add_access(AccessToken(token, "federated", principal, tuple(scopes), now + lifetime))
    body = {"access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer"}
    if lifetime > 0:
        # Google's proto3 JSON drops a zero expires_in (measured with a 2 s JWT).
        body["expires_in"] = lifetime
    return Reply(200, body)


def introspect(store: TokenStore, params: dict, now: float) -> Reply:
    """STS `POST /v1/introspect` (RFC 7662), which gcloud calls for a federated token's account name.

    Only tokens STS issued are known to it: a service account's token is as inactive as an expired one.
    """
    token = params.get("token")
    if not isinstance(token, str) or not token:
        return StsError("invalid_request", replies.STS_INTROSPECT_NO_TOKEN).reply()
    if params.get("token_type_hint", ACCESS_TOKEN_TYPE) not in (ACCESS_TOKEN_TYPE, "access_token"):
        return StsError("invalid_request", replies.STS_INTROSPECT_BAD_HINT).reply()
    record = store.lookup(token)
    if record is None or record.kind != "federated" or not record.alive(now):
        return Reply(200, replies.INTROSPECT_INACTIVE)
    return Reply(200, {
        "active": True,
        "scope": " ".join(record.scopes),
        "exp": str(int(record.expiry)),  # int64 fields are strings in Google's JSON
        "username": record.principal.id,
    })
