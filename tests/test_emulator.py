"""The Google emulator behaves like Google: driven with the real google-auth client where possible."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import jwt
import pytest
import requests
from google.auth import exceptions, identity_pool, impersonated_credentials
from google.auth.transport.requests import Request

from tests.support.emulator import (
    AR_READER,
    AR_WRITER,
    CLOUD_PLATFORM,
    CLOUD_PLATFORM_READ_ONLY,
    IAM_SCOPE,
    TOKEN_CREATOR,
    WORKLOAD_IDENTITY_USER,
    Emulator,
    Provider,
    ServiceAccount,
    World,
    ensure_registry_signing_material,
    libtrust_kid,
    typical_world,
)
from tests.support.emulator.keys import load_private_pem, new_rsa_key

REPO_ROOT = Path(__file__).resolve().parents[1]
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
IMPERSONATION_FAILED = "Unable to acquire impersonated credentials"
_KEYS = [new_rsa_key()]  # one spare key for "signed by someone else" cases


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture
def world(emu):
    return emu.world


class StaticToken(identity_pool.SubjectTokenSupplier):
    def __init__(self, token):
        self.token = token

    def get_subject_token(self, context, request):
        return self.token


def mint(world, **kwargs):
    return world.issuer().mint(world.labels["repository_uuid"], **kwargs)


def federated(emu, world, token=None, *, audience=None, impersonate=None, scopes=(CLOUD_PLATFORM,), lifetime=None):
    """identity_pool.Credentials exactly as the pipe builds them, pointed at the emulator."""
    extra = {}
    if impersonate:
        extra["service_account_impersonation_url"] = f"{emu.url}/v1/projects/-/serviceAccounts/{impersonate}:generateAccessToken"
        if lifetime:
            extra["service_account_impersonation_options"] = {"token_lifetime_seconds": lifetime}
    return identity_pool.Credentials(
        audience=audience or world.labels["audience"],
        subject_token_type=JWT_TYPE,
        token_url=f"{emu.url}/v1/token",
        subject_token_supplier=StaticToken(token or mint(world)),
        scopes=list(scopes),
        **extra,
    )


def sts_form(world, token, **overrides):
    form = {
        "grant_type": EXCHANGE,
        "audience": world.labels["audience"],
        "scope": CLOUD_PLATFORM,
        "requested_token_type": ACCESS_TOKEN_TYPE,
        "subject_token": token,
        "subject_token_type": JWT_TYPE,
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def federated_token(emu, world, scopes=CLOUD_PLATFORM, token=None):
    reply = requests.post(f"{emu.url}/v1/token", data=sts_form(world, token or mint(world), scope=scopes))
    assert reply.status_code == 200, reply.text
    return reply.json()["access_token"]


def sa_token(emu, world, email=None, scopes=(CLOUD_PLATFORM,)):
    email = email or world.labels["service_account"]
    reply = iam_call(emu, email, "generateAccessToken", {"scope": list(scopes)}, federated_token(emu, world))
    assert reply.status_code == 200, reply.text
    return reply.json()["accessToken"]


def iam_call(emu, account, method, body, bearer=None, headers=None):
    headers = dict(headers or {})
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return requests.post(f"{emu.url}/v1/projects/-/serviceAccounts/{account}:{method}", json=body, headers=headers)


def realm(emu, *scopes, user="oauth2accesstoken", password=None, service="127.0.0.1:5000"):
    params = [("service", service)] + [("scope", s) for s in scopes]
    auth = (user, password) if password is not None else None
    return requests.get(f"{emu.url}/v2/token", params=params, auth=auth)


def add_sa(world, name, *bindings, **kwargs):
    sa = ServiceAccount(f"{name}@acme-ci.iam.gserviceaccount.com", "123456789012", **kwargs)
    for role, member in bindings:
        sa.grant(role, member)
    world.service_accounts.append(sa)
    return sa


def permission_denied(permission):
    return {
        "error": {
            "code": 403,
            "message": f"Permission '{permission}' denied on resource (or it may not exist).",
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": "iam.googleapis.com",
                    "metadata": {"permission": permission},
                }
            ],
        }
    }


UNAUTHENTICATED = {
    "error": {
        "code": 401,
        "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
        "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        "status": "UNAUTHENTICATED",
    }
}


# ---------------------------------------------------------------- Bitbucket's issuer

def test_minted_token_has_bitbucket_claims_and_verifies_against_keys_json(emu, world):
    token = mint(world, deployment_environment_uuid="0b6b1c8e-1f52-4f4a-9c1a-0d5a4f6c1d11", step_uuid="{s}")
    issuer = world.issuer()
    discovery = requests.get(f"{emu.url}/bitbucket/acme/.well-known/openid-configuration").json()
    assert discovery["issuer"] == "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc"
    keys = requests.get(discovery["jwks_uri"]).json()
    claims = jwt.decode(token, jwt.PyJWK(keys["keys"][0]).key, algorithms=["RS256"], audience=issuer.default_audience)
    repo = world.labels["repository_uuid"]
    env = "{0b6b1c8e-1f52-4f4a-9c1a-0d5a4f6c1d11}"
    assert claims["sub"] == f"{repo}:{env}:{{s}}"
    assert claims["aud"] == "ari:cloud:bitbucket::workspace/" + issuer.workspace_uuid.strip("{}")
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["deploymentEnvironmentUuid"] == env and claims["branchName"] == "main"
    for name in ("repositoryUuid", "workspaceUuid", "pipelineUuid", "stepUuid"):
        assert re.fullmatch(r"\{[^{}]+\}", claims[name]), name
    plain = jwt.decode(mint(world, aud=["a", "b"], drop_claims=("branchName",)), options={"verify_signature": False})
    assert plain["sub"].count(":") == 1 and plain["aud"] == ["a", "b"] and "branchName" not in plain
    assert requests.get(f"{emu.url}/bitbucket/nobody/keys.json").status_code == 404


# ---------------------------------------------------------------- STS through google-auth

def test_google_auth_exchange_without_impersonation(emu, world):
    creds = federated(emu, world)
    creds.refresh(Request())
    assert creds.token.startswith("ya29.d.")
    assert 3590 < (creds.expiry - creds.expiry.utcnow()).total_seconds() <= 3600
    info = emu.token_info(creds.token)
    assert info.kind == "federated" and info.scopes == (CLOUD_PLATFORM,)
    assert info.principal.attributes["repository_uuid"] == world.labels["repository_uuid"]
    assert info.principal.pool == world.providers[0].pool
    [record] = emu.requests
    assert record.route == "sts" and record.status == 200
    assert record.body["subject_token_type"] == JWT_TYPE and "options" not in record.body
    assert "source/programmatic" in record.header("X-Goog-Api-Client")


def test_google_auth_exchange_with_impersonation(emu, world):
    creds = federated(emu, world, impersonate=world.labels["service_account"], lifetime=1800)
    creds.refresh(Request())
    assert creds.token.startswith("ya29.c.")
    sts_call, iam_call_ = emu.requests
    assert sts_call.body["scope"] == IAM_SCOPE  # google-auth rescopes the source to iam
    assert iam_call_.body == {"delegates": None, "scope": [CLOUD_PLATFORM], "lifetime": "1800s"}
    assert iam_call_.header("Authorization") == "<redacted>"
    assert emu.token_info(creds.token).principal.email == world.labels["service_account"]


def _other_key(world):
    return {"token": mint(world, signing_key=_KEYS[0])}


BAD_TARGET = (
    'The target service indicated by the "audience" parameters is invalid. This might either be because the pool or '
    "provider is disabled or deleted or because it doesn't exist."
)
OVER_ONE_HOUR = (
    "can not have lifetimes of more than 1 hour. Use the Org Policy Constraint "
    "constraints/iam.allowServiceAccountCredentialLifetimeExtension to allow up to 12 hours."
)

STS_FAILURES = {
    "https-audience": (
        lambda w: {"audience": "https://iam.googleapis.com/" + w.providers[0].name},
        "invalid_request",
        'Invalid value for "audience". This value should be the full resource name of the Identity Provider.',
    ),
    "pool-audience": (
        lambda w: {"audience": "//iam.googleapis.com/" + w.providers[0].pool},
        "invalid_request",
        'Invalid value for "audience". This value should be the full resource name of the Identity Provider.',
    ),
    "wrong-project-number": (
        lambda w: {"audience": w.labels["audience"].replace("123456789012", "999999999999")},
        "invalid_target",
        BAD_TARGET,
    ),
    "disabled-provider": (
        lambda w: setattr(w.providers[0], "disabled", True) or {},
        "invalid_target",
        BAD_TARGET,
    ),
    "other-key-same-kid": (_other_key, "invalid_grant", "Unable to verify the ID Token signature."),
    "unknown-kid": (
        lambda w: {"token": mint(w, kid="rotated-away")},
        "invalid_grant",
        "Error connecting to the given credential's issuer.",
    ),
    "wrong-issuer": (
        lambda w: {"token": mint(w, extra_claims={"iss": "https://evil.example"})},
        "invalid_grant",
        (
            "The issuer in ID Token https://evil.example does not match the expected ones: "
            "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc"
        ),
    ),
    "wrong-audience": (
        lambda w: {"token": mint(w, aud="https://other")},
        "invalid_grant",
        "The audience in ID Token [https://other] does not match the expected audience.",
    ),
    "wrong-audience-list": (
        lambda w: {"token": mint(w, aud=["a", "b"])},
        "invalid_grant",
        "The audience in ID Token [a, b] does not match the expected audience.",
    ),
    "expired": (
        lambda w: {"token": mint(w, iat=1_700_000_000)},
        "invalid_grant",
        "ID Token issued at 1700000000 is stale to sign-in.",
    ),
    "no-iat": (
        lambda w: {"token": mint(w, drop_claims=("iat",))},
        "invalid_grant",
        "ID Token issued at null is stale to sign-in.",
    ),
    "condition-false": (
        lambda w: {"token": w.issuer().mint("{another-repository}")},
        "unauthorized_client",
        "The given credential is rejected by the attribute condition.",
    ),
    "condition-missing-claim": (
        lambda w: {"token": mint(w, drop_claims=("repositoryUuid",))},
        "unauthorized_client",
        "The given credential is rejected by the attribute condition.",
    ),
    "attribute-over-127-bytes": (
        lambda w: {"token": mint(w, branch="b" * 128)},
        "invalid_request",
        "The size of mapped attribute exceeds the 127 bytes limit.",
    ),
}


@pytest.mark.parametrize("case", STS_FAILURES, ids=list(STS_FAILURES))
def test_google_auth_surfaces_each_sts_rejection(emu, world, case):
    arrange, error, description = STS_FAILURES[case]
    setup = arrange(world)
    creds = federated(emu, world, setup.get("token"), audience=setup.get("audience"))
    with pytest.raises(exceptions.OAuthError) as caught:
        creds.refresh(Request())
    assert caught.value.args[0] == f"Error code {error}: {description}"
    assert json.loads(caught.value.args[1]) == {"error": error, "error_description": description}
    assert emu.requests[-1].status == 400


def test_127_bytes_is_allowed_and_counts_bytes_not_characters(emu, world):
    assert requests.post(f"{emu.url}/v1/token", data=sts_form(world, mint(world, branch="b" * 127))).ok
    reply = requests.post(f"{emu.url}/v1/token", data=sts_form(world, mint(world, branch="é" * 64)))
    assert reply.json()["error_description"] == "The size of mapped attribute exceeds the 127 bytes limit."


def test_condition_can_use_mapped_attributes(emu, world):
    world.providers[0].attribute_condition = 'attribute.branch == "main" && google.subject.startsWith("{")'
    assert requests.post(f"{emu.url}/v1/token", data=sts_form(world, mint(world))).ok
    reply = requests.post(f"{emu.url}/v1/token", data=sts_form(world, mint(world, branch="dev")))
    assert reply.json()["error"] == "unauthorized_client"


REQUEST_SHAPE_FAILURES = {
    "grant_type": ({"grant_type": "client_credentials"}, "Invalid value of grant_type in request."),
    "requested_token_type": ({"requested_token_type": "urn:x"}, "Invalid value of requested_token_type in request."),
    "subject_token_type": (
        {"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
        "Invalid value of subject_token_type in request.",
    ),
    "no-scope": ({"scope": None}, "Scope(s) must be provided."),
    "blank-scope": ({"scope": " "}, "Scope(s) must be provided."),
    "empty-subject-token": ({"subject_token": ""}, "subject_token must be nonempty"),
    "grant-type-checked-before-audience": ({"grant_type": "x", "audience": "nope"}, "Invalid value of grant_type in request."),
}


@pytest.mark.parametrize("case", REQUEST_SHAPE_FAILURES, ids=list(REQUEST_SHAPE_FAILURES))
def test_sts_request_shape_errors(emu, world, case):
    overrides, description = REQUEST_SHAPE_FAILURES[case]
    reply = requests.post(f"{emu.url}/v1/token", data=sts_form(world, mint(world), **overrides))
    assert reply.status_code == 400
    assert reply.json() == {"error": "invalid_request", "error_description": description}


def test_sts_json_camel_case_body(emu, world):
    body = {
        "audience": world.labels["audience"],
        "grantType": EXCHANGE,
        "requestedTokenType": ACCESS_TOKEN_TYPE,
        "scope": CLOUD_PLATFORM,
        "subjectTokenType": JWT_TYPE,
        "subjectToken": mint(world),
    }
    reply = requests.post(f"{emu.url}/v1/token", json=body)
    assert reply.status_code == 200
    assert set(reply.json()) == {"access_token", "issued_token_type", "token_type", "expires_in"}
    assert reply.json()["token_type"] == "Bearer" and reply.json()["issued_token_type"] == ACCESS_TOKEN_TYPE
    body["subjectToken"] = mint(world, aud=[])
    assert requests.post(f"{emu.url}/v1/token", json=body).json()["error_description"] == (
        "The audience in ID Token [] does not match the expected audience."
    )


def test_options_are_decoded_twice_like_google_auth_sends_them(emu, world):
    options = quote(json.dumps({"userProject": "123"}))
    assert requests.post(f"{emu.url}/v1/token", data=sts_form(world, mint(world), options=options)).ok
    reply = requests.post(f"{emu.url}/v1/token", data=sts_form(world, mint(world), options="not-json"))
    assert reply.json()["error"] == "invalid_request"


def test_audiences_list_and_google_default_audience(emu, world):
    assert requests.post(f"{emu.url}/v1/token", data=sts_form(world, mint(world, aud=["x", world.issuer().default_audience]))).ok
    provider = world.providers[0]
    provider.allowed_audiences = []
    default = "https://iam.googleapis.com/" + provider.name
    assert requests.post(f"{emu.url}/v1/token", data=sts_form(world, mint(world, aud=default))).ok
    reply = requests.post(f"{emu.url}/v1/token", data=sts_form(world, mint(world)))
    assert reply.json()["error"] == "invalid_grant"


def test_expires_in_follows_the_oidc_token(emu, world):
    now = int(time.time())
    emu.clock = lambda: now

    def expires_in(token):
        return requests.post(f"{emu.url}/v1/token", data=sts_form(world, token))

    assert expires_in(mint(world, iat=now, lifetime=30)).json()["expires_in"] == 30
    assert expires_in(mint(world, iat=now, lifetime=86400 * 365 * 11)).json()["expires_in"] == 3600
    zero = expires_in(mint(world, iat=now - 10, lifetime=10))
    assert zero.status_code == 200 and "expires_in" not in zero.json()  # measured: google-auth then crashes
    assert expires_in(mint(world, iat=now - 40, lifetime=10)).status_code == 500  # expired within the skew
    future = expires_in(mint(world, iat=now + 30))
    assert future.status_code == 200  # 30 s of skew is tolerated
    too_early = expires_in(mint(world, iat=now + 120)).json()["error_description"]
    assert too_early == f"ID Token issued at {now + 120} is stale to sign-in."


# ---------------------------------------------------------------- IAM Credentials

@pytest.mark.parametrize("form", ["projects/-/serviceAccounts/{}", "{}"])  # the REST form; gcloud's chain sends bare emails
def test_impersonation_through_a_delegation_chain(emu, world, form):
    source = federated(emu, world)
    first = world.service_accounts[0]
    target = add_sa(world, "deployer", (TOKEN_CREATOR, first.member))
    creds = impersonated_credentials.Credentials(
        source_credentials=source,
        target_principal=target.email,
        target_scopes=[CLOUD_PLATFORM],
        delegates=[form.format(first.email)],
        lifetime=600,
        iam_endpoint_override=f"{emu.url}/v1/projects/-/serviceAccounts/{target.email}:generateAccessToken",
    )
    creds.refresh(Request())
    info = emu.token_info(creds.token)
    assert info.principal.email == target.email
    assert 590 < info.expiry - time.time() <= 600
    assert emu.requests[-1].body["delegates"] == [form.format(first.email)]


def introspect(emu, body, **kwargs):
    # gcloud posts a form with its own OAuth client in Basic auth (core/credentials/introspect.py).
    return requests.post(f"{emu.url}/v1/introspect", data=body, auth=("32555940559.apps.googleusercontent.com", "x"), **kwargs)


def test_introspect_names_the_federated_principal(emu, world):
    token = federated_token(emu, world)
    reply = introspect(emu, {"token": token, "token_type_hint": ACCESS_TOKEN_TYPE})
    assert reply.status_code == 200
    info, record = reply.json(), emu.token_info(token)
    assert info == {"active": True, "scope": CLOUD_PLATFORM, "exp": str(int(record.expiry)), "username": record.principal.id}
    assert info["username"].startswith("principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/")
    assert emu.requests[-1].route == "introspect" and token not in str(emu.requests[-1].body)
    camel = requests.post(f"{emu.url}/v1/introspect", json={"token": token, "tokenTypeHint": "access_token"})
    assert camel.json()["active"] is True


def test_introspect_knows_only_live_sts_tokens_and_checks_the_request(emu, world):
    for token in (sa_token(emu, world), "ya29.never-issued"):
        assert introspect(emu, {"token": token}).json() == {}
    assert introspect(emu, {}).json() == {"error": "invalid_request", "error_description": "Invalid value of token in request."}
    bad_hint = introspect(emu, {"token": federated_token(emu, world), "token_type_hint": "refresh_token"})
    assert bad_hint.status_code == 400 and bad_hint.json()["error"] == "invalid_request"


def test_broken_delegation_chain_is_permission_denied(emu, world):
    first = world.service_accounts[0]
    target = add_sa(world, "deployer")  # first holds nothing on target
    creds = impersonated_credentials.Credentials(
        source_credentials=federated(emu, world),
        target_principal=target.email,
        target_scopes=[CLOUD_PLATFORM],
        delegates=[f"projects/-/serviceAccounts/{first.email}"],
        iam_endpoint_override=f"{emu.url}/v1/projects/-/serviceAccounts/{target.email}:generateAccessToken",
    )
    with pytest.raises(exceptions.RefreshError) as caught:
        creds.refresh(Request())
    assert caught.value.args[0] == IMPERSONATION_FAILED
    assert json.loads(caught.value.args[1]) == permission_denied("iam.serviceAccounts.getAccessToken")


@pytest.mark.parametrize(
    "arrange",
    [
        lambda w: w.service_accounts[0].bindings.clear(),
        lambda w: w.service_accounts[0].bindings.update(
            {WORKLOAD_IDENTITY_USER: [w.providers[0].principal_set("repository_uuid", "{other}")]}
        ),
        lambda w: w.labels.update(service_account="ghost@acme-ci.iam.gserviceaccount.com"),
    ],
    ids=["no-binding", "other-principal-set", "unknown-sa"],
)
def test_google_auth_surfaces_permission_denied(emu, world, arrange):
    arrange(world)
    creds = federated(emu, world, impersonate=world.labels["service_account"])
    with pytest.raises(exceptions.RefreshError) as caught:
        creds.refresh(Request())
    assert caught.value.args[0] == IMPERSONATION_FAILED
    assert json.loads(caught.value.args[1]) == permission_denied("iam.serviceAccounts.getAccessToken")


def test_subject_principal_and_whole_pool_members_match(emu, world):
    sa = world.service_accounts[0]
    token = mint(world, step_uuid="{step}")
    sub = f"{world.labels['repository_uuid']}:{{step}}"
    sa.bindings = {WORKLOAD_IDENTITY_USER: [world.providers[0].principal(sub)]}
    body = {"scope": [CLOUD_PLATFORM]}
    assert iam_call(emu, sa.email, "generateAccessToken", body, federated_token(emu, world, token=token)).ok
    sa.bindings = {WORKLOAD_IDENTITY_USER: [world.providers[0].principal(sub.upper())]}  # case-sensitive
    assert iam_call(emu, sa.email, "generateAccessToken", body, federated_token(emu, world)).status_code == 403
    sa.bindings = {WORKLOAD_IDENTITY_USER: [world.providers[0].all_identities()]}
    assert iam_call(emu, sa.email, "generateAccessToken", body, federated_token(emu, world)).ok


def test_bearer_must_be_a_live_token_issued_here(emu, world):
    email = world.labels["service_account"]
    body = {"scope": [CLOUD_PLATFORM]}
    for bearer in (None, "ya29.made-up"):
        reply = iam_call(emu, email, "generateAccessToken", body, bearer)
        assert reply.status_code == 401 and reply.json() == UNAUTHENTICATED
    token = federated_token(emu, world)
    emu.clock = lambda: time.time() + 3601
    assert iam_call(emu, email, "generateAccessToken", body, token).json() == UNAUTHENTICATED


def test_bearer_needs_cloud_platform_or_iam_scope(emu, world):
    token = federated_token(emu, world, scopes="https://www.googleapis.com/auth/devstorage.read_only")
    reply = iam_call(emu, world.labels["service_account"], "generateAccessToken", {"scope": [CLOUD_PLATFORM]}, token)
    assert reply.status_code == 403
    error = reply.json()["error"]
    assert error["message"] == "Request had insufficient authentication scopes."
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    iam_only = federated_token(emu, world, scopes=IAM_SCOPE)
    assert iam_call(emu, world.labels["service_account"], "generateAccessToken", {"scope": [CLOUD_PLATFORM]}, iam_only).ok


def test_disabled_iam_credentials_api(emu, world):
    world.disabled_projects.add("123456789012")
    creds = federated(emu, world, impersonate=world.labels["service_account"])
    with pytest.raises(exceptions.RefreshError) as caught:
        creds.refresh(Request())
    error = json.loads(caught.value.args[1])["error"]
    assert error["code"] == 403 and error["status"] == "PERMISSION_DENIED"
    assert error["message"] == (
        "IAM Service Account Credentials API has not been used in project 123456789012 before or it is disabled. Enable it "
        "by visiting https://console.developers.google.com/apis/api/iamcredentials.googleapis.com/overview?project="
        "123456789012 then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our "
        "systems and retry."
    )
    assert error["details"][1]["reason"] == "SERVICE_DISABLED"


LIFETIMES = [
    ("0s", False, 400, "Lifetime of access token must be larger then zero."),
    ("3601s", False, 400, OVER_ONE_HOUR),
    ("43200s", False, 400, OVER_ONE_HOUR),
    ("43200s", True, 200, None),
    ("43201s", True, 400, "Lifetime of access token must be less than or equal to 43200 seconds."),
    ("1s", False, 200, None),
]


@pytest.mark.parametrize("lifetime,extension,status,message", LIFETIMES)
def test_access_token_lifetimes(emu, world, lifetime, extension, status, message):
    world.service_accounts[0].lifetime_extension_allowed = extension
    now = int(time.time())
    emu.clock = lambda: now
    reply = iam_call(emu, world.labels["service_account"], "generateAccessToken",
                     {"scope": [CLOUD_PLATFORM], "lifetime": lifetime}, federated_token(emu, world))
    assert reply.status_code == status
    if message:
        assert reply.json() == {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
    else:
        expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + int(lifetime[:-1])))
        assert reply.json()["expireTime"] == expected


def test_generate_access_token_body_rules(emu, world):
    email, bearer = world.labels["service_account"], federated_token(emu, world)
    assert iam_call(emu, email, "generateAccessToken", {}, bearer).json()["error"]["status"] == "INVALID_ARGUMENT"
    assert iam_call(emu, email, "generateAccessToken", {"scope": []}, bearer).status_code == 400
    ok = iam_call(emu, email, "generateAccessToken", {"scope": [""]}, bearer)  # reported: defaults to cloud-platform
    assert emu.token_info(ok.json()["accessToken"]).scopes == (CLOUD_PLATFORM,)
    unknown = iam_call(emu, email, "generateAccessToken", {"scope": [CLOUD_PLATFORM], "lifetme": "1s"}, bearer)
    assert unknown.json()["error"]["message"] == 'Invalid JSON payload received. Unknown name "lifetme": Cannot find field.'
    # The REST reference: "The - wildcard character is required; replacing it with a project ID is invalid."
    in_project = f"projects/acme-ci/serviceAccounts/{email}"
    bad_delegate = iam_call(emu, email, "generateAccessToken", {"scope": [CLOUD_PLATFORM], "delegates": [in_project]}, bearer)
    assert bad_delegate.status_code == 400


def test_iam_path_is_unquoted_and_query_ignored_and_reason_recorded(emu, world):
    email = world.labels["service_account"]
    url = f"{emu.url}/v1/projects/-/serviceAccounts/{quote(email)}:generateAccessToken?%24alt=json%3Benum-encoding%3Dint"
    headers = {"Authorization": f"Bearer {federated_token(emu, world)}", "X-Goog-Request-Reason": "ticket-42"}
    reply = requests.post(url, json={"scope": [CLOUD_PLATFORM]}, headers=headers)
    assert reply.ok
    assert emu.requests[-1].request_reason == "ticket-42"
    by_unique_id = iam_call(emu, world.service_accounts[0].unique_id, "generateAccessToken", {"scope": [CLOUD_PLATFORM]},
                            federated_token(emu, world))
    assert by_unique_id.ok


def test_service_account_caller_needs_token_creator(emu, world):
    caller = world.labels["service_account"]
    target = add_sa(world, "deployer")
    bearer = sa_token(emu, world)
    denied = iam_call(emu, target.email, "generateAccessToken", {"scope": [CLOUD_PLATFORM]}, bearer)
    assert denied.json() == permission_denied("iam.serviceAccounts.getAccessToken")
    target.grant(TOKEN_CREATOR, f"serviceAccount:{caller}")
    assert iam_call(emu, target.email, "generateAccessToken", {"scope": [CLOUD_PLATFORM]}, bearer).ok


def test_generate_id_token(emu, world):
    email, bearer = world.labels["service_account"], federated_token(emu, world)
    body = {"audience": "https://run.example", "includeEmail": True, "delegates": None}
    reply = iam_call(emu, email, "generateIdToken", body, bearer)
    assert reply.status_code == 200
    certs = requests.get(f"{emu.url}/oauth2/v3/certs").json()
    claims = jwt.decode(reply.json()["token"], jwt.PyJWK(certs["keys"][0]).key, algorithms=["RS256"], audience="https://run.example")
    sa = world.service_accounts[0]
    assert claims["iss"] == "https://accounts.google.com" and claims["sub"] == claims["azp"] == sa.unique_id
    assert claims["email"] == email and claims["email_verified"] is True and claims["exp"] - claims["iat"] == 3600
    plain = iam_call(emu, email, "generateIdToken", {"audience": "x"}, bearer).json()["token"]
    assert "email" not in jwt.decode(plain, options={"verify_signature": False})
    assert iam_call(emu, email, "generateIdToken", {}, bearer).status_code == 400
    world.service_accounts[0].bindings.clear()
    denied = iam_call(emu, email, "generateIdToken", {"audience": "x"}, bearer)
    assert denied.json() == permission_denied("iam.serviceAccounts.getOpenIdToken")


# ---------------------------------------------------------------- Artifact Registry realm

def _registry_claims(reply):
    return jwt.decode(reply.json()["token"], options={"verify_signature": False})


def test_realm_grants_pull_to_a_reader(emu, world):
    reply = realm(emu, "repository:acme-ci/private/app:pull", password=sa_token(emu, world))
    assert reply.status_code == 200
    body = reply.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 3600
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["issued_at"])
    claims = _registry_claims(reply)
    assert claims["aud"] == "127.0.0.1:5000" and claims["iss"] == "emulated-artifact-registry"
    assert claims["sub"] == world.labels["service_account"]
    assert claims["access"] == [{"type": "repository", "name": "acme-ci/private/app", "actions": ["pull"]}]
    assert {"exp", "nbf", "iat", "jti"} <= set(claims)
    assert jwt.get_unverified_header(body["token"])["kid"] == libtrust_kid(emu.registry_signer.key.public_key())


def test_realm_grants_only_what_is_allowed(emu, world):
    password = sa_token(emu, world)
    partial = realm(emu, "repository:acme-ci/private/app:push,pull", password=password)
    assert _registry_claims(partial)["access"][0]["actions"] == ["pull"]
    push = realm(emu, "repository:acme-ci/private/app:push", password=password)
    assert push.status_code == 403
    message = (
        'Permission "artifactregistry.repositories.uploadArtifacts" denied on resource '
        '"projects/acme-ci/locations/us/repositories/private" (or it may not exist)'
    )
    assert push.json() == {"errors": [{"code": "DENIED", "message": message}]}
    other = realm(emu, "repository:acme-ci/other/app:pull", password=password)
    assert other.json()["errors"][0]["message"] == (
        'Permission "artifactregistry.repositories.downloadArtifacts" denied on resource '
        '"projects/acme-ci/locations/us/repositories/other" (or it may not exist)'
    )
    both = realm(emu, "repository:acme-ci/private/app:pull repository:acme-ci/other/app:pull",
                 "repository:acme-ci/private/tool:pull", password=password)
    assert [a["name"] for a in _registry_claims(both)["access"]] == ["acme-ci/private/app", "acme-ci/private/tool"]


def test_realm_writer_scopes_and_direct_federation(emu, world):
    world.grant_repository(world.labels["repository"], AR_WRITER, world.service_accounts[0].member)

    def granted(password):
        return _registry_claims(realm(emu, "repository:acme-ci/private/app:push,pull", password=password))["access"][0]["actions"]

    assert granted(sa_token(emu, world)) == ["push", "pull"]
    assert granted(sa_token(emu, world, scopes=(CLOUD_PLATFORM_READ_ONLY,))) == ["pull"]
    iam_only = sa_token(emu, world, scopes=(IAM_SCOPE,))
    assert realm(emu, "repository:acme-ci/private/app:pull", password=iam_only).status_code == 403
    member = world.providers[0].principal_set("repository_uuid", world.labels["repository_uuid"])
    world.grant_repository(world.labels["repository"], AR_READER, member)
    direct = realm(emu, "repository:acme-ci/private/app:pull", user="_dcgcr_2_1_0_token", password=federated_token(emu, world))
    assert direct.status_code == 200 and _registry_claims(direct)["sub"].startswith("principal://iam.googleapis.com/projects/")


def test_realm_rejects_bad_credentials(emu, world):
    failed = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication failed"}]}
    good = sa_token(emu, world)
    assert realm(emu, "repository:acme-ci/private/app:pull", password="ya29.unknown").json() == failed
    assert realm(emu, "repository:acme-ci/private/app:pull", user="admin", password=good).status_code == 401
    emu.clock = lambda: time.time() + 3601
    assert realm(emu, "repository:acme-ci/private/app:pull", password=good).json() == failed
    emu.clock = time.time
    assert realm(emu, "repository:acme-ci/private/app:pull", user="_dcgcloud_token", password=good).ok


def test_realm_anonymous_and_login_probe(emu, world):
    anonymous = realm(emu, "repository:acme-ci/private/app:pull")
    assert anonymous.status_code == 403
    assert anonymous.json()["errors"][0]["message"] == (
        "Unauthenticated request. Unauthenticated requests do not have permission "
        '"artifactregistry.repositories.downloadArtifacts" on resource "projects/acme-ci/locations/us/repositories/private" '
        "(or it may not exist)"
    )
    probe = realm(emu)
    assert probe.status_code == 401 and probe.json()["errors"][0]["code"] == "UNAUTHORIZED"
    login = realm(emu, password=sa_token(emu, world))
    assert login.status_code == 200 and _registry_claims(login)["access"] == []
    assert realm(emu, "repository:app:pull", password=sa_token(emu, world)).json() == {
        "errors": [{"code": "NAME_INVALID", "message": "invalid number of path components: 1"}]
    }


# ---------------------------------------------------------------- faults, log, leak scan

def test_sts_503_then_recovers(emu, world):
    emu.faults.inject("sts", "503")
    with pytest.raises(exceptions.OAuthError) as caught:
        federated(emu, world).refresh(Request())
    assert json.loads(caught.value.args[1]) == {
        "error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}
    }
    federated(emu, world).refresh(Request())
    assert [(r.status, r.fault) for r in emu.requests] == [(503, "503"), (200, None)]


def test_iam_connection_reset(emu, world):
    emu.faults.inject("iam", "reset")
    with pytest.raises(exceptions.TransportError):
        federated(emu, world, impersonate=world.labels["service_account"]).refresh(Request())
    assert emu.requests[-1].fault == "reset" and emu.requests[-1].status is None


def test_slow_429_500_and_clear(emu, world):
    password = sa_token(emu, world)
    emu.faults.inject("realm", "slow", delay=0.3)
    started = time.monotonic()
    assert realm(emu, "repository:acme-ci/private/app:pull", password=password).ok
    assert time.monotonic() - started >= 0.3
    emu.faults.inject("realm", "429", count=2, retry_after=7)
    for _ in range(2):
        limited = realm(emu, "repository:acme-ci/private/app:pull", password=password)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    emu.faults.inject("iam", "500", count=5)
    emu.faults.clear()
    assert realm(emu, "repository:acme-ci/private/app:pull", password=password).ok
    with pytest.raises(ValueError):
        emu.faults.inject("sts", "slow")


def test_issued_tokens_cover_every_secret(emu, world):
    oidc = mint(world)
    federated_access = federated_token(emu, world, token=oidc)
    sa_access = sa_token(emu, world)
    id_reply = iam_call(emu, world.labels["service_account"], "generateIdToken", {"audience": "a"}, federated_access)
    id_token = id_reply.json()["token"]
    registry_jwt = realm(emu, "repository:acme-ci/private/app:pull", password=sa_access).json()["token"]
    issued = set(emu.issued_tokens())
    assert {oidc, federated_access, sa_access, id_token, registry_jwt} <= issued
    log = json.dumps([r.as_dict() for r in emu.requests])
    assert sa_access not in log and federated_access not in log  # bearer/basic values are redacted
    emu.reset_log()
    assert emu.requests == []


# ---------------------------------------------------------------- world data and process mode

def test_world_round_trips_through_json(emu, world):
    loaded = World.from_json(world.to_json())
    token = loaded.issuer().mint(world.labels["repository_uuid"])
    emu.world = loaded
    assert federated_token(emu, loaded, token=token)
    assert loaded.labels == world.labels and loaded.service_accounts[0].bindings == world.service_accounts[0].bindings


def test_provider_creation_rules():
    with pytest.raises(ValueError, match="scheme must be https"):
        Provider("1", "p", "r", "http://issuer")
    with pytest.raises(ValueError):
        Provider("1", "p", "r", "https://issuer", attribute_mapping={"attribute.x": "assertion.x"})
    with pytest.raises(ValueError):
        Provider("my-project", "p", "r", "https://issuer")


def test_runs_as_a_process(tmp_path):
    world_file = tmp_path / "world.json"
    world_file.write_text(typical_world(workspace_slug="proc").to_json())
    command = [sys.executable, "-m", "tests.support.emulator", "--port", "0", "--world", str(world_file),
               "--registry-key-dir", str(tmp_path / "keys")]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(process.stdout.readline())
        url, labels = started["url"], started["labels"]
        assert Path(started["registry_cert"]).exists()
        token = requests.post(f"{url}/_emulator/mint", json={}).json()["token"]
        form = {"grant_type": EXCHANGE, "audience": labels["audience"], "scope": CLOUD_PLATFORM,
                "requested_token_type": ACCESS_TOKEN_TYPE, "subject_token": token, "subject_token_type": JWT_TYPE}
        assert requests.post(f"{url}/v1/token", data=form).ok
        assert requests.post(f"{url}/_emulator/faults", json={"route": "sts", "kind": "503"}).ok
        assert requests.post(f"{url}/v1/token", data=form).status_code == 503
        logged = requests.get(f"{url}/_emulator/requests").json()["requests"]
        assert [r["status"] for r in logged] == [200, 503]
        assert token in requests.get(f"{url}/_emulator/issued_tokens").json()["tokens"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_registry_signing_material_is_created_once(tmp_path):
    key_path, cert_path = ensure_registry_signing_material(tmp_path)
    before = Path(key_path).read_bytes()
    assert ensure_registry_signing_material(tmp_path) == (key_path, cert_path)
    assert Path(key_path).read_bytes() == before
    assert oct(os.stat(key_path).st_mode & 0o777) == "0o600"
    load_private_pem(before)


# ---------------------------------------------------------------- a real distribution 2.8 registry

def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not shutil.which("docker-registry", path="/usr/bin"), reason="Debian docker-registry not installed")
def test_real_registry_accepts_realm_tokens(tmp_path):
    port = _free_port()
    service = f"127.0.0.1:{port}"
    key_path, cert_path = ensure_registry_signing_material(tmp_path / "keys")
    world = typical_world(registry_host=service)
    with Emulator(world, registry_signing_key_path=key_path, registry_service=service) as emu:
        config = tmp_path / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {tmp_path / 'data'}\nhttp:\n  addr: {service}\nauth:\n  token:\n"
            f"    realm: {emu.url}/v2/token\n    service: {service}\n    issuer: emulated-artifact-registry\n"
            f"    rootcertbundle: {cert_path}\n"
        )
        registry = subprocess.Popen(["/usr/bin/docker-registry", "serve", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    challenge = requests.get(f"http://{service}/v2/", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.05)
            assert challenge.status_code == 401 and f'realm="{emu.url}/v2/token"' in challenge.headers["Www-Authenticate"]
            password = sa_token(emu, world)

            def tags(name, scope):
                token = realm(emu, scope, password=password, service=service).json()["token"]
                return requests.get(f"http://{service}/v2/{name}/tags/list", headers={"Authorization": f"Bearer {token}"})

            granted = tags("acme-ci/private/app", "repository:acme-ci/private/app:pull")
            assert granted.status_code == 404 and granted.json()["errors"][0]["code"] == "NAME_UNKNOWN"
            login_only = requests.get(f"{emu.url}/v2/token", params={"service": service},
                                      auth=("oauth2accesstoken", password)).json()["token"]
            refused = requests.get(f"http://{service}/v2/acme-ci/private/app/tags/list",
                                   headers={"Authorization": f"Bearer {login_only}"})
            assert refused.status_code == 401 and "insufficient_scope" in refused.headers["Www-Authenticate"]
            assert tags("acme-ci/private/app", "repository:acme-ci/private/tool:pull").status_code == 401
        finally:
            registry.terminate()
            registry.wait(timeout=10)


def test_basic_auth_header_is_parsed_strictly(emu, world):
    garbage = requests.get(f"{emu.url}/v2/token", params={"scope": "repository:acme-ci/private/app:pull"},
                           headers={"Authorization": "Basic !!!"})
    assert garbage.status_code == 401
    bearer = requests.get(f"{emu.url}/v2/token", params={"scope": "repository:acme-ci/private/app:pull"},
                          headers={"Authorization": "Bearer " + sa_token(emu, world)})
    assert bearer.status_code == 401
    encoded = base64.b64encode(f"oauth2accesstoken:{sa_token(emu, world)}".encode()).decode()
    assert requests.get(f"{emu.url}/v2/token", params={"scope": "repository:acme-ci/private/app:pull"},
                        headers={"Authorization": "Basic " + encoded}).ok


def test_a_url_no_api_serves_gets_googles_front_end_page_not_a_json_error(emu):
    answer = requests.post(f"{emu.url}/v2/v1/token", data={"grant_type": "x"})
    assert answer.status_code == 404 and answer.headers["Content-Type"].startswith("text/html")
    assert "<title>Error 404 (Not Found)!!1</title>" in answer.text
    assert "The requested URL <code>/v2/v1/token</code> was not found on this server." in answer.text
