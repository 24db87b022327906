"""ACTION: doctor: run every stage that can run, print a ✔/✖ checklist with the fix for each ✖.

It changes nothing: it reads the step token, asks Google for tokens, asks the registry's token service
for a pull token, and pings the Docker daemon. Each check is a small function returning a Check; a
stage whose prerequisite failed is shown as skipped (–). Fixes come from pipe.oidc, pipe.diagnose
(through pipe.credentials), pipe.registry and pipe.container, so the wording stays in one place.
"""

import base64
import json
import time
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from google.auth import exceptions

from pipe import credentials, diagnose, oidc, redact, registry
from pipe.config import Config
from pipe.errors import PipeError
from pipe.oidc import StepToken

SUBJECT_LIMIT = 127  # bytes Google allows per mapped attribute (google.subject=assertion.sub)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped or not applicable
    detail: str  # what was seen (✔) or the fix (✖)

    @property
    def line(self) -> str:
        mark = {True: "✔", False: "✖", None: "–"}[self.ok]
        return f"{mark} {self.name}: {self.detail}"


@dataclass
class _Run:
    """What earlier stages produced for later ones."""

    cfg: Config
    env: dict
    transport: object
    step: StepToken | None = None
    fresh: bool = False  # the token is present and not expired
    exchanged: bool = False
    registry_allowed: bool = False
    minted: credentials.Minted | None = None


def _skip(name: str, needs: str) -> Check:
    return Check(name, None, f"skipped: needs {needs}")


# --- the step token ------------------------------------------------------------------------------

def check_token(run: _Run) -> Check:
    name = "Step OIDC token"
    try:
        run.step = oidc.read(run.env, now=0)  # presence and shape only; expiry is the next check
    except PipeError as error:
        return Check(name, False, error.message)
    redact.add_secret(run.step.value)
    return Check(name, True, f"present (iss {run.step.claim('iss')}, aud {', '.join(run.step.audiences) or '(none)'})")


def check_lifetime(run: _Run) -> Check:
    name = "Token not expired"
    if run.step is None:
        return _skip(name, "a step token")
    try:
        oidc.read(run.env)
    except PipeError as error:
        return Check(name, False, error.message)
    sub = len(run.step.claim("sub").encode())
    if sub > SUBJECT_LIMIT:
        too_long = {"error": "invalid_request", "error_description": "mapped attribute exceeds the 127 bytes limit"}
        return Check(name, False, f"sub is {sub} bytes. " + diagnose.sts_error(too_long, run.cfg, run.step))
    exp = run.step.claims.get("exp")
    left = f"valid for {int(exp - time.time())} s more" if isinstance(exp, (int, float)) else "no exp claim"
    run.fresh = True
    return Check(name, True, f"{left}; sub is {sub} of {SUBJECT_LIMIT} bytes")


# --- Google --------------------------------------------------------------------------------------

def check_provider(run: _Run) -> Check:
    return Check("Provider name", True, run.cfg.provider.name)  # config.load validated its shape


def check_exchange(run: _Run) -> Check:
    name = "STS token exchange"
    if not run.fresh:
        return _skip(name, "a valid step token")
    direct = replace(run.cfg, service_account=None)  # the federated token alone, whatever SERVICE_ACCOUNT says
    try:
        minted = credentials.mint(direct, run.step, run.transport)
    except PipeError as error:
        return Check(name, False, error.message)
    run.exchanged = True
    run.minted = None if run.cfg.service_account else minted
    return Check(name, True, f"federated token for {minted.principal}")


def check_impersonation(run: _Run) -> Check:
    name = "Service account impersonation"
    if run.cfg.service_account is None:
        return Check(name, None, "not used: no SERVICE_ACCOUNT (direct federation)")
    if not run.exchanged:
        return _skip(name, "the STS token exchange")
    try:
        run.minted = credentials.mint(run.cfg, run.step, run.transport)
    except PipeError as error:
        return Check(name, False, error.message)
    return Check(name, True, f"access token for {run.cfg.service_account}")


# --- the registry --------------------------------------------------------------------------------

def check_registry_allowed(run: _Run) -> Check:
    name = "Registry may receive tokens"
    if run.cfg.image is None:
        return Check(name, None, "not used: no IMAGE")
    try:
        registry.check_allowed(run.cfg.image, run.cfg.registries)
    except PipeError as error:
        return Check(name, False, error.message)
    run.registry_allowed = True
    return Check(name, True, run.cfg.image.host)


def check_registry_pull(run: _Run) -> Check:
    name = "Registry pull token"
    image = run.cfg.image
    if image is None:
        return Check(name, None, "not used: no IMAGE")
    if not run.registry_allowed:
        return _skip(name, "an allowed registry")
    if run.minted is None:
        return _skip(name, "a Google access token")
    scope = f"repository:{image.path}:pull"
    try:
        token_service = registry.check_token_service(image.host, run.cfg.registries, run.transport)
        if token_service.realm is None:
            raise PipeError(
                f"{registry.registry_url(image.host)} answered without a Bearer token challenge: "
                "IMAGE must be on a registry that takes Google access tokens (Artifact Registry)."
            )
        _pull_token(run, token_service.realm, token_service.service, scope)
    except PipeError as error:
        return Check(name, False, error.message)
    return Check(name, True, f"{run.minted.principal} may pull {image.repository} ({scope})")


def _get(run: _Run, url: str, headers: dict | None = None):
    try:
        return run.transport(url, method="GET", headers=headers or {})
    except exceptions.TransportError as error:
        raise PipeError(f"Could not reach {url.split('?')[0]} ({redact.redact(str(error))}): check the step's network access.") from None


def _pull_token(run: _Run, realm: str, service: str | None, scope: str) -> None:
    query = urlencode({"service": service, "scope": scope} if service else {"scope": scope})
    basic = base64.b64encode(f"oauth2accesstoken:{run.minted.access_token}".encode()).decode()
    response = _get(run, f"{realm}{'&' if '?' in realm else '?'}{query}", {"Authorization": f"Basic {basic}"})
    body = _json(response.data)
    errors = body.get("errors") if isinstance(body.get("errors"), list) else []
    message = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict)) or f"HTTP {response.status}"
    if response.status in (401, 403):
        raise PipeError(diagnose.registry_error(redact.redact(message), run.cfg.image.reference, run.minted.principal))
    if response.status != 200:
        raise PipeError(f"The registry's token service {realm} answered {redact.redact(message)}: retry, or check REGISTRIES.")
    if not _grants_pull(body.get("token") or body.get("access_token") or ""):
        raise PipeError(
            f"The registry's token service granted {run.minted.principal} no pull access ({scope}): "
            "grant it read access on that repository."
        )


def _json(data: bytes) -> dict:
    try:
        parsed = json.loads(data or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _grants_pull(token: str) -> bool:
    """Distribution-style token services may answer 200 with no access instead of 403; AR's tokens are opaque."""
    try:
        claims = oidc.decode_claims(token)
    except PipeError:  # not a JWT
        return True
    access = claims.get("access")
    if not isinstance(access, list):
        return True
    return any("pull" in (entry.get("actions") or []) for entry in access if isinstance(entry, dict))


# --- the step's Docker daemon ----------------------------------------------------------------------

def check_docker(run: _Run) -> Check:
    name = "Docker daemon"
    if run.cfg.image is None:
        return Check(name, None, "not used: no IMAGE")
    from pipe import container  # the Docker SDK only when an image needs the daemon

    try:
        container.connect()
    except PipeError as error:
        return Check(name, False, error.message)
    return Check(name, True, "reachable")


CHECKS = (
    check_token, check_lifetime, check_provider, check_exchange, check_impersonation,
    check_registry_allowed, check_registry_pull, check_docker,
)


def run_doctor(cfg: Config, env: dict, transport, out=print) -> bool:
    """Print the checklist; True when no check failed."""
    run = _Run(cfg, env, transport)
    out("Doctor: checking each stage (nothing is changed).")
    results = []
    for check in CHECKS:
        result = check(run)
        results.append(result)
        out(redact.printable(result.line))
    failed = sum(result.ok is False for result in results)
    if failed:
        out(f"{failed} check(s) failed: apply the fix after each ✖, top to bottom, then run ACTION: doctor again.")
    else:
        out("All checks passed.")
    return failed == 0
