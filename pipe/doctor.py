"""ACTION: doctor: run every stage that can run, print one ✔/✖/– line per check, with the fix after each ✖.

It changes nothing: it reads the step token, asks Google for tokens (and an ID token when ID_TOKEN_AUDIENCE is
set), asks the registry's token service for a pull token the way a pull does, reads the image's manifest with it,
checks the export folder without writing to it, and pings the Docker daemon. Each check is a small function
returning a Check; a stage whose prerequisite failed is shown as skipped (–). Fixes come from pipe.oidc,
pipe.diagnose_google and pipe.diagnose_registry (through pipe.credentials and pipe.registry), pipe.export and
pipe.container, so the wording stays in one place.
"""

import time
from dataclasses import dataclass, replace

from pipe import clone_dirs, credentials, diagnose_google, diagnose_registry, export, oidc, redact, registry, shown
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
    pull_token_ok: bool = False
    registry_token: str | None = None


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
        return Check(name, False, f"sub is {sub} bytes. " + diagnose_google.sts_error(too_long, run.cfg, run.step))
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
    try:  # exactly what a pull does: the same token service check, the same exchange
        service = registry.token_service(image.host, run.cfg.registries, run.transport)
        run.registry_token = registry.pull_token(image, service, run.minted.access_token, run.minted.principal, run.transport)
    except PipeError as error:
        return Check(name, False, error.message)
    run.pull_token_ok = True
    if service.realm is None:
        return Check(name, True, f"{image.host} needs no credentials")
    return Check(name, True, f"{run.minted.principal} got a token for repository:{image.path}:pull from {service.realm.netloc}")


def check_image(run: _Run) -> Check:
    name = "Image readable"
    image = run.cfg.image
    if image is None:
        return Check(name, None, "not used: no IMAGE")
    if not run.pull_token_ok:
        return _skip(name, "a registry pull token")
    try:
        status = registry.manifest(image, run.registry_token, run.transport)
    except PipeError as error:
        return Check(name, False, error.message)
    if status == 200:
        return Check(name, True, f"{image.display} exists and {run.minted.principal} may read it")
    return Check(name, False, diagnose_registry.manifest_error(status, image, run.minted.principal))


def check_id_token(run: _Run) -> Check:
    name = "ID token"
    if run.cfg.id_token_audience is None:
        return Check(name, None, "not used: no ID_TOKEN_AUDIENCE")
    if not run.exchanged:
        return _skip(name, "the STS token exchange")
    try:
        credentials.id_token(run.cfg, run.step, run.transport)
    except PipeError as error:
        return Check(name, False, error.message)
    return Check(name, True, f"minted for audience {run.cfg.id_token_audience}")


def check_export_folder(run: _Run) -> Check:
    name = "Export folder"
    if not run.cfg.export_credentials:
        return Check(name, None, "not used: EXPORT_CREDENTIALS is off")
    try:
        target = export.export_dir(run.cfg)
        with clone_dirs.parent_of(run.cfg.clone_dir, target, create=False, repair=False):
            pass
    except FileNotFoundError:
        return Check(name, True, f"{export.export_dir(run.cfg)} can be created (nothing is there yet)")
    except PipeError as error:
        return Check(name, False, error.message)
    return Check(name, True, f"{target} can be written")


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
    check_token, check_lifetime, check_provider, check_exchange, check_impersonation, check_id_token,
    check_registry_allowed, check_registry_pull, check_image, check_docker, check_export_folder,
)


def run_doctor(cfg: Config, env: dict, transport, out=print) -> bool:
    """Print the checklist; True when no check failed."""
    run = _Run(cfg, env, transport)
    out("Doctor: checking each stage (nothing is changed).")
    results = []
    for check in CHECKS:
        result = check(run)
        results.append(result)
        out(shown.line(result.line))
    failed = sum(result.ok is False for result in results)
    if failed:
        out(f"{failed} check(s) failed: apply the fix after each ✖, top to bottom, then run ACTION: doctor again.")
    else:
        out("All checks passed.")
    return failed == 0
