"""Every bad value is one ✖ line naming the variable, the value (unless secret) and the expected form.

Each case runs the whole pipe in-process (`pipe.main.main(env)`). STS_ENDPOINT points at a closed
loopback port, so a case that slipped past validation would end in "Could not reach Google", which
the assertions reject.
"""

import base64
import json
import logging
import re
import signal
import time
from dataclasses import dataclass

import pytest

from pipe.main import main
from pipe.parsers import PROVIDER_SHAPE
from tests.figures import record

PROVIDER = "projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider"
SA = "deployer@my-project.iam.gserviceaccount.com"
IMAGE = "us-docker.pkg.dev/my-project/tools/builder"
IMAGE_FORM = "an image reference such as"
ENDPOINT_FORM = "an https:// URL such as https://sts.googleapis.com"
HEX = "4f1c2a9e0b7d3c5e6f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e"


def jwt(claims) -> str:
    """An unsigned, JWT-shaped token: the pipe reads claims locally and leaves the signature to Google."""
    def part(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    payload = claims if isinstance(claims, str) else json.dumps(claims)
    return f"{part(json.dumps({'alg': 'RS256', 'typ': 'JWT'}))}.{part(payload)}.c2lnbmF0dXJl"


VALID_TOKEN = jwt({"iss": "https://example.invalid", "iat": int(time.time()), "exp": int(time.time()) + 3600})
EXPIRED_TOKEN = jwt({"iat": int(time.time()) - 4200, "exp": int(time.time()) - 600})
INFINITE_PAST_TOKEN = jwt('{"exp": -Infinity}')  # JSON that Python's json module accepts
BASE = {"WORKLOAD_IDENTITY_PROVIDER": PROVIDER, "BITBUCKET_STEP_OIDC_TOKEN": VALID_TOKEN, "STS_ENDPOINT": "http://127.0.0.1:9"}


@dataclass
class Case:
    env: dict  # merged over BASE; a None value removes the variable
    variable: str  # the variable the line must name
    expected: str | tuple  # fragment(s) of the expected form
    shown: str | None  # the value the line must show; None when it is secret or there is none
    never: str | None = None  # a secret that must never be printed


def case(name, env, variable, expected, shown=None, never=None, xfail=None):
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(Case(env, variable, expected, shown, never), id=name, marks=marks)


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
    # ENV entries (only the name is shown: the value may be a secret)
    case("env-digit-name", {"ENV": "1TARGET=release"}, "ENV", "NAME=VALUE or NAME", "1TARGET"),
    case("env-dash-name", {"ENV": "MY-PASSWORD=hunter2-secret"}, "ENV", "NAME=VALUE or NAME", "MY-PASSWORD", never="hunter2-secret"),
    case("env-forward-unset", {"ENV": "NOT_SET_ANYWHERE"}, "ENV", "NOT_SET_ANYWHERE=VALUE", "NOT_SET_ANYWHERE"),
    case("env-forward-token", {"ENV": "BITBUCKET_STEP_OIDC_TOKEN"}, "ENV", "GOOGLE_CREDENTIALS_IN_CONTAINER",
         "BITBUCKET_STEP_OIDC_TOKEN", never=VALID_TOKEN),
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
    case("sts-credentials-in-url", {"STS_ENDPOINT": "https://user:pw@sts.googleapis.com"}, "STS_ENDPOINT", ENDPOINT_FORM,
         "https://user:pw@sts.googleapis.com"),
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


@pytest.fixture(scope="module")
def tally():
    """Counts cases and prints the figure on the real stderr (visible with -s and when captured)."""
    counts = {"tried": 0, "clear": 0}
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # main() installs its own
    yield counts
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    record("bad input", f"{counts['tried']} cases tried, {counts['clear']} clear one-line errors with exit 1")


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_one_clear_line(bad, tally, capsys, caplog):
    tally["tried"] += 1
    env = {k: v for k, v in {**BASE, **bad.env}.items() if v is not None}
    caplog.set_level(logging.INFO)

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
    if bad.shown is not None:
        assert bad.shown in line or repr(bad.shown) in line, line
    for secret in filter(None, (bad.never, env.get("OIDC_TOKEN"), env.get("BITBUCKET_STEP_OIDC_TOKEN"))):
        if len(secret.strip()) >= 8:
            assert secret not in out + err + logged
    tally["clear"] += 1


def test_the_table_is_large_enough():
    assert len(CASES) >= 40
