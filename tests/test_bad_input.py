"""Every bad value is one ✖ line naming the variable, the value (unless it could be a secret) and the expected form.

Each case runs the whole pipe in-process (`pipe.main.main(env)`) in a directory holding the case's files.
STS_ENDPOINT points at a closed loopback port, so a case that slipped past validation would end in "Could
not reach Google", which the assertions reject. Every case is also an attack counted by tests.support.figures.probe:
the line must be one printable line of bounded length, echo no secret, and carry no terminal codes from input.
"""

import json
import logging
import re
import signal
import time
from dataclasses import dataclass, field

import pytest

from pipe.main import main
from pipe.provider import SHAPE as PROVIDER_SHAPE
from tests.support.figures import probe, record
from tests.support.inputs import MAX_LINE, PROVIDER, SA, gcloud_config, jwt, key_secrets, service_account_key, wrapped_base64

IMAGE = "us-docker.pkg.dev/my-project/tools/builder"
IMAGE_FORM = "an image reference such as"
ENDPOINT_FORM = "an https:// URL such as https://sts.googleapis.com"
REGISTRY_FORM = "a registry host such as"
AUDIENCE_FORM = "a Cloud Run or Cloud Functions URL"
HEX = "4f1c2a9e0b7d3c5e6f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e"
CONFIG = "GOOGLE_OIDC_CONFIG_FILE"
ECHO_LIMIT = 80


NOW = int(time.time())
VALID_TOKEN = jwt({"iss": "https://example.invalid", "iat": NOW, "exp": NOW + 3600})
EXPIRED_TOKEN = jwt({"iat": NOW - 4200, "exp": NOW - 600})
INFINITE_PAST_TOKEN = jwt('{"exp": -Infinity}')  # JSON that Python's json module accepts
BASE = {"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "BITBUCKET_STEP_OIDC_TOKEN": VALID_TOKEN, "STS_ENDPOINT": "http://127.0.0.1:9"}


@dataclass
class Case:
    name: str
    env: dict  # merged over BASE; a None value removes the variable
    variable: str  # the variable the line must name
    expected: str | tuple  # fragment(s) of the expected form
    shown: str | None  # the value the line must show (its first 80 characters); None when it is secret or there is none
    never: tuple = ()  # secrets and terminal codes that must never be printed
    files: dict = field(default_factory=dict)  # name -> bytes in the working directory (None: a directory)


def case(name, env, variable, expected, shown=None, never=(), files=None):
    never = (never,) if isinstance(never, str) else tuple(never)
    return pytest.param(Case(name, env, variable, expected, shown, never, files or {}), id=name)


def config_case(name, expected, never=(), **changes):
    """GOOGLE_OIDC_CONFIG_FILE holding gcloud's output with one hostile change, as a file in the clone."""
    files = {"cred.json": json.dumps(gcloud_config(**changes), indent=2).encode()}
    return case(name, {CONFIG: "cred.json"}, CONFIG, expected, never=never, files=files)


def provider(name, value, hint):
    """The provider line shows the full shape and the hint that fits the mistake."""
    return case(name, {"WORKLOAD_IDENTITY_PROVIDER": value}, "WORKLOAD_IDENTITY_PROVIDER", (PROVIDER_SHAPE, hint), value)


CASES = [
    provider("provider-project-id", PROVIDER.replace("123456789012", "my-project"), "project NUMBER"),
    provider("provider-pool-only", PROVIDER.split("/providers/")[0], "names a pool, not a provider"),
    provider("provider-short-form", "my-pool/my-provider", "not a workload identity provider"),
    provider("provider-uppercase-ids", PROVIDER.replace("bb-pool", "BB-Pool"), "lowercase"),
    provider("provider-trailing-junk", PROVIDER + "/keys", "remove '/keys'"),
    provider("provider-trailing-slash", "//iam.googleapis.com/" + PROVIDER + "/", "remove '/'"),
    provider("provider-regional", PROVIDER.replace("global", "us-east1"), "locations/global"),
    provider("provider-workforce", "locations/global/workforcePools/staff/providers/okta", "workforce pool"),
    provider("provider-reserved-prefix", PROVIDER.replace("bb-pool", "gcp-pool"), "gcp-"),
    provider("provider-id-too-long", PROVIDER.replace("bb-provider", "p" * 33), "4-32"),
    case("provider-blank", {"WORKLOAD_IDENTITY_PROVIDER": "  "}, "WORKLOAD_IDENTITY_PROVIDER", PROVIDER_SHAPE),
    # service accounts
    case("sa-bare-id", {"SERVICE_ACCOUNT": "deployer"}, "SERVICE_ACCOUNT", "a service account e-mail", "deployer"),
    case("sa-uppercase", {"SERVICE_ACCOUNT": "Deployer@my-project.iam.gserviceaccount.com"}, "SERVICE_ACCOUNT",
         "e-mails are lowercase", "Deployer@my-project.iam.gserviceaccount.com"),
    case("sa-personal-mail", {"SERVICE_ACCOUNT": "dev@gmail.com"}, "SERVICE_ACCOUNT", SA, "dev@gmail.com"),
    case("sa-member-form", {"SERVICE_ACCOUNT": "serviceAccount:" + SA}, "SERVICE_ACCOUNT", SA, "serviceAccount:" + SA),
    case("sa-two-values", {"SERVICE_ACCOUNT": f"{SA},{SA}"}, "SERVICE_ACCOUNT", SA, f"{SA},{SA}"),
    # images
    case("image-uppercase-path", {"IMAGE": "us-docker.pkg.dev/My-Project/tools/builder:1"}, "IMAGE",
         "repository paths are lowercase", "us-docker.pkg.dev/My-Project/tools/builder:1"),
    case("image-short-digest", {"IMAGE": f"{IMAGE}@sha256:{HEX[:-1]}"}, "IMAGE", "exactly 64 lowercase hex", f"{IMAGE}@sha256:{HEX[:-1]}"),
    case("image-uppercase-digest", {"IMAGE": f"{IMAGE}@sha256:{HEX.upper()}"}, "IMAGE", "64 lowercase hex", f"{IMAGE}@sha256:{HEX.upper()}"),
    case("image-md5-digest", {"IMAGE": f"{IMAGE}@md5:{HEX[:32]}"}, "IMAGE", "sha256:", f"{IMAGE}@md5:{HEX[:32]}"),
    case("image-empty-tag", {"IMAGE": IMAGE + ":"}, "IMAGE", "the tag after ':' is empty", IMAGE + ":"),
    case("image-spaces", {"IMAGE": IMAGE + " :1.4"}, "IMAGE", "contains spaces", IMAGE + " :1.4"),
    case("image-too-long", {"IMAGE": "us-docker.pkg.dev/p/" + "a" * 250}, "IMAGE", "Docker allows 255", "us-docker.pkg.dev/p/" + "a" * 250),
    case("image-url", {"IMAGE": "https://" + IMAGE}, "IMAGE", "host/path:tag", "https://" + IMAGE),
    case("image-empty-component", {"IMAGE": "us-docker.pkg.dev//tools/builder"}, "IMAGE", IMAGE_FORM, "us-docker.pkg.dev//tools/builder"),
    case("image-host-without-location", {"IMAGE": "docker.pkg.dev/my-project/tools/builder:1"}, "IMAGE",
         "LOCATION-docker.pkg.dev", "docker.pkg.dev/my-project/tools/builder:1"),
    case("image-host-dotted-location", {"IMAGE": "us-east1.docker.pkg.dev/my-project/tools/builder:1"}, "IMAGE",
         "us-east1-docker.pkg.dev (a dash, not a dot)", "us-east1.docker.pkg.dev/my-project/tools/builder:1"),
    case("image-host-of-another-format", {"IMAGE": "us-east1-python.pkg.dev/my-project/tools/builder:1"}, "IMAGE",
         "not Docker images", "us-east1-python.pkg.dev/my-project/tools/builder:1"),
    case("registries-host-without-location", {"REGISTRIES": "docker.pkg.dev"}, "REGISTRIES", "LOCATION-docker.pkg.dev", "docker.pkg.dev"),
    # ENV entries (only the name is shown: the value may be a secret)
    case("env-digit-name", {"ENV": "1TARGET=release"}, "ENV", "NAME=VALUE or NAME", "1TARGET"),
    case("env-dash-name", {"ENV": "MY-PASSWORD=hunter2-secret"}, "ENV", "NAME=VALUE or NAME", "MY-PASSWORD", never="hunter2-secret"),
    case("env-forward-unset", {"ENV": "NOT_SET_ANYWHERE"}, "ENV", "NOT_SET_ANYWHERE=VALUE", "NOT_SET_ANYWHERE"),
    case("env-forward-token", {"ENV": "BITBUCKET_STEP_OIDC_TOKEN"}, "ENV", "GOOGLE_CREDENTIALS_IN_CONTAINER",
         "BITBUCKET_STEP_OIDC_TOKEN", never=VALID_TOKEN),
    # The step token by value, under its own name or any other, the way `ENV: ["X=$BITBUCKET_STEP_OIDC_TOKEN"]` expands.
    case("env-token-by-value-own-name", {"ENV": f"BITBUCKET_STEP_OIDC_TOKEN={VALID_TOKEN}"}, "ENV",
         "GOOGLE_CREDENTIALS_IN_CONTAINER", never=VALID_TOKEN),
    case("env-token-by-value", {"ENV": f"GCP_TOKEN={VALID_TOKEN}"}, "ENV", "hands the image the step token", never=VALID_TOKEN),
    case("env-token-inside-a-value", {"ENV_COUNT": "1", "ENV_0": f"AUTH=Bearer {VALID_TOKEN} x"}, "ENV",
         "hands the image the step token", never=VALID_TOKEN),
    # list forms
    case("count-not-a-number", {"ENV_COUNT": "abc"}, "ENV_COUNT", "a whole number", "abc"),
    case("count-yaml-flow", {"COMMAND_COUNT": "[abc"}, "COMMAND_COUNT", "a whole number", "[abc"),
    case("count-negative", {"REGISTRIES_COUNT": "-1"}, "REGISTRIES_COUNT", "a whole number", "-1"),
    case("count-superscript", {"REGISTRIES_COUNT": "²"}, "REGISTRIES_COUNT", "a whole number", "²"),
    case("list-missing-item", {"ENV_COUNT": "2", "ENV_0": "A=1"}, "ENV_1", "write ENV as a YAML list", "ENV_COUNT is 2"),
    case("registry-not-a-host", {"REGISTRIES": "https://registry example.com"}, "REGISTRIES", "a registry host",
         "https://registry example.com"),
    # booleans and durations
    case("debug-maybe", {"DEBUG": "maybe"}, "DEBUG", "'true' or 'false'", "maybe"),
    case("debug-typo", {"DEBUG": "ture"}, "DEBUG", "'true' or 'false'", "ture"),
    case("lifetime-hours", {"ACCESS_TOKEN_LIFETIME": "1h"}, "ACCESS_TOKEN_LIFETIME", "such as 3600s", "1h"),
    case("lifetime-zero", {"ACCESS_TOKEN_LIFETIME": "0s"}, "ACCESS_TOKEN_LIFETIME", "between 1s and", "0s"),
    case("lifetime-beyond-12h", {"ACCESS_TOKEN_LIFETIME": "43201s"}, "ACCESS_TOKEN_LIFETIME", "43200s", "43201s"),
    case("project-id-uppercase", {"PROJECT_ID": "My_Project"}, "PROJECT_ID", "a project ID", "My_Project"),
    # endpoints and universe
    case("sts-plain-http", {"STS_ENDPOINT": "http://sts.example.com"}, "STS_ENDPOINT", "never sent over plain http",
         "http://sts.example.com"),
    case("sts-port-range", {"STS_ENDPOINT": "https://sts.googleapis.com:99999"}, "STS_ENDPOINT", ENDPOINT_FORM,
         "https://sts.googleapis.com:99999"),
    case("iam-port-word", {"IAM_CREDENTIALS_ENDPOINT": "https://iam.example.com:https"}, "IAM_CREDENTIALS_ENDPOINT",
         ENDPOINT_FORM, "https://iam.example.com:https"),
    case("sts-broken-ipv6", {"STS_ENDPOINT": "http://[::1"}, "STS_ENDPOINT", ENDPOINT_FORM, "http://[::1"),
    case("sts-bracket-junk", {"STS_ENDPOINT": "http://][::1"}, "STS_ENDPOINT", ENDPOINT_FORM, "http://][::1"),
    case("sts-query", {"STS_ENDPOINT": "https://sts.googleapis.com?alt=json"}, "STS_ENDPOINT", ENDPOINT_FORM,
         "https://sts.googleapis.com?alt=json"),
    case("sts-credentials-in-url", {"STS_ENDPOINT": "https://user:s3cretpass@sts.googleapis.com"}, "STS_ENDPOINT",
         (ENDPOINT_FORM, "no user name or password"), never="s3cretpass"),
    case("universe-url", {"UNIVERSE_DOMAIN": "https://googleapis.com"}, "UNIVERSE_DOMAIN", "a domain such as googleapis.com",
         "https://googleapis.com"),
    case("universe-single-label", {"UNIVERSE_DOMAIN": "googleapis"}, "UNIVERSE_DOMAIN", "a domain", "googleapis"),
    # action and contradictions
    case("action-unknown", {"ACTION": "deploy"}, "ACTION", "one of auth, pull, run", "deploy"),
    case("action-pull-no-image", {"ACTION": "pull"}, "IMAGE", "set IMAGE to the private image", "pull"),
    case("action-auth-with-script", {"ACTION": "auth", "IMAGE": IMAGE, "SCRIPT": "make"}, "ACTION", "remove ACTION", "auth"),
    case("script-and-command", {"IMAGE": IMAGE, "SCRIPT": "make", "COMMAND": "make"}, "COMMAND", "not both"),
    case("request-reason-two-lines", {"REQUEST_REASON": "deploy\nnow"}, "REQUEST_REASON", "printable ASCII", "deploy\nnow"),
    case("request-reason-non-ascii", {"REQUEST_REASON": "déploiement ✓"}, "REQUEST_REASON", "printable ASCII", "déploiement ✓"),
    # the step token: secret, never echoed
    case("token-missing", {"BITBUCKET_STEP_OIDC_TOKEN": None}, "BITBUCKET_STEP_OIDC_TOKEN", "oidc: true"),
    case("token-empty", {"BITBUCKET_STEP_OIDC_TOKEN": " ", "OIDC_TOKEN": ""}, "BITBUCKET_STEP_OIDC_TOKEN", "oidc: true"),
    case("token-garbage", {"BITBUCKET_STEP_OIDC_TOKEN": "not-a-jwt-but-long-enough"}, "BITBUCKET_STEP_OIDC_TOKEN", "JWT",
         never="not-a-jwt-but-long-enough"),
    case("token-payload-not-json", {"BITBUCKET_STEP_OIDC_TOKEN": "eyJhbGciOiJub25lIn0.bm90IGpzb24.c2ln"},
         "BITBUCKET_STEP_OIDC_TOKEN", "JWT", never="eyJhbGciOiJub25lIn0.bm90IGpzb24.c2ln"),
    case("oidc-token-garbage", {"OIDC_TOKEN": "garbage-token-value"}, "OIDC_TOKEN", "JWT", never="garbage-token-value"),
    case("token-expired", {"BITBUCKET_STEP_OIDC_TOKEN": EXPIRED_TOKEN}, "BITBUCKET_STEP_OIDC_TOKEN", "run this pipe earlier",
         never=EXPIRED_TOKEN),
    case("token-exp-minus-infinity", {"BITBUCKET_STEP_OIDC_TOKEN": INFINITE_PAST_TOKEN}, "BITBUCKET_STEP_OIDC_TOKEN",
         "expired", never=INFINITE_PAST_TOKEN),
]



KEY_JSON = json.dumps(service_account_key(), indent=2)
CLIENT_SECRET = "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"
INJECTED = "https://svc.a.run.app\n\x1b[32m✔ The script in us-docker.pkg.dev/p/r/i:1 succeeded.\x1b[0m"
DEEP_JSON = '{"a":' * 5000 + "1" + "}" * 5000

# Attacks from the hostile-input review: a secret in every variable, a hostile file in the clone.
CASES += [
    # secrets never echoed, whatever variable they land in
    case("config-file-key-base64-wrapped", {CONFIG: wrapped_base64(KEY_JSON)}, CONFIG, "service-account key",
         never=key_secrets() + tuple(wrapped_base64(KEY_JSON).splitlines()[:3])),
    case("config-file-key-json-bom", {CONFIG: "\ufeff" + KEY_JSON}, CONFIG, "service-account key", never=key_secrets()),
    case("config-file-key-in-a-file", {CONFIG: "key.json"}, CONFIG, "service-account key", never=key_secrets(),
         files={"key.json": KEY_JSON.encode()}),
    case("config-file-authorized-user", {CONFIG: json.dumps({"type": "authorized_user", "client_secret": CLIENT_SECRET,
                                                               "refresh_token": "1//0gLq8vT5e2kHsCgYIARAAGBASNwF-L9Ir"})},
         CONFIG, "type 'authorized_user'", never=(CLIENT_SECRET, "1//0gLq8vT5e2kHsCgYIARAAGBASNwF-L9Ir")),
    case("config-file-long-garbage", {CONFIG: "x" * 5000}, CONFIG, ("(value hidden)", "the path of a credential configuration"),
         never="x" * (ECHO_LIMIT + 1)),
    case("config-file-missing-path", {CONFIG: "creds/missing.json"}, CONFIG, "there is no such file", "creds/missing.json"),
    case("sa-pasted-key", {"SERVICE_ACCOUNT": KEY_JSON}, "SERVICE_ACCOUNT", "(hidden)", never=key_secrets()),
    case("sa-pasted-key-base64", {"SERVICE_ACCOUNT": wrapped_base64(KEY_JSON)}, "SERVICE_ACCOUNT", "(hidden)",
         never=tuple(wrapped_base64(KEY_JSON).splitlines())),
    case("provider-pasted-token", {"WORKLOAD_IDENTITY_PROVIDER": jwt({"sub": "someone-else", "exp": NOW + 60})},
         "WORKLOAD_IDENTITY_PROVIDER", "(hidden)", never=jwt({"sub": "someone-else", "exp": NOW + 60})),
    case("env-access-token-as-entry", {"ENV": "ya29.a0AfH6SMBx3kq-secret-access-token"}, "ENV", "NAME=VALUE or NAME",
         never="a0AfH6SMBx3kq-secret-access-token"),
    case("image-url-with-password", {"IMAGE": "https://robot:hunter2pass@registry.example.com/p/i:1"}, "IMAGE", IMAGE_FORM,
         never="hunter2pass"),
    case("request-reason-100kb", {"REQUEST_REASON": "a" * 100_000}, "REQUEST_REASON", ("at most 1024", "(100000 characters)"), "a" * 100_000),
    case("provider-terminal-codes", {"WORKLOAD_IDENTITY_PROVIDER": "\x1b[2J\x1b[32m✔ fine\x07"}, "WORKLOAD_IDENTITY_PROVIDER",
         PROVIDER_SHAPE, "\x1b[2J\x1b[32m✔ fine\x07", never=("\x1b[2J", "\x1b[32m", "\x07")),
    case("project-id-bidi-override", {"PROJECT_ID": "my-project\u202etxt.exe"}, "PROJECT_ID", "a project ID",
         "my-project\u202etxt.exe", never="\u202e"),
    # GOOGLE_OIDC_CONFIG_FILE: every field honoured exactly or refused by name
    config_case("config-file-impersonation-names-project", ("service_account_impersonation_url", "projects/-"),
                service_account_impersonation_url=f"https://iamcredentials.googleapis.com/v1/projects/my-project/serviceAccounts/{SA}"
                                                  ":generateAccessToken"),
    config_case("config-file-token-url-trailing-slash", ("token_url", "exactly"), token_url="https://sts.googleapis.com/v1/token/"),
    config_case("config-file-token-url-plain-http", ("token_url", "plain http"), token_url="http://sts.example.com/v1/token"),
    config_case("config-file-token-url-backslash", ("token_url", "no backslashes"), token_url="https://sts.example.com\\@sts.googleapis.com/v1/token"),
    config_case("config-file-introspect-elsewhere", "token_info_url", token_info_url="https://sts.example.com/v1/introspect"),
    config_case("config-file-client-secret", ("client_secret", "rotate the secret"), never=CLIENT_SECRET, client_id="123-x.apps.googleusercontent.com",
                client_secret=CLIENT_SECRET),
    config_case("config-file-workforce-user-project", ("workforce_pool_user_project", "workload identity"), workforce_pool_user_project="my-project"),
    config_case("config-file-quota-project", "quota_project_id", quota_project_id="my-project"),
    config_case("config-file-unknown-field", ("'trust_boundary'", "does not know"), trust_boundary={"locations": []}),
    config_case("config-file-saml", ("subject_token_type", "a JWT"), subject_token_type="urn:ietf:params:oauth:token-type:saml2"),
    config_case("config-file-aws-source", ("credential_source", "'environment_id'"),
                credential_source={"environment_id": "aws1", "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone"}),
    config_case("config-file-two-sources", ("credential_source", "exactly one"), credential_source={"file": "/t", "url": "https://t.example"}),
    config_case("config-file-lifetime-string", ("token_lifetime_seconds", "a whole number"),
                service_account_impersonation={"token_lifetime_seconds": "1800"}),
    config_case("config-file-lifetime-too-long", ("token_lifetime_seconds", "from 1 to 43200"),
                service_account_impersonation={"token_lifetime_seconds": 86400}),
    config_case("config-file-universe-number", ("universe_domain", "a number"), universe_domain=7),
    config_case("config-file-workforce-audience", ("audience", "workforce pool"),
                audience="//iam.googleapis.com/locations/global/workforcePools/staff/providers/okta"),
    config_case("config-file-audience-https-form", ("audience", "exactly //iam.googleapis.com/"), audience="https://iam.googleapis.com/" + PROVIDER),
    case("config-file-duplicate-key", {CONFIG: '{"type": "external_account", "token_url": "https://sts.googleapis.com/v1/token", '
                                                '"token_url": "https://sts.example.com/v1/token"}'}, CONFIG, "'token_url' twice"),
    case("config-file-not-utf8", {CONFIG: "cred.json"}, CONFIG, "not UTF-8",
         files={"cred.json": json.dumps(gcloud_config(audience="//iam.googleapis.com/" + PROVIDER + "é"), ensure_ascii=False).encode("latin-1")}),
    case("config-file-utf16", {CONFIG: "cred.json"}, CONFIG, "UTF-16",
         files={"cred.json": json.dumps(gcloud_config()).encode("utf-16")}),
    case("config-file-nested-thousands-deep", {CONFIG: DEEP_JSON}, CONFIG, "nests JSON"),
    case("config-file-huge", {CONFIG: "cred.json"}, CONFIG, "more than 64 KB", files={"cred.json": b" " * 200_000 + b"{}"}),
    case("config-file-directory", {CONFIG: "creds"}, CONFIG, "names the directory", "creds", files={"creds": None}),
    # counts, URLs and hosts: one strict reading, bounded
    case("count-thousands-of-digits", {"ENV_COUNT": "9" * 5000}, "ENV_COUNT", "a whole number from 0 to 1000", "9" * 5000),
    case("count-too-many", {"COMMAND_COUNT": "100000"}, "COMMAND_COUNT", "a whole number from 0 to 1000", "100000"),
    case("list-too-many-items", {"REGISTRIES": ",".join(["r.example"] * 1001)}, "REGISTRIES", "at most 1000"),
    case("id-token-audience-log-injection", {"SERVICE_ACCOUNT": SA, "ID_TOKEN_AUDIENCE": INJECTED}, "ID_TOKEN_AUDIENCE",
         AUDIENCE_FORM, INJECTED, never=("\n✔", "\x1b[32m")),
    case("id-token-audience-bare-name", {"SERVICE_ACCOUNT": SA, "ID_TOKEN_AUDIENCE": "my-service"}, "ID_TOKEN_AUDIENCE",
         (AUDIENCE_FORM, "https://"), "my-service"),
    case("id-token-audience-client-id-typo", {"SERVICE_ACCOUNT": SA, "ID_TOKEN_AUDIENCE": "1234-ABC.apps.googleusercontent.com"},
         "ID_TOKEN_AUDIENCE", "<digits>-<lowercase letters and digits>", "1234-ABC.apps.googleusercontent.com"),
    case("sts-backslash", {"STS_ENDPOINT": "https://sts.googleapis.com\\@evil.example"}, "STS_ENDPOINT", (ENDPOINT_FORM, "no backslashes")),
    case("sts-backslash-path", {"STS_ENDPOINT": "https://evil.example\\.sts.googleapis.com"}, "STS_ENDPOINT", (ENDPOINT_FORM, "no backslashes"),
         "https://evil.example\\.sts.googleapis.com"),
    case("sts-ipv4-shorthand", {"STS_ENDPOINT": "http://127.1:8765"}, "STS_ENDPOINT", ENDPOINT_FORM, "http://127.1:8765"),
    case("sts-dot-segments", {"STS_ENDPOINT": "https://sts.googleapis.com/x/.."}, "STS_ENDPOINT", ENDPOINT_FORM, "https://sts.googleapis.com/x/.."),
    case("iam-percent-host", {"IAM_CREDENTIALS_ENDPOINT": "https://iam%2ecredentials.example"}, "IAM_CREDENTIALS_ENDPOINT", ENDPOINT_FORM,
         "https://iam%2ecredentials.example"),
    case("registry-ipv4-shorthand", {"REGISTRIES": "127.1:5000"}, "REGISTRIES", REGISTRY_FORM, "127.1:5000"),
    case("registry-trailing-dot", {"REGISTRIES": "registry.example.com."}, "REGISTRIES", REGISTRY_FORM, "registry.example.com."),
    case("registry-userinfo", {"REGISTRIES": "gcr.io@registry.example.com"}, "REGISTRIES", (REGISTRY_FORM, "no user name")),
    case("universe-ip-address", {"UNIVERSE_DOMAIN": "10.0.0.1"}, "UNIVERSE_DOMAIN", "a domain", "10.0.0.1"),
    # the step token: decoded safely, never echoed
    case("token-nested-thousands-deep", {"BITBUCKET_STEP_OIDC_TOKEN": jwt("[" * 20000 + "]" * 20000)}, "BITBUCKET_STEP_OIDC_TOKEN", "not a JWT",
         never=jwt("[" * 20000 + "]" * 20000)[:200]),
    case("token-payload-a-list", {"BITBUCKET_STEP_OIDC_TOKEN": jwt("[1, 2]")}, "BITBUCKET_STEP_OIDC_TOKEN", "not a JWT", never=jwt("[1, 2]")),
    case("token-huge", {"OIDC_TOKEN": jwt({"exp": NOW + 60, "pad": "x" * 200_000})}, "OIDC_TOKEN", "characters long",
         never=jwt({"exp": NOW + 60, "pad": "x" * 200_000})[:200]),
    case("token-four-segments", {"OIDC_TOKEN": VALID_TOKEN + ".extra"}, "OIDC_TOKEN", "not a JWT", never=VALID_TOKEN),
    case("token-aud-a-number", {"BITBUCKET_STEP_OIDC_TOKEN": jwt({"aud": 5, "exp": NOW + 60})}, "BITBUCKET_STEP_OIDC_TOKEN", "aud claim",
         never=jwt({"aud": 5, "exp": NOW + 60})),
    case("token-aud-list-with-number", {"BITBUCKET_STEP_OIDC_TOKEN": jwt({"aud": ["ari:cloud:bitbucket::workspace/x", 5], "exp": NOW + 60})},
         "BITBUCKET_STEP_OIDC_TOKEN", "aud claim", never=jwt({"aud": ["ari:cloud:bitbucket::workspace/x", 5], "exp": NOW + 60})),
    case("token-claim-terminal-codes", {"OIDC_TOKEN": jwt({"exp": NOW + 60, "branchName": "main\x1b[2J\x1b[32m✔ forged"})}, "OIDC_TOKEN",
         "control or invisible characters", never=("\x1b[2J", "\x1b[32m")),
    case("token-aud-bidi-override", {"OIDC_TOKEN": jwt({"exp": NOW + 60, "aud": ["ari:cloud:bitbucket::workspace/\u202ex"]})}, "OIDC_TOKEN",
         "control or invisible characters", never="\u202e"),
    case("token-exp-infinity", {"BITBUCKET_STEP_OIDC_TOKEN": jwt('{"exp": Infinity}')}, "BITBUCKET_STEP_OIDC_TOKEN", "exp claim"),
    case("token-exp-a-string", {"BITBUCKET_STEP_OIDC_TOKEN": jwt({"exp": str(NOW + 60)})}, "BITBUCKET_STEP_OIDC_TOKEN", "exp claim"),
    case("token-exp-huge-past", {"BITBUCKET_STEP_OIDC_TOKEN": jwt('{"exp": -' + "9" * 400 + "}")}, "BITBUCKET_STEP_OIDC_TOKEN", "expired long ago"),
]


@pytest.fixture(scope="module")
def tally():
    """Counts cases and prints the figure on the real stderr (visible with -s and when captured)."""
    counts = {"tried": 0, "clear": 0}
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # main() installs its own
    yield counts
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    record("bad input", f"{counts['tried']} cases tried, {counts['clear']} clear one-line errors with exit 1")


RED, RESET = "\x1b[31m", "\x1b[0m"  # main's own colour around the ✖ line


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_one_clear_line(bad, tally, capsys, caplog, tmp_path, monkeypatch):
    tally["tried"] += 1
    for name, content in bad.files.items():
        (tmp_path / name).mkdir() if content is None else (tmp_path / name).write_bytes(content)
    monkeypatch.chdir(tmp_path)
    env = {k: v for k, v in {**BASE, **bad.env}.items() if v is not None}
    caplog.set_level(logging.INFO)

    with probe(f"bad input {bad.name}"):
        code = main(env)

        out, err = capsys.readouterr()
        logged = caplog.text
        lines = [line for line in out.splitlines() if "✖" in line]
        assert code == 1
        assert len(lines) == 1, out
        line = lines[0]
        assert "Traceback" not in out + err + logged
        assert "Could not reach Google" not in line and "Unexpected error" not in line, line
        assert re.search(rf"(?<![\w]){re.escape(bad.variable)}\b", line), line
        for fragment in bad.expected if isinstance(bad.expected, tuple) else (bad.expected,):
            assert fragment in line, line
        if bad.shown is not None and len(bad.shown) <= ECHO_LIMIT:
            assert bad.shown in line or repr(bad.shown) in line, line
        elif bad.shown is not None:  # the first 80 characters, then …
            assert repr(bad.shown[:ECHO_LIMIT]) + "…" in line and bad.shown[: ECHO_LIMIT + 1] not in line, line
        # One printable line of bounded length: no terminal codes, newlines or bidi controls from the input.
        text = line.removeprefix(RED).removesuffix(RESET)
        assert text.isprintable() and len(text) < MAX_LINE, text
        assert out.replace(RED, "").replace(RESET, "").count("\x1b") == 0, out
        for secret in filter(None, (*bad.never, env.get("OIDC_TOKEN"), env.get("BITBUCKET_STEP_OIDC_TOKEN"))):
            if len(secret.strip()) >= 8 or not secret.isprintable():
                assert secret not in out + err + logged
    tally["clear"] += 1


def test_the_table_is_large_enough():
    assert len(CASES) >= 120
